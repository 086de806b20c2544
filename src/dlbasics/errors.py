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


_LOST = (("Connection refused", "connection refused"),
         ("Failed to establish a new connection", "connection refused"),
         ("timed out", "no answer in time"),
         ("RemoteDisconnected", "connection dropped"),
         ("Connection aborted", "connection dropped"),
         ("Connection reset", "connection dropped"),
         ("Max retries exceeded", "no answer"))


def tracking_lost(exc: BaseException) -> str | None:
    """One line for the user when `exc` (or an exception it was raised from or during) is a
    remote tracking server that stopped answering, else None. Reads the message and the type's
    name only, so that callers need not import mlflow."""
    import re

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name, text = type(exc).__name__, str(exc)
        if name in ("MlflowException", "ConnectionError", "ConnectTimeout", "ReadTimeout"):
            reason = next((why for mark, why in _LOST if mark in text), None)
            if reason is not None:
                url = re.search(r"(https?://[^/\s]+)", text)
                where = url.group(1) if url else "the tracking server"
                return (f"the tracking server {where} stopped answering ({reason}); start it "
                        "again (`make services` for the team stack) and rerun: the run it "
                        "left RUNNING is marked KILLED then")
        exc = exc.__cause__ or exc.__context__
    return None


class ClusterError(Exception):
    """The Ray cluster cannot be used (not installed, unreachable); one line for the user."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a runner or `dvc queue kill` stopping the stage), unwound like Ctrl-C."""
