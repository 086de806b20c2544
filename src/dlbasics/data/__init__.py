"""data: TODO docstring."""
