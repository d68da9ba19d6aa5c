"""Fine-tuning / linear-probe configuration (YAML with ``--set section.field=value`` overrides).

Shipped presets live in ``configs/finetune/``: ``paper.yaml`` (the paper's ScanNet semantic-segmentation
setting, Sec. 4) and ``cpu.yaml`` (the embedded rooms at a size that runs in minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from fourdcontrast.config_fields import check_section, override_items
from fourdcontrast.downstream.data import EMBEDDED_ROOM_SEED, EMBEDDED_SPLIT
from fourdcontrast.downstream.splits import SPLIT_SEED
from fourdcontrast.errors import ConfigError

__all__ = [
    "AUGMENT_ELASTIC",
    "BN_MODES",
    "BN_RECALIBRATION",
    "FINETUNE_RECIPES",
    "OPTIMIZERS",
    "LP_STEPS",
    "AUGMENT_SCALE",
    "AUGMENT_TILT_DEG",
    "AUGMENT_TRANSLATION",
    "CONFIG_DIR",
    "FIELD_RANGES",
    "FINETUNE_BATCH",
    "FINETUNE_LR",
    "FINETUNE_MOMENTUM",
    "FINETUNE_POLY_POWER",
    "FINETUNE_STEPS",
    "FINETUNE_WEIGHT_DECAY",
    "PROBE_LR",
    "PROBE_STEPS",
    "PROBE_WEIGHT_DECAY",
    "AugmentConfig",
    "FinetuneConfig",
    "load_finetune_config",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "finetune"

FINETUNE_LR: float = 0.8
"""Initial learning rate of semantic-segmentation fine-tuning (paper, Sec. 4)."""
FINETUNE_BATCH: int = 48
"""Scenes per step (paper, Sec. 4)."""
FINETUNE_STEPS: int = 10_000
"""Fine-tuning steps (paper, Sec. 4)."""
FINETUNE_POLY_POWER: float = 0.9
"""Power of the polynomial decay ``lr · (1 − step/steps)^power`` (paper, Sec. 4)."""
FINETUNE_MOMENTUM: float = 0.9
"""SGD momentum (PointContrast / CSC ScanNet fine-tuning configs; the paper does not state it)."""
FINETUNE_WEIGHT_DECAY: float = 1e-4
"""SGD weight decay (PointContrast / CSC ScanNet fine-tuning configs; the paper does not state it)."""

FINETUNE_RECIPES: tuple[str, ...] = ("paper", "lp-ft")
"""Fine-tuning recipes (``optim.recipe``, :mod:`~fourdcontrast.downstream.training`): ``paper`` (fresh head,
one learning rate) and ``lp-ft`` (the head fitted on frozen features first; Kumar et al., ICLR 2022)."""
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
"""Fine-tuning optimisers (``optim.optimizer``): ``sgd`` (momentum ``optim.momentum``; the paper's semantic
and instance fine-tuning) and ``adamw`` (betas 0.9 / 0.999, decoupled ``optim.weight_decay``; VoteNet trains
detection with Adam at lr 0.001, and so does the paper's detection fine-tuning)."""
BN_MODES: tuple[str, ...] = ("train", "frozen")
"""Batch-norm handling while fine-tuning (``optim.bn_mode``, :mod:`~fourdcontrast.downstream.training`)."""
LP_STEPS: int = 100
"""SGD steps of LP-FT's head-only stage for a task without its own linear probe (our choice)."""

BN_RECALIBRATION: int = 16
"""Training samples whose batch statistics replace the running ones after fine-tuning ("precise BN", our
choice; 0 disables it)."""

PROBE_LR: float = 0.05
"""Adam learning rate of the linear probe on standardised frozen features (our choice)."""
PROBE_STEPS: int = 300
"""Full-batch Adam steps of the linear probe (our choice; the loss is flat by then on the embedded rooms)."""
PROBE_WEIGHT_DECAY: float = 1e-4
"""Weight decay of the linear probe (our choice)."""

AUGMENT_TILT_DEG: float = 180 / 64
"""Largest tilt about x and y in degrees: π/64 (MinkowskiEngine's ScanNet ``ROTATION_AUGMENTATION_BOUND``)."""
AUGMENT_SCALE: tuple[float, float] = (0.9, 1.1)
"""Uniform scale range (MinkowskiEngine's ScanNet ``SCALE_AUGMENTATION_BOUND``)."""
AUGMENT_TRANSLATION: float = 0.2
"""Largest translation in x and y in metres (our reading of ME's ScanNet translation ratio bound ±0.2)."""
AUGMENT_ELASTIC: tuple[tuple[float, float], ...] = ((0.2, 0.4), (0.8, 1.6))
"""Elastic distortion (granularity m, magnitude) pairs applied in turn (ME's ScanNet
``ELASTIC_DISTORT_PARAMS``)."""


@dataclass
class DataSection:
    """Which scenes, at which resolution, with which labels.

    Attributes:
        dataset: ``"embedded"`` (procedural labelled rooms), ``"embedded-views"`` (one single-view partial
            scan of each of those rooms with its objects' amodal boxes, :mod:`~.views`: the stand-in for
            SUN RGB-D, paper Table 5) or ``"scannet"``.
        rooms: rooms per split of the embedded dataset.
        room_seed: base seed of the embedded split.
        scannet_root: ScanNet folder (``scans/`` and the split files) for ``dataset: scannet``.
        voxel_size: metres (paper: 0.02; must match the pre-training's 3D voxel size).
        features: ``"occupancy"`` (ones, as in pre-training) or ``"color"`` (needs scene colours).
        eval_split: split evaluated at the end (``val`` or ``test``).
        limited_scenes: fraction of training scenes (data-efficient protocol), None for all.
        limited_points: labelled points per training scene (data-efficient protocol), None for all.
        split_seed: seed of the data-efficient subset rules.
        crop: side in metres of a square xy crop around a labelled point per training sample (None: whole
            scenes); a CPU economy, our choice.
        cache_dir: room cache folder (None: default, ``""``: no cache).
        complete_instances: the instance and detection targets of a training crop (instance centres,
            boxes, votes) are those of the *whole* thing instances it cuts — their points outside the crop
            are augmented with it but not input — as at evaluation on whole rooms and as VoteNet's amodal
            boxes; False: of the instances' points inside the crop. For single views
            (``embedded-views``) likewise with the objects' hidden points, in training and in the
            evaluation's ground-truth boxes. Semantic segmentation ignores it.
        store_voxel: keep one point per cell of this size (metres) of every embedded room — the first
            point of the cell, with its label and instance — so that ScanNet-sized splits (> 1000 rooms)
            fit in memory and in the cache (None: every point, as generated). Evaluation is then over the
            kept points.
    """

    dataset: str = "embedded"
    rooms: dict = field(default_factory=lambda: dict(EMBEDDED_SPLIT))
    room_seed: int = EMBEDDED_ROOM_SEED
    scannet_root: str | None = None
    voxel_size: float = 0.02
    features: str = "occupancy"
    eval_split: str = "test"
    limited_scenes: float | None = None
    limited_points: int | None = None
    split_seed: int = SPLIT_SEED
    crop: float | None = None
    cache_dir: str | None = None
    store_voxel: float | None = None
    complete_instances: bool = True


@dataclass
class ModelSection:
    """Network and initialisation.

    Attributes:
        backbone: a key of ``fourdcontrast.models.resunet.BACKBONES`` (paper: MinkUNet34).
        init: exported backbone (``export-backbone``) or pre-training checkpoint; None = from scratch.
        in_channels: input channels (3: occupancy repeated, as in pre-training).
        mode: ``"finetune"`` (all weights trained, ``final`` = the linear head) or ``"linear"`` (frozen
            backbone, per-point linear classifier on its output features).
        feature_dim: output width of a scratch backbone in the linear probe (a pre-trained one keeps its own).
        task: the downstream task: ``segmentation``, ``instance`` or ``detection``.
    """

    backbone: str = "MinkUNet34"
    init: str | None = None
    in_channels: int = 3
    mode: str = "finetune"
    feature_dim: int = 32
    task: str = "segmentation"


@dataclass
class OptimSection:
    """Optimiser settings (see the module constants for whose setting each default is).

    ``optimizer`` (:data:`OPTIMIZERS`; ``sgd`` by default) and ``grad_clip`` (clip the gradients' global L2
    norm to this before each step; None, no clipping, by default).

    ``probe_max_voxels``: the linear probe fits on at most this many labelled voxels, drawn uniformly with
    the run's seed (None: all; a CPU economy, our choice: with every training room labelled the full batch
    holds ~1.5 M voxels for a 32 × 12 classifier).

    ``recipe`` (:data:`FINETUNE_RECIPES`; ``paper`` by default), ``backbone_lr_scale`` (the backbone's
    learning rate is ``lr`` times this; 1.0, the paper, by default), ``bn_mode`` (:data:`BN_MODES`;
    ``train`` by default) and ``lp_steps`` (:data:`LP_STEPS`): see :mod:`~fourdcontrast.downstream.training`.
    """

    lr: float = FINETUNE_LR
    momentum: float = FINETUNE_MOMENTUM
    weight_decay: float = FINETUNE_WEIGHT_DECAY
    poly_power: float = FINETUNE_POLY_POWER
    steps: int = FINETUNE_STEPS
    batch_size: int = FINETUNE_BATCH
    probe_lr: float = PROBE_LR
    probe_steps: int = PROBE_STEPS
    probe_weight_decay: float = PROBE_WEIGHT_DECAY
    probe_max_voxels: int | None = None
    bn_recalibration: int = BN_RECALIBRATION
    recipe: str = "paper"
    backbone_lr_scale: float = 1.0
    bn_mode: str = "train"
    lp_steps: int = LP_STEPS
    optimizer: str = "sgd"
    grad_clip: float | None = None


@dataclass
class AugmentConfig:
    """Training augmentations, geometry only (as in pre-training)."""

    rotate_z: bool = True
    tilt_deg: float = AUGMENT_TILT_DEG
    scale: tuple[float, float] = AUGMENT_SCALE
    translation: float = AUGMENT_TRANSLATION
    elastic: list | None = field(default_factory=lambda: [list(p) for p in AUGMENT_ELASTIC])


@dataclass
class DetectionSection:
    """VoteNet-style detection (``model.task: detection``; :mod:`~fourdcontrast.downstream.detection`).

    Attributes:
        proposals: vote clusters (proposals) per sample (VoteNet: 256 on ScanNet).
        sampling: where proposals sit: ``seed`` (the votes of the seeds' farthest-point sample, VoteNet's
            ``seed_fps``) or ``vote`` (farthest-point sampling of the votes, VoteNet's default).
        seed_class_weight: weight of the seed classification term (not in VoteNet; 0 turns it off).
        seed_class_prior: add the log of the group's mean seed class probabilities to each proposal's class
            logits (not in VoteNet).

    The defaults are what the validation screen picked (``benchmarks/results/detection_recipes.md``).
    """

    proposals: int = 512
    sampling: str = "seed"
    seed_class_weight: float = 1.0
    seed_class_prior: bool = True


@dataclass
class RunSection:
    seed: int = 0
    log_every: int = 10
    device: str = "cpu"
    threads: int | None = None


@dataclass
class FinetuneConfig:
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    run: RunSection = field(default_factory=RunSection)
    detection: DetectionSection = field(default_factory=DetectionSection)

    def __post_init__(self) -> None:
        from fourdcontrast.models.resunet import BACKBONES

        def choice(key: str, value, allowed) -> tuple[bool, str]:
            return value in allowed, f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}"

        checks = [
            choice("data.dataset", self.data.dataset, ("embedded", "embedded-views", "scannet")),
            choice("data.features", self.data.features, ("occupancy", "color")),
            choice("data.eval_split", self.data.eval_split, ("train", "val", "test")),
            choice("model.mode", self.model.mode, ("finetune", "linear")),
            choice("model.task", self.model.task, ("segmentation", "instance", "detection")),
            choice("optim.recipe", self.optim.recipe, FINETUNE_RECIPES),
            choice("optim.bn_mode", self.optim.bn_mode, BN_MODES),
            choice("optim.optimizer", self.optim.optimizer, OPTIMIZERS),
            choice("detection.sampling", self.detection.sampling, ("seed", "vote")),
            choice("model.backbone", self.model.backbone, tuple(BACKBONES)),
            (self.data.voxel_size > 0, f"data.voxel_size must be > 0, got {self.data.voxel_size}"),
            (self.optim.steps >= 0 and self.optim.batch_size >= 1,
             f"optim.steps must be >= 0 and optim.batch_size >= 1, got {self.optim.steps}, "
             f"{self.optim.batch_size}"),
            (self.data.limited_scenes is None or 0 < self.data.limited_scenes <= 1,
             f"data.limited_scenes must be null or in (0, 1], got {self.data.limited_scenes}"),
            (self.data.limited_points is None or self.data.limited_points >= 1,
             f"data.limited_points must be null or >= 1, got {self.data.limited_points}"),
            (self.data.dataset != "scannet" or bool(self.data.scannet_root),
             "data.dataset 'scannet' needs data.scannet_root (the folder of scans/ and split files)"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError("invalid fine-tuning config: " + "; ".join(bad))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections) -> FinetuneConfig:
        """A copy with fields replaced: ``cfg.replace(data={"limited_points": 20})``."""
        raw = self.to_dict()
        for k, v in sections.items():
            raw[k] = {**raw[k], **v}
        return config_from_dict(raw)


_SECTIONS = {"data": DataSection, "model": ModelSection, "optim": OptimSection, "augment": AugmentConfig,
             "run": RunSection, "detection": DetectionSection}

FIELD_RANGES: dict[str, str] = {
    "data.voxel_size": "> 0",
    "data.limited_scenes": "(0, 1]",
    "data.limited_points": ">= 1",
    "data.crop": "> 0",
    "data.store_voxel": "> 0",
    "model.in_channels": ">= 1",
    "model.feature_dim": ">= 1",
    "optim.lr": "> 0",
    "optim.momentum": "[0, 1)",
    "optim.weight_decay": ">= 0",
    "optim.poly_power": ">= 0",
    "optim.steps": ">= 0",
    "optim.batch_size": ">= 1",
    "optim.probe_lr": "> 0",
    "optim.probe_steps": ">= 0",
    "optim.probe_weight_decay": ">= 0",
    "optim.probe_max_voxels": ">= 1",
    "optim.bn_recalibration": ">= 0",
    "optim.backbone_lr_scale": ">= 0",
    "optim.lp_steps": ">= 0",
    "augment.tilt_deg": ">= 0",
    "augment.translation": ">= 0",
    "run.log_every": ">= 1",
    "optim.grad_clip": "> 0",
    "detection.proposals": ">= 1",
    "detection.seed_class_weight": ">= 0",
    "run.threads": ">= 1",
}
"""Allowed ranges of numeric fields, checked when a config is read together with the types of every field
(from the dataclasses' annotations: :func:`~fourdcontrast.config_fields.check_section`)."""


def config_from_dict(raw: dict, source: str = "config", overrides: list[str] | None = None) -> FinetuneConfig:
    """Build a :class:`FinetuneConfig` from a nested dict; ``source`` names it in errors, ``overrides``
    (the ``--set`` items applied to ``raw``) name the item at fault.

    Raises:
        ConfigError: (a ``ValueError``) one line naming ``source``, the field, the value and what is
            expected: unknown section or field, a value of the wrong type or out of range.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {raw!r}")
    overridden = override_items(overrides)
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; sections: {sorted(_SECTIONS)}")
    kwargs = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping of fields, got {values!r}")
        kwargs[name] = cls(**check_section(cls, dict(values), name, source, FIELD_RANGES, overridden))
    try:
        return FinetuneConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_finetune_config(path: str | Path, overrides: list[str] | None = None) -> FinetuneConfig:
    """Read a YAML config (a path or a shipped name: ``paper``, ``cpu``) and apply ``--set`` overrides.

    Raises:
        ConfigError: see :func:`config_from_dict` and :func:`~fourdcontrast.train.config.read_config`.
    """
    from fourdcontrast.train.config import read_config

    path, raw = read_config(path, overrides, CONFIG_DIR)
    return config_from_dict(raw, str(path), overrides)
