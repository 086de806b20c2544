"""dvc: TODO docstring."""
