"""learn: TODO docstring."""
