"""Fine-tuning shared by every downstream task: one loop (config → data → model → optimiser → step → log),
the training augmentation and crops, the data-efficient subsets, batch-norm handling and the run folder
(the ``fourdcontrast finetune`` command line and the tasks by name are :mod:`.tasks`). A task (semantic
segmentation, instance segmentation, detection) is a :class:`Task`: how to build its network, make one
training sample, form its loss and evaluate; nothing else is written twice.

**Recipes** (``optim.recipe``; issue 27). The same recipe is used for every method at a level:

- ``paper``: a fresh head (the U-Net's ``final`` layer) trained with the backbone from the first step,
  one polynomial-decay learning rate (paper, Sec. 4) — times ``optim.backbone_lr_scale`` for the
  pre-trained (non-head) parameters (1.0, the paper, by default).
- ``lp-ft``: LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
  Out-of-Distribution"): the head is first fitted on the frozen backbone's features (for semantic
  segmentation exactly the linear probe, :func:`~.segmentation.train_probe`: standardisation + a linear
  layer on the backbone's own output features), then everything is fine-tuned from there. A task without
  its own probe fits its head with ``optim.lp_steps`` SGD steps on the frozen backbone.

**Batch norm** (``optim.bn_mode``): ``train`` (default) normalises each step by the statistics of that
step's crops — all their voxels, labelled or not, so a crop holding a handful of labelled points still
gives statistics of thousands of voxels — and, before evaluation, re-estimates the running statistics
on whole augmented training scenes with the final weights (``optim.bn_recalibration`` scenes, "precise
BN"). ``frozen`` keeps every batch norm of the backbone in evaluation mode during fine-tuning (the
pre-trained running statistics are used and kept; the affine parameters still train) and skips the
recalibration.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fourdcontrast.downstream.config import AugmentConfig, FinetuneConfig
from fourdcontrast.downstream.data import LabelledDataset, load_dataset
from fourdcontrast.downstream.loading import LoadReport, read_state_dict
from fourdcontrast.downstream.metrics import IGNORE_LABEL
from fourdcontrast.downstream.splits import limited_annotations, limited_scenes
from fourdcontrast.errors import InputError
from fourdcontrast.records import Scene
from fourdcontrast.sparse.tensor import sparse_collate
from fourdcontrast.train.run_folder import FINETUNE_RUN, prepare_run_folder

logger = logging.getLogger(__name__)

__all__ = [
    "FinetuneResult",
    "Task",
    "augment_points",
    "augment_sample",
    "check_data_paths",
    "crop_and_augment",
    "crop_indices",
    "elastic_distortion",
    "finetune",
    "input_features",
    "load_init",
    "optimizer_groups",
    "poly_lr",
    "prepare_training_scenes",
    "recalibrate_batchnorm",
    "recalibrate_on_scenes",
    "run_finetune",
    "set_train_mode",
    "voxel_labels",
]

# --- augmentation ---------------------------------------------------------------------------------
def elastic_distortion(points: np.ndarray, granularity: float, magnitude: float,
                       rng: np.random.Generator) -> np.ndarray:
    """MinkowskiEngine's elastic distortion: Gaussian noise on a grid of spacing ``granularity`` (metres),
    blurred three times by a 3-tap box filter per axis, trilinearly interpolated at the points and added
    times ``magnitude``. Returns new points."""
    from scipy.interpolate import RegularGridInterpolator
    from scipy.ndimage import uniform_filter

    lo = points.min(0)
    shape = ((points.max(0) - lo) // granularity).astype(int) + 3
    noise = rng.standard_normal((3, *shape)).astype(np.float32)
    for _ in range(2):
        for c in range(3):
            noise[c] = uniform_filter(noise[c], size=3, mode="constant")
    axes = [np.linspace(lo[d] - granularity, lo[d] + granularity * (shape[d] - 2), shape[d])
            for d in range(3)]
    interp = [RegularGridInterpolator(axes, noise[c], bounds_error=False, fill_value=0.0) for c in range(3)]
    offset = np.stack([f(points) for f in interp], axis=1)
    return (points + offset * magnitude).astype(points.dtype)


def augment_points(points: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Geometry-only training augmentation: rotation about z, small tilt about x/y, uniform scale,
    xy translation, elastic distortion (each as configured). Returns new points."""
    p = np.asarray(points, dtype=np.float64)
    centre = p.mean(0)
    p = p - centre
    rot = np.eye(3)
    if config.rotate_z:
        a = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ rot
    if config.tilt_deg:
        for axis in (0, 1):
            t = np.deg2rad(rng.uniform(-config.tilt_deg, config.tilt_deg))
            c, s = np.cos(t), np.sin(t)
            r = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) if axis == 0 else \
                np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
            rot = r @ rot
    p = p @ rot.T
    if config.scale:
        p = p * rng.uniform(*config.scale)
    if config.elastic:
        for gran, mag in config.elastic:
            p = elastic_distortion(p, float(gran), float(mag), rng)
    p = p + centre
    if config.translation:
        p[:, :2] += rng.uniform(-config.translation, config.translation, size=2)
    return p.astype(np.float32)


