"""Shared behaviour of the stage entry points: one clear line and an exit code on bad input."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from dlbasics.config import ConfigError
from dlbasics.data import DataError
from dlbasics.training import DivergenceError

EXIT_CONFIG = 2  # bad params: nothing was written
EXIT_DATA = 3  # missing, truncated or altered data files
EXIT_DIVERGED = 4  # training loss became NaN or infinite


def run_stage(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's main(); map the project's known failures to one line on stderr."""
    prog = sys.argv[0].rsplit("/", 1)[-1]
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
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; outputs left as they were", file=sys.stderr)
        return 130
    return 0
