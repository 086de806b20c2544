"""One module per DVC stage that trains: it reads the stage's inputs, calls the library, writes
the stage's DVC outputs and logs its MLflow runs (`stages/<name>.py` parses the arguments)."""