def crop_indices(points: np.ndarray, labels: np.ndarray, size: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the points in a ``size`` × ``size`` xy square (metres, all heights) centred on a random
    labelled point (any point when none is labelled)."""
    labelled = np.flatnonzero(labels != IGNORE_LABEL)
    centre = points[rng.choice(labelled) if len(labelled) else rng.integers(len(points))]
    inside = np.all(np.abs(points[:, :2] - centre[:2]) <= size / 2, axis=1)
    return np.flatnonzero(inside)


def crop_and_augment(scene: Scene, config: FinetuneConfig, rng: np.random.Generator,
                     quarter_turns: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One training sample's points: a crop (``data.crop``, :func:`crop_indices`), then the augmentation
    (:func:`augment_sample`).

    Returns:
        ``(points (n, 3) float32 metres, index (n,) into the scene's points)``.
    """
    idx = crop_indices(scene.points, scene.labels, config.data.crop, rng) if config.data.crop else \
        np.arange(len(scene.points))
    return augment_sample(scene.points[idx], config, rng, quarter_turns), idx


def augment_sample(points: np.ndarray, config: FinetuneConfig, rng: np.random.Generator,
                   quarter_turns: bool = False) -> np.ndarray:
    """``points`` (n, 3) metres under one draw of the training augmentation (``augment``,
    :func:`augment_points`). ``quarter_turns`` swaps the free rotation about z for one by a multiple of
    90° about the points' mean (axis-aligned boxes stay axis-aligned)."""
    pts = points
    aug = config.augment
    if quarter_turns and aug.rotate_z:
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][int(rng.integers(4))]
        centre = pts.mean(0)
        pts = (pts - centre) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32).T + centre
        aug = dataclasses.replace(aug, rotate_z=False)
    return augment_points(pts, aug, rng)


def input_features(scene: Scene, index: np.ndarray, features: str, channels: int) -> np.ndarray:
    """(len(index), channels) float32 network inputs of the scene's points ``index``: ones
    (``occupancy``, as in pre-training) or the points' colours (``color``)."""
    if features == "color":
        if scene.colors is None:
            raise ValueError(f"data.features 'color' but scene {scene.name} has no colours")
        return scene.colors[index].astype(np.float32)
    return np.ones((len(index), channels), dtype=np.float32)


def voxel_labels(inverse: np.ndarray, labels: np.ndarray, n_voxels: int, num_classes: int) -> np.ndarray:
    """(n_voxels,) the most frequent label of each voxel's labelled points (lowest class on ties;
    ``IGNORE_LABEL`` for voxels without labelled points)."""
    keep = labels != IGNORE_LABEL
    counts = np.bincount(inverse[keep] * num_classes + labels[keep], minlength=n_voxels * num_classes)
    counts = counts.reshape(n_voxels, num_classes)
    out = counts.argmax(1)
    out[counts.sum(1) == 0] = IGNORE_LABEL
    return out


