"""What changed against a base revision, with rounding told apart from real changes: the
comparison behind `make compare` and the pull-request workflow (scripts/compare.py is its CLI).

The workspace's `reports/metrics.json` (`{variant: {metric: value}}`) is compared with the base
revision's (`git show BASE:reports/metrics.json`). A metric counts as changed when

    |new - old| > atol + rtol * max(|old|, |new|)

and only changed metrics are listed; the rest is one summary line (how many, and the largest
relative difference among them). Changed variants (a metric changed, or the variant is new or
removed) also get their learning curves drawn against the base's (`reports/history/<variant>.json`
of both revisions) and a table of their first and last epochs.

Why a tolerance, and these defaults. "Byte-identical" holds on one kind of CPU only (README,
Reproducibility): torch and MKL pick vector kernels by instruction set and another kernel rounds
differently. The base's metrics are committed from one machine and the branch's are computed on
another (CI, a colleague's laptop), so an exact diff lists rounding as change. Measured
(2026-12-01):

* Same code, two machines: `reports/metrics.json` as committed at 59cd735 (produced at 2109ec9
  on another session's machine) against a fresh `dvc repro` of 59cd735 on this 2-core AVX2
  machine (the numbers 3701863 committed since). 31 of 824 metrics differ,
  all of them log-losses: largest relative difference 3.6e-5 (mlp_rmsprop test_log_loss
  0.10723338 against 0.10723720), largest absolute 3.8e-6 (the same); next mlp_adam
  test_log_loss 4.2e-6, mlp_momentum train_log_loss 4.0e-6, dropout test_log_loss 1.8e-6
  (0.09793319 against 0.09793302); every other metric (accuracies, MSEs, weights, the
  ill-conditioned fits) was bit-identical.
* Same training code, an earlier commit's outputs (95fa48c, another session's machine, one
  process per variant) against 2109ec9's: 318 metrics differ, and there the lessons that are
  ill-conditioned on purpose move visibly: poly20_few_lstsq train_mse 5.4e-8 against 1.5e-7
  (a factor 2.8; its train_rmse 2.3e-4 against 3.8e-4), poly20_lstsq train_mae 4.5e-3 relative
  and train_mse 1.4e-3, wd_0 (200 weights, 20 rows, no penalty: an exact fit) train_mse 8.3e-12
  against 4.6e-12 and train_mape 6.0e-5 against 2.5e-5; log-losses up to 1.1e-3 relative
  (mlp_rmsprop train_log_loss 1.8340e-4 against 1.8361e-4, 2e-7 absolute) and 6.1e-4
  (dropout_scratch test_log_loss). The README records the closed-form degree-20 fit's test MSE
  at 5683 against 5674 (1.6e-3) in an earlier configuration.

Hence the default rtol 1e-4 (2.8x the largest same-code difference, itself a log-loss; every
other metric matched exactly) with atol 1e-9 (losses at rounding level: 8e-12 against 5e-12),
and looser rules (RULES, first match wins) for what is sensitive by construction:

* log-losses (`*log_loss`): rtol 2e-3, atol 1e-6. The log of a probability near zero
  amplifies the last bits of a logit; measured up to 3.6e-5 (same code) and 1.1e-3 (older
  outputs). Any real change of a model moves its log-loss by far more.
* the closed-form fits of 20 polynomial features (`poly*_lstsq`): rtol 1e-2, and atol 1e-3 on
  their training metrics, whose residuals are float32 rounding of an interpolating fit.
  A real change (other features, other data) moves these by orders of magnitude.
* wd_0's training metrics: atol 1e-4 (an exact fit: its training error *is* rounding; the
  lesson, train error near zero, breaks only far above that).

With these, the same-code pair is all rounding (824 of 824 metrics; with the default rule
alone too). The older pair still shows 19 changes in two variants, left visible on purpose:
multilabel_sigmoid's thresholded metrics (test_top2_exact_match 0.19 against 0.1925: one test
row of 400 crossed a threshold, and a few training rows) and wd_0_1 train_mae / train_mape
(1.9e-4 and 6.8e-4 relative, a near-exact fit). Counts get no tolerance: one row crossing a
threshold moves them by 1/rows, which is what a real change looks like too; a reviewer sees
the variant and its curves and judges. `--rtol` and `--atol` set the default rule;
`--no-rules` compares everything with it alone.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dlbasics.io import write_bytes_atomic

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-9

METRICS = Path("reports/metrics.json")
HISTORY = Path("reports/history")
REPORT = Path("reports/report.md")


@dataclass(frozen=True)
class Rule:
    """Tolerance for the metrics whose "variant/metric" matches `pattern` (fnmatch)."""
    pattern: str
    rtol: float
    atol: float
    why: str


# Measured, see the module docstring. Checked in order, first match wins; then the default.
RULES: tuple[Rule, ...] = (
    Rule("poly*_lstsq/train_*", 1e-2, 1e-3,
         "interpolating closed-form fit: its residuals are rounding"),
    Rule("poly*_lstsq/*", 1e-2, DEFAULT_ATOL, "closed-form fit of 20 polynomial features"),
    Rule("*/*log_loss", 2e-3, 1e-6, "log of probabilities near zero"),
    Rule("wd_0/train_*", DEFAULT_RTOL, 1e-4, "exact fit: training error at rounding level"),
)


class CompareError(Exception):
    """Bad input or a failed step; the message is one line for the user."""


# ----------------------------------------------------------------------------- tolerance

@dataclass(frozen=True)
class Tolerance:
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    rules: tuple[Rule, ...] = RULES

    def __post_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise CompareError(f"{name} must be a finite number >= 0, got {value!r}")

    def rule_for(self, variant: str, metric: str) -> Rule | None:
        """The first rule matching "variant/metric", None for the default."""
        key = f"{variant}/{metric}"
        return next((r for r in self.rules if fnmatch.fnmatchcase(key, r.pattern)), None)

    def for_metric(self, variant: str, metric: str) -> tuple[float, float]:
        rule = self.rule_for(variant, metric)
        return (self.rtol, self.atol) if rule is None else (rule.rtol, rule.atol)

    def is_change(self, variant: str, metric: str, old: Any, new: Any) -> bool:
        if not (_is_number(old) and _is_number(new)):
            return old != new
        if math.isnan(old) or math.isnan(new):
            return not (math.isnan(old) and math.isnan(new))
        if math.isinf(old) or math.isinf(new):
            return old != new
        rtol, atol = self.for_metric(variant, metric)
        return abs(new - old) > atol + rtol * max(abs(old), abs(new))

    def describe(self) -> str:
        text = f"rtol {fmt_short(self.rtol)}, atol {fmt_short(self.atol)}"
        if self.rules:
            text += "; looser for " + ", ".join(f"`{r.pattern}`" for r in self.rules)
        return text


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def relative_difference(old: Any, new: Any) -> float:
    """|new - old| / max(|old|, |new|): 0 for equal values, nan when not comparable."""
    if not (_is_number(old) and _is_number(new) and math.isfinite(old) and math.isfinite(new)):
        return 0.0 if old == new or (_is_nan(old) and _is_nan(new)) else math.nan
    scale = max(abs(old), abs(new))
    return abs(new - old) / scale if scale else 0.0


def _is_nan(x: Any) -> bool:
    return _is_number(x) and math.isnan(x)


# ----------------------------------------------------------------------------- the diff

@dataclass(frozen=True)
class MetricChange:
    variant: str
    metric: str
    old: Any  # None: absent on that side
    new: Any

    @property
    def change(self) -> float | None:
        if _is_number(self.old) and _is_number(self.new):
            return self.new - self.old
        return None

    @property
    def relative(self) -> float | None:
        """(new - old) / |old|, None when undefined (old 0 or absent)."""
        if _is_number(self.old) and _is_number(self.new) and self.old != 0:
            return (self.new - self.old) / abs(self.old)
        return None


@dataclass
class MetricsDiff:
    changes: list[MetricChange] = field(default_factory=list)  # beyond tolerance, in order
    new_variants: list[str] = field(default_factory=list)
    removed_variants: list[str] = field(default_factory=list)
    within: int = 0  # metrics present on both sides and within tolerance (equal ones included)
    largest: tuple[float, str, str] | None = None  # (relative difference, variant, metric)

    @property
    def changed_variants(self) -> list[str]:
        """Variants with a change beyond tolerance, new or removed; in table order."""
        seen: dict[str, None] = {}
        for c in self.changes:
            seen.setdefault(c.variant)
        return list(seen)


def diff_metrics(base: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                 tol: Tolerance) -> MetricsDiff:
    """Metrics beyond tolerance (and every metric of a new or removed variant), ordered: the
    variants with changed metrics (workspace order), then new variants, then removed ones."""
    out = MetricsDiff()
    modified: list[MetricChange] = []
    added: list[MetricChange] = []
    for variant, metrics in new.items():
        if variant not in base:
            out.new_variants.append(variant)
            added += [MetricChange(variant, m, None, v) for m, v in metrics.items()]
            continue
        old_metrics = base[variant]
        for metric in [*metrics, *(m for m in old_metrics if m not in metrics)]:
            old, value = old_metrics.get(metric), metrics.get(metric)
            if metric not in old_metrics or metric not in metrics:
                modified.append(MetricChange(variant, metric, old, value))
            elif tol.is_change(variant, metric, old, value):
                modified.append(MetricChange(variant, metric, old, value))
            else:
                out.within += 1
                rel = relative_difference(old, value)
                if rel > 0 and (out.largest is None or rel > out.largest[0]):
                    out.largest = (rel, variant, metric)
    removed: list[MetricChange] = []
    for variant, metrics in base.items():
        if variant not in new:
            out.removed_variants.append(variant)
            removed += [MetricChange(variant, m, v, None) for m, v in metrics.items()]
    out.changes = modified + added + removed
    return out


# ----------------------------------------------------------------------------- inputs

def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True)
    except OSError as exc:
        raise CompareError(f"cannot run git: {exc}") from None


def resolve_base(repo: Path, base: str) -> str:
    """The commit that `base` names in `repo`; CompareError when it names none."""
    proc = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}")
    if proc.returncode != 0:
        inside = _git(repo, "rev-parse", "--git-dir")
        if inside.returncode != 0:
            raise CompareError(f"{repo} is not a git repository")
        raise CompareError(f"unknown base revision {base!r} (no such branch, tag or commit)")
    return proc.stdout.decode().strip()


def git_show(repo: Path, commit: str, path: Path) -> bytes | None:
    """The bytes of `path` (relative to repo) at `commit`; None when the commit lacks it."""
    proc = _git(repo, "show", f"{commit}:./{path.as_posix()}")
    return proc.stdout if proc.returncode == 0 else None


def parse_metrics(data: bytes, where: str) -> dict[str, dict[str, Any]]:
    """`{variant: {metric: value}}` from JSON bytes; CompareError naming `where` otherwise."""
    try:
        metrics = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CompareError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict) or not all(
            isinstance(v, str) and isinstance(m, dict) for v, m in metrics.items()):
        raise CompareError(f"{where}: expected {{variant: {{metric: value}}}}, found "
                           f"{_shape(metrics)}")
    return metrics


def _shape(x: Any) -> str:
    if isinstance(x, dict):
        bad = next((v for v in x.values() if not isinstance(v, dict)), None)
        return f"a variant holding {type(bad).__name__}" if x else "an empty object"
    return type(x).__name__


def read_workspace_metrics(repo: Path, path: Path) -> dict[str, dict[str, Any]]:
    file = repo / path
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise CompareError(f"cannot read {path.as_posix()}: {exc.strerror or exc} "
                           "(run the pipeline first: make pipeline)") from None
    return parse_metrics(data, path.as_posix())


def parse_history(data: bytes | None) -> list[dict[str, Any]] | None:
    """Per-epoch records, or None when absent or unreadable (curves are an extra, never fatal)."""
    if data is None:
        return None
    try:
        records = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    return records


# ----------------------------------------------------------------------------- curves

def curve_keys(*histories: list[dict[str, Any]] | None) -> list[str]:
    """Numeric per-epoch series of the histories (epoch excluded), in first-seen order."""
    keys: dict[str, None] = {}
    for h in histories:
        for rec in h or []:
            for k, v in rec.items():
                if k != "epoch" and _is_number(v):
                    keys.setdefault(k)
    return list(keys)


def _series(history: list[dict[str, Any]] | None, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, rec in enumerate(history or []):
        v = rec.get(key)
        if _is_number(v) and math.isfinite(v):
            e = rec.get("epoch")
            xs.append(e if _is_number(e) else i + 1)
            ys.append(v)
    return xs, ys


def curves_png(variant: str, base: list[dict] | None, new: list[dict] | None) -> bytes:
    """curves_figure as PNG bytes (no timestamp in them)."""
    fig = curves_figure(variant, base, new)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def curves_figure(variant: str, base: list[dict] | None, new: list[dict] | None):
    """Losses (and accuracies, when recorded) per epoch: base dashed, new solid, one colour per
    series; a log loss axis says so in its label. Drawn on a Figure of its own with the Agg
    canvas: no pyplot state, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dlbasics.report.figures import scale_label

    keys = curve_keys(new, base)
    acc = [k for k in keys if "acc" in k]
    other = [k for k in keys if k not in acc]
    panels = [p for p in (other, acc) if p]
    fig = Figure(figsize=(5.2 * max(len(panels), 1), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    for ax, panel in zip(axes, panels):
        positive = True
        for key in panel:
            for hist, style, label in ((base, "--", "base"), (new, "-", "new")):
                xs, ys = _series(hist, key)
                if not xs:
                    continue
                positive = positive and min(ys) > 0
                ax.plot(xs, ys, style, color=colours[key], label=f"{key} ({label})",
                        marker="o" if len(xs) == 1 else None)
        if panel is other and positive:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(scale_label("accuracy" if panel is acc else "loss", ax.get_yscale()))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if not panels:
        axes[0].text(0.5, 0.5, "no history", ha="center", va="center")
    fig.suptitle(f"{variant}: base dashed, new solid", fontsize=10)
    fig.tight_layout()
    return fig


def curves_table(base: list[dict] | None, new: list[dict] | None) -> str:
    """First and last epoch of every series, base against new, as a Markdown table."""
    def ends(hist, key):
        _, ys = _series(hist, key)
        return (fmt(ys[0]), fmt(ys[-1])) if ys else ("—", "—")

    lines = ["| curve | base first | base last | new first | new last |",
             "|---|---:|---:|---:|---:|"]
    for key in curve_keys(new, base):
        lines.append(f"| {key} | {' | '.join(ends(base, key))} | {' | '.join(ends(new, key))} |")
    head = f"Epochs: base {len(base) if base else '—'}, new {len(new) if new else '—'}."
    return head + "\n\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- dvc

def dvc_executable() -> str:
    """The dvc of the environment running this (same bin dir as the interpreter)."""
    exe = Path(sys.executable).parent / ("dvc.exe" if os.name == "nt" else "dvc")
    if not exe.exists():
        raise CompareError(f"dvc not found next to {sys.executable}; install the project's "
                           "environment (make venv)")
    return str(exe)


def dvc_params_diff(base: str, repo: Path) -> str:
    """`dvc params diff <base> --md` in `repo`: the Markdown table, "" when nothing changed."""
    cmd = [dvc_executable(), "params", "diff", base, "--md"]
    # No analytics call from CI or a laptop: the comparison is offline.
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompareError(f"dvc params diff {base} failed: {_first_error(proc.stderr)}")
    table = proc.stdout.strip()
    rows = [ln for ln in table.splitlines() if ln.startswith("|")]
    return table if len(rows) > 2 else ""  # a header and its rule alone: nothing changed


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    line = (errors or lines or ["no message"])[0]
    return re.sub(r"^ERROR:\s*", "", line)


# ----------------------------------------------------------------------------- Markdown

def fmt(x: Any) -> str:
    """A metric value: 7 significant digits, "—" when absent."""
    if x is None:
        return "—"
    if _is_number(x):
        return f"{x:.7g}"
    return f"`{json.dumps(x)}`"


def fmt_short(x: float) -> str:
    """1e-4, 3.2e-7, 0.5: short and exact enough for a tolerance or a difference."""
    if x == 0 or not math.isfinite(x):
        return str(x if x else 0)
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.2g}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant.removesuffix('.0')}e{int(exp)}"


