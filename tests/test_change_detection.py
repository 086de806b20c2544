"""DVC is the one truth about change, tested with the real `dvc` CLI in a temporary git repo.

One small project (linear variants, one of them a YAML merge of another, and the two digits
classifiers) is reproduced once; the tests then edit it in order and count, from the train
stage's own output, what each edit retrains: a variant's hyper-parameter (that variant and
the ones merged from it), runtime settings and report-only keys (nothing), evaluation settings
and code (re-evaluated, not retrained), report-only modules (only `report` runs), a module
that training executes (everything). The edit loop's result is byte-identical to a clean
`dvc repro` of the same params.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import digest_tree, make_project, ran, run

pytestmark = pytest.mark.slow

# What must be byte-identical between an edited workspace and a clean repro of its params.
REPRODUCIBLE = ("reports/metrics.json", "reports/details.json", "reports/series.json",
                "reports/history", "reports/figures", "reports/predictions",
                "reports/selection", "reports/report.md", "reports/report.html",
                "data/models", "data/select")


def write_params(proj: Path, params: dict) -> None:
    """params.yaml with `linreg: &lin` and `linreg_b: {<<: *lin, batch_size: 20}`: the merge
    stays a merge in the file, as in the shipped params.yaml."""
    params = copy.deepcopy(params)
    train = params.pop("train")
    train.pop("linreg_b", None)
    text = yaml.safe_dump(params, sort_keys=False)
    block = yaml.safe_dump({"train": train}, sort_keys=False)
    block = block.replace("\n  linreg:\n", "\n  linreg: &lin\n", 1)
    block += "  linreg_b:\n    <<: *lin\n    batch_size: 20\n"
    (proj / "params.yaml").write_text(text + block)


def load(proj: Path) -> dict:
    return yaml.safe_load((proj / "params.yaml").read_text())


def trained(proc) -> tuple[set[str], set[str], set[str]]:
    """(trained, evaluated again, up to date) variants, from the train stage's own lines."""
    out = proc.stdout
    said = dict(re.findall(r"^train (\S+): (trained|evaluated again|up to date)\b", out, re.M))
    summary = re.search(r"^train: (\d+) trained, (\d+) up to date, (\d+) evaluated again", out,
                        re.M)
    assert summary, out[-3000:]
    groups = tuple({n for n, s in said.items() if s == want}
                   for want in ("trained", "evaluated again", "up to date"))
    assert tuple(int(summary[i]) for i in (1, 3, 2)) == tuple(len(g) for g in groups)
    return groups


def runs_of(proj: Path, variant: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dlbasics")
    return client.search_runs([exp.experiment_id], f"tags.variant = '{variant}'")


ALL = {"linreg", "linreg_b", "softmax", "mlp"}


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("change") / "proj")
    params = load(proj)
    params["train"]["linreg_b"] = {}
    # What each edit re-runs is the point here; the logged models (test_pipeline_e2e,
    # test_registry) would cost every evaluation process seconds.
    params["tracking"]["log_models"] = False
    write_params(proj, params)
    assert set(load(proj)["train"]) == ALL
    run(["git", "commit", "-qam", "a merged variant"], proj)
    first = run(["dvc", "repro"], proj)
    assert trained(first)[0] == ALL
    return proj


def repro(proj: Path, *extra: str):
    return run(["dvc", "repro", *extra], proj)


def test_an_edit_of_a_base_variant_retrains_it_and_the_variants_merged_from_it(proj):
    text = (proj / "params.yaml").read_text()
    block = re.search(r"\n  linreg: &lin\n(?:    .*\n)+", text)
    edited = block[0].replace("lr: 0.03", "lr: 0.02")
    assert edited != block[0]
    (proj / "params.yaml").write_text(text.replace(block[0], edited))
    assert load(proj)["train"]["linreg_b"]["optimizer"]["lr"] == 0.02
    before = {v: len(runs_of(proj, v)) for v in ALL}
    proc = repro(proj)
    assert trained(proc) == ({"linreg", "linreg_b"}, set(), {"softmax", "mlp"})
    # submit reads only the house-prices candidates' models (none here): it is not re-run.
    assert ran(proc) == {"train", "report"}
    # MLflow: one new run for each retrained variant, the others' runs reused as they were.
    after = {v: len(runs_of(proj, v)) for v in ALL}
    assert {v: after[v] - before[v] for v in ALL} == {"linreg": 1, "linreg_b": 1, "softmax": 0,
                                                       "mlp": 0}

    # One leaf variant alone: only it.
    params = load(proj)
    params["train"]["mlp"]["optimizer"]["lr"] = 0.05
    write_params(proj, params)
    proc = repro(proj)
    assert trained(proc) == ({"mlp"}, set(), {"linreg", "linreg_b", "softmax"})