def prepare_training_scenes(dataset: LabelledDataset, config: FinetuneConfig) -> list[Scene]:
    """The training scenes under the config's data-efficient protocol (limited scenes, then points)."""
    scenes = dataset.scenes
    d = config.data
    if d.limited_scenes is not None:
        keep = set(limited_scenes([s.name for s in scenes], d.limited_scenes, d.split_seed))
        scenes = [s for s in scenes if s.name in keep]
    if d.limited_points is not None:
        scenes = [dataclasses.replace(s, labels=limited_annotations(s.labels, d.limited_points, s.name,
                                                                    d.split_seed))
                  for s in scenes]
    logger.info("training on %d scenes (%s labelled points)", len(scenes),
                sum(int((s.labels != IGNORE_LABEL).sum()) for s in scenes))
    return scenes


# --- tasks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """What a downstream task adds to the shared fine-tuning loop.

    Attributes:
        name: one of :data:`~fourdcontrast.downstream.tasks.TASK_NAMES`.
        build_model: ``(config, num_classes, state | None) -> (module, LoadReport | None)``; the module's
            forward takes a :class:`~fourdcontrast.sparse.tensor.SparseTensor`. ``state`` loads into
            everything but the head (:func:`~fourdcontrast.downstream.loading.load_guarded`).
        training_sample: ``(scene, config, num_classes, rng) -> (coords (M, 3) int voxels,
            feats (M, C) float32, target)``; the target is any per-sample object the loss understands.
        loss: ``(output of model(x), targets (one per sample), x) -> scalar tensor``, or None when the
            batch holds nothing to learn from (the step is skipped).
        evaluate: ``(model, scenes, config, class_names) -> metrics`` with ``as_dict()`` and ``table()``.
        head_prefixes: parameter-name prefixes of the task's new head (everything else is the backbone:
            its learning rate is scaled by ``optim.backbone_lr_scale``, and LP-FT freezes it first).
        fit_head: the task's own linear probe for LP-FT, ``(model, scenes, config, num_classes) -> None``
            (fits the head in place on frozen features), or None (``optim.lp_steps`` SGD steps on the
            head with the backbone frozen).
        build_lpft_model: the network LP-FT fine-tunes, when it differs from ``build_model`` (semantic
            segmentation keeps the pre-trained output layer and puts the probe's head on top); None:
            ``build_model``.
        probe: the task's linear probe for ``model.mode: linear``, ``(config, train, evaluation, state,
            progress) -> FinetuneResult``, or None (the task has none).
    """

    name: str
    build_model: Callable
    training_sample: Callable
    loss: Callable
    evaluate: Callable
    head_prefixes: tuple[str, ...] = ("final.",)
    fit_head: Callable | None = None
    build_lpft_model: Callable | None = None
    probe: Callable | None = None


# --- the loop -------------------------------------------------------------------------------------
def poly_lr(base: float, step: int, steps: int, power: float) -> float:
    """``base · (1 − step/steps)^power`` (the paper's polynomial decay)."""
    return base * (1 - step / max(steps, 1)) ** power


def optimizer_groups(model: torch.nn.Module, head_prefixes: tuple[str, ...], lr: float,
                     backbone_lr_scale: float) -> list[dict]:
    """SGD parameter groups: ``{"name": "head", "params": …, "base_lr": lr}`` for the parameters whose
    name starts with one of ``head_prefixes`` and ``{"name": "backbone", …, "base_lr": lr ·
    backbone_lr_scale}`` for the rest (groups without parameters are left out)."""
    head, backbone = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.startswith(head_prefixes) else backbone).append(p)
    groups = [{"name": "head", "params": head, "base_lr": lr, "lr": lr},
              {"name": "backbone", "params": backbone, "base_lr": lr * backbone_lr_scale,
               "lr": lr * backbone_lr_scale}]
    return [g for g in groups if g["params"]]


def set_train_mode(model: torch.nn.Module, bn_mode: str, head_prefixes: tuple[str, ...] = ()) -> None:
    """``model.train()``; with ``bn_mode == "frozen"`` the backbone's batch norms (modules not under a
    head prefix) stay in evaluation mode (running statistics used and not updated)."""
    model.train()
    if bn_mode == "frozen":
        prefixes = tuple(p.rstrip(".") for p in head_prefixes)
        for name, m in model.named_modules():
            in_head = bool(prefixes) and name.startswith(prefixes)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not in_head:
                m.eval()


