"""The downstream benchmark (``fourdcontrast benchmark downstream``): does pre-training help semantic
segmentation on the embedded rooms, and in the paper's order (scratch < 3D pre-training < 4DContrast, the
largest gains with the least data; Table 2, Fig. 4, Table 6)?

Design (issue 19):

- **Replicated pre-training.** Every method is pre-trained once per seed of the preset (``run.seed`` =
  the seed); "scratch" is a different random network per seed. Backbones are cached under
  ``CACHE/pretrain/<method>-seed<s>-<digest>/`` where ``digest`` hashes the resolved pre-training config
  (for scratch: the architecture and the seed), so a changed preset can never reuse a stale checkpoint.
  Features for the linear probe are cached in memory by the backbone file's SHA-256.
- **Equal, stated budgets.** Every pre-training gets the same time budget (``run.time_budget_s`` on
  ``run.budget_clock``, CPU seconds of the process by default) and stops there or at the step cap; the
  cost table records the steps, sequences and frames each method saw in it. Every fine-tuning gets the
  same steps and batch (picked on validation rooms by ``benchmarks/downstream_convergence.py``).
- **Seeds pair everything.** Seed ``s`` pre-trains every method with seed ``s``, draws the data-efficient
  subsets with split seed ``s`` and fine-tunes with seed ``s``; differences between methods are paired by
  seed (:mod:`.stats`).
- **Validation for tuning, test once.** The evaluation split is an argument of the grid (``split="val"``
  for tuning, ``"test"`` for the final grid) and part of every CSV row's key, so a resumed grid never
  evaluates a configuration on the test rooms twice; the report reads test rows only.
- **Loading guarded.** Fine-tuning may skip the classification head only, the probe nothing
  (:func:`~fourdcontrast.downstream.loading.load_guarded`); every row records what loaded.

Every finished task is appended to the CSV at once (atomically), so an interrupted grid resumes where it
stopped; ``--jobs N`` runs N single-threaded tasks in parallel processes. The report (markdown, plots,
cost table) is rebuilt from the CSV by :mod:`.report`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from fourdcontrast.downstream.methods import METHODS, PRETRAINING  # re-exported: the benchmark's names
from fourdcontrast.io.atomic import atomic_path, atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "CSV_BASE_FIELDS",
    "EVALUATION_SPLITS",
    "METHODS",
    "PRESETS",
    "PRETRAINING",
    "Backbone",
    "BenchmarkPreset",
    "RunCosts",
    "csv_fields",
    "estimate_grid",
    "file_digest",
    "cached_backbone",
    "finetune_cell",
    "finetune_cell_result",
    "load_rooms",
    "pretrained_backbone",
    "pretraining_digest",
    "pretraining_config",
    "probe_cells",
    "random_backbone_state",
    "read_rows",
    "run_benchmark",
    "scratch_backbone",
]

EVALUATION_SPLITS: tuple[str, ...] = ("val", "test")
"""Splits a grid can evaluate on: ``val`` for every tuning decision, ``test`` for the final grid only."""

CSV_BASE_FIELDS: tuple[str, ...] = (
    "split", "mode", "protocol", "level", "seed", "method", "miou", "miou_objects", "macc", "oa",
    "train_scenes", "finetune_steps", "loaded", "skipped", "backbone", "seconds", "cpu_seconds",
    "pretrain_budget_s")
"""CSV columns before the per-class IoU columns ``iou_<class>`` (see :func:`csv_fields`). ``seed`` is the
pre-training seed (it also draws the subsets and seeds the fine-tuning); ``pretrain_budget_s`` the
pre-training budget of the row's backbone (empty for scratch and for rows of grids older than the column);
a backbone pre-trained at the preset's long budget is the method ``<method>@<budget>s``."""

MAP_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "instance": ("map50", "map25", "cluster_boxes_map50", "cluster_boxes_map25"),
    "detection": ("map50", "map25"),
}
"""The metric columns of the instance and detection grids (fractions): mask mAP@0.5 / @0.25 and the
baseline "boxes from instance clusters" (:func:`~fourdcontrast.downstream.instance.evaluate_instances`);
box mAP@0.5 / @0.25. Followed by ``ap50_<class>`` and ``ap25_<class>`` per thing class."""


@dataclass(frozen=True)
class BenchmarkPreset:
    """Sizes of one grid (every field is our choice, sized for the machine; see :data:`PRESETS`).

    Attributes:
        methods: a subset of :data:`METHODS` (must include ``scratch``, the reference of every comparison).
        seeds: pre-training and downstream seeds (each seed pairs all methods).
        pretrain_budget_s: time budget of every pre-training, seconds of ``pretrain_budget_clock``
            (None: no budget, ``pretrain_steps`` steps each).
        pretrain_budget_clock: ``"process"`` (CPU seconds of the pre-training process) or ``"wall"``.
        pretrain_steps: step cap of every pre-training (the budget usually ends it first).
        pretrain_overrides: ``--set`` overrides applied to every pre-training config.
        rooms: rooms per split of the embedded dataset.
        probe_levels: ``(protocol, level)`` cells of the linear probe; protocol ``"scenes"`` (fraction of
            training rooms) or ``"points"`` (labelled points per room).
        finetune_levels: the fine-tuning cells.
        finetune_config: fine-tuning config in ``configs/finetune/``.
        finetune_steps: fine-tuning steps (``optim.steps``) of every run at a level not in
            ``finetune_steps_at``.
        finetune_steps_at: ``(protocol, level, steps)``: a level's own step count, the same for every
            method (picked per level on the validation rooms: less data converges in fewer steps).
        finetune_methods_at: ``(protocol, level, methods)``: a fine-tuning level run for these methods
            (labels of :meth:`labels`, long-budget ones included) only (the others show "–" there). The
            ``cpu`` preset fine-tunes on 100 % of the scenes for scratch only: that cell is the full-data
            ceiling of the sanity checks, not a comparison, and it is the grid's most expensive cell (4000
            steps).
        finetune_overrides: further ``--set`` overrides of the fine-tuning config.
        threads: torch threads per task.
        store_voxel: the rooms are kept at one point per cell of this size (metres; ``data.store_voxel``),
            None: every point.
        finetune_overrides_at: ``(protocol, level, overrides)``: ``--set`` overrides of one level only (the
            recipe the validation rule picked for that level, the same for every method).
        long_budget_s: a second, longer pre-training budget (same clock), or None.
        long_budget_methods: the methods pre-trained at ``long_budget_s`` too (resumed from their run at
            ``pretrain_budget_s`` when it is cached: the schedule depends on the step, not the budget, so
            the resumed run is the longer run); their rows are the method ``<method>@<budget>s``.
        primary: the pre-declared primary comparisons ``(a, b, mode, protocol, level)`` of the report (empty:
            the report's default, :data:`fourdcontrast.downstream.report.PRIMARY_COMPARISONS`).
        task: ``segmentation``, ``instance`` or ``detection``.
        primary_metric: the metric of the primary comparisons (empty: the task's first).
        steps_source: the results file (under ``benchmarks/results/``) whose validation-split check picked the
            fine-tuning step counts; the report cites it.
        dataset: ``embedded`` (the labelled rooms) or ``embedded-views`` (one single-view partial scan of
            each, :mod:`~fourdcontrast.downstream.views`: the SUN RGB-D stand-in of Table 5).
    """

    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain_budget_s: float | None = 300.0
    pretrain_budget_clock: str = "process"
    pretrain_steps: int = 100_000
    pretrain_overrides: tuple[str, ...] = ("data.workers=0", "run.threads=1", "run.recall_every=0",
                                           "run.checkpoint_every=50", "run.device=cpu")
    rooms: dict = field(default_factory=lambda: {"train": 100, "val": 20, "test": 20})
    probe_levels: tuple[tuple[str, float], ...] = (
        ("scenes", 0.01), ("scenes", 0.05), ("scenes", 0.10), ("scenes", 0.20), ("scenes", 1.0),
        ("points", 20), ("points", 50), ("points", 100), ("points", 200))
    finetune_levels: tuple[tuple[str, float], ...] = (("scenes", 0.01), ("points", 20), ("scenes", 1.0))
    finetune_config: str = "cpu"
    finetune_steps: int = 4000
    finetune_steps_at: tuple[tuple[str, float, int], ...] = (("scenes", 0.01, 1000), ("points", 20, 500))
    finetune_methods_at: tuple[tuple[str, float, tuple[str, ...]], ...] = (("scenes", 1.0, ("scratch",)),)
    finetune_overrides: tuple[str, ...] = ("optim.bn_recalibration=8", "optim.probe_max_voxels=100000")
    threads: int = 1
    steps_source: str = "downstream_convergence.md"
    store_voxel: float | None = None
    finetune_overrides_at: tuple[tuple[str, float, tuple[str, ...]], ...] = ()
    long_budget_s: float | None = None
    long_budget_methods: tuple[str, ...] = ()
    primary: tuple[tuple[str, str, str, str, float], ...] = ()
    task: str = "segmentation"
    primary_metric: str = ""
    dataset: str = "embedded"

    def __post_init__(self) -> None:
        if self.dataset not in ("embedded", "embedded-views"):
            raise ValueError(f"dataset must be 'embedded' or 'embedded-views', got {self.dataset!r}")
        if self.task not in ("segmentation", *MAP_TASK_FIELDS):
            raise ValueError(f"task must be one of segmentation, {', '.join(MAP_TASK_FIELDS)}; got "
                             f"{self.task!r}")
        if self.primary_metric and self.primary_metric not in (("miou",) if self.task == "segmentation"
                                                               else MAP_TASK_FIELDS[self.task]):
            raise ValueError(f"primary_metric {self.primary_metric!r} is not a metric of task {self.task!r}")
        if self.task != "segmentation" and self.probe_levels:
            raise ValueError(f"task {self.task!r} has no linear probe: probe_levels must be empty")
        if not set(self.long_budget_methods) <= set(self.methods) - {"scratch"} or (
                self.long_budget_methods and (self.long_budget_s is None or self.pretrain_budget_s is None)):
            raise ValueError(f"long_budget_methods {self.long_budget_methods} must be pre-trained methods of "
                             "the preset, with long_budget_s and pretrain_budget_s set")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or "scratch" not in self.methods:
            raise ValueError(f"preset methods must be among {METHODS} and include 'scratch'; got "
                             f"{self.methods}")
        for protocol, level in (*self.probe_levels, *self.finetune_levels):
            if protocol not in ("scenes", "points"):
                raise ValueError(f"protocol must be 'scenes' or 'points', got {protocol!r}")
            if (protocol == "scenes" and not 0 < level <= 1) or (protocol == "points" and level < 1):
                raise ValueError(f"level {level} invalid for protocol {protocol!r}")
        for protocol, level, steps in self.finetune_steps_at:
            if (protocol, level) not in self.finetune_levels or steps < 0:
                raise ValueError(f"finetune_steps_at ({protocol!r}, {level}, {steps}): not a fine-tuning "
                                 "level or negative steps")
        for protocol, level, methods in self.finetune_methods_at:
            if (protocol, level) not in self.finetune_levels or not set(methods) <= set(self.labels()):
                raise ValueError(f"finetune_methods_at ({protocol!r}, {level}, {methods}): not a fine-tuning "
                                 "level or methods not in the preset")
        if self.pretrain_budget_clock not in ("process", "wall"):
            raise ValueError(f"pretrain_budget_clock must be 'process' or 'wall', got "
                             f"{self.pretrain_budget_clock!r}")

    def labels(self) -> tuple[str, ...]:
        """The initialisations of the grid: every method, and ``<method>@<long budget>s`` for each of
        :attr:`long_budget_methods`."""
        return self.methods + tuple(long_label(m, self.long_budget_s) for m in self.long_budget_methods)

    def overrides_at(self, protocol: str, level: float) -> tuple[str, ...]:
        """``finetune_overrides_at`` of one level (empty when it has none)."""
        for p, lv, overrides in self.finetune_overrides_at:
            if p == protocol and float(lv) == float(level):
                return tuple(overrides)
        return ()

    def steps_for(self, protocol: str, level: float) -> int:
        """Fine-tuning steps at one level (``finetune_steps_at``, else ``finetune_steps``)."""
        for p, lv, steps in self.finetune_steps_at:
            if p == protocol and float(lv) == float(level):
                return int(steps)
        return self.finetune_steps

    def primary_cells(self) -> set[tuple[str, str, str, float]]:
        """``(label, mode, protocol, level)`` of every cell the pre-declared primary comparisons
        (:attr:`primary`) read: both arms of each, every seed of the grid."""
        return {(m, mode, protocol, float(level)) for a, b, mode, protocol, level in self.primary
                for m in (a, b)}

    def finetuned_methods(self, protocol: str, level: float) -> tuple[str, ...]:
        """Initialisations fine-tuned at one level (``finetune_methods_at``, else every one of
        :meth:`labels`)."""
        for p, lv, methods in self.finetune_methods_at:
            if p == protocol and float(lv) == float(level):
                return tuple(m for m in self.labels() if m in methods)
        return self.labels()


