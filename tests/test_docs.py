"""The README and the documentation site: the README stays short and points at pages that exist;
`make docs` builds the site with `mkdocs build --strict` (no broken link, no page left out of the
nav) in a fresh clone; and every command in a ```bash block of the README or docs/ is run, as
written, by a named test (or is listed with the reason it is not: a shell set-up line).
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

from conftest import REPO, make_project, run

DOCS = REPO / "docs"

# Command (comment stripped, continuation lines joined) -> where it runs: "tests/FILE::NAME"
# (a test function or fixture of that file) or ".ci/run". `differs`: the tokens the test
# replaces, and why.
RUN_BY = {
    "make pipeline": ("tests/test_pipeline_e2e.py::repro", {}),
    "make test": (".ci/run", {}),
    "apt-get install dataset-fashion-mnist": (".ci/run", {}),
    "make fashion": ("tests/test_fashion_mnist.py::fashion_repro", {}),
    "dvc exp run -S train.mlp.optimizer.lr=0.05": (
        "tests/test_pipeline_e2e.py::test_an_experiment_reads_in_dvc_exp_show_and_dvc_metrics_diff",
        {}),
    "dvc exp show --only-changed --drop 'Created|/'": (
        "tests/test_pipeline_e2e.py::test_an_experiment_reads_in_dvc_exp_show_and_dvc_metrics_diff",
        {}),
    "dvc metrics diff": (
        "tests/test_pipeline_e2e.py::test_an_experiment_reads_in_dvc_exp_show_and_dvc_metrics_diff",
        {}),
    "dvc params diff": (
        "tests/test_pipeline_e2e.py::test_an_experiment_reads_in_dvc_exp_show_and_dvc_metrics_diff",
        {}),
    "dvc plots show": ("tests/test_plots_page.py::test_every_plot_draws_with_the_network_refused",
                       {}),
    "dvc exp run --temp -S train.linreg.optimizer.lr=0.02": (
        "tests/test_pipeline_e2e.py::test_temp_experiment_lands_in_the_users_store", {}),
    "dvc exp run --queue -S train.linreg.optimizer.lr=0.01 && "
    "dvc exp run --queue -S train.linreg.optimizer.lr=0.04": (
        "tests/test_reliability.py::test_four_queued_experiments_two_at_a_time_all_reach_mlflow",
        {"&&": "the test queues its four experiments one call each",
         "train.linreg.optimizer.lr=0.01": "formatted from the test's four learning rates",
         "train.linreg.optimizer.lr=0.04": "formatted from the test's four learning rates"}),
    "dvc queue start -j 2": (
        "tests/test_reliability.py::test_four_queued_experiments_two_at_a_time_all_reach_mlflow",
        {}),
    "make serve PORT=5001": ("tests/test_serve.py::served", {"PORT=5001": "a free port"}),
    "curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d "
    "\"{\\\"inputs\\\": $(python -c 'import numpy as np; print(np.load(\"data/prepared/images/"
    "X_test.npy\")[:2].tolist())')}\"": (
        "tests/test_serve.py::test_the_docs_curl_lines_get_two_predictions",
        {"*": "the test runs the lines it reads from docs/registry.md, the port made its own"}),
    'git tag -a select-tuned@v1.0.0 -m "tuned search, 0.9833" && git push --tags && dvc push': (
        "tests/test_dvc_artifacts.py::test_artifacts_get_fetches_each_tagged_version_from_the_remote",
        {"select-tuned@v1.0.0": "formatted from each artifact and version",
         "--tags": "the test reads the repository in place: there is no git remote to push to",
         "&&": "one call each"}),
    "dvc artifacts get https://example.com/team/dlbasics.git select-tuned --rev v1.0.0 "
    "-o tuned/": (
        "tests/test_dvc_artifacts.py::test_artifacts_get_fetches_each_tagged_version_from_the_remote",
        {"https://example.com/team/dlbasics.git": "the repository's own path",
         "tuned/": "a temporary directory"}),
}
# Lines that set up the user's shell, not commands of the project.
NOT_RUN = {
    "source .venv/bin/activate": "puts the venv's tools first on PATH, as every test's "
                                 "environment does (conftest.tool_env)",
}
# Pages whose commands another test file holds to the same rule.
ELSEWHERE = {"stack.md"}


def shown_commands() -> dict[str, str]:
    """{command: the file that shows it} for every ```bash block of the README and docs/."""
    out = {}
    for page in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        if page.name in ELSEWHERE:
            continue
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    out[re.sub(r"\s+", " ", line)] = page.name
    return out


# Every make target the README and docs name in running text -> where it runs as written.
MAKE_RUN_BY = {
    "pipeline": "tests/test_pipeline_e2e.py::repro",
    "test": ".ci/run",
    "fashion": "tests/test_fashion_mnist.py::fashion_repro",
    "compare": "tests/test_pipeline_e2e.py::test_make_compare_as_written_lists_the_experiment_s_change",
    "ui": "tests/test_logs_ui.py::test_e_make_ui_as_written_shows_each_run_s_score_without_a_click",
    "serve": "tests/test_serve.py::served",
    "docs": "tests/test_docs.py::test_make_docs_builds_the_site_strictly_in_a_fresh_clone",
    "deps": "tests/test_docs.py::test_make_deps_in_a_fresh_clone_leaves_dvc_yaml_as_committed",
    "ray": "tests/test_docs.py::test_make_ray_as_written_gives_the_venv_ray",
}
# Targets not run by a test, and why.
MAKE_NOT_RUN = {
    "bench": "minutes of timing on a quiet machine; tests/test_bench.py runs each of its parts at "
             "small sizes",
    "plots-page": "fetches from npm's registry; `make test` (.ci/run) writes the same page",
}
# Targets whose page another test file holds to the same rule (see ELSEWHERE).
MAKE_ELSEWHERE = ("services", "mutate")


def named_make_targets() -> set[str]:
    """The targets of every `make TARGET ...` in running text of the README and docs/."""
    found = set()
    for page in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        for m in re.finditer(r"`make (?:-s )?([a-z][a-z-]*)[^`]*`", page.read_text()):
            found.add(m.group(1))
    return {t for t in found if not t.startswith(MAKE_ELSEWHERE)}


def test_every_make_target_the_docs_name_is_run_by_a_test():
    named = named_make_targets()
    assert sorted(named - set(MAKE_RUN_BY) - set(MAKE_NOT_RUN)) == []
    makefile = (REPO / "Makefile").read_text()
    for target, where in MAKE_RUN_BY.items():
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target}: no target"
        path, _, name = where.partition("::")
        source = (REPO / path).read_text()
        if name:
            assert name in _definitions(REPO / path), f"{where}: no such test or fixture"
            body = source.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
            assert f'"{target}"' in body, f"{where} does not run `make {target}`"
        else:
            assert f"make {target}" in source, f"{where} does not run `make {target}`"


