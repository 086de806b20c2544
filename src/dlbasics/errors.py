"""The project's expected failures, one place for all of them: the stage entry points map each
to an exit code without importing the modules that raise them. Each message is one line ready
for the user."""

from __future__ import annotations


class ConfigError(Exception):
    """A params file that cannot be used; the message is one line ready for the user."""


class DataError(Exception):
    """Data that cannot be used: missing, truncated, altered or malformed. The message names the
    file (or dataset) and the problem, and says what to do."""


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float, lr: float):
        super().__init__(
            f"training diverged at epoch {epoch}: loss is {loss}; "
            f"lower the learning rate (now {lr}) or standardise the inputs"
        )
        self.epoch, self.loss, self.lr = epoch, loss, lr


class TrackingError(Exception):
    """The tracking store cannot be used; the message is one line ready for the user."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a runner or `dvc queue kill` stopping the stage), unwound like Ctrl-C."""
