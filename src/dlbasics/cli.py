"""Shared behaviour of the stage entry points: one clear line and an exit code on bad input."""

from __future__ import annotations

import signal
import sys
from typing import Callable, Sequence

from dlbasics import trace
from dlbasics.errors import (ClusterError, ConfigError, DataError, DivergenceError, Terminated,
                             TrackingError, tracking_lost)

EXIT_CONFIG = 2  # bad params: nothing was written
EXIT_DATA = 3  # missing, truncated or altered data files
EXIT_DIVERGED = 4  # training loss became NaN or infinite
EXIT_TRACKING = 5  # the MLflow store or server cannot be used
EXIT_CLUSTER = 6  # the Ray cluster cannot be used


def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    # `dvc exp` / CI runners stop with SIGTERM: unwind like Ctrl-C, so the open MLflow run is
    # marked KILLED and atomic writers remove their temporary files.
    raise Terminated


def run_stage(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's main(); map the project's known failures to one line on stderr."""
    prog = sys.argv[0].rsplit("/", 1)[-1]
    trace.process("stage")  # the stage script's imports are done (a no-op unless traced)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        main(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except DivergenceError as exc:
        print(f"error: {prog}: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrackingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TRACKING
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CLUSTER
    except Exception as exc:
        lost = tracking_lost(exc)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return EXIT_TRACKING
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; outputs left as they were", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def exit_fast(code: int):
    """End the process now with `code`, skipping the interpreter's teardown: freeing the modules
    of torch, mlflow and scikit-learn takes up to 2 s after the work is done (measured). Every
    output is already in place (atomic renames, fsync); the atexit handlers still run and the
    standard streams are flushed first. For a stage's `__main__` only, never inside a caller."""
    import atexit
    import os

    atexit._run_exitfuncs()
    trace.end()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