def long_label(method: str, budget_s: float | None) -> str:
    """The grid's name of ``method`` pre-trained at the long budget: ``"4dcontrast@3600s"``."""
    return f"{method}@{budget_s:g}s"


def split_label(label: str) -> tuple[str, float | None]:
    """``(method, budget in s or None)`` of a grid label (:func:`long_label`)."""
    method, _, budget = label.partition("@")
    return method, (float(budget[:-1]) if budget else None)


PRESETS: dict[str, BenchmarkPreset] = {
    "cpu": BenchmarkPreset(),
    "tiny": BenchmarkPreset(
        methods=("scratch", "pointcontrast", "4dcontrast"), seeds=(0, 1), pretrain_budget_s=None,
        pretrain_steps=1,
        pretrain_overrides=("data.scenes=2", "data.trajectories_per_scene=2", "data.holdout_sequences=1",
                            "run.recall_every=0", "data.workers=0"),
        rooms={"train": 4, "val": 1, "test": 1},
        probe_levels=(("scenes", 0.25), ("scenes", 1.0), ("points", 20)),
        finetune_levels=(("scenes", 0.25), ("points", 20)), finetune_steps=2,
        finetune_steps_at=(("points", 20, 3),), finetune_methods_at=(),
        finetune_overrides=("optim.bn_recalibration=1", "optim.probe_steps=20")),
}
"""``cpu``: the grid of issue 19 on the 2-core machine (resumable; ``--jobs 2``): 7 methods × 3 seeds,
every pre-training 300 CPU-seconds of its process on one thread (the budget of the pre-training study that
picked the ``cpu-small`` preset); linear probes at 9 levels; fine-tuning at the primary levels (1 % of the
scenes: 1000 steps; 20 points per scene: 500 steps) and at 100 % of the scenes (4000 steps, still rising
there, for scratch only: a lower bound on the full-data ceiling), the step counts picked per level on the
validation rooms (``benchmarks/results/downstream_convergence.md``); 100 / 20 / 20 training / validation /
test rooms. Estimated in that file (``--jobs 2``). ``tiny``: the same pipeline in a few
minutes (the slow test; 1 pre-training step, 2 fine-tuning steps)."""


LPFT_SCENES: tuple[str, ...] = ("optim.recipe=lp-ft",)
"""The recipe of the ``cpu-scannet`` grid at the limited-scenes levels: what the validation rule of
``benchmarks/downstream_recipes.py`` picked at 10 % of the scenes (LP-FT, mean validation mIoU over scratch,
PointContrast and 4DContrast 36.8 vs 32.8 for the paper recipe; ``downstream_recipes.md``)."""
LPFT_POINTS: tuple[str, ...] = ("optim.recipe=lp-ft", "optim.backbone_lr_scale=0.1", "optim.batch_size=8")
"""The recipe at the limited-annotation levels: what the rule picked at 20 points (LP-FT, backbone at 0.1×
the head's learning rate, 8 crops a step: 28.3 vs 14.7 for the paper recipe)."""

_SCANNET_LEVELS: tuple[tuple[str, float], ...] = (
    ("scenes", 0.01), ("scenes", 0.05), ("scenes", 0.10), ("scenes", 0.20), ("points", 20), ("points", 200),
    ("scenes", 1.0))

SCANNET_SCENE_STEPS: int = 8000
"""Fine-tuning steps of the ``cpu-scannet`` grid at its scene levels: what the amended rule of
``benchmarks/scannet_steps.py`` picked on the validation rooms at 10 % of the scenes, before any scene-level
cell ran (``scannet-size/steps_check.md``: validation mIoU of scratch / 4DContrast at 1000, 2000, 4000, 8000
steps). It replaced 1000 (the 100-room convergence study's), which left both far from converged."""

_LONG_ARMS: tuple[str, ...] = ("scratch", "pointcontrast@3600s", "4dcontrast@3600s")
"""The arms of the ScanNet-sized grids' primary comparisons: scratch and the long-budget backbones."""

PRESETS["cpu-scannet"] = BenchmarkPreset(
    methods=("scratch", "pointcontrast", "4dcontrast", "4dcontrast-paper-literal"),
    rooms={"train": 1200, "val": 60, "test": 60}, store_voxel=0.05,
    probe_levels=_SCANNET_LEVELS, finetune_levels=_SCANNET_LEVELS,
    finetune_steps=SCANNET_SCENE_STEPS,
    finetune_steps_at=(("points", 20, 500), ("points", 200, 500),
                       ("scenes", 1.0, max(4000, SCANNET_SCENE_STEPS))),
    finetune_methods_at=(("scenes", 1.0, ("scratch",)),
                         *(("scenes", lv, _LONG_ARMS) for lv in (0.01, 0.05))),
    long_budget_s=3600.0, long_budget_methods=("pointcontrast", "4dcontrast"),
    steps_source="scannet-size/steps_check.md",
    finetune_overrides_at=tuple((p, lv, LPFT_POINTS if p == "points" else LPFT_SCENES)
                                for p, lv in _SCANNET_LEVELS),
    primary=tuple(("4dcontrast@3600s", b, "finetune", p, lv) for b in ("scratch", "pointcontrast@3600s")
                  for p, lv in (("scenes", 0.10), ("scenes", 0.20), ("points", 20))))
