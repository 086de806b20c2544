"""What CI says on a pull request, run locally: parameter and metric changes against a base
revision (`dvc params diff`, `dvc metrics diff`) and the report, as one Markdown document.

    python scripts/compare.py --base main [--out compare.md]

It reads what `dvc repro` left in the workspace; it does not run the pipeline (the Makefile
target runs `dvc repro` first). A dvc failure (an unknown base revision, a broken dvc.yaml)
stops it with one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path


class CompareError(Exception):
    """A step that failed; the message is one line for the user."""


def dvc_executable() -> str:
    """The dvc of the environment running this script (same bin dir as the interpreter)."""
    exe = Path(sys.executable).parent / ("dvc.exe" if os.name == "nt" else "dvc")
    if not exe.exists():
        raise CompareError(f"dvc not found next to {sys.executable}; install the project's "
                           "environment (make venv)")
    return str(exe)


def dvc_diff(kind: str, base: str, repo: Path) -> str:
    """`dvc <kind> diff <base> --md` in `repo`: the Markdown table, "" when nothing changed."""
    cmd = [dvc_executable(), kind, "diff", base, "--md"]
    # No analytics call from CI or a laptop: the comparison is offline.
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompareError(f"dvc {kind} diff {base} failed: {_first_error(proc.stderr)}")
    table = proc.stdout.strip()
    # A header and its rule with no row below: nothing changed.
    rows = [ln for ln in table.splitlines() if ln.startswith("|")]
    return table if len(rows) > 2 else ""


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    line = (errors or lines or ["no message"])[0]
    return re.sub(r"^ERROR:\s*", "", line)


def demote(markdown: str) -> str:
    """Every heading one level down (outside code fences), to nest a document in this one."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        out.append("#" + line if not fenced and re.match(r"#{1,5} ", line) else line)
    return "\n".join(out)


def compare(base: str, repo: Path, report: Path | None) -> str:
    """The whole Markdown document."""
    params = dvc_diff("params", base, repo)
    metrics = dvc_diff("metrics", base, repo)
    parts = [
        f"# Pipeline changes against `{base}`\n",
        "## Parameters\n",
        (params or "No parameter changed.") + "\n",
        "## Metrics\n",
        (metrics or "No metric changed.") + "\n",
    ]
    if report is not None and report.is_file():
        parts += [f"## Report (`{report.as_posix()}`)\n",
                  demote(demote(report.read_text(encoding="utf-8")).strip()) + "\n"]
    return "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with (e.g. main)")
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    ap.add_argument("--repo", type=Path, default=Path("."), help="repository root (default .)")
    ap.add_argument("--report", type=Path, default=Path("reports/report.md"),
                    help="the report to append, relative to --repo")
    args = ap.parse_args(argv)
    try:
        text = compare(args.base, args.repo, args.repo / args.report)
    except CompareError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
