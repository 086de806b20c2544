"""search: TODO docstring."""