def _signed(x: float | None, percent: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:+.3g}%" if percent else f"{x:+.3g}"


def demote(markdown: str) -> str:
    """Every heading one level down (outside code fences), to nest a document in this one."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        out.append("#" + line if not fenced and re.match(r"#{1,5} ", line) else line)
    return "\n".join(out)


def metrics_section(diff: MetricsDiff, tol: Tolerance) -> str:
    parts = []
    if diff.changes:
        status = {**{v: "new" for v in diff.new_variants},
                  **{v: "removed" for v in diff.removed_variants}}
        names = ", ".join(f"`{v}`" + (f" ({status[v]})" if v in status else "")
                          for v in diff.changed_variants)
        parts.append(f"Changed variants: {names}.\n")
        rows = ["| variant | metric | base | new | change | relative change |",
                "|---|---|---:|---:|---:|---:|"]
        for c in diff.changes:
            rows.append(f"| {c.variant} | {c.metric} | {fmt(c.old)} | {fmt(c.new)} | "
                        f"{_signed(c.change)} | {_signed(c.relative, percent=True)} |")
        parts.append("\n".join(rows) + "\n")
    else:
        parts.append("No metric changed beyond rounding.\n")
    parts.append(summary_line(diff, tol) + "\n")
    return "\n".join(parts)


def summary_line(diff: MetricsDiff, tol: Tolerance) -> str:
    n = diff.within
    line = f"{n} metric{'s' if n != 1 else ''} within rounding ({tol.describe()})"
    if diff.largest is None:
        return line + ("; all identical" if n else "")
    rel, variant, metric = diff.largest
    rule = tol.rule_for(variant, metric)
    where = f"{variant} {metric}" + ("" if rule is None else f", rule `{rule.pattern}`")
    return line + f"; largest relative difference {fmt_short(rel)} ({where})"


@dataclass
class Comparison:
    markdown: str
    figures: dict[str, bytes]  # file name (in the figures folder) -> PNG bytes
    diff: MetricsDiff


def compare(base: str, repo: Path, tol: Tolerance = Tolerance(), report: Path | None = REPORT,
            figures_dir: str | None = None, metrics: Path = METRICS,
            history: Path = HISTORY) -> Comparison:
    """The whole document and its figures, in memory (nothing is written here).

    `figures_dir`: the folder (relative to the Markdown file) the PNGs will be written to and
    linked from; None draws no PNGs (the text tables stay). `report`, `metrics` and `history`
    are relative to `repo`."""
    repo = Path(repo)
    commit = resolve_base(repo, base)
    new = read_workspace_metrics(repo, metrics)
    base_bytes = git_show(repo, commit, metrics)
    old = {} if base_bytes is None else parse_metrics(base_bytes, f"{base}:{metrics.as_posix()}")
    params = dvc_params_diff(base, repo)
    diff = diff_metrics(old, new, tol)

    parts = [f"# Pipeline changes against `{base}`\n",
             "## Parameters\n", (params or "No parameter changed.") + "\n",
             "## Metrics\n"]
    if base_bytes is None:
        parts.append(f"`{base}` has no `{metrics.as_posix()}`: every variant is new.\n")
    parts.append(metrics_section(diff, tol))

    figures: dict[str, bytes] = {}
    if diff.changed_variants:
        parts.append("## Learning curves of the changed variants\n")
        for variant in diff.changed_variants:
            rel = history / f"{variant}.json"
            before = parse_history(git_show(repo, commit, rel))
            try:
                after = parse_history((repo / rel).read_bytes())
            except OSError:
                after = None
            parts.append(f"### {variant}\n")
            if before is None and after is None:
                parts.append(f"No history (`{rel.as_posix()}`) on either side.\n")
                continue
            if figures_dir is not None:
                name = f"{_safe_name(variant)}.png"
                figures[name] = curves_png(variant, before, after)
                parts.append(f"![{variant}: learning curves, base dashed, new solid]"
                             f"({figures_dir}/{name})\n")
            parts.append(curves_table(before, after) + "\n")

    report_file = None if report is None else repo / report
    if report_file is not None and report_file.is_file():
        try:
            text = report_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CompareError(f"cannot read {report}: {exc}") from None
        parts += [f"## Report (`{report.as_posix()}`)\n", demote(demote(text)).strip() + "\n"]
    return Comparison("\n".join(parts), figures, diff)


def _safe_name(variant: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", variant) or "_"


def figures_folder(out: Path) -> Path:
    """The PNGs' folder: beside the Markdown file, named after it (compare.md -> compare/)."""
    return out.with_suffix("") if out.suffix else out.with_name(out.name + "_figures")