def forward(model: torch.nn.Module, coords: list[np.ndarray], feats: list[np.ndarray], device: str):
    """``model`` on the sparse batch of ``coords`` / ``feats`` (batch index prepended)."""
    return model(sparse_collate(coords, feats, device=device))


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, samples: list, device: str) -> None:
    """Re-estimate every batch norm's running mean / variance as the plain average over ``samples``
    (``(coords, feats, …)``, one forward each, train mode): "precise BN", on whole augmented training
    scenes. With few steps on crops the momentum-averaged statistics lag behind the weights and differ
    from whole scenes' (measured here: 60 % vs 83 % OA on the training rooms after 60 steps), so
    evaluation uses statistics of the final weights on whole scenes."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for s in samples:
        forward(model, [s[0]], [s[1]], device)
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.eval()


def recalibrate_on_scenes(model: torch.nn.Module, training_sample: Callable, scenes: list[Scene],
                          config: FinetuneConfig, num_classes: int, rng: np.random.Generator) -> None:
    """:func:`recalibrate_batchnorm` on ``optim.bn_recalibration`` training scenes drawn with ``rng``, whole
    (no crop: the statistics of whole scenes, as evaluated) and augmented by ``training_sample`` (a task's
    ``training_sample``)."""
    whole = config.replace(data={"crop": None})
    picks = rng.integers(len(scenes), size=config.optim.bn_recalibration)
    recalibrate_batchnorm(model, [training_sample(scenes[i], whole, num_classes, rng) for i in picks],
                          config.run.device)


@dataclass
class FinetuneResult:
    """What a fine-tuning or probing run produced (``seconds``: wall-clock; ``cpu_seconds``: CPU time of this
    process, all threads, which other jobs on the machine do not inflate). ``rows``: the log (step, loss,
    lr of the head, stage ``lp`` or ``ft``)."""

    metrics: Any
    rows: list[dict] = field(default_factory=list)
    load_report: LoadReport | None = None
    train_scenes: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    model: torch.nn.Module | None = None
    head: torch.nn.Module | None = None


def make_optimizer(groups: list[dict], optim) -> torch.optim.Optimizer:
    """The optimiser ``optim.optimizer`` names over ``groups`` (:func:`optimizer_groups`): SGD with
    ``optim.momentum`` or AdamW (betas 0.9 / 0.999), both with ``optim.weight_decay``."""
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=optim.weight_decay)
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=optim.momentum,
                           weight_decay=optim.weight_decay)


def _train_steps(model, task: Task, scenes: list[Scene], config: FinetuneConfig, k: int,
                 rng: np.random.Generator, groups: list[dict], steps: int, stage: str,
                 progress: bool) -> list[dict]:
    """``steps`` optimiser steps (``optim.optimizer``, gradients clipped to ``optim.grad_clip``) with
    polynomial decay of every group's ``base_lr``; returns the log rows."""
    o = config.optim
    opt = make_optimizer(groups, o)
    rows, skipped = [], 0
    bar = tqdm(range(steps), desc=f"finetune ({stage})" if stage != "ft" else "finetune", leave=False,
               disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = poly_lr(g["base_lr"], step, steps, o.poly_power)
        picks = rng.integers(len(scenes), size=o.batch_size)
        samples = [task.training_sample(scenes[i], config, k, rng) for i in picks]
        x = sparse_collate([s[0] for s in samples], [s[1] for s in samples], device=config.run.device)
        loss = task.loss(model(x), [s[2] for s in samples], x)
        if loss is None:
            skipped += 1
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], o.grad_clip)
        opt.step()
        if step % config.run.log_every == 0 or step == steps - 1:
            rows.append({"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"], "stage": stage})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if skipped:
        logger.info("%d %s steps had nothing to learn from and were skipped", skipped, stage)
    return rows