"""``cpu-scannet``: the grid of issue 27 — ScanNet-sized (1200 / 60 / 60 rooms at 5 cm cells, so 1 % of the
scenes is 12 rooms), fine-tuned at 1, 5, 10, 20 % of the scenes and at 20 and 200 labelled points (scratch
also at 100 %: the ceiling), probed at every level; scratch, PointContrast, 4DContrast (recommended) and the
paper-literal preset (the SimSiam control, 300 s only), 3 seeds, pre-trained 300 CPU-s, and PointContrast and
4DContrast again at 3600 CPU-s (resumed from the 300-s runs). The recipe per level comes from the validation
screen ``benchmarks/downstream_recipes.py`` (:data:`LPFT_SCENES` at the scene levels, :data:`LPFT_POINTS` at
the point levels), picked by its rule before any test room was touched. Steps: :data:`SCANNET_SCENE_STEPS` at
the scene levels (100 % at least 4000), 500 at the point levels. At 1 and 5 % of the scenes only scratch and
the long-budget labels fine-tune (the 300-s labels are probed there): with 8000-step cells the full set cost
~3.6 CPU-h more, and the budget curve is read at 10 % and 20 points. Both changes were made before any
scene-level cell ran. Pre-declared primary comparisons: 4DContrast − scratch and 4DContrast − PointContrast,
fine-tuned, at 10 % and 20 % of the scenes and at 20 points, at the long budget."""


RESCREENED_SCENES: tuple[str, ...] = ("optim.recipe=paper",)
"""The scene levels' recipe of the ``cpu-scannet-rescreened`` grid: what the declared long-budget re-screen
(``benchmarks/scannet_steps.py --rescreen-long``; validation rooms, seed 0, 10 % of the scenes, 8000 steps,
the 3600-s backbones) picked: the paper's recipe (fresh head, one learning rate for every layer), mean
validation mIoU over scratch, PointContrast@3600s and 4DContrast@3600s 84.7 vs 83.4 for LP-FT, the first
grid's (``scannet-size/steps_check.md``)."""

_RESCREENED_LEVELS: tuple[tuple[str, float], ...] = (("scenes", 0.10), ("scenes", 0.20))
PRESETS["cpu-scannet-rescreened"] = replace(
    PRESETS["cpu-scannet"], methods=("scratch", "pointcontrast", "4dcontrast"), probe_levels=(),
    finetune_levels=_RESCREENED_LEVELS, finetune_steps_at=(),
    finetune_methods_at=tuple((p, lv, _LONG_ARMS) for p, lv in _RESCREENED_LEVELS),
    finetune_overrides_at=tuple((p, lv, RESCREENED_SCENES) for p, lv in _RESCREENED_LEVELS),
    primary=tuple(c for c in PRESETS["cpu-scannet"].primary if c[3:] in _RESCREENED_LEVELS))
"""``cpu-scannet-rescreened``: the second test grid that the long-budget re-screen's rule called for (declared
in ``benchmarks/scannet_steps.py`` before the re-screen ran) — the ``cpu-scannet`` grid's rooms, cached
3600-s backbones, 8000 steps and primary comparisons at 10 % and 20 % of the scenes, fine-tuned with
:data:`RESCREENED_SCENES` for scratch, PointContrast@3600s and 4DContrast@3600s, 3 seeds; no probes (they do
not depend on the recipe: ``cpu-scannet``'s). Reported beside the first grid
(``benchmarks/results/scannet-size-rescreened/``), never replacing it."""

_TABLE7_LEVELS: tuple[tuple[str, float], ...] = (
    ("scenes", 0.10), ("scenes", 0.20), ("scenes", 0.40), ("scenes", 0.80), ("scenes", 1.0))
"""The data-efficient levels of the paper's Table 7 (detection) plus all scenes."""


INSTANCE_STEPS: int = 8000
"""Fine-tuning steps of the ``cpu-instance`` grid at every level: what the declared ladder rule of
``benchmarks/scannet_steps.py --task instance`` took (validation rooms, 10 % of the scenes, seed 0: mAP@0.5
mean of scratch and 4DContrast 38.1 / 69.1 / 89.3 / 95.4 at 1000 / 2000 / 4000 / 8000 steps — still rising,
so the ladder's last; ``benchmarks/results/instance/steps_check_instance.md``), set before any test cell of
the grid ran."""
DETECTION_STEPS: int = 8000
"""Fine-tuning steps of the ``cpu-detection`` grid at every level: what the declared ladder rule of
``benchmarks/scannet_steps.py --task detection`` took (validation rooms, 10 % of the scenes, seed 0: mAP@0.5
mean of scratch and 4DContrast 23.3 / 38.0 / 67.8 / 77.9 at 1000 / 2000 / 4000 / 8000 steps — still rising,
so the ladder's last; ``benchmarks/results/detection/steps_check_detection.md``), set before any test cell of
the grid ran."""


def _map_task_preset(task: str, primary_metric: str, finetune_steps: int) -> BenchmarkPreset:
    scannet = PRESETS["cpu-scannet"]
    every = ("scratch", "pointcontrast", "4dcontrast", "4dcontrast-paper-literal")
    return BenchmarkPreset(
        task=task, primary_metric=primary_metric, methods=every, rooms=dict(scannet.rooms),
        store_voxel=scannet.store_voxel,
        probe_levels=(), finetune_levels=_TABLE7_LEVELS, finetune_config=f"cpu-{task}",
        finetune_steps=finetune_steps, finetune_steps_at=(), finetune_overrides=("optim.bn_recalibration=8",),
        finetune_methods_at=tuple(("scenes", lv, ("scratch", "4dcontrast")) for lv in (0.40, 0.80, 1.0)),
        long_budget_s=scannet.long_budget_s, long_budget_methods=scannet.long_budget_methods,
        steps_source=f"{task}/steps_check_{task}.md",
        primary=tuple(("4dcontrast@3600s", b, "finetune", "scenes", lv)
                      for b in ("scratch", "pointcontrast@3600s") for lv in (0.10, 0.20)))


PRESETS["cpu-instance"] = _map_task_preset("instance", "map50", INSTANCE_STEPS)
PRESETS["cpu-detection"] = _map_task_preset("detection", "map50", DETECTION_STEPS)
"""``cpu-instance`` / ``cpu-detection``: the grids of issue 28 — instance segmentation (PointGroup-style,
``configs/finetune/cpu-instance.yaml``) and detection (VoteNet-style, ``cpu-detection.yaml``),
:data:`INSTANCE_STEPS` / :data:`DETECTION_STEPS` steps at every level, on the ``cpu-scannet`` rooms (1200 /
60 / 60 at 5 cm cells) and its pre-trainings (the same configs and budgets, so the semantic grid's cached
backbones are reused): scratch, PointContrast, 4DContrast and the paper-literal preset at 10 % and 20 % of the
scenes (the levels where Table 7 shows the gains), scratch and 4DContrast also at 40, 80 and 100 % (Table 7's
other levels and the ceiling); PointContrast and 4DContrast again at 3600 CPU-s at 10 % and 20 %. No linear
probe (the task heads are not linear). Pre-declared primary comparisons: 4DContrast − scratch and 4DContrast −
PointContrast at 10 % and 20 % of the scenes, long budget; metric mAP@0.5 (the paper's;
``primary_metric``)."""


PRESETS["cpu-views"] = replace(
    PRESETS["cpu-detection"], dataset="embedded-views", finetune_config="cpu-detection-views",
    rooms={"train": 1200, "val": 100, "test": 200}, finetune_levels=(("scenes", 1.0),), finetune_steps=3000,
    finetune_methods_at=(), steps_source="task_setups.md",
    primary=tuple(("4dcontrast@3600s", b, "finetune", "scenes", 1.0)
                  for b in ("scratch", "pointcontrast@3600s")))
"""``cpu-views``: the out-of-domain detection grid of issue 28 (the paper's Table 5, SUN RGB-D) — detection
fine-tuned on one single-view partial scan of each of 1200 training rooms and tested on views of 200 test
rooms (``configs/finetune/cpu-detection-views.yaml``; :mod:`~fourdcontrast.downstream.views`), from the
backbones that the ``cpu-scannet`` grid pre-trained on whole-room sequences (the same configs and budgets):
every method and both budgets at 100 % of the views (Table 5 fine-tunes on all of SUN RGB-D), 3000 steps (what
the validation screen's rule picked of 1000 and 3000: from scratch 3.8 / 18.9 vs 12.4 / 48.5 mAP@0.5 / @0.25
on the validation views, ``benchmarks/task_setups.py --task views``; still rising at 3000). Pre-declared
primary comparisons: 4DContrast − scratch and 4DContrast − PointContrast, long budget, mAP@0.5."""


# --- backbones ------------------------------------------------------------------------------------
@dataclass
class Backbone:
    """An initialisation of the 3D U-Net: a cached backbone file and what it cost.

    Attributes:
        method: a key of :data:`METHODS`.
        seed: its pre-training seed (scratch: the seed of the random initialisation).
        path: the exported backbone (``backbone.pth``, a plain state dict).
        digest: SHA-256 (hex, 16 characters) of that file: the key of its feature cache.
        cost: the pre-training record (``cost.json``; empty for scratch).
        budget_s: its pre-training budget (None: scratch or no budget).

    ``method`` is the grid's label: ``<method>@<budget>s`` at the long budget (:func:`long_label`).
    """

    method: str
    seed: int
    path: Path
    digest: str
    cost: dict = field(default_factory=dict)
    budget_s: float | None = None


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