def test_runtime_settings_retrain_nothing(proj):
    params = load(proj)
    threads = params["runtime"]["threads"]
    params["runtime"]["threads"] = 1
    write_params(proj, params)
    # Not a dependency of any stage: DVC runs nothing...
    assert ran(repro(proj)) == set()
    # ... and the stage forced to run finds every variant up to date.
    proc = repro(proj, "-f", "-s", "train")
    assert trained(proc) == (set(), set(), ALL)
    params["runtime"]["threads"] = threads  # the clean clone below trains with these
    write_params(proj, params)


def test_a_report_only_key_retrains_and_reevaluates_nothing(proj):
    params = load(proj)
    params["train"]["softmax"]["series"] = {"name": "lessons", "x": 1.0}
    write_params(proj, params)
    proc = repro(proj)
    assert ran(proc) == {"train", "report"}
    assert trained(proc) == (set(), set(), ALL)
    series = json.loads((proj / "reports/series.json").read_text())
    assert [r["variant"] for r in series["lessons"]] == ["softmax"]


def test_the_edit_loop_ends_byte_identical_to_a_clean_repro(proj, tmp_path):
    clone = make_project(tmp_path / "clone")
    (clone / "params.yaml").write_text((proj / "params.yaml").read_text())
    repro(clone)
    mine, clean = (digest_tree(*(p / rel for rel in REPRODUCIBLE), relative_to=p)
                   for p in (proj, clone))
    assert any(k.endswith("model.pt") for k in clean)
    assert mine == clean, sorted(k for k in set(mine) | set(clean) if mine.get(k) != clean.get(k))


def test_evaluation_settings_reevaluate_every_variant_and_retrain_none(proj):
    params = load(proj)
    params["evaluate"]["top_k"] = [1, 2]
    write_params(proj, params)
    proc = repro(proj)
    assert trained(proc) == (set(), ALL, set())
    metrics = json.loads((proj / "reports/metrics.json").read_text())
    assert "test_top_2_accuracy" in metrics["mlp"] and "test_top_3_accuracy" not in metrics["mlp"]
    # select evaluates its refit with the same settings
    assert "test_top_2_accuracy" in metrics["select@tiny"]


def _append(proj: Path, rel: str) -> None:
    assert (proj / rel).is_file(), f"{rel}: no such module (moved?)"
    with open(proj / rel, "a") as fh:
        fh.write("# an edit\n")


def _stale(proj: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], proj).stdout))


def test_code_edits_rerun_what_executes_them(proj):
    # A report-only module: only the report stage is re-run.
    _append(proj, "src/dlbasics/report/markdown.py")
    assert ran(repro(proj)) == {"report"}
    # Which stages each module makes stale itself (DVC's status; a stage after them runs
    # when their outputs change), the edit then taken back: the stage entry points' shared
    # module, every stage; a module that evaluation executes (figures), what evaluates or
    # draws; a module that training executes, what trains.
    for module, stale in (("cli.py", {"generate", "prepare", "train", "select@tiny", "lessons",
                                      "submit", "report"}),
                          ("report/figures.py", {"train", "select@tiny", "lessons", "report"}),
                          ("learn/training.py", {"train", "select@tiny", "submit"})):
        _append(proj, f"src/dlbasics/{module}")
        assert _stale(proj) == stale, module
        run(["git", "checkout", "--", f"src/dlbasics/{module}"], proj)
    assert _stale(proj) == set()
    # What the train stage does of each (the stages after it are DVC's, checked above):
    # figures re-evaluated, not retrained...
    _append(proj, "src/dlbasics/report/figures.py")
    proc = repro(proj, "train")
    assert ran(proc) == {"train"}
    assert trained(proc) == (set(), ALL, set())
    # ... training retrains everything.
    _append(proj, "src/dlbasics/learn/training.py")
    proc = repro(proj, "train")
    assert trained(proc) == (ALL, set(), set())
