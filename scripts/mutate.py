"""Mutation testing of the modules that decide results (make mutate; docs/tests.md).

Each module of MODULES is run by mutmut on its own, in a scratch copy of the work tree
(.mutmut/<module>/: src/ is never touched): mutmut mutates the listed functions, one small
change at a time, and runs each mutant against the tests of the module's test files that call
the mutated function. A mutant the tests fail on is killed; one they pass is a survivor: a bug
the suite would let through, unless it is listed in tests/mutation/equivalent.txt with the
reason it cannot change behaviour.

    python scripts/mutate.py                  # every module; check, then record the figures
    python scripts/mutate.py tasks io         # some modules (figures checked, not recorded)
    python scripts/mutate.py --record io      # some modules, their figures recorded
    python scripts/mutate.py --changed        # the modules changed since their figures, recorded
    python scripts/mutate.py --ci --budget-s 420   # what .ci/run does

The figures (tests/mutation/figures.json) hold each module's kill rate and a digest of what it
depends on (the module's source, its test files, its equivalents, this table's entry, the
mutmut version). A run fails when a module's rate is below 90% or below its recorded
figure. --ci runs the modules whose digest changed since their figure was recorded, cheapest
first, within the budget (a changed module that does not fit is named and left to make mutate);
when none changed it re-runs one module, chosen by the commit, as a spot check.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / ".mutmut"
FIGURES = REPO / "tests" / "mutation" / "figures.json"
EQUIVALENT = REPO / "tests" / "mutation" / "equivalent.txt"
FLOOR = Fraction(9, 10)
# mutmut's exit codes of a mutant's test run that count as caught (killed, a timeout, a crash).
CAUGHT = {"killed", "timeout", "segfault"}


@dataclass(frozen=True)
class Module:
    name: str
    source: str  # path of the file, from the repository root
    functions: tuple[str, ...]  # mangled names (x_f, xǁClassǁmethod) as fnmatch patterns
    tests: tuple[str, ...]  # test files whose tests may run against its mutants
    # mutmut leaves decorated functions alone: in the scratch copy each pydantic validator's
    # body moves to a plain method <name>__checked that the validator calls, which it mutates.
    validators: bool = False


def _fns(*names: str) -> tuple[str, ...]:
    """mutmut's mangled names: `f` -> x_f, `Class.m` -> xǁClassǁm, `Class.*` -> all methods."""
    out = []
    for n in names:
        cls, _, meth = n.rpartition(".")
        out.append(f"xǁ{cls}ǁ{meth}" if cls else f"x_{n}")
    return tuple(out)


