"""The figures of one bench run as a plain-text table and as the README's bench block."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

GOALS = {"vs_sources": 6.0, "of_matmul": 0.75, "grid_batched": 5.0, "select_speedup": 4.0,
         "repro_noop_s": 2.0, "peak_mib": 2048.0, "full_size_s": 900.0,
         # The edit loop's goals are ratios to neighbouring runs on the same machine (issue 31).
         "quick_over_noop": 4.0, "slow_rest_over_noop": 4.0, "clean_over_compute": 1.3}

README_BEGIN = "<!-- bench:begin (written by `make bench`: benchmarks/bench.py --readme) -->"
README_END = "<!-- bench:end -->"


class _Rows:
    """(measure, median or value, spread, goal) rows, in the order added."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def row(self, name: str, value: float, unit: str = "", goal: str = "", rng: str = "") -> None:
        text = f"{value:.3g}{unit}" if abs(value) < 1000 else f"{value:.0f}{unit}"
        self.rows.append((name, text, rng, goal))

    def timed(self, name: str, t: dict[str, Any], goal: str = "") -> None:
        """A spread() of seconds: its median, lowest and highest run."""
        self.row(name, t["median_s"], " s", goal,
                 f"{t['min_s']:.3g}-{t['max_s']:.3g} s, {t['runs']} runs")


def _memory(out: _Rows, m: dict[str, Any]) -> None:
    for name in ("generate", "prepare", "train"):
        out.row(f"peak memory, {name} on 60000 x 784", m[f"{name}_peak_mib"], " MiB",
                f"< {GOALS['peak_mib']:g} MiB" if name != "generate" else "", "1 run")


def _epoch(out: _Rows, e: dict[str, Any]) -> None:
    t = f"{e['threads']} thread{'s' if e['threads'] != 1 else ''}"
    out.timed(f"epoch of MLP 784-256-10, project loop, {t}", e["project"])
    out.row(f"epoch, the sources' data path (FashionMNIST+ToTensor, 4 workers), {t}",
            e["sources_epoch_s"], " s", "", "1 run")
    out.row(f"epoch, TensorDataset DataLoader, {t}", e["tensordataset_epoch_s"], " s", "",
            "1 run")
    out.row(f"  speed-up vs the sources' path, {t}", e["vs_sources"], "x",
            f">= {GOALS['vs_sources']:g}x")
    out.row(f"  speed-up vs TensorDataset DataLoader, {t}", e["vs_tensordataset"], "x")
    out.row(f"  project epoch GFLOP/s, {t}", e["project_gflops"])
    out.row(f"  float32 matmul 2048^3 GFLOP/s, {t}", e["matmul_gflops"])
    out.row(f"  project epoch / matmul limit, {t}", e["of_matmul"], "",
            f">= {GOALS['of_matmul']:g}",
            f"{e['of_matmul_min']:.2f}-{e['of_matmul_max']:.2f}, {e['project']['runs']} pairs")


def _grid(name: str, out: _Rows, r: dict[str, Any]) -> None:
    out.row(f"grid of {r['fits']} fits, {name}: sequential", r["sequential_s"], " s")
    out.row(f"grid of {r['fits']} fits, {name}: batched", r["batched_s"], " s")
    out.row("  speed-up", r["speedup"], "x", f">= {GOALS['grid_batched']:g}x",
            f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}x, {r['repeats']} pairs; "
            f"{r['fits_within_1e-6']}/{r['fits']} fits within 1e-6")


def _size_rule(out: _Rows, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        out.row(f"size rule {r['model']} ({r['weights']} weights): speed-up", r["speedup"], "x",
                "", "batched" if r["rule_says_batched"] else "sequential")


def _select(out: _Rows, r: dict[str, Any]) -> None:
    what = f"select@{r['search']} ({r['configurations']} configurations, {r['fits']} fits)"
    out.timed(f"{what}: batched path", r["batched"])
    out.timed(f"{what}: one by one", r["sequential"])
    out.row("  speed-up", r["speedup"], "x", f">= {GOALS['select_speedup']:g}x",
            f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}x; same choice: "
            f"{'yes' if r['same_choice'] else 'NO'}, refit weights within "
            f"{r['max_abs_diff_refit_weights']:.1e}")


