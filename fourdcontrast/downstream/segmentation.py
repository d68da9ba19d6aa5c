"""Semantic segmentation downstream of pre-training: fine-tuning (the U-Net with its ``final`` 1×1 layer as
the linear head, initialised from an exported backbone: every tensor but that head must load, see
:func:`~fourdcontrast.downstream.loading.load_guarded`) and the linear probe (backbone frozen,
a per-point linear classifier on its output features). Both are evaluated the same way: voxel predictions
sliced back to every original point, metrics accumulated over scenes (:mod:`.metrics`).

Training labels are per voxel: the most frequent label among a voxel's labelled points (voxels with no
labelled point are ignored). Under the limited-annotation protocol only the chosen points are labelled.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fourdcontrast.downstream.config import AugmentConfig, FinetuneConfig, load_finetune_config
from fourdcontrast.downstream.data import LabelledDataset, load_dataset
from fourdcontrast.downstream.loading import HEAD_TENSORS, LoadReport, load_guarded, read_state_dict
from fourdcontrast.downstream.metrics import IGNORE_LABEL, ConfusionAccumulator, SegmentationMetrics
from fourdcontrast.downstream.splits import limited_annotations, limited_scenes
from fourdcontrast.errors import InputError
from fourdcontrast.models.resunet import build_backbone
from fourdcontrast.records import Scene
from fourdcontrast.sparse.quantize import quantize
from fourdcontrast.sparse.tensor import sparse_collate
from fourdcontrast.train.run_folder import FINETUNE_RUN, prepare_run_folder

logger = logging.getLogger(__name__)

__all__ = [
    "SegmentationResult",
    "augment_points",
    "elastic_distortion",
    "evaluate_segmentation",
    "extract_features",
    "finetune",
    "linear_probe",
    "prepare_training_scenes",
    "run_segmentation",
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


# --- voxel data -----------------------------------------------------------------------------------
def voxel_labels(inverse: np.ndarray, labels: np.ndarray, n_voxels: int, num_classes: int) -> np.ndarray:
    """(n_voxels,) the most frequent label of each voxel's labelled points (lowest class on ties;
    ``IGNORE_LABEL`` for voxels without labelled points)."""
    keep = labels != IGNORE_LABEL
    counts = np.bincount(inverse[keep] * num_classes + labels[keep], minlength=n_voxels * num_classes)
    counts = counts.reshape(n_voxels, num_classes)
    out = counts.argmax(1)
    out[counts.sum(1) == 0] = IGNORE_LABEL
    return out


def _input_features(scene: Scene, index: np.ndarray, features: str, channels: int) -> np.ndarray:
    if features == "color":
        if scene.colors is None:
            raise ValueError(f"data.features 'color' but scene {scene.name} has no colours")
        return scene.colors[index].astype(np.float32)
    return np.ones((len(index), channels), dtype=np.float32)


def _crop(points: np.ndarray, labels: np.ndarray, size: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of points in a size×size xy square centred on a random labelled point."""
    labelled = np.flatnonzero(labels != IGNORE_LABEL)
    centre = points[rng.choice(labelled) if len(labelled) else rng.integers(len(points))]
    inside = np.all(np.abs(points[:, :2] - centre[:2]) <= size / 2, axis=1)
    return np.flatnonzero(inside)


def prepare_training_scenes(dataset: LabelledDataset, config: FinetuneConfig) -> list[Scene]:
    """The training scenes under the config's data-efficient protocol (limited scenes, then points)."""
    scenes = dataset.scenes
    d = config.data
    if d.limited_scenes is not None:
        keep = set(limited_scenes([s.name for s in scenes], d.limited_scenes, d.split_seed))
        scenes = [s for s in scenes if s.name in keep]
    if d.limited_points is not None:
        scenes = [Scene(s.points, colors=s.colors, instances=s.instances, name=s.name,
                        class_names=s.class_names,
                        labels=limited_annotations(s.labels, d.limited_points, s.name, d.split_seed))
                  for s in scenes]
    logger.info("training on %d scenes (%s labelled points)", len(scenes),
                sum(int((s.labels != IGNORE_LABEL).sum()) for s in scenes))
    return scenes


# --- models ---------------------------------------------------------------------------------------
def _set_threads(config: FinetuneConfig) -> None:
    if config.run.threads:
        torch.set_num_threads(int(config.run.threads))