MODULES = (
    Module("tasks", "src/dlbasics/learn/tasks.py", _fns("*"),
           ("tests/test_metrics.py",)),
    # describe() is the configuration in words for the report: it decides nothing.
    Module("selection", "src/dlbasics/search/selection.py",
           _fns("fold_indices", "primary_score", "cross_validate", "n_parameters"),
           ("tests/test_cross_validation.py", "tests/test_gridsearch.py")),
    Module("gridsearch", "src/dlbasics/search/gridsearch.py",
           _fns("_arch_key", "_batchable", "_Folds.*", "_Sequential.*", "_Batched.*", "_run",
                "_record", "_unique_settings", "_jobs"),
           ("tests/test_gridsearch.py",)),
    Module("compare", "src/dlbasics/report/compare.py",
           _fns("Tolerance.*", "_is_number", "relative_difference", "_is_nan", "MetricChange.*",
                "MetricsDiff.*", "diff_metrics", "parse_metrics", "_shape", "summary_line"),
           ("tests/test_compare.py", "tests/test_compare_rules.py")),
    # (test_stage_deps.py reads the import closure of src/, which mutmut's trampolines change.)
    Module("changes", "src/dlbasics/dvc/changes.py", _fns("*"),
           ("tests/test_changes.py",)),
    Module("registry", "src/dlbasics/tracking/registry.py",
           _fns("registers", "at_least_as_good", "_promote"),
           ("tests/test_registry_rule.py",)),
    Module("io", "src/dlbasics/io.py", _fns("*"), ("tests/test_data.py", "tests/test_io.py")),
    Module("config.variants", "src/dlbasics/config/variants.py", _fns("*.*"),
           ("tests/test_config.py", "tests/test_config_rules.py"), validators=True),
    Module("config.datasets", "src/dlbasics/config/datasets.py", _fns("*.*"),
           ("tests/test_config.py", "tests/test_config_rules.py"), validators=True),
    Module("config.params", "src/dlbasics/config/params.py", _fns("*.*", "*"),
           ("tests/test_config.py", "tests/test_config_rules.py"), validators=True),
    Module("config.settings", "src/dlbasics/config/settings.py", _fns("*.*"),
           ("tests/test_config.py", "tests/test_config_rules.py", "tests/test_registry_rule.py"),
           validators=True),
    Module("scratch", "src/dlbasics/learn/scratch.py",
           _fns("squared_loss", "_as_list", "l2_penalty", "l1_penalty", "stable_log_softmax",
                "softmax", "scratch_cross_entropy", "half_sum_squared_error",
                "cross_entropy_from_probs", "multilabel_softmax_cross_entropy",
                "multilabel_sigmoid_loss"),
           ("tests/test_scratch.py", "tests/test_metrics.py")),
    Module("training", "src/dlbasics/learn/training.py",
           _fns("_bce_with_logits", "_one_vs_all", "build_loss", "weights_of", "build_penalty",
                "build_optimizer"),
           ("tests/test_training.py",)),
    Module("idx", "src/dlbasics/data/idx.py",
           _fns("_read_exact", "_read_idx_header", "_read_idx_payload", "_check_idx_expectations",
                "read_idx", "read_idx_digest", "idx_bytes", "write_idx", "_candidate_dirs", "_pick",
                "locate_idx_files", "content_identity", "_check_digest", "load_idx_dataset",
                "_verification"),
           ("tests/test_idx.py",)),
    Module("prepared", "src/dlbasics/data/prepared.py",
           _fns("_read_json", "_load_checked", "split_indices", "load_prepared"),
           ("tests/test_data.py", "tests/test_prepared_checks.py")),
)
BY_NAME = {m.name: m for m in MODULES}

# Bugs found by hand before mutation testing ran here (issue 32), put in one at a time: each must
# fail its module's tests. mutmut makes none of them (it does not mutate class bodies, and it
# never swaps all/any or drops one argument of max), so they are run as they are written.
# (module, what the bug breaks, the exact source text, the text with the bug)
KNOWN_BUGS = (
    ("tasks", "multilabel rows count as right only when every label is right",
     "right = right.all(1)", "right = right.any(1)"),
    ("config.variants", "a learning rate must be > 0 (the boundary 0)",
     "lr: Annotated[float, Field(gt=0, le=100)]", "lr: Annotated[float, Field(ge=0, le=100)]"),
    ("compare", "the tolerance scales with the larger magnitude of old and new",
     "rtol * max(abs(old), abs(new))", "rtol * abs(old)"),
    ("io", "a failed atomic write leaves no temporary file",
     "    except BaseException:\n        Path(tmp).unlink(missing_ok=True)\n        raise",
     "    except BaseException:\n        raise"),
    ("registry", "the champion moves on an equal score when lower is better",
     "new >= old if higher else new <= old", "new >= old if higher else new < old"),
)


# ----------------------------------------------------------------------------- equivalents

def diff_key(diff: str) -> str:
    """A survivor's identity that outlives mutmut's numbering: a hash of its changed lines."""
    changed = [ln[1:].strip() for ln in diff.splitlines()
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:10]


