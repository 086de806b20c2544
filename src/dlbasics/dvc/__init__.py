"""What DVC must know about the code (floor 1: imports only floor 0).

`codedeps` reads the import closure of each stage script and keeps dvc.yaml's code dependencies
exactly that (`make deps`); `plots` writes dvc.yaml's top-level plots and `plots_page` the
offline page of `dvc plots show`; `changes` is the train
stage's record of what each variant was trained from, so that an edit retrains only the
variants whose DVC-tracked inputs changed.
"""
