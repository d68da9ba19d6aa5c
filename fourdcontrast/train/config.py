"""Pre-training configuration: plain dataclasses read from YAML files under ``configs/pretrain/``.

A config file has four sections and a method name; every field has a default, and ``--set a.b=value``
overrides any field from the command line::

    method: 4dcontrast          # a key of fourdcontrast.models.fourdcontrast.METHODS
    model: {backbone_3d: MinkUNet34, ...}   # MethodConfig fields (the method's switches win)
    data:  {batch_size: 12, length: 4, voxel_size_3d: 0.02, ...}   # DataConfig
    optim: {lr: 0.25, ...}                                           # OptimConfig
    run:   {log_every: 10, checkpoint_every: 500, ...}               # RunConfig

The resolved config (:meth:`PretrainConfig.to_dict`) is printed at start and stored in every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fourdcontrast.config_fields import check_section, override_items
from fourdcontrast.errors import ConfigError
from fourdcontrast.metrics import COLLAPSE_RANK_FRACTION
from fourdcontrast.models.fourdcontrast import METHODS, MethodConfig, method_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
"""The shipped configs (a source checkout's ``configs/pretrain``)."""
DATA_SOURCES = ("generated", "shards")
"""Where sequences come from: generated on the fly from scenes and objects, or ``fourdcontrast generate``
shards."""


@dataclass
class DataConfig:
    """What the trainer feeds the model.

    Attributes:
        source: one of :data:`DATA_SOURCES`.
        shards: the ``fourdcontrast generate --out`` folder when ``source="shards"``.
        scenes: number of embedded procedural rooms used when ``source="generated"``.
        scene_seed: seed of those rooms (room ``i`` depends only on it and ``i``).
        objects_seed: seed of the shipped furniture's point sampling.
        trajectories_per_scene: sequences (or static pairs) per scene (paper: 20).
        length: frames per sequence (paper: 4; static pairs: always 2 views).
        batch_size: sequences per optimizer step and process (paper: 12).
        voxel_size_3d, voxel_size_4d: metres (paper: 0.02 / 0.05).
        workers: DataLoader worker processes (0: load in the main process).
        holdout_sequences: sequences of the fixed held-out batch for feature-match recall.
        objects_per_sequence: moving objects per generated sequence (default 1, the paper's Sec. 3.3;
            more is a deviation, ``source: generated`` only; see
            :func:`~fourdcontrast.data.compose.add_moving_objects`).
        crop_size: side in metres of a square crop (all heights) around the moving object, the same for
            every frame of a sequence (default ``None``: whole rooms, the paper). A deviation for batch
            variety: cropped sequences are smaller, so a step can hold more of them (raise
            ``batch_size``) and batch norm sees more rooms; see
            :func:`~fourdcontrast.data.augment.crop_sequence`. Sequences only (not the static-pair
            baselines).
    """

    source: str = "generated"
    shards: str | None = None
    scenes: int = 8
    scene_seed: int = 0
    objects_seed: int = 0
    trajectories_per_scene: int = 20
    length: int = 4
    batch_size: int = 12
    voxel_size_3d: float = 0.02
    voxel_size_4d: float = 0.05
    workers: int = 2
    holdout_sequences: int = 2
    objects_per_sequence: int = 1
    crop_size: float | None = None


@dataclass
class OptimConfig:
    """SGD and its schedule (paper, Sec. 4: lr 0.25, ×0.99 every 1000 steps, 50K steps).

    Attributes:
        lr: initial learning rate (paper: 0.25).
        momentum: SGD momentum (not in the paper; SimSiam's 0.9).
        weight_decay: (not in the paper; SimSiam's 1e-4).
        fix_pred_lr: keep the predictors' learning rate at ``lr`` while the rest decays (SimSiam's option).
        lr_decay: factor applied every ``lr_decay_every`` optimizer steps (paper: 0.99 every 1000).
        lr_decay_every: see above.
        steps: optimizer steps (paper: 50,000).
        accumulate: micro-batches per optimizer step (gradient accumulation; batch norm still sees one
            micro-batch at a time, so its statistics are those of ``batch_size`` sequences).
        grad_clip: clip the gradient norm (None: no clipping; the paper does not clip).
        schedule: ``"step"`` (default, the paper: ``lr · lr_decay ** (step // lr_decay_every)``) or
            ``"cosine"`` (linear warm-up over ``warmup_fraction`` of the run, then half a cosine to 0 at
            its end; SimSiam's schedule). The run's progress is the larger of ``step / steps`` and the
            spent fraction of ``run.time_budget_s``, so a time-budgeted run also ends at lr 0.
        warmup_fraction: fraction of the run spent warming up linearly from 0 (``"cosine"`` only; default 0).
    """

    lr: float = 0.25
    momentum: float = 0.9
    weight_decay: float = 1e-4
    fix_pred_lr: bool = False
    lr_decay: float = 0.99
    lr_decay_every: int = 1000
    steps: int = 50_000
    accumulate: int = 1
    grad_clip: float | None = None
    schedule: str = "step"
    warmup_fraction: float = 0.0


SCHEDULES = ("step", "cosine")
"""Learning-rate schedules (:attr:`OptimConfig.schedule`)."""
BUDGET_CLOCKS = ("process", "wall")
"""Clocks of :attr:`RunConfig.time_budget_s`: ``"process"`` (CPU seconds of the training process, all its
threads: fair between runs when other jobs share the cores; a 1-thread run's process time is its
wall-clock time on an idle core) or ``"wall"``."""


@dataclass
class RunConfig:
    """Bookkeeping of a run.

    Attributes:
        seed: global seed (data order, model initialisation, every random draw).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        log_every: steps between CSV / progress-bar rows.
        checkpoint_every: steps between checkpoints (one is also written at the end).
        recall_every: steps between feature-match recalls on the held-out batch (0: never; also at step 0
            and at the end).
        recall_samples: sampled correspondences per recall.
        recall_threshold: metres (5 cm).
        sync_bn: synchronise batch norm across processes under torchrun.
        amp: bfloat16 autocast on CUDA, and on CPUs with native bfloat16 (AMX / AVX-512 BF16; ignored
            with a warning on others).
        deterministic: ``torch.use_deterministic_algorithms(True, warn_only=True)`` during the run. On a
            multi-threaded CPU the accumulating index backward otherwise sums in thread order (measured:
            gradients differ between identical runs from the third step); with it, a resumed run logs
            exactly the losses of an uninterrupted one, at no measurable cost here.
        time_budget_s: stop after this many seconds of ``budget_clock`` spent in training steps (data
            loading included; held-out evaluations and checkpoints excluded), or at ``optim.steps``,
            whichever comes first (None: no budget). Kept across ``--resume``.
        budget_clock: one of :data:`BUDGET_CLOCKS` (default ``"process"``).
        threads: torch intra-op threads for the run (None: torch's default, one per core).
        collapse_rank_fraction: warn when the effective rank of the 3D backbone output or of the
            projector's output before its batch norm falls below this fraction of their width
            (:data:`~fourdcontrast.metrics.COLLAPSE_RANK_FRACTION`, 0.1).
        stop_on_collapse: also stop the run there (after writing the checkpoint).
    """

    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 500
    recall_every: int = 500
    recall_samples: int = 1000
    recall_threshold: float = 0.05
    sync_bn: bool = True
    amp: bool = False
    deterministic: bool = True
    time_budget_s: float | None = None
    budget_clock: str = "process"
    threads: int | None = None
    collapse_rank_fraction: float = COLLAPSE_RANK_FRACTION
    stop_on_collapse: bool = False


@dataclass
class PretrainConfig:
    """A whole pre-training run: method, model overrides, data, optimizer and run settings."""

    method: str = "4dcontrast"
    model: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {sorted(METHODS)}")
        if self.data.source not in DATA_SOURCES:
            raise ValueError(f"data.source must be one of {DATA_SOURCES}, got {self.data.source!r}")
        if self.data.source == "shards" and not self.data.shards:
            raise ValueError("data.source 'shards' needs data.shards (a 'fourdcontrast generate' folder)")
        for name, value in (("data.batch_size", self.data.batch_size), ("optim.steps", self.optim.steps),
                            ("optim.accumulate", self.optim.accumulate),
                            ("optim.lr_decay_every", self.optim.lr_decay_every),
                            ("run.log_every", self.run.log_every),
                            ("run.checkpoint_every", self.run.checkpoint_every)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.data.objects_per_sequence < 1:
            raise ValueError(f"data.objects_per_sequence must be >= 1, got {self.data.objects_per_sequence}")
        if self.data.objects_per_sequence > 1 and self.data.source != "generated":
            raise ValueError("data.objects_per_sequence > 1 needs data.source 'generated' (shards hold one "
                             "object per sequence)")
        if self.data.crop_size is not None and not self.data.crop_size > 0:
            raise ValueError(f"data.crop_size must be None or > 0 metres, got {self.data.crop_size}")
        if self.data.crop_size is not None and self.method_config().data == "static":
            raise ValueError(f"data.crop_size crops 4D sequences; method {self.method!r} trains on static "
                             "pairs")
        if self.optim.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {self.optim.schedule!r}")
        if not 0 <= self.optim.warmup_fraction < 1:
            raise ValueError(f"optim.warmup_fraction must be in [0, 1), got {self.optim.warmup_fraction}")
        if self.run.budget_clock not in BUDGET_CLOCKS:
            raise ValueError(f"run.budget_clock must be one of {BUDGET_CLOCKS}, "
                             f"got {self.run.budget_clock!r}")
        if self.run.time_budget_s is not None and not self.run.time_budget_s > 0:
            raise ValueError(f"run.time_budget_s must be None or > 0, got {self.run.time_budget_s}")
        if self.run.threads is not None and self.run.threads < 1:
            raise ValueError(f"run.threads must be None or >= 1, got {self.run.threads}")
        self.method_config()  # validate the model overrides now

    def method_config(self) -> MethodConfig:
        """The resolved :class:`MethodConfig`: the ``model`` section, except the fields that the method's
        switches set (:data:`~fourdcontrast.models.fourdcontrast.METHODS`), which win — so
        ``--set method=pointcontrast`` on any preset drops the 4D branch whatever the preset says."""
        unknown = set(self.model) - {f.name for f in dataclasses.fields(MethodConfig)}
        if unknown:
            raise ValueError(f"unknown model field(s) {sorted(unknown)}")
        switches = METHODS[self.method]
        return method_config(self.method, **{k: v for k, v in self.model.items() if k not in switches})

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON/checkpoint safe), with the model section fully resolved."""
        out = dataclasses.asdict(self)
        out["model"] = self.method_config().to_dict()
        return out


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "run": RunConfig}

FIELD_RANGES: dict[str, str] = {
    "data.scenes": ">= 1",
    "data.trajectories_per_scene": ">= 1",
    "data.length": ">= 2",
    "data.batch_size": ">= 1",
    "data.voxel_size_3d": "> 0",
    "data.voxel_size_4d": "> 0",
    "data.workers": ">= 0",
    "data.holdout_sequences": ">= 0",
    "optim.lr": "> 0",
    "optim.momentum": "[0, 1)",
    "optim.weight_decay": ">= 0",
    "optim.lr_decay": "(0, 1]",
    "optim.lr_decay_every": ">= 1",
    "optim.steps": ">= 1",
    "optim.accumulate": ">= 1",
    "optim.grad_clip": "> 0",
    "run.log_every": ">= 1",
    "run.checkpoint_every": ">= 1",
    "run.recall_every": ">= 0",
    "run.recall_samples": ">= 1",
    "run.recall_threshold": "> 0",
}
"""Allowed ranges of numeric fields, checked when a config is read (with the types of every field, taken
from the dataclasses' annotations: :func:`~fourdcontrast.config_fields.check_section`). A field may also
carry its range as ``field(metadata={"range": "> 0"})``."""


def _mapping(value, what: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {what} must be a mapping of fields, got {value!r}")
    return dict(value)


def config_from_dict(raw: dict, source: str = "config", overrides: list[str] | None = None) -> PretrainConfig:
    """Build a :class:`PretrainConfig` from a nested dict; ``source`` names it in errors.

    Every value is checked against its field's type (and :data:`FIELD_RANGES`); ``overrides`` (the
    ``--set`` items applied to ``raw``) let an error name the item at fault.

    Raises:
        ConfigError: one line naming ``source``, the field, the value and what is expected.
    """
    raw = _mapping(raw, "the config", source)
    overridden = override_items(overrides)
    unknown = set(raw) - {"method", "model", *SECTIONS}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; sections are method, model, "
                          f"{', '.join(SECTIONS)}")
    method = check_section(PretrainConfig, {"method": raw.get("method", "4dcontrast")}, None, source,
                           overridden=overridden)["method"]
    model = _mapping(raw.get("model"), "section 'model'", source)
    method_fields = {f.name for f in dataclasses.fields(MethodConfig)}
    typed = check_section(MethodConfig, {k: v for k, v in model.items() if k in method_fields}, "model",
                          source, overridden=overridden)
    kwargs: dict = {"method": method, "model": {**model, **typed}}  # unknown model fields: method_config()
    for name, cls in SECTIONS.items():
        values = _mapping(raw.get(name), f"section {name!r}", source)
        kwargs[name] = cls(**check_section(cls, values, name, source, FIELD_RANGES, overridden))
    try:
        return PretrainConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _parse_value(text: str, item: str = ""):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(f"--set {item or text}: the value is not valid YAML ({problem})") from exc


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``["optim.lr=0.1", "model.backbone_3d=MinkUNet14"]`` applied to a nested dict (a new one)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (raw or {}).items()}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        parts = key.split(".")
        if len(parts) == 1:
            out[parts[0]] = _parse_value(value, item)
        elif len(parts) == 2:
            out.setdefault(parts[0], {})
            if out[parts[0]] is None:
                out[parts[0]] = {}
            if not isinstance(out[parts[0]], dict):
                raise ConfigError(f"--set {item!r}: {parts[0]!r} is not a section")
            out[parts[0]] = {**out[parts[0]], parts[1]: _parse_value(value, item)}
        else:
            raise ConfigError(f"--set key must be 'field' or 'section.field', got {key!r}")
    return out


def resolve_config_path(name: str | Path, folder: Path = CONFIG_DIR) -> Path:
    """A config file path, or the name of a config shipped in ``folder`` (``paper`` →
    ``configs/pretrain/paper.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = folder / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    what = "a folder, not a config file" if path.is_dir() else "no such config file"
    raise ConfigError(f"{name}: {what} (expected a YAML file or the name of a shipped config: "
                      f"{', '.join(sorted(p.stem for p in folder.glob('*.yaml')))})")


def read_config(name: str | Path, overrides: list[str] | None = None,
                folder: Path = CONFIG_DIR) -> tuple[Path, dict]:
    """The YAML config ``name`` (a path or a name shipped in ``folder``) as a dict with the ``--set``
    overrides applied, and its path.

    Raises:
        ConfigError: (a ``ValueError``) naming the file, for a missing file, invalid YAML or a document
            that is not a mapping, or naming the ``--set`` item that is not ``key=value``.
    """
    path = resolve_config_path(name, folder)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return path, apply_overrides(raw, overrides or [])


def load_config(path: str | Path, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a YAML config (a path or a shipped name) and apply ``--set`` overrides.

    Raises:
        ConfigError: (a ``ValueError``) naming the file (and the ``--set`` item), for a missing file,
            invalid YAML, unknown fields, or values of the wrong type or out of range.
    """
    path, raw = read_config(path, overrides)
    return config_from_dict(raw, str(path), overrides)


def check_paths(config: PretrainConfig) -> None:
    """Check that the files and folders ``config`` names exist, before any expensive work starts.

    Raises:
        ConfigError: naming the field, the path and what is expected (``data.shards`` must be the
            ``--out`` folder of ``fourdcontrast generate``, holding its ``manifest.json``).
    """
    d = config.data
    if d.source == "shards" and d.shards:
        folder = Path(d.shards)
        if not folder.is_dir():
            raise ConfigError(f"data.shards = {d.shards!r}: no such folder (expected the --out folder of "
                              "'fourdcontrast generate')")
        if not (folder / "manifest.json").is_file():
            raise ConfigError(f"data.shards = {d.shards!r}: no manifest.json in that folder (expected the "
                              "--out folder of 'fourdcontrast generate')")


def dump_config(config: PretrainConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


__all__ = [
    "BUDGET_CLOCKS",
    "CONFIG_DIR",
    "DATA_SOURCES",
    "SCHEDULES",
    "DataConfig",
    "OptimConfig",
    "PretrainConfig",
    "RunConfig",
    "FIELD_RANGES",
    "apply_overrides",
    "check_paths",
    "config_from_dict",
    "dump_config",
    "load_config",
    "read_config",
    "resolve_config_path",
]