def read_equivalents(path: Path = EQUIVALENT) -> dict[tuple[str, str], str]:
    """{(function, diff key): reason} from lines `<module>.<function> <key>  <reason>`."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise SystemExit(f"{path.relative_to(REPO)}:{n}: want '<function> <key> <reason>'")
        out[(parts[0], parts[1])] = parts[2]
    return out


def function_of(mutant: str) -> str:
    """dlbasics.io.x_f__mutmut_3 -> dlbasics.io.x_f"""
    return mutant.partition("__mutmut_")[0]


# ----------------------------------------------------------------------------- digests

def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def digest(mod: Module, equivalents: dict[tuple[str, str], str]) -> str:
    """What a module's figure depends on: change any of it and the figure must be measured anew."""
    h = hashlib.sha256()
    for rel in (mod.source, *mod.tests):
        p = REPO / rel
        h.update(rel.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    prefix = dotted(mod) + "."
    for (fn, key), reason in sorted(equivalents.items()):
        if fn.startswith(prefix):
            h.update(f"{fn} {key}\0".encode())
    h.update(repr((mod.functions, mod.tests, mutmut_version())).encode())
    return h.hexdigest()[:16]


def dotted(mod: Module) -> str:
    return mod.source.removeprefix("src/").removesuffix(".py").replace("/", ".")


# ----------------------------------------------------------------------------- one module

VALIDATOR_DECORATORS = ("model_validator", "field_validator")


def unwrap_validators(text: str) -> str:
    """Source `text` with each pydantic validator's body moved to a plain method (mutmut
    mutates no decorated function): the validator returns <name>__checked(...) of its own
    arguments. Behaviour is unchanged; only the scratch copy is rewritten."""
    import ast

    lines = text.splitlines(keepends=True)
    edits = []  # (first body line index, last line index, replacement lines)
    for cls in ast.walk(ast.parse(text)):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef) or not any(
                    ast.unparse(d).split("(")[0].split(".")[-1] in VALIDATOR_DECORATORS
                    for d in fn.decorator_list):
                continue
            is_cls = any(ast.unparse(d) == "classmethod" for d in fn.decorator_list)
            args = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            first, rest = args[0], args[1:]
            body_start = fn.body[0].lineno - 1
            body_end = fn.end_lineno
            indent = " " * fn.col_offset
            sig = "".join(lines[fn.lineno - 1:body_start]).replace(
                f"def {fn.name}(", f"def {fn.name}__checked(", 1)
            call = f"{indent}    return {first}.{fn.name}__checked({', '.join(rest)})\n"
            edits.append((body_start, body_end,
                          [call, "\n"] + ([f"{indent}@classmethod\n"] if is_cls else [])
                          + [sig] + lines[body_start:body_end]))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    return "".join(lines)


def _worktree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file()]


def _toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def prepare(mod: Module, where: Path, base: str | None = None) -> None:
    """A scratch copy of the work tree whose pyproject tells mutmut this module and its tests
    (the test files as they were at commit `base`, when given: the figure before a change)."""
    files = copy_worktree(where)
    if base:
        for rel in mod.tests:
            old = subprocess.run(["git", "show", f"{base}:{rel}"], cwd=REPO, capture_output=True)
            if old.returncode == 0:
                (where / rel).write_bytes(old.stdout)
            else:
                (where / rel).unlink(missing_ok=True)
    if mod.validators:
        src = where / mod.source
        src.write_text(unwrap_validators(src.read_text()))
    if not any((where / t).exists() for t in mod.tests):
        raise SystemExit(f"mutate: module {mod.name} has no test file among {', '.join(mod.tests)}")
    base = tomllib.loads((REPO / "pyproject.toml").read_text()).get("tool", {}).get("mutmut", {})
    tops = sorted({f.split("/")[0] for f in files} - {"src", "tests"})
    conf = {
        **base,
        "source_paths": ["src"],
        "only_mutate": [mod.source],
        "pytest_add_cli_args_test_selection": [t for t in mod.tests if (where / t).exists()],
        "also_copy": tops,
    }
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
    text += "\n[tool.mutmut]\n" + "".join(
        f"{k} = {_toml_list(v) if isinstance(v, list) else json.dumps(v)}\n"
        for k, v in conf.items())
    (where / "pyproject.toml").write_text(text)