DIGEST_IGNORED_MODEL_FIELDS: tuple[str, ...] = ("fused_pair_losses",)
"""``model`` fields left out of a pre-training config's digest: switches that change no result (tested
equal to the unswitched path) and that came after the first caches, so caches made before them stay
valid. (The older memory switches are in the digest: removing them now would invalidate those caches.)"""


DIGEST_NEW_FIELD_DEFAULTS: dict[str, dict] = {"data": {"crop_size": None}}
"""Fields added after the first caches, per section, with the default that leaves results as they were: left
out of the digest while at that default (so existing caches and grids stay valid), in it otherwise."""


def pretraining_digest(config) -> str:
    """The cache key of a resolved pre-training config (:data:`DIGEST_IGNORED_MODEL_FIELDS` left out, and
    :data:`DIGEST_NEW_FIELD_DEFAULTS` while at their default)."""
    data = config.to_dict()
    data["model"] = {k: v for k, v in data["model"].items() if k not in DIGEST_IGNORED_MODEL_FIELDS}
    for section, defaults in DIGEST_NEW_FIELD_DEFAULTS.items():
        data[section] = {k: v for k, v in data[section].items() if k not in defaults or v != defaults[k]}
    return _dict_digest(data)


def _dict_digest(data: dict, length: int = 12) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def random_backbone_state(backbone: str, in_channels: int, out_channels: int, seed: int) -> dict:
    """The state dict of a freshly initialised U-Net ``backbone`` under ``torch.manual_seed(seed)`` (the
    global generator is left as it was): the "scratch" initialisation of seed ``seed``."""
    import torch

    from fourdcontrast.models.resunet import build_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_backbone(backbone, in_channels, out_channels)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _save_state(path: Path, state: dict) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _finetune_base(preset: BenchmarkPreset, steps: int | None = None, extra: tuple[str, ...] = ()):
    from fourdcontrast.downstream.config import load_finetune_config

    steps = preset.finetune_steps if steps is None else steps
    overrides = [f"optim.steps={steps}", *preset.finetune_overrides, *extra]
    return load_finetune_config(preset.finetune_config, overrides).replace(
        data={"rooms": dict(preset.rooms), "store_voxel": preset.store_voxel})


def scratch_backbone(seed: int, preset: BenchmarkPreset, cache: Path) -> Backbone:
    """The random network of seed ``seed`` (architecture of the fine-tuning config: backbone, input
    channels, ``model.feature_dim`` outputs), written once to ``cache/pretrain/scratch-seed<s>-<digest>``."""
    m = _finetune_base(preset).model
    spec = {"backbone": m.backbone, "in_channels": m.in_channels, "out_channels": m.feature_dim, "seed": seed}
    out = Path(cache) / "pretrain" / f"scratch-seed{seed}-{_dict_digest(spec)}"
    path = out / "backbone.pth"
    if not path.is_file():
        _save_state(path, random_backbone_state(m.backbone, m.in_channels, m.feature_dim, seed))
    cost = {"method": "scratch", "seed": seed, "steps": 0, "sequences": 0, "frames": 0, **spec}
    return Backbone("scratch", seed, path, file_digest(path), cost)


def pretraining_config(method: str, seed: int, preset: BenchmarkPreset, budget_s: float | None = None):
    """The resolved pre-training config of ``method`` with seed ``seed`` under the preset's budget (or
    ``budget_s``, same clock).

    Raises:
        ValueError: for scratch or an unknown method, or a config that does not load (naming it).
    """
    from fourdcontrast.train.config import load_config

    if method not in PRETRAINING:
        raise ValueError(f"{method!r} has no pre-training; methods with one: {sorted(PRETRAINING)}")
    name, own_method = PRETRAINING[method]
    overrides = ([f"method={own_method}"] if own_method else []) + [
        f"run.seed={seed}", f"optim.steps={preset.pretrain_steps}", *preset.pretrain_overrides]
    budget = preset.pretrain_budget_s if budget_s is None else budget_s
    if budget is not None:
        overrides += [f"run.time_budget_s={budget}", f"run.budget_clock={preset.pretrain_budget_clock}"]
    return load_config(name, overrides)


def _frames_per_sample(config) -> int:
    """Frames in one training sample: 2 views of a static pair, ``data.length`` frames of a sequence."""
    return 2 if config.method_config().data == "static" else int(config.data.length)


def _pretrain_folder(method: str, seed: int, preset: BenchmarkPreset, cache: Path,
                     budget_s: float | None = None) -> tuple[Path, object]:
    config = pretraining_config(method, seed, preset, budget_s)
    return Path(cache) / "pretrain" / f"{method}-seed{seed}-{pretraining_digest(config)}", config


def pretrained_backbone(method: str, seed: int, preset: BenchmarkPreset, cache: Path,
                        progress: bool = False, budget_s: float | None = None) -> Backbone:
    """Pre-train ``method`` with seed ``seed`` under the preset's budget, or ``budget_s`` (resuming an
    interrupted run of the same config, or, for a longer budget, the finished run at the preset's budget:
    its checkpoint and log are copied in and resumed, which gives the longer run because the schedule
    depends on the step and the budget only stops it) and export its 3D backbone; cached by (method,
    seed, config digest). The folder is claimed while it is pre-trained (:func:`claim_folder`)."""
    out, config = _pretrain_folder(method, seed, preset, cache, budget_s)
    digest = pretraining_digest(config)
    label = method if budget_s is None else long_label(method, budget_s)
    cost_file, path = out / "cost.json", out / "backbone.pth"
    if not (path.is_file() and cost_file.is_file()):
        with claim_folder(out):
            if not (path.is_file() and cost_file.is_file()):  # another grid may have finished it meanwhile
                _pretrain_into(out, config, method, seed, preset, cache, budget_s, label, digest, progress)
    return Backbone(label, seed, path, file_digest(path), json.loads(cost_file.read_text()),
                    preset.pretrain_budget_s if budget_s is None else budget_s)


