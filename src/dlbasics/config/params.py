"""The whole of params.yaml as one model (`Params`), with the checks that span its sections:
every variant's dataset exists and fits its loss, every search's base is a variant, ...
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from dlbasics.config.base import NAME, NOTHING, KeyProblem, Shown, Strict, set_path
from dlbasics.config.datasets import DATASET_TASKS, OFFICIAL_TEST, DatasetSpec, PrepareSpec
from dlbasics.config.lessons import DataLesson, LessonsSpec
from dlbasics.config.profiles import ProfileSpec
from dlbasics.config.report import ReportGroups, ReportSpec
from dlbasics.config.settings import Runtime, Tracking
from dlbasics.config.variants import LOSS_TASKS, EvaluateSpec, SelectSpec, VariantSpec
from dlbasics.errors import ConfigError


class Params(Strict):
    seed: Annotated[int, Field(ge=0, lt=2**31)]
    # The entry of `profiles` laid over this file (see ProfileSpec), or null for none.
    profile: str | None = None
    profiles: dict[str, ProfileSpec] = {}
    runtime: Runtime = Runtime()
    tracking: Tracking = Tracking()
    data: dict[str, DatasetSpec]
    prepare: dict[str, PrepareSpec]
    train: Annotated[dict[str, VariantSpec], Field(min_length=1)]
    evaluate: EvaluateSpec = EvaluateSpec()
    select: SelectSpec | None = None
    lessons: LessonsSpec = LessonsSpec()
    report: ReportSpec = ReportSpec()
    _source: str = PrivateAttr(default="params.yaml")  # the file it was read from, for messages

    def error(self, key: str, problem: str) -> ConfigError:
        """A one-line ConfigError about `key` of this params file (for checks that need data)."""
        return ConfigError(f"{self._source}: {key}: {problem}")

    @model_validator(mode="after")
    def _names_resolve(self) -> Params:
        """Every name that one section gives another resolves, and fits where it is used."""
        # In this order: the first problem found is the one reported, and a variant's own keys
        # come before the searches and report entries that name it.
        self._check_names()
        self._check_datasets()
        self._check_variants()
        self._check_searches()
        self._check_lessons()
        self._check_report()
        return self

    def _check_names(self) -> None:
        """Names under data, prepare and train are usable as directory and file names."""
        for section in ("data", "prepare", "train"):
            for name in getattr(self, section):
                if not NAME.fullmatch(name):
                    raise KeyProblem(
                        (section, name),
                        "a name of a letter then letters, digits or underscores (it becomes "
                        "a directory and file name)",
                        name,
                    )

    def _check_datasets(self) -> None:
        """data and prepare name the same datasets, and each test size fits its dataset."""
        for name in self.data:
            if name not in self.prepare:
                raise KeyProblem(
                    ("prepare", name), "an entry for every dataset under data", NOTHING
                )
        for name, prep in self.prepare.items():
            if name in self.data:
                official = self.data[name].kind in OFFICIAL_TEST
                has_test = prep.test_fraction is not None or prep.n_test is not None
                if official and has_test:
                    raise KeyProblem(
                        ("prepare", name),
                        f"no test_fraction / n_test: {self.data[name].kind} keeps its official "
                        "test set", Shown("a test size"),
                    )
                if not official and not has_test:
                    raise KeyProblem(("prepare", name, "test_fraction"),
                                      "a test fraction (or n_test)", NOTHING)
            if name not in self.data:
                raise KeyProblem(
                    ("prepare", name), f"the name of a dataset under data {sorted(self.data)}",
                    name,
                )

    def _check_variants(self) -> None:
        """Each variant trains on a dataset under data, with a loss for that dataset's task."""
        for vname, v in self.train.items():
            if v.dataset not in self.data:
                raise KeyProblem(
                    ("train", vname, "dataset"),
                    f"one of the datasets under data {sorted(self.data)}",
                    v.dataset,
                )
            task = DATASET_TASKS[self.data[v.dataset].kind]
            if task not in LOSS_TASKS[v.loss]:
                fits = sorted(k for k, tasks in LOSS_TASKS.items() if task in tasks)
                raise KeyProblem(
                    ("train", vname, "loss"),
                    f"a loss for the {task} dataset {v.dataset!r}: one of {fits}",
                    v.loss,
                )

    def _check_searches(self) -> None:
        """Each search has a usable name and a base variant, and every grid point is valid."""
        for sname, search in (self.select.searches if self.select else {}).items():
            if not NAME.fullmatch(sname):
                raise KeyProblem(("select", "searches", sname),
                                  "a name of a letter then letters, digits or underscores (it "
                                  "becomes a DVC stage and file name)", sname)
            if search.base not in self.train:
                raise KeyProblem(("select", "searches", sname, "base"),
                                  f"a variant under train {sorted(self.train)}", search.base)
            if self.train[search.base].class_weight is not None:
                raise KeyProblem(("select", "searches", sname, "base"),
                                  "a variant without class_weight (a search's folds train the "
                                  "unweighted loss)", search.base)
            # Every configuration must be a valid variant, and none weighted by an override or
            # an axis either: the folds would train unweighted and the refit weighted.
            for values, spec in grid_variants(self, sname):
                if spec.class_weight is not None:
                    where = "grid" if "class_weight" in values else "overrides"
                    raise KeyProblem(("select", "searches", sname, where, "class_weight"),
                                      "no class_weight (a search's folds train the unweighted "
                                      "loss)", spec.class_weight)

    def _check_lessons(self) -> None:
        """Each lesson that trains on data names a classification dataset under data."""
        for lname in LessonsSpec.model_fields:
            lesson = getattr(self.lessons, lname)
            if isinstance(lesson, DataLesson) and lesson.dataset not in self.data:
                raise KeyProblem(("lessons", lname, "dataset"),
                                  f"one of the datasets under data {sorted(self.data)}",
                                  lesson.dataset)
            if isinstance(lesson, DataLesson) and (
                    DATASET_TASKS[self.data[lesson.dataset].kind] != "classification"):
                classifiers = sorted(n for n, d in self.data.items()
                                     if DATASET_TASKS[d.kind] == "classification")
                raise KeyProblem(("lessons", lname, "dataset"),
                                  f"a classification dataset: one of {classifiers}",
                                  lesson.dataset)

    def _check_report(self) -> None:
        """report's notes, groups and compare name variants, and each compared pair is paired."""
        for vname in self.report.notes:
            if vname not in self.train:
                raise KeyProblem(("report", "notes", vname), "the name of a variant under train",
                                  vname)
        for group in ReportGroups.model_fields:
            for j, vname in enumerate(getattr(self.report.groups, group)):
                if vname not in self.train:
                    raise KeyProblem(("report", "groups", group, j),
                                      "the name of a variant under train", vname)
        for i, fig in enumerate(self.report.book):
            for key in ("variant", "same_as"):
                vname = getattr(fig, key)
                if vname is not None and vname not in self.train:
                    raise KeyProblem(("report", "book", i, key),
                                      "the name of a variant under train", vname)
        for i, c in enumerate(self.report.contrasts):
            for key in ("a", "b"):
                if getattr(c, key) not in self.train:
                    raise KeyProblem(("report", "contrasts", i, key),
                                      "the name of a variant under train", getattr(c, key))
            if c.measure == "rare_recall" and getattr(
                    self.data[self.train[c.a].dataset], "imbalance", None) is None:
                raise KeyProblem(("report", "contrasts", i, "a"), "a variant on a dataset "
                                  "with `imbalance` (rare_recall needs its rare classes)", c.a)
        for i, pair in enumerate(self.report.compare):
            for j, vname in enumerate(pair):
                if vname not in self.train:
                    raise KeyProblem(("report", "compare", i, j),
                                      "the name of a variant under train", vname)
            a, b = (self.train[v] for v in pair)
            paired = (a.seeds is not None and a.seeds == b.seeds) or (
                a.kfold is not None and a.kfold == b.kfold and a.dataset == b.dataset)
            if pair[0] == pair[1] or not paired:
                raise KeyProblem(
                    ("report", "compare", i),
                    "two different variants with the same `seeds`, or the same `kfold` on the "
                    "same dataset (a paired comparison)", pair)

    @model_validator(mode="after")
    def _registry_resolves(self) -> Params:
        reg = self.tracking.registry
        if reg is None:
            return self
        searches = self.select.searches if self.select else {}
        for i, sname in enumerate(reg.searches or []):
            if sname not in searches:
                raise KeyProblem(("tracking", "registry", "searches", i),
                                  f"a search under select.searches {sorted(searches)}", sname)
        for i, vname in enumerate(reg.variants):
            if vname not in self.train:
                raise KeyProblem(("tracking", "registry", "variants", i),
                                  "the name of a variant under train", vname)
        # The champion is the best test score: comparable only on one test set.
        datasets = {f"select@{s}": self.train[searches[s].base].dataset
                    for s in (searches if reg.searches is None else reg.searches)}
        datasets.update({v: self.train[v].dataset for v in reg.variants})
        if len(set(datasets.values())) > 1:
            raise KeyProblem(("tracking", "registry"),
                              "models of one dataset (the champion is chosen by test score)",
                              Shown(", ".join(f"{k} on {v}" for k, v in datasets.items())))
        return self


