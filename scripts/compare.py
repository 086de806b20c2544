"""What CI says on a pull request, run locally: parameter changes (`dvc params diff`), metric
changes beyond rounding, the learning curves of the changed variants, and the report, against a
base revision, as one Markdown document.

    python scripts/compare.py --base main [--out compare.md] [--rtol 1e-4] [--atol 1e-9]

It reads what `dvc repro` left in the workspace; it does not run the pipeline (the Makefile
target runs `dvc repro` first). With --out, the curves are drawn into the folder beside it
(compare.md -> compare/<variant>.png). Bad input (an unknown base revision, unreadable metrics)
stops it with one line on stderr and exit status 1, before anything is written. The logic, and
why the default tolerances are what they are, is in src/dlbasics/report/compare.py.
"""

from __future__ import annotations

import sys

from dlbasics.report.compare import main  # PYTHONPATH=src (as the stages run) picks this checkout's

if __name__ == "__main__":
    sys.exit(main())