def _ray(out: _Rows, r: dict[str, Any]) -> None:
    what = f"select@{r['search']}"
    out.timed(f"{what}, local ({r['workers']} worker processes)", r["local"])
    out.timed(f"{what}, Ray: a private instance started for the run", r["ray_private"])
    out.timed(f"{what}, Ray: an instance already running", r["ray_running"])
    out.row("  Ray private / local", r["ratio_private"], "x", "",
            f"same bytes: {'yes' if r['same_bytes'] else 'NO'}")
    out.row("  Ray running / local", r["ratio_running"], "x")


def _vectorisation(out: _Rows, r: dict[str, Any]) -> None:
    out.row(f"add of {r['n']} elements: Python loop", r["loop_s"], " s", "",
            f"best of {r['repeats']}")
    out.row(f"add of {r['n']} elements: one vectorised add", r["vectorised_s"], " s", "",
            f"best of {r['repeats']}")
    out.row("  vectorised speed-up (lesson)", r["ratio"], "x")


def _full_size(out: _Rows, r: dict[str, Any]) -> None:
    images = r.get("images", "generated images")  # runs before it was recorded: generated
    for stage, sec in r["stages_s"].items():
        out.row(f"full size (profile full_size, 60000 x 784, {images}): {stage}", sec, " s", "",
                "1 run")
    stopped = f" (stopped in {r['timed_out']})" if r.get("timed_out") else ""
    out.row(f"full size: whole pipeline{stopped}", r["total_s"], " s",
            f"<= {GOALS['full_size_s']:g} s", "1 run")
    for name, acc in (r.get("test_accuracy") or {}).items():
        if acc is not None:
            out.row(f"full size: {name} test accuracy ({images})", acc)


def _peers(out: _Rows, r: dict[str, Any]) -> None:
    """Each model's test accuracy and fit seconds, then each project model against each peer:
    time ratio and accuracy difference, the goal met where it is both."""
    if "skipped" in r:
        return
    where = (f"{r['data']}, {r['n_train']} train / {r['n_test']} test rows, "
             f"{r['threads']} thread")
    for m in r["models"].values():
        out.row(f"peers ({where}): {m['what']}: test accuracy", m["accuracy"])
        out.timed(f"  {m['what']}: fit", m)
    loads = r["load_avg_1min"]
    for c in r["comparisons"]:
        spread = (f"{c['time_ratio_min']:.2f}-{c['time_ratio_max']:.2f}x, "
                  f"{r['repeats']} pair{'s' if r['repeats'] != 1 else ''}")
        met = "met" if c["meets"] else "not met"
        out.row(f"  {c['project']} / {c['peer']}: time", c["time_ratio"], "x", f"<= 1x: {met}",
                spread)
        out.row(f"  {c['project']} - {c['peer']}: test accuracy", c["accuracy_diff"], "",
                f">= 0: {met}")
    for peer, by in r["goals"].items():
        out.rows.append((f"  goal vs {peer}: a project model as accurate in no more time",
                         "met" if by else "NOT met",
                         f"{', '.join(by) or 'none'}; load average {loads['start']:.1f} at "
                         f"start, {loads['end']:.1f} at end", "as accurate, no slower"))


def _stack(out: _Rows, r: dict[str, Any]) -> None:
    if "ratio" in r:
        out.timed("dvc repro from clean, logging to sqlite", r["sqlite"])
        out.timed("dvc repro from clean, logging to the team stack", r["stack"])
        out.row("  stack / sqlite", r["ratio"], "x", "",
                f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}x")
    q = r["requests"]
    out.row(f"stack: one log_metric ({r['server_workers']} server workers, login cached "
            f"{r['auth_cache_ttl_s']} s)", q["median_s"], " s", "",
            f"90th percentile {q['p90_s']:.3g} s, {q['requests']} requests")
    out.row(f"stack: {q['loggers']} loggers at once, {q['steps']} metrics each",
            q["loggers_wall_s"], " s", "", f"{q['runs_finished']}/{q['runs']} runs FINISHED")