def mutmut(where: Path, *args: str, log=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mutmut")
    # One thread per worker: the workers share the cores, and torch's pool is not fork-safe.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(exe), *args], cwd=where, env=env, text=True,
                          stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)


def results(where: Path, mod: Module) -> dict[str, str]:
    """{mutant name: status} of the module's listed functions."""
    from mutmut.stats import status_by_exit_code

    meta = where / "mutants" / (mod.source + ".meta")
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    pats = [f"{dotted(mod)}.{f}" for f in mod.functions]
    return {k: status_by_exit_code[v] for k, v in sorted(codes.items())
            if any(fnmatch.fnmatchcase(function_of(k), p) for p in pats)}


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
path, names = sys.argv[1], json.loads(sys.stdin.read())
print(json.dumps({n: get_diff_for_mutant(n, path=path) for n in names}))
"""


def mutant_diffs(where: Path, mod: Module, names: list[str]) -> dict[str, str]:
    """{mutant: its unified diff}, from mutmut's own code in one process (`mutmut show` each)."""
    if not names:
        return {}
    proc = subprocess.run([sys.executable, "-c", _DIFFS, mod.source], cwd=where, text=True,
                          input=json.dumps(names), capture_output=True, check=True)
    return {n: d.strip() for n, d in json.loads(proc.stdout).items()}


def run_module(mod: Module, jobs: int, equivalents, rerun: bool = True,
               base: str | None = None) -> dict:
    where = SCRATCH / mod.name
    t0 = time.monotonic()
    log_path = SCRATCH / f"{mod.name}.log"
    returncode = 0
    if rerun or not (where / "mutants").is_dir():
        prepare(mod, where, base)
        pats = [f"{dotted(mod)}.{f}__mutmut_*" for f in mod.functions]
        with open(log_path, "w") as log:
            returncode = mutmut(where, "run", "--max-children", str(jobs), *pats,
                                log=log).returncode
    seconds = time.monotonic() - t0
    status = results(where, mod)
    if returncode != 0 and "could not find any test case for any mutant" in (
            log_path.read_text() if log_path.exists() else ""):
        # No test of the selection calls any mutated function: every mutant survives untested.
        returncode, status = 0, {k: "no tests" for k in status}
    if returncode != 0 or not status:
        tail = log_path.read_text()[-3000:]
        raise SystemExit(f"mutate: mutmut failed on module {mod.name} (exit {returncode}); "
                         f"log {log_path.relative_to(REPO)}:\n{tail}")
    survivors, equivalent, stale_equivalent = [], [], []
    diffs = mutant_diffs(where, mod, [n for n, st in status.items() if st not in CAUGHT])
    for name, st in status.items():
        if st in CAUGHT:
            continue
        diff = diffs[name]
        key = (function_of(name), diff_key(diff))
        if key in equivalents:
            equivalent.append((name, st, key, equivalents[key], diff))
        else:
            survivors.append((name, st, key, diff))
    killed = sum(st in CAUGHT for st in status.values())
    timeouts = sum(st == "timeout" for st in status.values())
    listed = {k for k in equivalents if k[0].startswith(dotted(mod) + ".")}
    found = {e[2] for e in equivalent}
    stale_equivalent = sorted(listed - found)
    considered = len(status) - len(equivalent)
    rate = Fraction(killed, considered) if considered else Fraction(1)
    return {"module": mod.name, "total": len(status), "killed": killed, "timeouts": timeouts,
            "equivalent": len(equivalent), "survived": len(survivors), "rate": rate,
            "seconds": seconds, "survivors": survivors, "stale": stale_equivalent,
            "digest": digest(mod, equivalents)}


def copy_worktree(where: Path) -> list[str]:
    if where.exists():
        shutil.rmtree(where)
    files = _worktree_files()
    for rel in files:
        dst = where / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    return files


