"""The experiment config (YAML in, resolved YAML out) and label budgets.

A budget says how many labeled images fine-tune a cell, in one of the paper's three ways:

* a **count**, ``5`` -> 5 labeled images (the paper's "18 images");
* a **fraction** of all images, ``0.3`` -> 30 % of the dataset;
* a **pretraining-fine-tuning ratio** in percent of all images, ``"79-1"`` (the paper's PT-FT splits
  50-30, 60-20, 70-10, 75-5, 79-1, with 20 % test). With ``pretrain_data: split`` the pretraining
  pool is the rest of the split, at most PT % of all images; the validation images (``val``) come
  out of that pretraining share, since the paper had no validation split (it selected on test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from angioseg.config import from_dict, read_config_dict, to_dict
from angioseg.errors import AngiosegError
from angioseg.pretrain import METHOD_NAMES
from angioseg.pretrain.run import PretrainConfig
from angioseg.train.finetune import FinetuneConfig
from angioseg.utils import write_yaml

NONE = "none"
SPLIT = "split"
# Fields of the templates that the experiment sets for every run; a config may not set them.
FINETUNE_SET = (
    "data",
    "out",
    "labeled",
    "fraction",
    "seed",
    "test",
    "val",
    "test_seed",
    "groups",
    "width",
    "pretrained",
)
PRETRAIN_SET = ("method", "data", "out", "width", "image_size")
# Keys that may change between a run and its --resume (they only add or drop cells / redraw figures).
GRID_KEYS = ("methods", "budgets", "seeds", "report", "name", "description")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Budget:
    """One label budget. ``finetune`` is a count (``kind="count"``) or a fraction of all images."""

    kind: str
    finetune: float
    pretrain: float | None = None

    @property
    def key(self) -> str:
        """Folder-safe id: ``n5``, ``f0.3``, ``pt79-ft1``."""
        if self.kind == "count":
            return f"n{int(self.finetune)}"
        if self.kind == "fraction":
            return f"f{self.finetune:g}"
        return f"pt{100 * (self.pretrain or 0):g}-ft{100 * self.finetune:g}"

    @property
    def label(self) -> str:
        """As written in tables: ``5``, ``30%``, ``79-1``."""
        if self.kind == "count":
            return str(int(self.finetune))
        if self.kind == "fraction":
            return f"{100 * self.finetune:g}%"
        return f"{100 * (self.pretrain or 0):g}-{100 * self.finetune:g}"

    def split_args(self) -> dict[str, Any]:
        """``labeled`` / ``fraction`` arguments of :class:`~angioseg.data.splits.SplitSpec`."""
        if self.kind == "count":
            return {"labeled": int(self.finetune), "fraction": None}
        return {"labeled": None, "fraction": self.finetune}


def parse_budget(value: Any, test: float = 0.2) -> Budget:
    """``5`` -> count, ``0.3`` -> fraction, ``"79-1"`` -> PT 79 % / FT 1 % of all images.

    Raises:
        AngiosegError: anything else, or a ratio whose parts and the test share exceed 100 %.
    """
    if isinstance(value, bool):
        raise AngiosegError(f"budget {value!r}: expected a count, a fraction or 'PT-FT' like '79-1'")
    if isinstance(value, str):
        m = _RATIO.match(value)
        if m:
            pt, ft = float(m.group(1)) / 100, float(m.group(2)) / 100
            test_share = test if test < 1 else 0.0
            if ft <= 0 or pt + ft + test_share > 1.0 + 1e-9:
                raise AngiosegError(
                    f"budget {value!r}: pretraining {pt:.0%} + fine-tuning {ft:.0%} + test {test_share:.0%} "
                    "must be at most 100 % with fine-tuning > 0"
                )
            return Budget("ratio", ft, pt)
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            raise AngiosegError(
                f"budget {value!r}: expected a count (5), a fraction (0.3) or 'PT-FT' percentages ('79-1')"
            ) from None
    if isinstance(value, float) and 0 < value < 1:
        return Budget("fraction", value)
    if isinstance(value, int | float) and float(value).is_integer() and value >= 1:
        return Budget("count", int(value))
    raise AngiosegError(f"budget {value!r}: a count must be >= 1 and a fraction between 0 and 1")


@dataclass
class ReportSettings:
    """What the report draws: ``examples`` test images in Figure 5, ``reconstructions`` rows per method in Figure 6."""

    examples: int = 3
    reconstructions: int = 3


@dataclass
class ExperimentConfig:
    """A label-efficiency study (written resolved to ``OUT/experiment.yaml``).

    Attributes:
        labeled_data: dataset folder with ``images/`` + ``masks/``; test, validation and fine-tuning
            images come from it (and the pretraining pool when ``pretrain_data`` is ``split``).
        pretrain_data: a folder of unlabeled images (one pretraining run per method, shared by all
            budgets and seeds), or ``split``: each (budget, seed) split's own pretraining pool of
            ``labeled_data`` (labels unused), as in the paper.
        methods: ``none`` (from scratch) and any of :data:`~angioseg.pretrain.METHOD_NAMES`.
        budgets: see :func:`parse_budget`. Paper: ``["50-30", "60-20", "70-10", "75-5", "79-1"]``.
        seeds: one fine-tuning run per seed; the seed draws validation and fine-tuning images,
            initialisation and augmentation. The test set depends only on ``test_seed``.
        test, val: test and validation shares (fractions of all images, or counts); paper test 0.2.
        groups: optional ``name,group`` CSV (e.g. patients); a group's images share a split, as the
            frames of one file always do (see :mod:`angioseg.data.splits`).
        width, image_size: the UNet width and image side for pretraining and fine-tuning (paper 64, 256).
        finetune: :class:`FinetuneConfig` options for every cell (epochs, batch size, lr, ...).
        pretrain: :class:`PretrainConfig` options for every pretraining run (epochs, batch size, ...).
        method_options: per-method :class:`PretrainConfig` overrides, e.g. ``{cmunet: {lr: 1.0e-3}}``.
    """

    name: str = "experiment"
    description: str = ""
    labeled_data: str = ""
    pretrain_data: str = SPLIT
    methods: list[str] = field(default_factory=lambda: [NONE, *METHOD_NAMES])
    budgets: list[Any] = field(default_factory=lambda: ["50-30", "70-10", "79-1"])
    seeds: list[int] = field(default_factory=lambda: [0])
    test: float = 0.2
    val: float = 0.1
    test_seed: int = 42
    groups: str | None = None
    width: int = 64
    image_size: int = 256
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: ReportSettings = field(default_factory=ReportSettings)

    def budget_list(self) -> list[Budget]:
        return [parse_budget(b, self.test) for b in self.budgets]

    def pretrain_methods(self) -> list[str]:
        return [m for m in self.methods if m != NONE]


def validate(cfg: ExperimentConfig, where: str = "config") -> ExperimentConfig:
    """Check names, lists and paths' presence; return ``cfg`` with de-duplicated lists.

    Raises:
        AngiosegError: an unknown method, an empty grid, a duplicated budget or a missing ``labeled_data``.
    """
    if not cfg.labeled_data:
        raise AngiosegError(f"{where}: labeled_data is required (a folder with images/ and masks/)")
    if not cfg.pretrain_data:
        raise AngiosegError(f"{where}: pretrain_data must be a folder of images or 'split'")
    unknown = [m for m in cfg.methods if m != NONE and m not in METHOD_NAMES]
    if unknown:
        raise AngiosegError(
            f"{where}: unknown method(s) {unknown}; expected some of {', '.join([NONE, *METHOD_NAMES])}"
        )
    bad = sorted(set(cfg.method_options) - set(METHOD_NAMES))
    if bad:
        raise AngiosegError(f"{where}: method_options for unknown method(s) {bad}")
    for name in ("methods", "budgets", "seeds"):
        if not getattr(cfg, name):
            raise AngiosegError(f"{where}: {name} must list at least one entry")
    keys = [b.key for b in cfg.budget_list()]
    if len(set(keys)) != len(keys):
        raise AngiosegError(f"{where}: the same budget is listed twice in {cfg.budgets}")
    if cfg.image_size % 16:
        raise AngiosegError(f"{where}: image_size must be a multiple of 16 (the UNet downsamples 16x)")
    return replace(cfg, methods=list(dict.fromkeys(cfg.methods)), seeds=list(dict.fromkeys(cfg.seeds)))


def experiment_from_dict(data: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Build and validate a config; fields the experiment sets itself are refused in the templates."""
    for section, reserved in (("finetune", FINETUNE_SET), ("pretrain", PRETRAIN_SET)):
        given = sorted(set(data.get(section) or {}) & set(reserved))
        if given:
            raise AngiosegError(
                f"{where}: {section}.{given[0]} is set by the experiment for every run; "
                f"use the top-level keys (labeled_data, pretrain_data, seeds, budgets, width, image_size, ...)"
            )
    for method, opts in (data.get("method_options") or {}).items():
        given = sorted(set(opts or {}) & set(PRETRAIN_SET))
        if given:
            raise AngiosegError(f"{where}: method_options.{method}.{given[0]} cannot be set per method")
    return validate(from_dict(ExperimentConfig, data, where), where)


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML file (a clear one-line error for a missing or malformed file)."""
    return experiment_from_dict(read_config_dict(path), str(path))


def resolve_paths(cfg: ExperimentConfig, base: Path | None = None) -> ExperimentConfig:
    """Relative data paths -> absolute, against ``base`` (default: the current directory)."""
    base = Path.cwd() if base is None else base

    def absolute(p: str) -> str:
        return str((base / Path(p).expanduser()).resolve())

    pre = cfg.pretrain_data if cfg.pretrain_data == SPLIT else absolute(cfg.pretrain_data)
    groups = None if cfg.groups is None else absolute(cfg.groups)
    return replace(cfg, labeled_data=absolute(cfg.labeled_data), pretrain_data=pre, groups=groups)


def experiment_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain dict for YAML, without the template fields the experiment sets per run."""
    d = to_dict(cfg)
    for section, reserved in (("finetune", FINETUNE_SET), ("pretrain", PRETRAIN_SET)):
        for key in reserved:
            d[section].pop(key, None)
    return d


def save_experiment(path: str | Path, cfg: ExperimentConfig) -> None:
    write_yaml(path, experiment_to_dict(cfg))


def check_same_study(saved: ExperimentConfig, given: ExperimentConfig, where: str) -> None:
    """A ``--resume`` may change the grid lists and the report, nothing that would change finished cells."""
    a, b = experiment_to_dict(saved), experiment_to_dict(given)
    changed = sorted(k for k in a if k not in GRID_KEYS and a[k] != b.get(k))
    if changed:
        raise AngiosegError(
            f"{where}: the config differs from the one this study was started with in {changed}; "
            "only methods, budgets, seeds and report may change on --resume (or start a new --out)"
        )


__all__ = [
    "NONE",
    "SPLIT",
    "Budget",
    "ExperimentConfig",
    "ReportSettings",
    "check_same_study",
    "experiment_from_dict",
    "load_experiment",
    "parse_budget",
    "resolve_paths",
    "save_experiment",
]