def finetune(config: FinetuneConfig, train: LabelledDataset, evaluation: LabelledDataset,
             state: dict | None = None, progress: bool = True, task: Task | None = None) -> FinetuneResult:
    """Fine-tune ``task``'s network on ``train`` under the config's data-efficient protocol and recipe
    (module docstring), evaluate on ``evaluation``. ``task`` is required
    (:func:`~fourdcontrast.downstream.tasks.get_task` finds one by name)."""
    if task is None:
        raise ValueError("finetune needs a task (fourdcontrast.downstream.tasks.get_task(name))")
    if config.run.threads:
        torch.set_num_threads(int(config.run.threads))
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(config.run.seed)
    rng = np.random.default_rng(config.run.seed)
    k = train.num_classes
    o = config.optim
    scenes = prepare_training_scenes(train, config)
    build = task.build_lpft_model if (o.recipe == "lp-ft" and task.build_lpft_model) else task.build_model
    model, report = build(config, k, state)
    model.to(config.run.device)
    rows: list[dict] = []
    if o.recipe == "lp-ft":
        if task.fit_head is not None:
            task.fit_head(model, scenes, config, k)
        elif o.lp_steps:
            frozen = [p for n, p in model.named_parameters() if not n.startswith(task.head_prefixes)]
            for p in frozen:
                p.requires_grad_(False)
            set_train_mode(model, "frozen", task.head_prefixes)
            rows += _train_steps(model, task, scenes, config, k, rng,
                                 optimizer_groups(model, task.head_prefixes, o.lr, 0.0), o.lp_steps, "lp",
                                 progress)
            for p in frozen:
                p.requires_grad_(True)
    if not any(n.startswith(task.head_prefixes) for n, _ in model.named_parameters()):
        raise ValueError(f"task {task.name!r}: no parameter under the head prefixes {task.head_prefixes}")
    set_train_mode(model, o.bn_mode, task.head_prefixes)
    groups = optimizer_groups(model, task.head_prefixes, o.lr, o.backbone_lr_scale)
    rows += _train_steps(model, task, scenes, config, k, rng, groups, o.steps, "ft", progress)
    if o.steps and o.bn_recalibration and o.bn_mode == "train":
        recalibrate_on_scenes(model, task.training_sample, scenes, config, k, rng)
    model.eval()
    metrics = task.evaluate(model, evaluation.scenes, config, evaluation.class_names)
    return FinetuneResult(metrics, rows, report, len(scenes), time.perf_counter() - start,
                          time.process_time() - cpu_start, model)


# --- entry points ---------------------------------------------------------------------------------
def load_init(config: FinetuneConfig) -> dict | None:
    """The state dict named by ``model.init`` (None for scratch).

    Raises:
        InputError: naming ``model.init`` and the file, when it is missing or not a readable state dict
            or pre-training checkpoint (truncated, foreign).
    """
    if not config.model.init:
        return None
    path = Path(config.model.init)
    expected = "expected an exported backbone .pth (export-backbone) or a pre-training checkpoint.pt"
    if not path.is_file():
        raise InputError(f"model.init = {config.model.init!r}: no such file ({expected})")
    try:
        return read_state_dict(path)
    except Exception as exc:  # truncated zip, foreign pickle, not a state dict of tensors
        problem = " ".join(str(exc).split())[:200]
        raise InputError(f"model.init = {config.model.init!r}: not a readable state dict "
                         f"({type(exc).__name__}: {problem}; {expected})") from exc


def check_data_paths(config: FinetuneConfig) -> None:
    """Check the data folders ``config`` names (``data.scannet_root`` and its split files) before any
    work starts; the embedded rooms need none.

    Raises:
        InputError: naming the field, the path and what is expected.
    """
    from fourdcontrast.downstream.data import SCANNET_SPLIT_FILES

    d = config.data
    if d.dataset != "scannet":
        return
    root = Path(d.scannet_root or "")
    field_ = f"data.scannet_root = {d.scannet_root!r}"
    if not d.scannet_root or not root.is_dir():
        raise InputError(f"{field_}: no such folder (expected ScanNet's folder holding scans/ and "
                         f"{', '.join(SCANNET_SPLIT_FILES.values())})")
    if not (root / "scans").is_dir():
        raise InputError(f"{field_}: no scans/ folder in it")
    for split in ("train", d.eval_split):
        if split not in SCANNET_SPLIT_FILES:
            raise InputError(f"data.eval_split = {split!r}: ScanNet has no labelled {split!r} split here "
                             f"(expected one of {', '.join(SCANNET_SPLIT_FILES)})")
        if not (root / SCANNET_SPLIT_FILES[split]).is_file():
            raise InputError(f"{field_}: split file {SCANNET_SPLIT_FILES[split]} missing in it")


