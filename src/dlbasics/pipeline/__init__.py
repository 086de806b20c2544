"""The work of the stages that train (floor 4: imports any floor below; no other floor imports it).

`train` (the train stage), `variant` (one variant fitted and tracked) and `select` (one named
search, its outputs and runs): each reads the stage's inputs, calls the library, writes the
stage's DVC outputs and logs its MLflow runs. `stages/<name>.py` parses the arguments.
"""