def _definitions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_the_readme_is_short_and_links_pages_that_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    links = re.findall(r"\]\((docs/[^)#]+)\)", readme)
    assert links and all((REPO / link).is_file() for link in links)
    assert {Path(link).name for link in links} == {p.name for p in DOCS.glob("*.md")} - {"index.md"}


def test_every_command_the_docs_show_is_run_by_a_test():
    shown = shown_commands()
    missing = sorted(c for c in shown if c not in RUN_BY and c not in NOT_RUN)
    assert missing == [], f"commands shown with no test that runs them: {missing}"
    stale = sorted(c for c in RUN_BY if c not in shown)
    assert stale == [], f"RUN_BY lists commands no page shows: {stale}"
    for command, (where, differs) in RUN_BY.items():
        path, _, name = where.partition("::")
        source = (REPO / path).read_text()
        if name:
            assert name in _definitions(REPO / path), f"{where}: no such test or fixture"
        if "*" in differs:
            assert "docs" in source, f"{where}: does not read the docs"
            continue
        for token in shlex.split(command):
            if token in differs or not re.fullmatch(r"[\w.@=/:,|'-]+", token):
                continue  # replaced by the test (with a reason), or shell syntax
            assert token in source, f"{command!r}: {where} never says {token!r}"


def test_make_docs_builds_the_site_strictly_in_a_fresh_clone(tmp_path):
    clone = make_project(tmp_path / "clone")
    run(["make", "-s", "-o", ".venv/.installed", "docs"], clone)
    pages = {p.relative_to(clone / "site").as_posix() for p in (clone / "site").rglob("*.html")}
    want = {"index.html", *(f"{p.stem}/index.html" for p in DOCS.glob("*.md") if p.stem != "index")}
    assert want <= pages
    # --strict: a link to a page that does not exist stops the build.
    (clone / "docs" / "layout.md").write_text("[gone](no-such-page.md)\n")
    proc = run(["make", "-s", "-o", ".venv/.installed", "docs"], clone, check=False)
    assert proc.returncode != 0 and "no-such-page.md" in proc.stdout + proc.stderr


def test_make_deps_in_a_fresh_clone_leaves_dvc_yaml_as_committed(tmp_path):
    clone = make_project(tmp_path / "clone", params_edit=lambda p: p)  # the plots follow params
    before = (clone / "dvc.yaml").read_bytes()
    run(["make", "-s", "-o", ".venv/.installed", "deps"], clone)
    assert (clone / "dvc.yaml").read_bytes() == before


def test_make_ray_as_written_gives_the_venv_ray():
    """`make ray` in this checkout, with its default .venv (installed, or already up to date):
    the venv's python then imports the pinned ray."""
    run(["make", "-s", "ray"], REPO)
    pinned = (REPO / "requirements-ray.lock").read_text().split("ray==")[1].split()[0]
    proc = run([str(REPO / ".venv" / "bin" / "python"), "-c", "import ray; print(ray.__version__)"],
               REPO)
    assert proc.stdout.strip() == pinned
