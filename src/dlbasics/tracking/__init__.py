"""tracking: TODO docstring."""