def write_outputs(out: Path, result: Comparison) -> None:
    """The PNGs, then the Markdown, each through a temporary name and a rename; PNGs of an
    earlier comparison that this one does not draw are removed from the folder."""
    folder = figures_folder(out)
    if result.figures or folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            if old.name not in result.figures:
                old.unlink()
        for name, png in result.figures.items():
            write_bytes_atomic(folder / name, png)
    write_bytes_atomic(out, result.markdown.encode("utf-8"))


# ----------------------------------------------------------------------------- CLI

def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="compare.py",
        description="Parameter and metric changes against a base revision, rounding told apart "
                    "from real changes, with the learning curves of the changed variants.")
    ap.add_argument("--base", required=True, help="git revision to compare with (e.g. main)")
    ap.add_argument("--out", type=Path,
                    help="also write the Markdown here, and the curves' PNGs into the folder "
                         "beside it named after it (compare.md -> compare/)")
    ap.add_argument("--repo", type=Path, default=Path("."), help="repository root (default .)")
    ap.add_argument("--report", type=Path, default=REPORT,
                    help="the report to append, relative to --repo")
    ap.add_argument("--rtol", type=_nonneg_float, default=DEFAULT_RTOL,
                    help=f"relative tolerance of the default rule (default {DEFAULT_RTOL:g})")
    ap.add_argument("--atol", type=_nonneg_float, default=DEFAULT_ATOL,
                    help=f"absolute floor of the default rule (default {DEFAULT_ATOL:g})")
    ap.add_argument("--no-rules", action="store_true",
                    help="compare every metric with --rtol/--atol alone (no looser rules for "
                         "log-losses and the ill-conditioned lessons)")
    args = ap.parse_args(argv)
    try:
        tol = Tolerance(args.rtol, args.atol, () if args.no_rules else RULES)
        figures_dir = None if args.out is None else figures_folder(args.out).name
        result = compare(args.base, args.repo, tol, args.report, figures_dir)
        if args.out is not None:
            write_outputs(args.out, result)
    except CompareError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(result.markdown)
    return 0
