"""Semantic segmentation downstream of pre-training: fine-tuning (the U-Net with its ``final`` 1×1 layer as
the linear head, initialised from an exported backbone: every tensor but that head must load, see
:func:`~fourdcontrast.downstream.loading.load_guarded`) and the linear probe (backbone frozen,
a per-point linear classifier on its output features). Both are evaluated the same way: voxel predictions
sliced back to every original point, metrics accumulated over scenes (:mod:`.metrics`).

Training labels are per voxel: the most frequent label among a voxel's labelled points (voxels with no
labelled point are ignored). Under the limited-annotation protocol only the chosen points are labelled.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fourdcontrast.downstream.config import FinetuneConfig
from fourdcontrast.downstream.data import LabelledDataset
from fourdcontrast.downstream.loading import HEAD_TENSORS, LoadReport, load_guarded
from fourdcontrast.downstream.metrics import IGNORE_LABEL, ConfusionAccumulator, SegmentationMetrics
from fourdcontrast.downstream.training import (  # noqa: F401  (re-exported: the segmentation API)
    FinetuneResult,
    Task,
    augment_points,
    check_data_paths,
    crop_and_augment,
    elastic_distortion,
    forward,
    input_features,
    load_init,
    poly_lr,
    prepare_training_scenes,
    recalibrate_batchnorm,
    recalibrate_on_scenes,
    run_finetune,
    voxel_labels,
)
from fourdcontrast.downstream.training import finetune as _finetune
from fourdcontrast.models.resunet import build_backbone
from fourdcontrast.records import Scene
from fourdcontrast.sparse.quantize import quantize

logger = logging.getLogger(__name__)

__all__ = [
    "SEGMENTATION",
    "ProbedNet",
    "SegmentationResult",
    "augment_points",
    "elastic_distortion",
    "evaluate_segmentation",
    "extract_features",
    "finetune",
    "linear_probe",
    "prepare_training_scenes",
    "run_segmentation",
    "segmentation_loss",
    "train_probe",
    "voxel_labels",
]


# --- voxel data -----------------------------------------------------------------------------------
# --- models ---------------------------------------------------------------------------------------
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
    return forward(model, coords, feats, device).features


@torch.no_grad()
def extract_features(model: torch.nn.Module, scenes: list[Scene], config: FinetuneConfig,
                     progress: bool = False) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Per scene, (voxel output features (M, C), point→voxel inverse (N,)), model in eval mode."""
    model.eval()
    out = []
    for s in tqdm(scenes, desc="features", leave=False, disable=not progress):
        q = quantize(s.points, config.data.voxel_size)
        f = _forward(model, [q.coordinates], [input_features(s, q.index, config.data.features,
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
def _training_sample(scene: Scene, config: FinetuneConfig, num_classes: int, rng: np.random.Generator):
    """(voxel coordinates, input features, voxel labels) of one augmented (cropped) training scene."""
    pts, idx = crop_and_augment(scene, config, rng)
    q = quantize(pts, config.data.voxel_size)
    feats = input_features(scene, idx[q.index], config.data.features, config.model.in_channels)
    return q.coordinates, feats, voxel_labels(q.inverse, scene.labels[idx], len(q), num_classes)


def segmentation_loss(output, targets: list[np.ndarray], x=None) -> torch.Tensor | None:
    """Cross-entropy of the voxel logits against the voxel labels (``IGNORE_LABEL`` ignored); None when
    no voxel of the batch is labelled."""
    logits = output.features if hasattr(output, "features") else output
    target = torch.as_tensor(np.concatenate(targets), device=logits.device)
    if not bool((target != IGNORE_LABEL).any()):
        return None
    return F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL)


class ProbedNet(torch.nn.Module):
    """LP-FT's network for semantic segmentation: the pre-trained U-Net with its own output layer (its
    output is the learned feature the linear probe reads) and, as ``final``, the probe's head
    (standardisation + linear layer) on top. ``final`` is None until :func:`fit_probe_head` fits it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.final: torch.nn.Module | None = None

    def forward(self, x):
        out = self.net(x)
        return out.replace_features(self.final(out.features))


def build_lpft_model(config: FinetuneConfig, num_classes: int,
                     state: dict | None = None) -> tuple[torch.nn.Module, LoadReport | None]:
    """:class:`ProbedNet` around the probe's backbone (every tensor of ``state`` must load, see
    :func:`probe_backbone`), trainable."""
    net, report = probe_backbone(config, state)
    for p in net.parameters():
        p.requires_grad_(True)
    return ProbedNet(net), report


def fit_probe_head(model: ProbedNet, scenes: list[Scene], config: FinetuneConfig, num_classes: int) -> None:
    """LP-FT's first stage: the linear probe (:func:`train_probe`, the benchmark's probe) on the frozen
    backbone's features of the training scenes, put in as ``model.final``.

    The backbone's batch-norm statistics are first re-estimated on ``optim.bn_recalibration`` whole
    augmented training scenes (:func:`recalibrate_batchnorm`, as after fine-tuning), so that the probe reads
    the features fine-tuning starts from. Without it a scratch network's running statistics are the
    initial 0 / 1, its evaluation-mode features ~8× smaller than the training-mode ones (std 0.15 vs 1.18
    per channel, measured on an embedded room; a pre-trained backbone: 1.64 vs 1.75), and the probe's
    standardisation then multiplies the first fine-tuning steps' features by ~8 (validation mIoU 4.6 vs
    12.9 for the paper recipe, scratch at 20 points). With ``bn_recalibration: 0`` the head is exactly the
    benchmark's linear probe of the backbone as loaded."""
    if config.optim.bn_recalibration:
        recalibrate_on_scenes(model.net, _training_sample, scenes, config, num_classes,
                              np.random.default_rng(config.run.seed + 1))
    head = train_probe(extract_features(model.net, scenes, config), scenes, num_classes, config)
    for p in head.parameters():
        p.requires_grad_(True)
    model.final = head.to(config.run.device)