def datasets(config: FinetuneConfig) -> tuple[LabelledDataset, LabelledDataset]:
    """The training split and the evaluation split (``data.eval_split``) the config names."""
    d = config.data
    kw = dict(rooms=d.rooms, room_seed=d.room_seed, scannet_root=d.scannet_root, store_voxel=d.store_voxel)
    if d.cache_dir is not None:
        kw["cache_dir"] = d.cache_dir or None
    return load_dataset(d.dataset, "train", **kw), load_dataset(d.dataset, d.eval_split, **kw)


def run_finetune(config: FinetuneConfig, task: Task, out: str | Path | None = None, progress: bool = True,
                 datasets_: tuple[LabelledDataset, LabelledDataset] | None = None,
                 overwrite: bool = False) -> FinetuneResult:
    """Load the initialisation and the data, fine-tune ``task`` or run its probe, and (with
    ``out``) write ``metrics.json`` (+ ``log.csv`` and ``model.pt``) atomically.

    The output folder, ``model.init`` and the data folders are checked before any data is loaded.

    Args:
        overwrite: replace a run already in ``out`` (its files are deleted first); without it such a
            folder is refused.

    Raises:
        RunFolderError: ``out`` holds a run and ``overwrite`` is false
            (:mod:`~fourdcontrast.train.run_folder`).
        InputError: ``model.init`` or a data folder is missing or unreadable.
    """
    if out is not None:
        prepare_run_folder(out, FINETUNE_RUN, overwrite=overwrite)
    state = load_init(config)
    if datasets_ is None:
        check_data_paths(config)
    train, evaluation = datasets_ or datasets(config)
    if config.model.mode == "linear":
        if task.probe is None:
            raise InputError(f"model.mode 'linear': task {task.name!r} has no linear probe "
                             "(segmentation has one)")
        result = task.probe(config, train, evaluation, state, progress=progress)
    else:
        result = finetune(config, train, evaluation, state, progress=progress, task=task)
    if out is not None:
        write_outputs(Path(out), config, result)
    return result


def _json_number(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_outputs(out: Path, config: FinetuneConfig, result: FinetuneResult) -> None:
    """``metrics.json`` (config, metrics, the confusion matrix where the task has one, what loaded),
    ``log.csv`` and ``model.pt`` in ``out``, each written atomically."""
    from fourdcontrast.io.atomic import atomic_write_bytes

    m = result.metrics
    payload = {"config": config.to_dict(), "task": config.model.task,
               "metrics": {k: _json_number(v) for k, v in m.as_dict().items()},
               "train_scenes": result.train_scenes, "seconds": result.seconds,
               "cpu_seconds": result.cpu_seconds,
               "load_report": None if result.load_report is None else {
                   "loaded": len(result.load_report.loaded), "skipped": result.load_report.skipped}}
    if getattr(m, "confusion", None) is not None:
        payload["confusion"] = np.asarray(m.confusion).tolist()
    atomic_write_bytes(out / "metrics.json", json.dumps(payload, indent=2).encode())
    if result.rows:
        lines = ["step,loss,lr,stage"] + [f"{r['step']},{r['loss']:.6f},{r['lr']:.6g},{r.get('stage', 'ft')}"
                                          for r in result.rows]
        atomic_write_bytes(out / "log.csv", ("\n".join(lines) + "\n").encode())
    buffer = io.BytesIO()
    torch.save({"model": result.model.state_dict() if result.model is not None else {},
                "head": result.head.state_dict() if result.head is not None else None}, buffer)
    atomic_write_bytes(out / "model.pt", buffer.getvalue())