def _ratio(out: _Rows, name: str, r: dict[str, Any], goal: str) -> None:
    """A spread() of ratios (not seconds): median, lowest and highest pair."""
    out.row(name, r["median_s"], "x", f"<= {GOALS[goal]:g}x",
            f"{r['min_s']:.3g}-{r['max_s']:.3g}x, {r['runs']} pairs")


def _repro(out: _Rows, r: dict[str, Any]) -> None:
    if r.get("repro_timed_out"):
        out.row("dvc repro from clean: stopped after", r["repro_clean_s"], " s")
        return
    for when in ("before", "after"):
        if f"matmul_gflops_{when}" in r:
            out.row(f"float32 matmul 2048^3 GFLOP/s, 1 thread, {when} the dvc runs",
                    r[f"matmul_gflops_{when}"], "", "", "best of 3")
    out.timed("dvc repro from clean", r["repro_clean"])
    if "clean_over_compute" in r:
        out.timed("  the stages' own compute in it (traced; evaluation workers included)",
                  r["clean_compute"])
        if "clean_path_compute" in r:
            out.timed("  of which in the stage processes themselves", r["clean_path_compute"])
        _ratio(out, "  clean dvc repro / the stages' own compute", r["clean_over_compute"],
               "clean_over_compute")
    if "repro_noop" in r:
        out.timed("dvc repro, nothing changed", r["repro_noop"],
                  f"< {GOALS['repro_noop_s']:g} s")
    elif "repro_noop_s" in r:
        out.row("dvc repro, nothing changed", r["repro_noop_s"], " s",
                f"< {GOALS['repro_noop_s']:g} s", "1 run")
    for v, loop in r.get("edit_loop_s", {}).items():
        out.timed(f"edit loop, dvc exp run -S train.{v}.optimizer.lr", loop)
    for v, loop in r.get("edit_repro_s", {}).items():
        out.timed(f"edit loop, train.{v}.optimizer.lr edited in params.yaml, dvc repro", loop)
    if "quick_over_noop" in r:
        quick, slow = list(r["edit_loop_s"])
        _ratio(out, f"  {quick} edit (dvc exp run) / no-op dvc repro", r["quick_over_noop"],
               "quick_over_noop")
        out.timed(f"  {slow}'s own fit and evaluation (traced)", r["slow_variant_work"])
        _ratio(out, f"  ({slow} edit (dvc exp run) - its fit and evaluation) / no-op dvc repro",
               r["slow_rest_over_noop"], "slow_rest_over_noop")


def _imports(out: _Rows, r: dict[str, Any]) -> None:
    for what, t in r.items():
        out.timed(f"import in a fresh interpreter: {what}", t)