SegmentationResult = FinetuneResult
"""What a segmentation run produced (the shared :class:`~.training.FinetuneResult`)."""


def finetune(config: FinetuneConfig, train: LabelledDataset, evaluation: LabelledDataset,
             state: dict | None = None, progress: bool = True) -> FinetuneResult:
    """Fine-tune the U-Net for semantic segmentation on ``train`` (under the config's protocol and recipe,
    :mod:`~fourdcontrast.downstream.training`), evaluate on ``evaluation``."""
    return _finetune(config, train, evaluation, state, progress, task=SEGMENTATION)


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
    if config.run.threads:
        torch.set_num_threads(int(config.run.threads))
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


SEGMENTATION = Task(name="segmentation", build_model=build_segmentation_model,
                    training_sample=_training_sample, loss=segmentation_loss, evaluate=evaluate_segmentation,
                    head_prefixes=("final.",), fit_head=fit_probe_head, build_lpft_model=build_lpft_model,
                    probe=linear_probe)
"""Semantic segmentation as a :class:`~fourdcontrast.downstream.training.Task`: the U-Net's ``final`` layer
is the head (paper recipe); under LP-FT the probe's head sits on the pre-trained output layer."""


# --- entry points ---------------------------------------------------------------------------------
def run_segmentation(config: FinetuneConfig, out: str | Path | None = None, progress: bool = True,
                     datasets: tuple[LabelledDataset, LabelledDataset] | None = None,
                     overwrite: bool = False) -> FinetuneResult:
    """:func:`~fourdcontrast.downstream.training.run_finetune` for semantic segmentation (fine-tuning or
    the linear probe, ``model.mode``): checks, data, the run, and ``metrics.json`` / ``log.csv`` /
    ``model.pt`` in ``out``."""
    if config.model.task != "segmentation":
        config = config.replace(model={"task": "segmentation"})
    return run_finetune(config, SEGMENTATION, out, progress, datasets, overwrite)