def known_bugs(mod: Module) -> list[str]:
    """Put each of the module's KNOWN_BUGS into a scratch copy in turn and run its test files
    there; return the problems (a bug the tests pass, or source text no longer found)."""
    bugs = [b for b in KNOWN_BUGS if b[0] == mod.name]
    if not bugs:
        return []
    where = SCRATCH / f"{mod.name}.known"
    copy_worktree(where)
    src = where / mod.source
    original = src.read_text()
    problems = []
    for _, what, old, new in bugs:
        if original.count(old) != 1:
            problems.append(f"{mod.name}: known bug '{what}': its source text is not in "
                            f"{mod.source} once (update KNOWN_BUGS in scripts/mutate.py)")
            continue
        src.write_text(original.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(where / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}
        tests = [t for t in mod.tests if (where / t).exists()]
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-m", "not slow and not gpu", *tests], cwd=where, env=env,
                              capture_output=True, text=True)
        src.write_text(original)
        caught = proc.returncode == 1
        print(f"  known bug {'caught' if caught else 'NOT CAUGHT'}: {what}", flush=True)
        if not caught:
            problems.append(f"{mod.name}: the tests pass with the known bug '{what}' "
                            f"(pytest exit {proc.returncode})")
    shutil.rmtree(where)
    return problems


# ----------------------------------------------------------------------------- the run

def pct(rate: Fraction) -> str:
    return f"{float(rate) * 100:.1f}%"


def report(res: dict, recorded: dict | None) -> list[str]:
    """Print one module's result; return its problems (empty when it holds)."""
    was = f" (recorded {recorded['killed']}/{recorded['total'] - recorded['equivalent']})" \
        if recorded else ""
    print(f"{res['module']:16} {pct(res['rate']):>6} killed  {res['killed']}/"
          f"{res['total'] - res['equivalent']}  ({res['timeouts']} of them by timeout, "
          f"{res['equivalent']} equivalent, {res['survived']} survived, {res['seconds']:.0f} s)"
          f"{was}", flush=True)
    for name, st, (fn, key), diff in res["survivors"]:
        print(f"  {st}: {name}\n    equivalent.txt key: {fn} {key}")
        print("    " + diff.replace("\n", "\n    "))
    for fn, key in res["stale"]:
        print(f"  note: equivalent.txt lists {fn} {key}, which this run did not find surviving")
    problems = []
    if res["rate"] < FLOOR:
        problems.append(f"{res['module']}: {pct(res['rate'])} killed, below 90%")
    if recorded:
        rec = Fraction(recorded["killed"], max(recorded["total"] - recorded["equivalent"], 1))
        if res["rate"] < rec:
            problems.append(f"{res['module']}: {pct(res['rate'])} killed, below its recorded "
                            f"{pct(rec)} (tests/mutation/figures.json)")
    return problems


def load_figures() -> dict:
    return json.loads(FIGURES.read_text()) if FIGURES.exists() else {}


def save_figures(figures: dict) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def record_figures(held: list[dict]) -> None:
    """The held modules' figures replace theirs; the file is read again first, since another
    run may have recorded other modules meanwhile; a module no longer in MODULES goes."""
    figures = {k: v for k, v in load_figures().items() if k in BY_NAME}
    figures.update({r["module"]: {"killed": r["killed"], "total": r["total"],
                                  "equivalent": r["equivalent"], "digest": r["digest"],
                                  "seconds": round(r["seconds"])} for r in held})
    save_figures(figures)


def stale(figures: dict, equivalents) -> list[Module]:
    """The modules whose figure is missing or no longer matches what it depends on."""
    return [m for m in MODULES if figures.get(m.name, {}).get("digest") != digest(m, equivalents)]