def submission_candidates(params: Params) -> tuple[str | None, list[str]]:
    """(the house-prices table under data, or None; the variants of params.train on it that
    are scored by K-fold cross-validation): what the submit stage chooses among. dvc.yaml
    declares these variants' model directories as the submit stage's deps (`make deps`)."""
    tables = [n for n, spec in params.data.items() if spec.kind == "house_prices"]
    if not tables:
        return None, []
    return tables[0], kfold_variants(params, tables[0])


def kfold_variants(params: Params, dataset: str) -> list[str]:
    """The variants of params.train on `dataset` scored by K-fold cross-validation, in order."""
    return [n for n, v in params.train.items() if v.dataset == dataset and v.kfold]


def grid_variants(params: Params, search: str) -> list[tuple[dict[str, Any], VariantSpec]]:
    """[(the grid values of one configuration, its full validated variant)] of the named search,
    in grid order."""
    import itertools

    sel = params.select.searches[search]
    base = params.train[sel.base].model_dump(mode="json", exclude_none=True)
    base.pop("seeds", None)  # a configuration is one fit per fold, not a repeated-seed study
    base.pop("kfold", None)  # the search does its own K folds
    for path, value in sel.overrides.items():
        base = set_path(base, path, value)
    axes = list(sel.grid)
    out = []
    for values in itertools.product(*(sel.grid[a] for a in axes)):
        raw = base
        for path, value in zip(axes, values):
            raw = set_path(raw, path, value)
        try:
            spec = VariantSpec.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise KeyProblem(("select", "searches", search, "grid"),
                              f"settings that make a valid variant ({where}: {err['msg']})",
                              Shown(str(dict(zip(axes, values))))) from None
        out.append((dict(zip(axes, values)), spec))
    return out