@contextlib.contextmanager
def claim_folder(folder: Path):
    """Hold ``folder/pretraining.lock`` (holding this process's id) while pre-training into ``folder``, so
    that two grids sharing a cache never pre-train the same backbone at once; a lock left by a process that
    no longer runs is taken over.

    Raises:
        RuntimeError: a running process holds the folder (naming it and the process id).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "pretraining.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _running(holder):
                raise RuntimeError(f"{folder} is being pre-trained by process {holder} (another grid sharing "
                                   "this cache); wait for it to finish or use another --cache") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise RuntimeError(f"could not claim {folder} for pre-training ({lock} keeps reappearing)")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pretrain_into(out: Path, config, method: str, seed: int, preset: BenchmarkPreset, cache: Path,
                   budget_s: float | None, label: str, digest: str, progress: bool) -> None:
    import shutil

    from fourdcontrast.train.pretrain import CHECKPOINT, export_backbone, pretrain, read_log

    cost_file, path = out / "cost.json", out / "backbone.pth"
    shorter = _longest_shorter_run(method, seed, preset, cache, budget_s)
    if budget_s is not None and not (out / CHECKPOINT).is_file() and shorter is not None:
        shorter, shorter_budget = shorter
        logger.info("continuing %s seed %d from its run at %s s (%s)", method, seed, shorter_budget, shorter)
        for name in (CHECKPOINT, "log.csv"):
            if (shorter / name).is_file():
                with atomic_path(out / name) as tmp:
                    shutil.copy2(shorter / name, tmp)
    resume = (out / CHECKPOINT).is_file()
    logger.info("pre-training %s seed %d into %s%s", method, seed, out, " (resuming)" if resume else "")
    wall, cpu = time.perf_counter(), time.process_time()
    pretrain(config, out, resume=resume, progress=progress, overwrite=not resume)  # no checkpoint: anew
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    export_backbone(out / CHECKPOINT, path)
    log = read_log(out / "log.csv")
    steps = int(max((r["step"] for r in log if r.get("step") is not None), default=0))
    budget_used = max((r["budget_s"] for r in log if r.get("budget_s") is not None), default=None)
    samples = steps * config.data.batch_size * config.optim.accumulate
    cost = {"method": label, "seed": seed, "config": PRETRAINING[method][0],
            "pretrain_method": config.method, "config_digest": digest, "steps": steps,
            "batch_size": config.data.batch_size * config.optim.accumulate,
            "frames_per_sample": _frames_per_sample(config), "sequences": samples,
            "frames": samples * _frames_per_sample(config),
            "budget_s": preset.pretrain_budget_s if budget_s is None else budget_s,
            "budget_clock": preset.pretrain_budget_clock,
            "budget_used_s": budget_used, "step_cap": preset.pretrain_steps,
            "wall_s": wall, "cpu_s": cpu, "resumed": resume}
    atomic_write_bytes(cost_file, json.dumps(cost, indent=2).encode())


def restore_pretraining(label: str, seed: int, preset: BenchmarkPreset, cache: str | os.PathLike,
                        record: dict, digest: str | None = None, progress: bool = False) -> Backbone:
    """Re-create, exactly, a pre-training that a grid ran and recorded, into the cache folder the grid
    looks in (a fresh machine has lost the cache; the committed rows and cost records have not).

    A budgeted pre-training stops when its clock runs out, at a step count that depends on the machine and
    its load, so running it again gives another network. But with the ``"step"`` schedule nothing else
    depends on the budget (the learning rate follows the step, the data stream and the random state follow
    the seed and the step), so pre-training the same config with no budget to the recorded step count gives
    the recorded network, bit for bit (``run.deterministic``, one thread). ``digest`` (the ``backbone``
    column of the grid's rows) checks it.

    Args:
        label: a pre-trained grid label, e.g. ``"4dcontrast"`` or ``"4dcontrast@3600s"``.
        seed: pre-training seed.
        preset: the grid's preset.
        cache: the grid's backbone cache (``--cache``).
        record: the label's entry of the grid's ``downstream_pretrain_cost.json`` (its ``steps`` and
            ``config_digest`` are used; the entry becomes the restored run's ``cost.json``, with a
            ``restored`` field holding the restoring run's own cost).
        digest: expected :func:`file_digest` of the backbone (None: not checked).
        progress: show a progress bar.

    Returns:
        the backbone, as the grid would load it.

    Raises:
        ValueError: the record is not this config's (other digest), the schedule is not ``"step"``, or the
            restored backbone's digest differs from ``digest`` (it is then kept as
            ``backbone.mismatch.pth`` and nothing is installed).
    """
    from fourdcontrast.train.pretrain import CHECKPOINT, export_backbone, pretrain

    method, budget = split_label(label)
    out, config = _pretrain_folder(method, seed, preset, Path(cache), budget)
    config_digest = pretraining_digest(config)
    if record.get("config_digest") != config_digest:
        raise ValueError(f"the cost record of {label} seed {seed} names config {record.get('config_digest')}"
                         f", but this preset's config is {config_digest}: not the same pre-training")
    if config.optim.schedule != "step":
        raise ValueError(f"{label} seed {seed}: schedule {config.optim.schedule!r} depends on the time "
                         "budget; only the 'step' schedule can be restored from a step count")
    cost_file, path = out / "cost.json", out / "backbone.pth"
    if not (path.is_file() and cost_file.is_file()):
        steps = int(record["steps"])
        config.run.time_budget_s = None
        config.optim.steps = steps
        with claim_folder(out):
            logger.info("restoring %s seed %d: pre-training to step %d into %s", label, seed, steps, out)
            wall, cpu = time.perf_counter(), time.process_time()
            pretrain(config, out, resume=(out / CHECKPOINT).is_file(), progress=progress,
                     overwrite=not (out / CHECKPOINT).is_file())
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            export_backbone(out / CHECKPOINT, path)
            got = file_digest(path)
            if digest is not None and got != digest:
                path.replace(out / "backbone.mismatch.pth")
                raise ValueError(f"restoring {label} seed {seed} to step {steps} gave backbone {got}, "
                                 f"not the recorded {digest} (kept as {out / 'backbone.mismatch.pth'}): the "
                                 "run is not reproducible here (other torch build or thread count?)")
            cost = {**record, "restored": {"steps": steps, "wall_s": wall, "cpu_s": cpu,
                                           "machine": machine_description()}}
            atomic_write_bytes(cost_file, json.dumps(cost, indent=2).encode())
    backbone = Backbone(label, seed, path, file_digest(path), json.loads(cost_file.read_text()),
                        preset.pretrain_budget_s if budget is None else budget)
    if digest is not None and backbone.digest != digest:
        raise ValueError(f"{path} (digest {backbone.digest}) is not the recorded backbone of {label} seed "
                         f"{seed} ({digest}); remove its folder {out} to restore it")
    return backbone


def _longest_shorter_run(method: str, seed: int, preset: BenchmarkPreset, cache: Path,
                         budget_s: float | None) -> tuple[Path, float | None] | None:
    """``(folder, budget)`` of the longest finished pre-training of ``method`` and ``seed`` in ``cache`` at a
    budget of the preset (its own, or :attr:`~BenchmarkPreset.long_budget_s` for a long-budget method) below
    ``budget_s``: the run a longer one continues (e.g. 10800 s from the 3600-s run, not the 300-s one); None
    when there is none."""
    from fourdcontrast.train.pretrain import CHECKPOINT

    if budget_s is None or preset.pretrain_budget_s is None:
        return None
    budgets = [None]
    if method in preset.long_budget_methods and preset.long_budget_s is not None and \
            preset.long_budget_s < budget_s:
        budgets.append(preset.long_budget_s)
    for b in reversed(budgets):  # the longest first
        folder, _ = _pretrain_folder(method, seed, preset, cache, b)
        if (folder / CHECKPOINT).is_file() and (folder / "cost.json").is_file():
            return folder, preset.pretrain_budget_s if b is None else b
    return None


def _backbone(label: str, seed: int, preset: BenchmarkPreset, cache: Path,
              progress: bool = False) -> Backbone:
    if label == "scratch":
        return scratch_backbone(seed, preset, cache)
    method, budget = split_label(label)
    return pretrained_backbone(method, seed, preset, cache, progress, budget)


def backbone_is_cached(label: str, seed: int, preset: BenchmarkPreset, cache: str | os.PathLike) -> bool:
    """Whether the backbone of ``label`` and ``seed`` loads from ``cache`` without computing a pre-training
    (scratch: always; its random network costs milliseconds)."""
    if label == "scratch":
        return True
    method, budget = split_label(label)
    out, _ = _pretrain_folder(method, seed, preset, Path(cache), budget)
    return (out / "backbone.pth").is_file() and (out / "cost.json").is_file()


# --- cost estimate --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunCosts:
    """Measured CPU seconds of one thread, from which :func:`estimate_grid` predicts a grid's time.

    Attributes:
        finetune_per_step: per fine-tuning step (the preset's batch).
        finetune_fixed: per fine-tuning run besides its steps (loading, precise BN, evaluation).
        probe_per_backbone: per backbone, all probe levels (feature extraction included).
        pretrain_overhead: per pre-training besides its budget (start-up, checkpoints, export).
    """

    finetune_per_step: float
    finetune_fixed: float
    probe_per_backbone: float
    pretrain_overhead: float


def estimate_grid(preset: BenchmarkPreset, costs: RunCosts, jobs: int = 2, efficiency: float = 0.9) -> dict:
    """CPU seconds of each part of the grid and the wall-clock time with ``jobs`` single-threaded tasks in
    parallel, each running at ``efficiency`` of an idle core (an assumption: 2 jobs share caches and memory
    bandwidth). The pre-training budget is taken as CPU seconds (exact for the process clock)."""
    if preset.pretrain_budget_s is None:
        raise ValueError("estimate_grid needs a preset with a pre-training time budget")
    seeds, pretrained = len(preset.seeds), [m for m in preset.methods if m != "scratch"]
    pretrain = len(pretrained) * seeds * (preset.pretrain_budget_s + costs.pretrain_overhead)
    if preset.long_budget_methods:  # continued from the short runs: only the extra budget
        pretrain += len(preset.long_budget_methods) * seeds * (
            preset.long_budget_s - preset.pretrain_budget_s + costs.pretrain_overhead)
    runs = [(len(preset.finetuned_methods(p, lv)) * seeds, preset.steps_for(p, lv))
            for p, lv in preset.finetune_levels]
    n_ft = sum(n for n, _ in runs)
    finetune = sum(n * (costs.finetune_fixed + costs.finetune_per_step * steps) for n, steps in runs)
    probe = len(preset.labels()) * seeds * costs.probe_per_backbone
    cpu = pretrain + finetune + probe
    return {"pretrain_runs": (len(pretrained) + len(preset.long_budget_methods)) * seeds,
            "pretrain_cpu_s": pretrain, "finetune_runs": n_ft, "finetune_cpu_s": finetune,
            "probe_runs": len(preset.labels()) * seeds * len(preset.probe_levels),
            "probe_cpu_s": probe, "cpu_s": cpu, "wall_s": cpu / (max(jobs, 1) * efficiency)}


# --- the cells ------------------------------------------------------------------------------------
def load_rooms(preset: BenchmarkPreset, split: str, room_cache: str | os.PathLike | None = None):
    """The training rooms and the evaluation rooms of ``split`` (one of :data:`EVALUATION_SPLITS`), or
    their single views (``dataset: embedded-views``): the only place the benchmark reads evaluation rooms,
    so every row knows which split scored it."""
    from fourdcontrast.downstream.data import ROOM_CACHE_DIR, load_dataset

    if split not in EVALUATION_SPLITS:
        raise ValueError(f"split must be one of {EVALUATION_SPLITS}, got {split!r}")
    rc = ROOM_CACHE_DIR if room_cache is None else (Path(room_cache) if room_cache else None)
    kw = {"rooms": preset.rooms, "cache_dir": rc, "store_voxel": preset.store_voxel}
    return load_dataset(preset.dataset, "train", **kw), load_dataset(preset.dataset, split, **kw)


def csv_fields(class_names: tuple[str, ...], task: str = "segmentation") -> tuple[str, ...]:
    """The CSV columns: :data:`CSV_BASE_FIELDS` and one ``iou_<class>`` per class (segmentation); for
    instance and detection the same columns with :data:`MAP_TASK_FIELDS` in place of the IoU metrics and
    ``ap50_<class>``, ``ap25_<class>`` per thing class."""
    if task == "segmentation":
        return CSV_BASE_FIELDS + tuple(f"iou_{n}" for n in class_names)
    from fourdcontrast.downstream.instance import thing_ids

    things = [class_names[i] for i in thing_ids(class_names)]
    base = tuple(f for f in CSV_BASE_FIELDS if f not in ("miou", "miou_objects", "macc", "oa"))
    i = base.index("method") + 1
    return (base[:i] + MAP_TASK_FIELDS[task] + base[i:] + tuple(f"ap50_{n}" for n in things)
            + tuple(f"ap25_{n}" for n in things))


def _cell_config(base, mode: str, protocol: str, level: float, seed: int):
    data = {"limited_scenes": None, "limited_points": None, "split_seed": seed}
    if not (protocol == "scenes" and level == 1):
        data["limited_scenes" if protocol == "scenes" else "limited_points"] = (
            float(level) if protocol == "scenes" else int(level))
    return base.replace(data=data, model={"mode": mode}, run={"seed": seed})


def _row(result, *, split: str, mode: str, protocol: str, level: float, seed: int, method: str,
         backbone: Backbone, steps: int, class_names: tuple[str, ...]) -> dict:
    m, report = result.metrics, result.load_report
    row = {"split": split, "mode": mode, "protocol": protocol, "level": f"{level:g}", "seed": seed,
           "method": method, "train_scenes": result.train_scenes,
           "finetune_steps": steps if mode == "finetune" else 0,
           "loaded": len(report.loaded) if report else 0, "skipped": len(report.skipped) if report else 0,
           "backbone": backbone.digest, "seconds": f"{result.seconds:.1f}",
           "cpu_seconds": f"{result.cpu_seconds:.1f}",
           "pretrain_budget_s": "" if backbone.budget_s is None or backbone.method == "scratch"
           else f"{backbone.budget_s:g}"}
    if hasattr(m, "map50"):  # instance / detection: MapMetrics
        row.update({k: f"{v:.4f}" for k, v in {"map50": m.map50, "map25": m.map25, **m.extra}.items()})
        row.update({f"ap50_{n}": f"{v:.4f}" for n, v in m.ap50.items()})
        row.update({f"ap25_{n}": f"{v:.4f}" for n, v in m.ap25.items()})
        return row
    row.update({"miou": f"{m.miou:.4f}", "miou_objects": f"{m.miou_without():.4f}", "macc": f"{m.macc:.4f}",
                "oa": f"{m.overall_accuracy:.4f}"})
    row.update({f"iou_{n}": f"{v:.4f}" for n, v in zip(class_names, m.iou, strict=True)})
    return row


def probe_cells(backbone: Backbone, levels: list[tuple[str, float]], seed: int, preset: BenchmarkPreset,
                split: str, datasets=None, room_cache=None, feature_cache: dict | None = None) -> list[dict]:
    """Linear probes of ``backbone`` at ``levels``, one row each.

    ``feature_cache`` maps a backbone's :attr:`Backbone.digest` to its features by room name; only this
    backbone's entry is kept (the others are dropped to bound memory), so no two backbones ever share
    features."""
    from fourdcontrast.downstream.loading import read_state_dict
    from fourdcontrast.downstream.segmentation import linear_probe

    train, evaluation = datasets or load_rooms(preset, split, room_cache)
    base = _finetune_base(preset)
    state = {k: v.float() for k, v in read_state_dict(backbone.path).items()}
    feature_cache = {} if feature_cache is None else feature_cache
    for digest in [d for d in feature_cache if d != backbone.digest]:
        del feature_cache[digest]
    features = feature_cache.setdefault(backbone.digest, {})
    rows = []
    for protocol, level in levels:
        cfg = _cell_config(base, "linear", protocol, level, seed)
        result = linear_probe(cfg, train, evaluation, state, progress=False, feature_cache=features)
        rows.append(_row(result, split=split, mode="linear", protocol=protocol, level=level, seed=seed,
                         method=backbone.method, backbone=backbone, steps=0,
                         class_names=evaluation.class_names))
    return rows


def finetune_cell_result(backbone: Backbone, protocol: str, level: float, seed: int, preset: BenchmarkPreset,
                         split: str, datasets=None, room_cache=None) -> tuple[object, dict]:
    """One fine-tuning of ``backbone`` (every tensor but the head loaded) for the preset's task at one
    level: ``(FinetuneResult, its row)`` (the result holds the fine-tuned network)."""
    from fourdcontrast.downstream.loading import read_state_dict
    from fourdcontrast.downstream.tasks import get_task
    from fourdcontrast.downstream.training import finetune

    train, evaluation = datasets or load_rooms(preset, split, room_cache)
    base = _finetune_base(preset, preset.steps_for(protocol, level), preset.overrides_at(protocol, level))
    cfg = _cell_config(base, "finetune", protocol, level, seed)
    state = {k: v.float() for k, v in read_state_dict(backbone.path).items()}
    result = finetune(cfg, train, evaluation, state, progress=False, task=get_task(preset.task))
    return result, _row(result, split=split, mode="finetune", protocol=protocol, level=level, seed=seed,
                        method=backbone.method, backbone=backbone, steps=cfg.optim.steps,
                        class_names=evaluation.class_names)


def finetune_cell(backbone: Backbone, protocol: str, level: float, seed: int, preset: BenchmarkPreset,
                  split: str, datasets=None, room_cache=None) -> dict:
    """The row of :func:`finetune_cell_result`."""
    return finetune_cell_result(backbone, protocol, level, seed, preset, split, datasets, room_cache)[1]


def cached_backbone(label: str, seed: int, preset: BenchmarkPreset, cache: str | os.PathLike) -> Backbone:
    """The backbone of a grid label (``scratch``, ``4dcontrast``, ``4dcontrast@3600s``, …) and seed that the
    grid cached in ``cache``, without pre-training anything.

    Raises:
        FileNotFoundError: the grid has not pre-trained it yet (naming the folder it looked in).
    """
    if label == "scratch":
        return scratch_backbone(seed, preset, Path(cache))
    method, budget = split_label(label)
    if not backbone_is_cached(label, seed, preset, cache):
        out, _ = _pretrain_folder(method, seed, preset, Path(cache), budget)
        raise FileNotFoundError(f"{label} seed {seed} is not pre-trained in {out}: run the grid "
                                "(fourdcontrast benchmark downstream) first")
    return pretrained_backbone(method, seed, preset, Path(cache), budget_s=budget)


# --- tasks (run in this process or in worker processes) -------------------------------------------
def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(int(n))


def _pretrain_task(method: str, seed: int, preset: BenchmarkPreset, cache: str,
                   restore_from: tuple[dict, str] | None = None) -> Backbone:
    _set_threads(preset.threads)
    if restore_from is not None:
        return restore_pretraining(method, seed, preset, cache, *restore_from)
    return _backbone(method, seed, preset, Path(cache))


def _probe_task(backbone: Backbone, levels, seed, preset, split, room_cache, datasets=None,
                feature_cache=None) -> list[dict]:
    _set_threads(preset.threads)
    return probe_cells(backbone, levels, seed, preset, split, datasets, room_cache, feature_cache)


def _finetune_task(backbone: Backbone, protocol, level, seed, preset, split, room_cache,
                   datasets=None) -> list[dict]:
    _set_threads(preset.threads)
    return [finetune_cell(backbone, protocol, level, seed, preset, split, datasets, room_cache)]


def _run_tasks(tasks: list[tuple[Callable, tuple]], jobs: int, on_done: Callable, progress: bool,
               desc: str) -> None:
    """Run ``fn(*args)`` for every task, ``jobs`` at a time in worker processes (in this process when
    ``jobs`` is 1), calling ``on_done(task_index, result)`` here as each finishes."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc=desc, disable=not progress)
    if jobs <= 1:
        for i, (fn, args) in enumerate(tasks):
            on_done(i, fn(*args))
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # idle OpenMP threads of a worker otherwise spin on the core its neighbour needs (the native
        # kernels' pool: a detection run burnt ~25 % of its CPU seconds spinning); the workers inherit it
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(tasks)}
            for future in as_completed(futures):
                on_done(futures[future], future.result())
                bar.update(1)
    bar.close()


# --- CSV --------------------------------------------------------------------------------------------
def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a benchmark CSV ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _key(row: dict) -> tuple:
    return (row["split"], row["mode"], row["protocol"], f"{float(row['level']):g}", int(row["seed"]),
            row["method"])


def _write_rows(path: Path, rows: list[dict], fields: tuple[str, ...]) -> None:
    """Rewrite the CSV atomically (never half a row on disk)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: r.get(k, "") for k in fields} for r in rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def machine_description() -> str:
    """CPU model, cores, OS and torch version (for the report)."""
    import torch

    from fourdcontrast.machine import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"


def grid_spec(preset: BenchmarkPreset, split: str) -> dict:
    """What a grid's rows depend on: the preset, the split and every pre-training config's digest (seed
    0's), as plain JSON values."""
    digests = {m: pretraining_digest(pretraining_config(m, 0, preset)) for m in preset.methods
               if m != "scratch"}
    digests.update({long_label(m, preset.long_budget_s):
                    pretraining_digest(pretraining_config(m, 0, preset, preset.long_budget_s))
                    for m in preset.long_budget_methods})
    defaults = {f.name: f.default for f in fields(BenchmarkPreset) if f.name in PRESET_NEW_FIELDS}
    fields_ = {k: v for k, v in asdict(preset).items() if k not in defaults or v != defaults[k]}
    spec = {"preset": fields_, "split": split, "pretrain_config_digests": digests}
    return json.loads(json.dumps(spec))


PRESET_NEW_FIELDS: tuple[str, ...] = ("store_voxel", "finetune_overrides_at", "long_budget_s",
                                      "long_budget_methods", "primary", "task", "primary_metric", "dataset")
"""Preset fields added after the first grids; their defaults leave a grid as it was, and they are left out of
the grid spec while at their default, so the committed grids stay resumable."""


_SPEC_FREE = ("seeds", "threads", "steps_source")
"""Preset fields a resumed grid may change: more (or fewer) seeds add (or skip) rows, threads and the cited
source of the step counts change no result."""


def _same_grid(old: dict, new: dict) -> bool:
    def strip(spec: dict) -> dict:
        out = {k: v for k, v in spec.items() if k not in ("machine", "preset_name")}
        out["preset"] = {k: v for k, v in spec.get("preset", {}).items() if k not in _SPEC_FREE}
        return out

    return strip(old) == strip(new)


def run_benchmark(preset: BenchmarkPreset, out: str | os.PathLike, cache: str | os.PathLike,
                  room_cache: str | None = None, fresh: bool = False, progress: bool = True,
                  jobs: int = 1, split: str = "test", preset_name: str = "custom",
                  first_stage_only: bool = False, pretrain_only: bool = False,
                  primary_only: bool = False,
                  levels: tuple[tuple[str, float], ...] | None = None,
                  extra_labels: tuple[str, ...] = (), labels: tuple[str, ...] | None = None,
                  restore: bool = False) -> list[dict]:
    """Run (or resume) the grid and write its report; with ``first_stage_only``, only the preset's budget:
    its pre-trainings and their cells, not the long-budget ones (which want an otherwise idle machine: a CPU
    second of pre-training does less work under load, see ``docs/downstream.md``); with ``pretrain_only``,
    only the pre-trainings of every stage (both budgets; with ``first_stage_only`` the short one), no
    downstream cell: the backbones land in ``cache`` for a later run (e.g. the long pre-trainings on an
    idle machine, the cells afterwards on a shared one); with ``primary_only``, only the cells that the
    pre-declared primary comparisons read (:meth:`BenchmarkPreset.primary_cells`) and the pre-trainings they
    need, so that a grid too long for one sitting answers its primary questions first (a later run without
    it adds the rest to the same CSV); with ``levels`` (``(protocol, level)`` pairs), only the probes and
    fine-tunings at those levels (the pre-trainings of every initialisation still run); with
    ``extra_labels`` (e.g. ``("4dcontrast@10800s",)``: a long-budget method at a budget above the preset's
    long one), **only** those: each is pre-trained by continuing the method's longest cached run
    (:func:`_longest_shorter_run`), probed at the probe levels and fine-tuned where the method's long-budget
    label is, into the same CSV — a further point of the budget curve (combine with ``seeds`` / ``levels``
    to keep it cheap); with ``labels`` (e.g. ``("scratch", "4dcontrast@3600s")``), only those
    initialisations: their pre-trainings and cells, nobody else's; with ``restore``, every pre-training that
    this grid's rows already used (a cost record in ``downstream_pretrain_cost.json`` and one ``backbone``
    digest in the CSV) and that is missing from ``cache`` (a fresh machine) is re-created exactly by
    :func:`restore_pretraining` instead of pre-trained anew under the budget (which would stop at another
    step and give another network than the rows'), so that new cells pair with the old ones.

    The stages run in order (the preset's budget, then the long one), and a stage's cells run before any
    later pre-training that has to compute; the cells of a stage whose backbones all load from ``cache``
    instead join the earlier stage's in one queue, seed-paired, so that ``jobs`` workers stay busy.

    Writes into ``out``: ``downstream.csv`` (``downstream_val.csv`` for ``split="val"``), the grid spec
    (``downstream_grid.json``), the pre-training costs (``downstream_pretrain_cost.json``) and, for the
    test split, the report (:func:`fourdcontrast.downstream.report.write_report`). Returns the CSV rows.

    Raises:
        ValueError: the CSV in ``out`` comes from another grid (other preset, configs or format); use
            ``fresh`` or another ``out``; or ``primary_only`` for a preset that declares no primary
            comparison.
    """
    from fourdcontrast.sources.classes import CLASS_NAMES

    if split not in EVALUATION_SPLITS:
        raise ValueError(f"split must be one of {EVALUATION_SPLITS}, got {split!r}")
    if primary_only and not preset.primary:
        raise ValueError(f"preset {preset_name!r} declares no primary comparisons: --primary-only has "
                         "nothing to run")
    wanted = preset.primary_cells() if primary_only else None
    for label in extra_labels:
        try:
            method, budget = split_label(label)
        except ValueError:
            method, budget = label, None
        if method not in preset.long_budget_methods or budget is None or \
                budget <= (preset.long_budget_s or 0):
            raise ValueError(f"extra label {label!r} must be '<method>@<budget>s' with a method of the "
                             f"preset's long budget {preset.long_budget_methods} and a budget above its "
                             f"{preset.long_budget_s} s")
    if extra_labels and primary_only:
        raise ValueError("extra labels are not primary comparisons: run them without --primary-only")
    if labels is not None and not set(labels) <= set(preset.labels()) | set(extra_labels):
        raise ValueError(f"labels {sorted(set(labels) - set(preset.labels()) - set(extra_labels))} are not "
                         f"initialisations of preset {preset_name!r}: {preset.labels()}")

    only = None if levels is None else {(p, float(lv)) for p, lv in levels}
    if only is not None and not only <= {(p, float(lv)) for p, lv in
                                         (*preset.probe_levels, *preset.finetune_levels)}:
        raise ValueError(f"levels {sorted(only)} are not all levels of preset {preset_name!r}")

    def needed(label: str, mode: str, protocol: str, level: float) -> bool:
        return (wanted is None or (label, mode, protocol, float(level)) in wanted) and (
            only is None or (protocol, float(level)) in only)

    out, cache = Path(out), Path(cache)
    out.mkdir(parents=True, exist_ok=True)
    stem = "downstream" if split == "test" else f"downstream_{split}"
    csv_path, spec_path = out / f"{stem}.csv", out / f"{stem}_grid.json"
    spec = {**grid_spec(preset, split), "preset_name": preset_name}  # fails early on a missing config
    fields = csv_fields(CLASS_NAMES, preset.task)
    rows = [] if fresh else read_rows(csv_path)
    if rows:
        if "split" not in rows[0]:
            raise ValueError(f"{csv_path} is from an earlier format of the benchmark (no 'split' column); "
                             "pass --fresh to replace it or choose another --out")
        old = json.loads(spec_path.read_text()) if spec_path.is_file() else None
        if old is None or not _same_grid(old, spec):
            raise ValueError(f"{csv_path} was made by another grid (its spec {spec_path} differs from "
                             f"this preset's or is missing); pass --fresh or choose another --out")
    spec["machine"] = machine_description()
    atomic_write_bytes(spec_path, json.dumps(spec, indent=2).encode())
    _write_rows(csv_path, rows, fields)
    done = {_key(r) for r in rows}

    # Stages: the preset's budget first (pre-training, then its probes and fine-tuning), then the long
    # budget (its pre-training continues the first stage's runs), so an interrupted grid has committed
    # complete rows of the short budget before the long pre-trainings start.
    backbones: dict[tuple[str, int], Backbone] = {}
    cost_path = out / f"{stem}_pretrain_cost.json"
    datasets = load_rooms(preset, split, room_cache) if jobs <= 1 else None
    features: dict | None = {} if jobs <= 1 else None  # in this process: one backbone's at a time
    primary = {(p, lv) for *_, p, lv in preset.primary} or {("scenes", 0.01), ("points", 20)}
    ordered = sorted(preset.finetune_levels, key=lambda lv: (lv not in primary, lv[0], lv[1]))

    # the cost rows of earlier runs of this grid stay (a run with --seeds, --primary-only or --levels loads
    # only some backbones); this run's backbones replace theirs
    earlier_costs = {} if fresh or not cost_path.is_file() else json.loads(cost_path.read_text())
    if not all(isinstance(v, dict) and "method" in v for v in earlier_costs.values()):
        earlier_costs = {}  # the earlier format of the cost file: replaced

    def keep_backbone(i: int, b: Backbone) -> None:
        backbones[(b.method, b.seed)] = b
        costs = {**earlier_costs, **{f"{k[0]}/seed{k[1]}": v.cost for k, v in backbones.items()}}
        atomic_write_bytes(cost_path, json.dumps(costs, indent=2).encode())

    def todo(mode, protocol, level, seed, method):
        return (split, mode, protocol, f"{float(level):g}", seed, method) not in done

    def keep_rows(i: int, new: list[dict]) -> None:
        rows.extend(new)
        _write_rows(csv_path, rows, fields)
        for r in new:
            if "miou" in r:
                scores = (f"mIoU {100 * float(r['miou']):.1f}, "
                          f"non-structural {100 * float(r['miou_objects']):.1f}")
            else:
                scores = f"mAP@0.5 {100 * float(r['map50']):.1f}, @0.25 {100 * float(r['map25']):.1f}"
            logger.info("%s %s %s=%s seed %s: %s", r["mode"], r["method"], r["protocol"], r["level"],
                        r["seed"], scores)

    def finetuned_at(protocol: str, level: float) -> tuple[str, ...]:
        finetuned = preset.finetuned_methods(protocol, level)
        return finetuned + tuple(m for m in extra_labels  # where the method's long-budget label is
                                 if long_label(split_label(m)[0], preset.long_budget_s) in finetuned)

    def probe_levels_left(m: str, s: int) -> list:
        return [lv for lv in preset.probe_levels if todo("linear", *lv, s, m) and needed(m, "linear", *lv)]

    def finetune_left(m: str, s: int, protocol: str, level: float) -> bool:
        return todo("finetune", protocol, level, s, m) and needed(m, "finetune", protocol, level)

    def has_work(m: str, s: int) -> bool:
        """Whether ``m`` with seed ``s`` has a probe or a fine-tuning cell of this run left to do."""
        return bool(probe_levels_left(m, s)) or any(
            m in finetuned_at(p, lv) and finetune_left(m, s, p, lv) for p, lv in ordered)

    long_labels = preset.labels()[len(preset.methods):]
    stages = ((), (), tuple(extra_labels)) if extra_labels else (preset.methods, long_labels)
    if labels is not None:
        stages = tuple(tuple(m for m in stage if m in labels) for stage in stages)
    records = _restorable(rows, earlier_costs, split) if restore else {}
    # the downstream cells of stages whose backbones were all cached wait here and run together with the
    # next stage's (``--jobs 2`` then keeps both cores busy when a stage has one cell left, e.g. scratch and
    # 4dcontrast@3600s of one new seed); they run before any pre-training that has to compute, which wants an
    # idle machine and must find the earlier stage's rows committed
    pending: list[tuple[tuple, tuple[Callable, tuple]]] = []

    def run_pending() -> None:
        if pending:
            pending.sort(key=lambda item: item[0])
            logger.info("downstream grid (%s split): %d tasks to do (%s), %d runs done", split, len(pending),
                        ", ".join(dict.fromkeys(t[1][0].method for _, t in pending)), len(rows))
            _run_tasks([t for _, t in pending], jobs, keep_rows, progress, "downstream")
            pending.clear()

    for stage, labels in enumerate(stages):
        if not labels:
            continue
        if stage and first_stage_only:
            logger.info("stopping before stage 2 (%s), as asked", ", ".join(labels))
            break
        # 1. backbones (scratch: random networks here; pre-training: tasks), seed by seed so that an
        # interrupted stage has every method of its first seeds (paired comparisons, figures of seed 0)
        if wanted is not None:
            labels = tuple(m for m in labels if any(c[0] == m for c in wanted))
            if not labels:
                continue
        # with restore, a recorded pre-training none of whose cells is left is not re-made (an hour each)
        tasks = [(_pretrain_task, (m, s, preset, str(cache), records.get((m, s))))
                 for s in preset.seeds for m in labels
                 if pretrain_only or (m, s) not in records or has_work(m, s)]
        if not all(backbone_is_cached(a[0], a[1], preset, cache) for _, a in tasks):
            run_pending()
        _run_tasks(tasks, jobs, keep_backbone, progress, "pre-training")
        if pretrain_only:
            logger.info("stage %d: %d backbones ready in %s; no downstream cells (pre-training only, as "
                        "asked)", stage + 1, len(tasks), cache)
            continue
        # 2. downstream cells: probes, then the pre-declared primary fine-tuning cells first, seed by seed
        # (the sort key pairs the stages' cells of one seed: scratch and 4dcontrast@3600s of seed 1 first)
        queued = len(pending)
        for s in preset.seeds:
            for i, m in enumerate(labels):
                levels = probe_levels_left(m, s)
                if levels:
                    pending.append(((0, 0, s, stage, i), (_probe_task, (
                        backbones[(m, s)], levels, s, preset, split, room_cache, datasets, features))))
        for j, (protocol, level) in enumerate(ordered):
            for s in preset.seeds:
                for i, m in enumerate(finetuned_at(protocol, level)):
                    if m in labels and finetune_left(m, s, protocol, level):
                        pending.append(((1, j, s, stage, i), (_finetune_task, (
                            backbones[(m, s)], protocol, level, s, preset, split, room_cache, datasets))))
        logger.info("downstream grid (%s split), stage %d (%s): %d tasks to do, %d runs done", split,
                    stage + 1, ", ".join(labels), len(pending) - queued, len(rows))
    run_pending()
    if split == "test":
        from fourdcontrast.downstream.report import write_report

        write_report(out, preset, preset_name)
    return rows


def _restorable(rows: list[dict], costs: dict, split: str) -> dict[tuple[str, int], tuple[dict, str]]:
    """``{(label, seed): (cost record, backbone digest)}`` of the pre-trainings the grid's rows of ``split``
    used: those with a cost record and exactly one backbone digest in the rows (scratch needs none: its
    random network is re-made from its seed)."""
    digests: dict[tuple[str, int], set[str]] = {}
    for r in rows:
        if r.get("split") == split and r["method"] != "scratch" and r.get("backbone"):
            digests.setdefault((r["method"], int(r["seed"])), set()).add(r["backbone"])
    out = {}
    for (label, seed), found in digests.items():
        record = costs.get(f"{label}/seed{seed}")
        if record is not None and len(found) == 1 and record.get("steps"):
            out[(label, seed)] = (record, next(iter(found)))
    return out


# --- command line ---------------------------------------------------------------------------------
def _parse_levels(text: str) -> tuple[tuple[str, float], ...]:
    """``"scenes:0.1,points:20"`` → ``(("scenes", 0.1), ("points", 20.0))``."""
    out = []
    for item in text.split(","):
        protocol, _, level = item.strip().partition(":")
        try:
            out.append((protocol, float(level)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"level {item!r} is not protocol:level, e.g. scenes:0.1") \
                from None
        if protocol not in ("scenes", "points"):
            raise argparse.ArgumentTypeError(f"level {item!r}: the protocol is 'scenes' or 'points'")
    return tuple(out)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes (default cpu)")
    parser.add_argument("--out", default="benchmarks/results", help="where the CSV / markdown / plots go")
    parser.add_argument("--cache", default="outputs/downstream", help="pre-trained backbones are cached here")
    parser.add_argument("--room-cache", default=None, help="labelled-room cache folder ('' for none)")
    parser.add_argument("--split", choices=EVALUATION_SPLITS, default="test",
                        help="evaluation rooms: val (tuning; writes downstream_val.csv) or test (the final "
                             "grid, default)")
    parser.add_argument("--jobs", type=int, default=1, help="tasks in parallel processes (1 thread each)")
    parser.add_argument("--fresh", action="store_true", help="discard the CSV's finished runs")
    parser.add_argument("--report-only", action="store_true", help="rebuild report + plots from the CSV")
    parser.add_argument("--seeds", type=int, default=None, help="use only the first N seeds of the preset")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per task (default: the "
                                                                  "preset's)")
    parser.add_argument("--first-stage-only", action="store_true",
                        help="only the preset's budget (its pre-trainings and cells), not the long-budget "
                             "stage, whose CPU-second budgets want an otherwise idle machine")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="only the pre-trainings (both budgets, or the first with --first-stage-only), "
                             "no probe or fine-tuning: the backbones are cached for a later run")
    parser.add_argument("--primary-only", action="store_true",
                        help="only the cells of the preset's pre-declared primary comparisons (both arms, "
                             "every seed) and the pre-trainings they need; a later run without it adds the "
                             "rest")
    parser.add_argument("--levels", default=None, type=_parse_levels,
                        help="only these levels, e.g. 'scenes:0.1,points:20' (the pre-trainings still run)")
    parser.add_argument("--extra-label", action="append", default=[], metavar="METHOD@BUDGETs",
                        help="only this further budget of a long-budget method (e.g. 4dcontrast@10800s; "
                             "repeatable): pre-trained on from its longest cached run, probed and fine-tuned "
                             "where the long label is — a further point of the budget curve")
    parser.add_argument("--labels", default=None, type=lambda t: tuple(x.strip() for x in t.split(",")),
                        help="only these initialisations, e.g. 'scratch,4dcontrast@3600s': their "
                             "pre-trainings and cells (default: all of the preset's)")
    parser.add_argument("--restore", action="store_true",
                        help="re-create the pre-trainings the CSV's rows used, exactly (to their recorded "
                             "step counts, checked against the rows' backbone digests), where the cache "
                             "lacks them (a fresh machine), instead of pre-training anew under the budget")
    parser.add_argument("--no-progress", action="store_true")


def run_cli(args: argparse.Namespace) -> int:
    from fourdcontrast.downstream.report import write_report

    preset = PRESETS[args.preset]
    if args.seeds:
        preset = replace(preset, seeds=preset.seeds[: args.seeds])
    if args.threads:
        preset = replace(preset, threads=args.threads)
    out = Path(args.out)
    if args.report_only:
        write_report(out, preset, args.preset)
        rows = read_rows(out / "downstream.csv")
    else:
        rows = run_benchmark(preset, out, args.cache, args.room_cache, args.fresh, not args.no_progress,
                             args.jobs, args.split, args.preset, args.first_stage_only,
                             args.pretrain_only, args.primary_only, args.levels, tuple(args.extra_label),
                             args.labels, args.restore)
    if args.split == "test":
        print((out / "downstream.md").read_text())
        print(f"{len(rows)} runs in {out / 'downstream.csv'}; plots in {out / 'downstream_figure4.png'}")
    else:
        print(f"{len(rows)} validation runs in {out / 'downstream_val.csv'}")
    return 0