# The table's sections, in order: (key of the results, what adds its rows).
_SECTIONS: list[tuple[str, Callable[[_Rows, Any], None]]] = [
    ("memory", _memory), ("epoch", _epoch), ("epoch_cores", _epoch),
    ("grid_softmax", partial(_grid, "softmax 784-10")),
    ("grid_mlp", partial(_grid, "digits MLP 64-256-10")),
    ("size_rule", _size_rule), ("select", _select), ("ray", _ray),
    ("vectorisation", _vectorisation), ("full_size", _full_size), ("peers", _peers),
    ("stack", _stack), ("imports", _imports),
    ("repro", _repro),
]


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, median or value, spread, goal) of every figure measured."""
    out = _Rows()
    for key, add in _SECTIONS:
        if key in results:
            add(out, results[key])
    return out.rows


def table(results: dict[str, Any]) -> str:
    """The figures as plain text, one per line."""
    lines = [f"{'measure':80s} {'median':>9s}  {'goal':>10s}  spread"]
    for name, value, rng, goal in rows(results):
        lines.append(f"{name:80s} {value:>9s}  {goal:>10s}  {rng}")
    phases = results.get("repro", {}).get("phases")
    if phases:
        lines += ["", *phase_lines(phases)]
    return "\n".join(lines)


def readme_block(results: dict[str, Any]) -> str:
    """The README's speed table: every figure of this run, when and under what load."""
    m = results["machine"]
    loads = ", ".join(f"{k.removeprefix('load_avg_1min_').replace('_', ' ')} {v:.1f}"
                      for k, v in m.items() if k.startswith("load_avg_1min_"))
    head = (f"Measured {m['date_utc']} UTC by `make bench` on {m['cpus']} CPUs "
            f"({m['processor']}), torch {m['torch']}, {m['threads']} thread(s); 1-minute load "
            f"average {loads}. Medians of repeated runs taken in turns (A, B, A, B ...); the "
            "spread is the lowest and highest run.")
    lines = ["| measure | median | spread | goal |", "|---|---:|---|---|"]
    lines += [f"| {n.strip()} | {v} | {r} | {g} |" for n, v, r, g in rows(results)]
    phases = results.get("repro", {}).get("phases")
    if phases:
        lines += ["", "Where the seconds of each command went: the run with the median time of "
                  "each, traced (DLBASICS_TRACE; phases under 0.05 s left out; `kind`: `dvc` "
                  "is DVC between stage processes, `start` a process's start and imports, "
                  "`other` what no span covers).", "", *phase_lines(phases)]
    return f"{README_BEGIN}\n{head}\n\n" + "\n".join(lines) + f"\n{README_END}"


PHASE_COLUMNS = (("clean", "clean dvc repro"), ("noop", "no-op dvc repro"),
                 ("quick", "linreg: dvc exp run -S"), ("repro", "linreg: params.yaml + dvc repro"),
                 ("slow", "mlp_adam: dvc exp run -S"))


def phase_lines(phases: dict[str, Any]) -> list[str]:
    """The traced phases of the median run of each command, side by side (Markdown): seconds
    per (process, phase); processes beside a stage in italics (not on the path)."""
    cols = [(k, title) for k, title in PHASE_COLUMNS if k in phases]
    keys: list[tuple] = []
    cell: dict[tuple, dict[str, float]] = {}
    for k, _ in cols:
        for r in phases[k]["rows"]:
            key = (r["who"], r["phase"], r["kind"], r["beside"])
            if key not in cell:
                keys.append(key)
                cell[key] = {}
            cell[key][k] = r["seconds"]
    first = {key: i for i, key in enumerate(keys)}  # the order of the first command's rows
    keys.sort(key=lambda key: (key[3], first[key]))
    lines = ["| process | phase | kind | " + " | ".join(t for _, t in cols) + " |",
             "|---|---|---|" + "---:|" * len(cols)]
    for key in keys:
        vals = [cell[key].get(k) for k, _ in cols]
        if all(v is None or v < 0.05 for v in vals):
            continue
        who = f"*{key[0]} (beside)*" if key[3] else key[0]
        lines.append(f"| {who} | {key[1]} | {key[2]} | "
                     + " | ".join("" if v is None else f"{v:.2f}" for v in vals) + " |")
    for label, field in (("on the path (sum of the rows above the italics)", "path_s"),
                         ("wall clock", "total_s"), ("the stages' own compute", "compute_s"),
                         ("of which in the stage processes", "path_compute_s")):
        lines.append(f"| **{label}** | | | "
                     + " | ".join(f"{phases[k].get(field, 0.0):.2f}" for k, _ in cols) + " |")
    return lines


def check_readme(path: Path) -> str:
    """The text of `path`; exits with what to add when it has no bench block."""
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{path}: no bench block; add the two lines {README_BEGIN!r} and "
                         f"{README_END!r} where the table goes")
    return text


def write_readme(path: Path, results: dict[str, Any]) -> None:
    """Replace the block between README_BEGIN and README_END of `path` with this run's."""
    text = check_readme(path)
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    path.write_text(text[:start] + readme_block(results) + text[end:])
