"""The project's expected failures; each message is one line ready for the user."""

from __future__ import annotations


class DataError(Exception):
    """Data that cannot be used: missing, truncated, altered or malformed. The message names the
    file (or dataset) and the problem, and says what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a runner or `dvc queue kill` stopping the stage), unwound like Ctrl-C."""
