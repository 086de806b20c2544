"""Where results go in MLflow (floor 3: imports learn/, data/, dvc/ and floor 0; not search/ or
report/).

`runs` (the store, experiments and runs, a dead run marked failed), `model_logging` (a
variant's logged model and test metrics), `registry` (the Model Registry and the champion
alias), `serving` (the served pyfunc model, its code bundled from dvc.codedeps's closure) and
`services` (the team stack: PostgreSQL, S3, mlflow server).
"""
