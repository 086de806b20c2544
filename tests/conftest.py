"""Shared fixtures: a copy of the project in a temporary git repository, with real DVC."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running the tests: its dvc, mlflow and python


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: the test venv first on PATH, no inherited store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # dvc exp run commits: give git an identity that does not depend on the machine.
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = "dlbasics-tests", "tests@localhost"
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**extra), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
            f"stderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def ran(proc) -> set[str]:
    """Stage names DVC actually ran in one `dvc repro` (from its output)."""
    return {
        line.split("'")[1]
        for line in proc.stdout.splitlines()
        if line.startswith("Running stage '")
    }


def digest_tree(*paths: Path, relative_to: Path | None = None) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            key = str(f.relative_to(relative_to)) if relative_to else str(f)
            out[key] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


# Real Fashion-MNIST where Debian installs it (apt-get install dataset-fashion-mnist).
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
REQUIRE_FASHION = "DLBASICS_REQUIRE_FASHION_MNIST"  # set by CI: absent data fails, never skips


def require_fashion_mnist() -> Path:
    """The folder of the real Fashion-MNIST files; the test is skipped with the reason where
    they are absent, or fails where $DLBASICS_REQUIRE_FASHION_MNIST is 1 (CI)."""
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    if all((FASHION_DIR / s).is_file() or (FASHION_DIR / f"{s}.gz").is_file() for s in stems):
        return FASHION_DIR
    reason = (f"real Fashion-MNIST not in {FASHION_DIR}: apt-get install "
              f"dataset-fashion-mnist")
    if os.environ.get(REQUIRE_FASHION) == "1":
        pytest.fail(f"{reason} (required: {REQUIRE_FASHION}=1)")
    pytest.skip(reason)


E2E_VARIANTS = ("linreg", "softmax", "mlp")


def shrink(params: dict) -> dict:
    """Small but real: the foundation variants and their datasets, fewer epochs, narrower
    layers; the same stages. (The other variants' lessons are tested in-process.)"""
    params["train"] = {k: params["train"][k] for k in E2E_VARIANTS}
    used = {spec["dataset"] for spec in params["train"].values()}
    params["data"] = {k: v for k, v in params["data"].items() if k in used}
    params["prepare"] = {k: v for k, v in params["prepare"].items() if k in used}
    notes = params.get("report", {}).get("notes", {})
    params.setdefault("report", {})["notes"] = {k: notes[k] for k in E2E_VARIANTS if k in notes}
    groups = params["report"].get("groups", {})
    params["report"]["groups"] = {g: [n for n in names if n in E2E_VARIANTS]
                                  for g, names in groups.items()}
    params["report"]["contrasts"] = [
        c for c in params["report"].get("contrasts", [])
        if c["a"] in E2E_VARIANTS and c["b"] in E2E_VARIANTS]
    params["report"]["book"] = [
        f for f in params["report"].get("book", [])
        if f["variant"] in E2E_VARIANTS and f.get("same_as", "mlp") in E2E_VARIANTS]
    # Two seeds each and one paired comparison: repeated runs through every stage.
    for name in ("softmax", "mlp"):
        params["train"][name]["seeds"] = [0, 1]
    params["report"]["compare"] = [["mlp", "softmax"]]
    # A two-point grid, two folds, one epoch: the select stage end to end, quickly.
    params["select"] = {"searches": {"tiny": {
        "base": "mlp", "k": 2, "overrides": {"epochs": 1},
        "grid": {"optimizer.lr": [0.05, 0.1]}}}}
    small_lessons(params)
    for spec in params["train"].values():
        spec["epochs"] = min(spec["epochs"], 3)
        if spec["model"].get("hidden"):
            spec["model"]["hidden"] = [min(h, 32) for h in spec["model"]["hidden"]]
    return params


def small_lessons(params: dict) -> dict:
    """Every lesson still runs, on small settings (what each shows is tested in-process): at
    the defaults, the lessons on 784-pixel images take minutes."""
    params["lessons"].update({
        "accuracy_signal": {"dataset": "images", "epochs": 1, "probes": 20},
        "numerical_training": {"dataset": "images", "hidden": 8, "rows": 40, "batch_size": 10,
                               "steps": 2},
        "stacked_linear": {"dataset": "images", "hidden": [32], "epochs": 2},
        "symmetry": {"dataset": "images", "hidden": 16, "epochs": 2},
        "gradient_flow": {"dataset": "images", "depth": 6, "width": 16, "batch": 64},
    })
    return params


def prepared_data(params, root: Path) -> Path:
    """Generate and prepare the datasets of `params` (parsed) under root: the prepared root."""
    from dlbasics.data.prepared import prepare_all
    from dlbasics.data.sources import generate_all

    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    return root / "prepared"


def trained_variants(params, prepared: Path):
    """For a module fixture (`yield from`): name -> (model, history, data), each variant of
    `params` trained once, on first use, at params.runtime's threads (restored afterwards)."""
    import torch

    from dlbasics.pipeline.variant import fit_variant
    from dlbasics.runtime import configure

    before = torch.get_num_threads()
    configure(params.runtime)
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = fit_variant(params, name, prepared / params.train[name].dataset)[:3]
        return cache[name]

    yield get
    torch.set_num_threads(before)


def make_project(dest: Path, params_edit=shrink) -> Path:
    """Copy the project's own files (what git would clone) into `dest` as a fresh git repo."""
    for rel in tracked_files():
        if rel.startswith(("reports/", "data/")) or rel == "dvc.lock":
            continue  # a clean clone state: nothing produced yet
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    # The offline page of `dvc plots show` (git-ignored, built by `make plots-page` from npm's
    # registry): copied, so that a clone's make targets and `dvc plots show` stay offline.
    page = REPO / ".dvc" / "plots.html"
    if page.is_file():
        shutil.copy2(page, dest / ".dvc" / "plots.html")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(params_edit(params), sort_keys=False))
    # What `make deps` derives from params (the plots, the submit stage's model deps) follows
    # the edited params, as it would after a user's edit and `make deps`.
    from dlbasics.dvc import plots

    plots.write(dest)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "base"], dest)
    return dest