def build_segmentation_model(config: FinetuneConfig, num_classes: int,
                             state: dict | None = None) -> tuple[torch.nn.Module, LoadReport | None]:
    """The U-Net with ``num_classes`` outputs (``final`` is the linear head), initialised from ``state``
    (every tensor but the head must load: :class:`~fourdcontrast.downstream.loading.LoadError` otherwise)."""
    model = build_backbone(config.model.backbone, config.model.in_channels, num_classes)
    report = None
    if state is not None:
        report = load_guarded(model, state, HEAD_TENSORS, source=config.model.init or "the initialisation")
    return model, report


def _forward(model: torch.nn.Module, coords: list[np.ndarray], feats: list[np.ndarray],
             device: str) -> torch.Tensor:
    x = sparse_collate(coords, feats, device=device)
    return model(x).features


@torch.no_grad()
def extract_features(model: torch.nn.Module, scenes: list[Scene], config: FinetuneConfig,
                     progress: bool = False) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Per scene, (voxel output features (M, C), point→voxel inverse (N,)), model in eval mode."""
    model.eval()
    out = []
    for s in tqdm(scenes, desc="features", leave=False, disable=not progress):
        q = quantize(s.points, config.data.voxel_size)
        f = _forward(model, [q.coordinates], [_input_features(s, q.index, config.data.features,
                                                              config.model.in_channels)], config.run.device)
        out.append((f.cpu(), q.inverse))
    return out


@torch.no_grad()
def evaluate_segmentation(model: torch.nn.Module, scenes: list[Scene], config: FinetuneConfig,
                          class_names: tuple[str, ...], head: torch.nn.Module | None = None,
                          progress: bool = False,
                          features: list[tuple[torch.Tensor, np.ndarray]] | None = None,
                          ) -> SegmentationMetrics:
    """Predict every voxel, slice the predictions back to every original point, accumulate the metrics
    over all scenes. ``head`` (linear probe) maps the model's outputs to class logits; ``features`` reuses
    :func:`extract_features` output."""
    features = features if features is not None else extract_features(model, scenes, config, progress)
    acc = ConfusionAccumulator(len(class_names), class_names=class_names)
    if head is not None:
        head.eval()
    for s, (f, inverse) in zip(scenes, features, strict=True):
        logits = head(f) if head is not None else f
        acc.add(logits.argmax(1).numpy()[inverse], s.labels)
    return acc.metrics()


# --- fine-tuning ------------------------------------------------------------------------------------
def poly_lr(base: float, step: int, steps: int, power: float) -> float:
    """``base · (1 − step/steps)^power`` (the paper's polynomial decay)."""
    return base * (1 - step / max(steps, 1)) ** power


def _training_sample(scene: Scene, config: FinetuneConfig, num_classes: int, rng: np.random.Generator):
    pts, labels = scene.points, scene.labels
    if config.data.crop:
        idx = _crop(pts, labels, config.data.crop, rng)
        pts, labels = pts[idx], labels[idx]
        colors_idx = idx
    else:
        colors_idx = np.arange(len(pts))
    pts = augment_points(pts, config.augment, rng)
    q = quantize(pts, config.data.voxel_size)
    feats = _input_features(scene, colors_idx[q.index], config.data.features, config.model.in_channels)
    return q.coordinates, feats, voxel_labels(q.inverse, labels, len(q), num_classes)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, samples: list, device: str) -> None:
    """Re-estimate every batch norm's running mean / variance as the plain average over ``samples``
    (one forward each, train mode): "precise BN", on whole augmented training scenes. With few steps on
    crops the momentum-averaged statistics lag behind the weights and differ from whole scenes' (measured
    here: 60 % vs 83 % OA on the training rooms after 60 steps), so evaluation uses statistics of the
    final weights on whole scenes."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for coords, feats, _ in samples:
        _forward(model, [coords], [feats], device)
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.eval()


@dataclass
class SegmentationResult:
    """What a fine-tuning or probing run produced (``seconds``: wall-clock; ``cpu_seconds``: CPU time of this
    process, all threads, which other jobs on the machine do not inflate)."""

    metrics: SegmentationMetrics
    rows: list[dict] = field(default_factory=list)
    load_report: LoadReport | None = None
    train_scenes: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    model: torch.nn.Module | None = None
    head: torch.nn.Module | None = None


def finetune(config: FinetuneConfig, train: LabelledDataset, evaluation: LabelledDataset,
             state: dict | None = None, progress: bool = True) -> SegmentationResult:
    """Fine-tune the U-Net on ``train`` (under the config's protocol), evaluate on ``evaluation``."""
    _set_threads(config)
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(config.run.seed)
    rng = np.random.default_rng(config.run.seed)
    k = train.num_classes
    scenes = prepare_training_scenes(train, config)
    model, report = build_segmentation_model(config, k, state)
    model.to(config.run.device)
    o = config.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    rows, skipped = [], 0
    bar = tqdm(range(o.steps), desc="finetune", leave=False, disable=not progress)
    model.train()
    for step in bar:
        lr = poly_lr(o.lr, step, o.steps, o.poly_power)
        for g in opt.param_groups:
            g["lr"] = lr
        picks = rng.integers(len(scenes), size=o.batch_size)
        samples = [_training_sample(scenes[i], config, k, rng) for i in picks]
        target = torch.as_tensor(np.concatenate([s[2] for s in samples]), device=config.run.device)
        if not bool((target != IGNORE_LABEL).any()):
            skipped += 1
            continue
        logits = _forward(model, [s[0] for s in samples], [s[1] for s in samples], config.run.device)
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.run.log_every == 0 or step == o.steps - 1:
            rows.append({"step": step, "loss": loss.item(), "lr": lr})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if skipped:
        logger.info("%d steps had no labelled voxel and were skipped", skipped)
    if o.steps and config.optim.bn_recalibration:
        whole = config.replace(data={"crop": None})  # statistics of whole scenes, as evaluated
        recalibrate_batchnorm(model, [_training_sample(scenes[i], whole, k, rng)
                                      for i in rng.integers(len(scenes), size=config.optim.bn_recalibration)],
                              config.run.device)
    metrics = evaluate_segmentation(model, evaluation.scenes, config, evaluation.class_names)
    return SegmentationResult(metrics, rows, report, len(scenes), time.perf_counter() - start,
                              time.process_time() - cpu_start, model)


# --- linear probe ---------------------------------------------------------------------------------
def probe_backbone(config: FinetuneConfig, state: dict | None) -> tuple[torch.nn.Module, LoadReport | None]:
    """The frozen backbone of the linear probe: a pre-trained U-Net keeps its own ``final`` (its output
    is the learned feature, and every tensor must load); a scratch one has ``model.feature_dim`` random
    outputs."""
    width = config.model.feature_dim
    if state is not None and "final.bias" in state:
        width = int(state["final.bias"].shape[-1])
    model = build_backbone(config.model.backbone, config.model.in_channels, width)
    report = None
    if state is not None:
        report = load_guarded(model, state, (), source=config.model.init or "the initialisation")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), report