def ci_plan(figures: dict, equivalents, budget_s: float) -> tuple[list[Module], list[str]]:
    """(modules to run, problems): changed modules cheapest first while they fit the budget."""
    unrecorded = [m.name for m in MODULES if m.name not in figures]
    if unrecorded:
        print(f"mutate: no recorded figure for {', '.join(unrecorded)}: not run here (its time is "
              f"unknown); run make mutate")
    changed = [m for m in stale(figures, equivalents) if m.name in figures]
    cost = {m.name: figures.get(m.name, {}).get("seconds", math.inf) for m in MODULES}
    plan, problems, spent = [], [], 0.0
    for m in sorted(changed, key=lambda m: cost[m.name]):
        if spent + cost[m.name] <= budget_s:
            plan.append(m)
            spent += cost[m.name]
        else:
            print(f"mutate: {m.name} changed since its recorded figure but does not fit the "
                  f"{budget_s:.0f} s budget (about {cost[m.name]:.0f} s): not run here; run "
                  f"make mutate")
    if not changed:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip() or "0"
        fits = [m for m in MODULES if m.name in figures and cost[m.name] <= budget_s]
        if fits:
            pick = fits[int(head[:8], 16) % len(fits)]
            print(f"mutate: every module unchanged since its recorded figure; spot check: "
                  f"{pick.name}")
            plan.append(pick)
    return plan, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"of: {' '.join(BY_NAME)} (default: all)")
    ap.add_argument("--ci", action="store_true",
                    help="run the changed modules within --budget-s; never record")
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-record", action="store_true", help="check only; never write figures")
    ap.add_argument("--record", action="store_true",
                    help="record the figures of the modules named too (when they hold)")
    ap.add_argument("--changed", action="store_true",
                    help="run (and record) every module changed since its recorded figure, "
                         "or never recorded")
    ap.add_argument("--base", metavar="COMMIT",
                    help="the modules' test files as at COMMIT (the figures before a change)")
    ap.add_argument("--last", action="store_true",
                    help="report the last run's results in .mutmut/ again; run nothing")
    args = ap.parse_args(argv)
    if args.changed and args.modules:
        print("mutate: --changed picks its own modules; name none", file=sys.stderr)
        return 2
    unknown = [m for m in args.modules if m not in BY_NAME]
    if unknown:
        print(f"mutate: unknown module {', '.join(unknown)}; one of: {' '.join(BY_NAME)}",
              file=sys.stderr)
        return 2
    equivalents = read_equivalents()
    figures = load_figures()
    problems: list[str] = []
    if args.ci:
        plan, problems = ci_plan(figures, equivalents, args.budget_s)
    elif args.changed:
        plan = stale(figures, equivalents)
        print(f"mutate: changed since their recorded figures: "
              f"{' '.join(m.name for m in plan) or 'none'}")
    else:
        plan = [BY_NAME[m] for m in args.modules] if args.modules else list(MODULES)
    SCRATCH.mkdir(exist_ok=True)
    t0 = time.monotonic()
    done = []
    for mod in plan:
        res = run_module(mod, args.jobs, equivalents, rerun=not args.last,
                         base=args.base)
        mine = report(res, figures.get(mod.name))
        if not (args.base or args.last):
            mine += known_bugs(mod)
        res["ok"] = not mine
        problems += mine
        done.append(res)
    if len(done) > 1:
        print("\nmodule           killed  of     equivalent  survived  seconds")
        for r in done:
            print(f"{r['module']:16} {pct(r['rate']):>6}  {r['killed']:>3}/{r['total'] - r['equivalent']:<4}"
                  f" {r['equivalent']:>9}  {r['survived']:>8}  {r['seconds']:>7.0f}")
    print(f"mutate: {len(done)} module(s) in {time.monotonic() - t0:.0f} s "
          f"({args.jobs} workers)")
    record = (args.record or not args.modules) and not (
        args.ci or args.no_record or args.last or args.base)
    held = [r for r in done if r["ok"]]
    if record and held:
        # The modules that held replace their figures (one that failed keeps its old figure);
        # a module no longer in MODULES goes.
        record_figures(held)
        print(f"mutate: figures of {', '.join(r['module'] for r in held)} recorded in "
              f"{FIGURES.relative_to(REPO)}")
    for p in problems:
        print(f"mutate: FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