@pytest.fixture(autouse=True)
def _own_code_first():
    """Loading a logged MLflow model in-process (mlflow.pyfunc.load_model) puts the model's
    bundled code first on sys.path and may swap the `dlbasics` modules for that bundle; the
    served model bundles only the files it runs. Undo both after each test, so a later test
    (and the processes it spawns, which inherit sys.path) imports this checkout's package."""
    path = list(sys.path)
    modules = {k: v for k, v in sys.modules.items() if k == "dlbasics" or k.startswith("dlbasics.")}
    yield
    sys.path[:] = path
    ours = str(Path(__file__).resolve().parents[1] / "src")
    for k in [k for k in sys.modules if k == "dlbasics" or k.startswith("dlbasics.")]:
        if k not in modules and not str(getattr(sys.modules[k], "__file__", "")).startswith(ours):
            del sys.modules[k]  # a module of a model's bundle
    sys.modules.update(modules)


@pytest.fixture
def one_thread():
    """torch at one thread for the test (the batched runners' comparisons), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def _fastest_first_under_mutmut(items) -> None:
    """Under make mutate (mutmut's worker names its mutant in MUTANT_UNDER_TEST and runs the
    tests that call the mutated function with -x, in no set order), the tests run fastest first
    by the durations mutmut measured (mutmut-stats.json in its working directory), each file's
    tests kept together: a killed mutant stops at its first failing test sooner. The same tests
    run, so a mutant's verdict is the same."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    import json

    try:
        took = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    def file_of(item) -> str:
        return item.nodeid.split("::")[0]

    fastest: dict[str, float] = {}
    for item in items:
        fastest[file_of(item)] = min(fastest.get(file_of(item), float("inf")),
                                     took.get(item.nodeid, 0.0))
    items.sort(key=lambda item: (fastest[file_of(item)], file_of(item),
                                 took.get(item.nodeid, 0.0)))


def pytest_collection_modifyitems(config, items):
    """@pytest.mark.gpu tests run where CUDA is available; elsewhere they are skipped, with the
    reason in `-ra`'s summary (never silently deselected). Under make mutate, fastest first."""
    _fastest_first_under_mutmut(items)
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch  # only when a gpu test was collected

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu:
        item.add_marker(skip)