def train_probe(train_feats: list[tuple[torch.Tensor, np.ndarray]], train_scenes: list[Scene],
                num_classes: int, config: FinetuneConfig) -> torch.nn.Module:
    """Fit standardisation + Linear(C, K) on the voxel features of the labelled voxels (full batch, Adam; at
    most ``optim.probe_max_voxels`` of them, drawn with the run's seed)."""
    xs, ys = [], []
    for (f, inverse), s in zip(train_feats, train_scenes, strict=True):
        y = voxel_labels(inverse, s.labels, len(f), num_classes)
        keep = y != IGNORE_LABEL
        xs.append(f[torch.as_tensor(keep)])
        ys.append(torch.as_tensor(y[keep]))
    x, y = torch.cat(xs), torch.cat(ys)
    if len(y) == 0:
        raise ValueError("no labelled voxel to train the linear probe on")
    g = torch.Generator().manual_seed(config.run.seed)
    cap = config.optim.probe_max_voxels
    if cap is not None and len(y) > cap:
        keep = torch.randperm(len(y), generator=g)[:cap]
        x, y = x[keep], y[keep]
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    linear = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * 0.01)
        linear.bias.zero_()
    xn = (x - mean) / std
    o = config.optim
    opt = torch.optim.Adam(linear.parameters(), lr=o.probe_lr, weight_decay=o.probe_weight_decay)
    with torch.enable_grad():
        for _ in range(o.probe_steps):
            loss = F.cross_entropy(linear(xn), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    head = torch.nn.Sequential(_Standardise(mean, std), linear)
    return head.eval()


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def linear_probe(config: FinetuneConfig, train: LabelledDataset, evaluation: LabelledDataset,
                 state: dict | None = None, progress: bool = True,
                 feature_cache: dict | None = None) -> SegmentationResult:
    """Linear probe: frozen backbone, linear classifier on its per-voxel output features.

    ``feature_cache`` (a dict, keyed by scene name) keeps extracted features between calls that share a
    backbone (the benchmark probes many protocols on one backbone)."""
    _set_threads(config)
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(config.run.seed)
    model, report = probe_backbone(config, state)
    scenes = prepare_training_scenes(train, config)

    def feats(items: list[Scene]) -> list[tuple[torch.Tensor, np.ndarray]]:
        if feature_cache is None:
            return extract_features(model, items, config, progress)
        todo = [s for s in items if s.name not in feature_cache]
        for s, f in zip(todo, extract_features(model, todo, config, progress), strict=True):
            feature_cache[s.name] = f
        return [feature_cache[s.name] for s in items]

    head = train_probe(feats(scenes), scenes, train.num_classes, config)
    metrics = evaluate_segmentation(model, evaluation.scenes, config, evaluation.class_names, head=head,
                                    features=feats(evaluation.scenes))
    return SegmentationResult(metrics, [], report, len(scenes), time.perf_counter() - start,
                              time.process_time() - cpu_start, model, head)


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


def _datasets(config: FinetuneConfig) -> tuple[LabelledDataset, LabelledDataset]:
    d = config.data
    kw = dict(rooms=d.rooms, room_seed=d.room_seed, scannet_root=d.scannet_root)
    if d.cache_dir is not None:
        kw["cache_dir"] = d.cache_dir or None
    return load_dataset(d.dataset, "train", **kw), load_dataset(d.dataset, d.eval_split, **kw)


def run_segmentation(config: FinetuneConfig, out: str | Path | None = None, progress: bool = True,
                     datasets: tuple[LabelledDataset, LabelledDataset] | None = None,
                     overwrite: bool = False) -> SegmentationResult:
    """Load the initialisation and the data, fine-tune or probe, and (with ``out``) write
    ``metrics.json`` (+ ``log.csv`` and ``model.pt`` for fine-tuning) atomically.

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
    if datasets is None:
        check_data_paths(config)
    train, evaluation = datasets or _datasets(config)
    run = finetune if config.model.mode == "finetune" else linear_probe
    result = run(config, train, evaluation, state, progress=progress)
    if out is not None:
        _write_outputs(Path(out), config, result)
    return result


def _write_outputs(out: Path, config: FinetuneConfig, result: SegmentationResult) -> None:
    import io

    from fourdcontrast.io.atomic import atomic_write_bytes

    m = result.metrics
    payload = {"config": config.to_dict(), "metrics": m.as_dict(), "confusion": m.confusion.tolist(),
               "train_scenes": result.train_scenes, "seconds": result.seconds,
               "load_report": None if result.load_report is None else {
                   "loaded": len(result.load_report.loaded), "skipped": result.load_report.skipped}}
    payload["metrics"] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                          for k, v in payload["metrics"].items()}
    text = json.dumps(payload, indent=2)
    atomic_write_bytes(out / "metrics.json", text.encode())
    if result.rows:
        lines = ["step,loss,lr"] + [f"{r['step']},{r['loss']:.6f},{r['lr']:.6g}" for r in result.rows]
        atomic_write_bytes(out / "log.csv", ("\n".join(lines) + "\n").encode())
    buffer = io.BytesIO()
    state = {"model": result.model.state_dict() if result.model is not None else {},
             "head": result.head.state_dict() if result.head is not None else None}
    torch.save(state, buffer)
    atomic_write_bytes(out / "model.pt", buffer.getvalue())


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="cpu",
                        help="a YAML file or a shipped config in configs/finetune/ (paper, cpu; default cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set model.init=backbone.pth --set model.mode=linear")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/finetune/CONFIG)")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true",
                      help="keep the finished run in OUT and print its metrics (nothing is redone)")
    runs.add_argument("--overwrite", action="store_true",
                      help="start again in an OUT that holds a run, deleting that run's files first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_finished(out: Path) -> None:
    path = out / "metrics.json"
    try:
        payload = json.loads(path.read_text())
        m = payload["metrics"]
        mode, split = payload["config"]["model"]["mode"], payload["config"]["data"]["eval_split"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable fine-tuning result ({type(exc).__name__}: {exc})") from exc

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    print(f"finetune: {out} holds a finished {mode} run ({path.name}); nothing to redo. Evaluated on "
          f"{split}: mIoU {pct(m.get('miou'))}, mAcc {pct(m.get('macc'))}, OA {pct(m.get('oa'))}")


def run_cli(args: argparse.Namespace) -> int:
    config = load_finetune_config(args.config, args.overrides)
    out = Path(args.out or Path("outputs") / "finetune" / Path(args.config).stem)
    if args.resume:
        prepare_run_folder(out, FINETUNE_RUN, resume=True)  # an error naming OUT when it holds no result
        _print_finished(out)
        return 0
    result = run_segmentation(config, out, progress=not args.no_progress, overwrite=args.overwrite)
    if result.load_report is not None:
        print(f"initialisation: {result.load_report.summary()}")
    print(f"{config.model.mode} on {result.train_scenes} training scenes, {result.seconds:.0f} s; "
          f"evaluated on {config.data.eval_split}:")
    print(result.metrics.table())
    print(f"outputs in {out}")
    return 0
