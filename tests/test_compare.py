"""scripts/compare.py against a real git repository and the real dvc CLI: what CI posts on a
pull request (parameter and metric changes against the base branch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run

SCRIPT = REPO / "scripts" / "compare.py"
# One stage: the metric is 5 * lr, so lr 0.1 -> 0.15 moves acc 0.5 -> 0.75 (delta 0.25).
SCORE = ("python -c \"import json,yaml; p=yaml.safe_load(open('params.yaml')); "
         "json.dump({'acc': p['lr']*5}, open('m.json','w'))\"")


@pytest.fixture(scope="module")
def branch_repo(tmp_path_factory) -> Path:
    """main: lr 0.1 reproduced and committed; workspace on branch `feature`: lr 0.15,
    reproduced, not committed (as after `make pipeline` in CI)."""
    repo = tmp_path_factory.mktemp("compare")
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "params.yaml").write_text("lr: 0.1\n")
    stage = {"cmd": SCORE, "params": ["lr"], "metrics": [{"m.json": {"cache": False}}]}
    # safe_dump quotes the command (its ": " would break a plain YAML scalar).
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"score": stage}}, sort_keys=False))
    run(["dvc", "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "base"], repo)
    run(["git", "checkout", "-qb", "feature"], repo)
    (repo / "params.yaml").write_text("lr: 0.15\n")
    run(["dvc", "repro", "-q"], repo)
    return repo


def _row(markdown: str, name: str) -> list[str]:
    """The cells of the table row whose cells include `name`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and name in cells:
            return cells
    raise AssertionError(f"no table row for {name!r} in:\n{markdown}")


def test_compare_reports_changed_params_metrics_and_the_report(branch_repo: Path, tmp_path: Path):
    out = branch_repo / "compare.md"
    report = tmp_path / "report.md"
    report.write_text("# dlbasics report\n\n## Regression\n\n```\n# not a heading\n```\n")
    proc = run([sys.executable, str(SCRIPT), "--base", "main", "--out", str(out),
                "--report", str(report)], branch_repo)
    text = out.read_text()
    assert proc.stdout == text
    assert text.startswith("# Pipeline changes against `main`")
    params, rest = text.split("## Metrics")
    param = _row(params, "lr")
    assert "0.1" in param and "0.15" in param
    metric = _row(rest, "acc")
    assert [float(c) for c in metric[2:5]] == pytest.approx([0.5, 0.75, 0.25])
    # The report comes last, its headings nested one level under "## Report".
    tail = rest.split("## Report", 1)[1]
    assert "### dlbasics report" in tail and "#### Regression" in tail
    assert "\n# not a heading\n" in tail  # code fences are left alone


def test_unknown_base_fails_with_one_line(branch_repo: Path):
    out = branch_repo / "never.md"
    proc = run([sys.executable, str(SCRIPT), "--base", "no-such-branch", "--out", str(out)],
               branch_repo, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no-such-branch" in lines[0]
    assert not out.exists()
