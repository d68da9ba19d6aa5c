"""Pre-training (paper, Sec. 4): ``fourdcontrast pretrain --config FILE [--set k=v] [--out DIR]
[--resume | --overwrite]``.

One readable loop, config → data → model → optimizer → step → log → checkpoint, as :func:`pretrain`:

- **Data**: sequences generated on the fly (or read from shards) by DataLoader workers. The order is a
  deterministic stream: micro-batch ``m`` of process ``r`` of ``W`` holds stream positions
  ``(m·W + r)·B … + B``, each epoch a seeded permutation. An item that cannot be generated is replaced by
  the next one that can, ``REPLACEMENT_STRIDE`` items further, and counted; the stream is a function of
  the position alone, so a resumed run sees the same batches.
- **Model**: :class:`~fourdcontrast.models.fourdcontrast.FourDContrast` of the config's method.
- **Optimizer**: SGD, lr × ``lr_decay`` every ``lr_decay_every`` steps, predictors optionally at a fixed lr.
- **Logs**: tqdm, ``log.csv`` (every logged step), ``config.yaml``, TensorBoard events when installed.
- **Checkpoints**: ``checkpoint.pt`` written atomically and verified, every ``checkpoint_every`` steps and
  at the end: model, optimizer, step, random states, data position, config. ``--resume`` continues from
  it so that the logged losses equal those of an uninterrupted run.
- **torchrun**: ``torchrun --nproc_per_node N -m fourdcontrast pretrain ...`` runs
  DistributedDataParallel (gloo on CPU, nccl on CUDA), batch norm synchronised across processes
  (``run.sync_bn``), checkpoints and logs written by rank 0.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fourdcontrast.data.dataset import (
    Batch,
    GeneratedSequenceDataset,
    Sample,
    ShardDataset,
    collate_sequences,
)
from fourdcontrast.data.generate import default_objects, scene_specs
from fourdcontrast.data.memory import retain_freed_memory
from fourdcontrast.data.static import StaticPairDataset
from fourdcontrast.metrics import batch_feature_match_recall, effective_rank
from fourdcontrast.models.fourdcontrast import FourDContrast
from fourdcontrast.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fourdcontrast.train.config import PretrainConfig, check_paths, dump_config, load_config
from fourdcontrast.train.distributed import (
    DistributedContext,
    cleanup_distributed,
    convert_sync_batchnorm,
    setup_distributed,
)
from fourdcontrast.train.run_folder import PRETRAIN_RUN, add_run_folder_arguments, prepare_run_folder

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "log.csv"
REPLACEMENT_STRIDE = 7919
"""Distance (in items, modulo the dataset) between an item that cannot be generated and its replacement
(a prime, so replacements of neighbouring items do not collide)."""
MAX_REPLACEMENTS = 50
"""Replacements tried before a run gives up on an item (the dataset is then unusable)."""
HOLDOUT_SEED_OFFSET = 1_000_003
"""The held-out batch is generated with ``seed + HOLDOUT_SEED_OFFSET``: same rooms, unseen sequences."""
CSV_FIELDS = ("step", "loss", "loss_3d", "loss_3d4d", "loss_4d", "lr", "sequences_per_s", "data_s",
              "compute_s", "std_z3d", "std_z4d", "erank_backbone_3d", "erank_z3d", "erank_backbone_4d",
              "erank_z4d", "pairs_3d", "pairs_3d4d", "pairs_4d", "object_pairs_3d", "object_pairs_3d4d",
              "object_pairs_4d", "replaced", "budget_s", "recall", "holdout_erank")
"""Columns of ``log.csv``: the loss terms, the collapse monitors (SimSiam's std and the effective ranks of
the backbone output and of z before the projector's batch norm), pair counts (all / touching the moving
object), the time budget spent (seconds of ``run.budget_clock``) and, every ``recall_every`` steps, the
held-out feature-match recall and effective rank of the 3D backbone (eval mode)."""
MEAN_KEYS = ("loss", "loss_3d", "loss_3d4d", "loss_4d", "std_z3d", "std_z4d", "erank_backbone_3d",
             "erank_z3d", "erank_backbone_4d", "erank_z4d")
COUNT_KEYS = ("pairs_3d", "pairs_3d4d", "pairs_4d", "object_pairs_3d", "object_pairs_3d4d", "object_pairs_4d")


# --- data -----------------------------------------------------------------------------------------
class ReplacingDataset(Dataset):
    """Item ``i`` of ``dataset``, or — when it raises ValueError (e.g. a room's free floor cannot hold a
    trajectory) — item ``(i + k·REPLACEMENT_STRIDE) mod n`` for the first ``k`` that works. Items are
    ``(sample, k)``: ``k`` is the number of replacements made."""

    def __init__(self, dataset: Dataset, length: int | None = None):
        self.dataset = dataset
        self.length = len(dataset) if length is None else length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[Sample, int]:
        last: Exception | None = None
        for k in range(MAX_REPLACEMENTS):
            try:
                return self.dataset[(i + k * REPLACEMENT_STRIDE) % self.length], k
            except ValueError as exc:
                last = exc
        raise RuntimeError(f"item {i} and {MAX_REPLACEMENTS - 1} replacements could not be generated; "
                           f"last error: {last}")


class StreamSampler(Sampler):
    """Endless deterministic stream of item indices for one process, starting at micro-batch ``start``.

    Micro-batch ``m`` of process ``rank`` of ``world`` takes stream positions ``(m·world + rank)·batch``
    to ``+ batch``; position ``p`` is item ``perm_e[p mod n]`` of epoch ``e = p // n``, with ``perm_e`` a
    permutation seeded by ``(seed, e)``.
    """

    def __init__(self, n: int, batch: int, seed: int = 0, start: int = 0, rank: int = 0, world: int = 1):
        if n < 1:
            raise ValueError("the dataset is empty")
        self.n, self.batch, self.seed, self.start, self.rank, self.world = n, batch, seed, start, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch))}
        return int(self._perms[epoch][offset])

    def __iter__(self):
        for m in itertools.count(self.start):
            base = (m * self.world + self.rank) * self.batch
            for k in range(self.batch):
                yield self.index(base + k)


@dataclass
class CollatedBatch:
    """A collated batch and the number of replaced items in it."""

    batch: Batch
    replaced: int

    def pin_memory(self) -> CollatedBatch:
        return CollatedBatch(self.batch.pin_memory(), self.replaced)


def collate_counted(items: list[tuple[Sample, int]]) -> CollatedBatch:
    return CollatedBatch(collate_sequences([s for s, _ in items]), sum(k for _, k in items))


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker start: seed python's and numpy's global generators from the worker's torch seed
    (items are generated from their own index-derived seeds, so nothing we ship draws from them, but user
    datasets may), keep freed memory for reuse (generation allocates ~50 MB per sequence) and use one
    thread (the main process's threads run the network)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator, for third-party datasets)
    retain_freed_memory()
    torch.set_num_threads(1)


def make_dataset(config: PretrainConfig, holdout: bool = False) -> Dataset:
    """The training (or held-out) dataset of ``config``: static pairs for the 3D-only baselines,
    sequences from shards or generated on the fly otherwise."""
    d, method = config.data, config.method_config()
    seed = config.run.seed + (HOLDOUT_SEED_OFFSET if holdout else 0)
    voxels = dict(voxel_size_3d=d.voxel_size_3d, voxel_size_4d=d.voxel_size_4d)
    if d.source == "shards" and not holdout:
        return ShardDataset(d.shards, crop_size=d.crop_size, **voxels)
    scenes = scene_specs("default", d.scenes)
    if method.data == "static":
        return StaticPairDataset(scenes, d.trajectories_per_scene, seed=seed, **voxels)
    return GeneratedSequenceDataset(scenes, default_objects(), d.trajectories_per_scene, d.length, seed=seed,
                                    objects_per_sequence=d.objects_per_sequence, crop_size=d.crop_size,
                                    **voxels)


def holdout_samples(config: PretrainConfig) -> list[Sample]:
    """The fixed held-out samples for feature-match recall: the first ``holdout_sequences`` items of the
    held-out dataset (generated with another seed; replacements as in training)."""
    data = ReplacingDataset(make_dataset(config, holdout=True))
    return [data[i][0] for i in range(config.data.holdout_sequences)]


def holdout_batch(config: PretrainConfig) -> Batch:
    """:func:`holdout_samples`, collated."""
    return collate_sequences(holdout_samples(config))


def make_loader(config: PretrainConfig, ctx: DistributedContext, start_micro: int, device: str) -> DataLoader:
    data = ReplacingDataset(make_dataset(config))
    sampler = StreamSampler(len(data), config.data.batch_size, config.run.seed, start_micro, ctx.rank,
                            ctx.world_size)
    workers = config.data.workers
    return DataLoader(data, batch_size=config.data.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_counted, worker_init_fn=worker_init_fn if workers else None,
                      pin_memory=device.startswith("cuda"), persistent_workers=workers > 0,
                      prefetch_factor=2 if workers else None)


# --- optimizer ------------------------------------------------------------------------------------
def param_groups(model: FourDContrast, fix_pred_lr: bool) -> list[dict]:
    """Two groups, the predictors' marked ``fix_lr`` when ``fix_pred_lr`` (SimSiam's option)."""
    pred = [p for name, p in model.named_parameters() if name.startswith("predictor_")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("predictor_")]
    groups = [{"params": rest, "fix_lr": False}]
    if pred:
        groups.append({"params": pred, "fix_lr": fix_pred_lr})
    return groups


def learning_rate(config: PretrainConfig, step: int, budget_spent: float = 0.0) -> float:
    """The learning rate at ``step``.

    ``"step"`` schedule: ``lr · lr_decay ** (step // lr_decay_every)`` (paper: 0.25 · 0.99 every 1000
    steps). ``"cosine"``: with progress ``f = max(step / steps, budget_spent / time_budget_s)``, a linear
    warm-up ``lr · f / warmup_fraction`` and then ``lr · ½ (1 + cos(π (f − w) / (1 − w)))``.

    Args:
        config: the run.
        step: optimizer steps done.
        budget_spent: seconds of ``run.time_budget_s`` spent so far.
    """
    o = config.optim
    if o.schedule == "step":
        return o.lr * o.lr_decay ** (step // o.lr_decay_every)
    f = step / o.steps
    if config.run.time_budget_s:
        f = max(f, budget_spent / config.run.time_budget_s)
    f = min(f, 1.0)
    w = o.warmup_fraction
    if w > 0 and f < w:
        return o.lr * max(f, 1.0 / o.steps) / w
    return o.lr * 0.5 * (1.0 + math.cos(math.pi * (f - w) / (1.0 - w)))


def set_learning_rate(optimizer: torch.optim.Optimizer, config: PretrainConfig, step: int,
                      budget_spent: float = 0.0) -> float:
    lr = learning_rate(config, step, budget_spent)
    for group in optimizer.param_groups:
        group["lr"] = config.optim.lr if group.get("fix_lr") else lr
    return lr


# --- logging --------------------------------------------------------------------------------------
def read_log(path: str | Path) -> list[dict]:
    """Rows of a ``log.csv`` (values as float, empty as None)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep the rows up to ``last_step`` (rows past the checkpoint were logged by the interrupted run)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if float(row["step"]) <= last_step]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class _Log:
    """The CSV (and TensorBoard, when installed) of rank 0; nothing on other ranks."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled, self.path, self.tb = enabled, out / LOG_CSV, None
        if not enabled:
            return
        if not self.path.exists():
            with open(self.path, "w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=CSV_FIELDS).writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard is an optional extra
            self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=CSV_FIELDS).writerow({k: row.get(k, "") for k in CSV_FIELDS})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float) and v == v:
                    self.tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --- the loop -------------------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"run.device {device!r}: torch {torch.__version__} sees no CUDA device")
    return device


def holdout_features(model: FourDContrast, batch: Batch, device: str) -> torch.Tensor:
    """(N3, d) float32 CPU features of the 3D backbone on the held-out batch (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = model.backbone_features_3d(batch.to(device))
    model.train(was_training)
    return feats.float().cpu()


def holdout_recall(model: FourDContrast, batch: Batch, config: PretrainConfig, device: str,
                   features: torch.Tensor | None = None) -> float:
    """Feature-match recall of the 3D backbone's features on the held-out batch (eval mode, no grad)."""
    feats = holdout_features(model, batch, device) if features is None else features
    generator = torch.Generator().manual_seed(config.run.seed)
    return batch_feature_match_recall(feats, batch, threshold=config.run.recall_threshold,
                                      num_samples=config.run.recall_samples, generator=generator)


def holdout_row(model: FourDContrast, batch: Batch, config: PretrainConfig, device: str) -> dict:
    """``recall`` and ``holdout_erank`` (effective rank of the backbone output) on the held-out batch."""
    feats = holdout_features(model, batch, device)
    return {"recall": holdout_recall(model, batch, config, device, feats),
            "holdout_erank": effective_rank(feats, generator=torch.Generator().manual_seed(0))}


def collapse_message(row: dict, config: PretrainConfig) -> str | None:
    """A one-line warning when a logged row's effective ranks fall below ``run.collapse_rank_fraction``
    of the feature width (dimensional collapse), else None."""
    d = config.method_config().feature_dim
    limit = config.run.collapse_rank_fraction * d
    low = {k: row[k] for k in ("erank_backbone_3d", "erank_z3d") if row.get(k) is not None and row[k] < limit}
    if not low:
        return None
    values = ", ".join(f"{k} {v:.2f}" for k, v in low.items())
    fraction = config.run.collapse_rank_fraction
    return (f"step {int(row['step'])}: dimensional collapse: {values} < {fraction:g} x d = {limit:.1f} "
            f"(std_z3d {row.get('std_z3d', float('nan')):.3f} cannot show it)")


def autocast_context(config: PretrainConfig, device: str):
    """bfloat16 autocast when ``run.amp`` (CUDA, or a CPU with native bfloat16), else a no-op context."""
    if not config.run.amp:
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_supports_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    logger.warning("run.amp: this CPU has no native bfloat16 (AMX / AVX-512 BF16); running in float32")
    return contextlib.nullcontext()


def cpu_supports_bf16() -> bool:
    """Whether the CPU runs bfloat16 natively (AMX-BF16 or AVX-512 BF16, read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class BudgetClock:
    """Seconds spent on ``run.budget_clock`` (process CPU time or wall time), ``offset`` included."""

    def __init__(self, kind: str, offset: float = 0.0):
        self.read = time.process_time if kind == "process" else time.perf_counter
        self.offset, self._start = offset, None

    def start(self) -> None:
        self._start = self.read()

    def stop(self) -> None:
        self.offset += self.read() - self._start
        self._start = None


def _mean_over_ranks(values: dict, ctx: DistributedContext, device: str) -> dict:
    if not ctx.enabled:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def pretrain(config: PretrainConfig, out: str | Path, resume: bool = False,
             progress: bool = True, overwrite: bool = False) -> list[dict]:
    """Run (or resume) a pre-training; returns the logged rows (``log.csv``) of the whole run.

    Args:
        config: the run (see :mod:`fourdcontrast.train.config`).
        out: output folder (``config.yaml``, ``log.csv``, ``checkpoint.pt``, ``tensorboard/``).
        resume: continue from ``out/checkpoint.pt``, which must exist (``config`` must describe the same
            run; where it differs, a warning is logged and ``config`` is used).
        progress: show a tqdm progress bar (rank 0).
        overwrite: start again in a folder that holds a run: that run's files are deleted first.

    Raises:
        RunFolderError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is given, or
            ``resume`` finds no checkpoint (:mod:`fourdcontrast.train.run_folder`); nothing is changed.
        CheckpointError: ``resume`` with a checkpoint that cannot be read.
        ConfigError: a path the config needs (``data.shards``) is missing.
    """
    out = Path(out)
    check_paths(config)
    found = prepare_run_folder(out, PRETRAIN_RUN, resume, overwrite,
                               remove=int(os.environ.get("RANK", "0")) == 0)
    if resume and found.step is None:
        load_checkpoint(out / CHECKPOINT)  # raises CheckpointError naming the file and the problem
    device = resolve_device(config.run.device)
    ctx = setup_distributed(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.run.deterministic, warn_only=True)
    try:
        return _pretrain(config, out, resume, progress, device, ctx)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        cleanup_distributed(ctx)


def _pretrain(config: PretrainConfig, out: Path, resume: bool, progress: bool, device: str,
              ctx: DistributedContext) -> list[dict]:
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    o, r = config.optim, config.run
    if r.threads is not None:
        torch.set_num_threads(r.threads)
    torch.manual_seed(r.seed)  # the same initial weights on every process
    model = FourDContrast(config.method_config())
    if ctx.enabled and r.sync_bn:
        convert_sync_batchnorm(model)
    model.to(device)
    optimizer = torch.optim.SGD(param_groups(model, o.fix_pred_lr), lr=o.lr, momentum=o.momentum,
                                weight_decay=o.weight_decay)
    step = 0
    budget_spent = 0.0
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        if state["config"] != config.to_dict():
            logger.warning("%s: the given config differs from the checkpoint's; using the given one",
                           ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        budget_spent = float(state.get("budget_spent", 0.0))
        if ctx.is_main:
            _truncate_log(out / LOG_CSV, step)
        logger.info("resumed %s at step %d", ckpt_path, step)
    elif ctx.is_main:
        (out / LOG_CSV).unlink(missing_ok=True)
    if ctx.is_main:
        text = dump_config(config)
        (out / "config.yaml").write_text(text)
        logger.info("pre-training config (resolved):\n%s", text)
    ddp = model
    if ctx.enabled:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if device.startswith("cuda") else None,
            find_unused_parameters=True)
    log = _Log(out, ctx.is_main)
    held = holdout_batch(config) if r.recall_every and ctx.is_main else None
    if held is not None and step == 0:
        log.write({"step": 0, **holdout_row(model, held, config, device)})
    loader = iter(make_loader(config, ctx, step * o.accumulate, device))
    bar = tqdm(total=o.steps, initial=step, desc="pretrain", disable=not (progress and ctx.is_main),
               dynamic_ncols=True)
    model.train()
    acc: dict[str, float] = {}
    clock = BudgetClock(r.budget_clock, budget_spent)
    collapsed = warned = False
    while step < o.steps:
        lr = set_learning_rate(optimizer, config, step, clock.offset)
        clock.start()
        t_step = time.perf_counter()
        data_s = 0.0
        terms: dict[str, float] = {}
        replaced = 0
        for micro in range(o.accumulate):
            t0 = time.perf_counter()
            item = next(loader)
            batch = item.batch.to(device, non_blocking=True)
            data_s += time.perf_counter() - t0
            replaced += item.replaced
            generator = torch.Generator(device="cpu").manual_seed(
                r.seed * 1_000_003 + (step * o.accumulate + micro) * 31 + ctx.rank)
            with autocast_context(config, device):
                result = ddp(batch, generator=generator)
            (result["loss"] / o.accumulate).backward()
            for k in MEAN_KEYS:
                value = result[k].detach() if torch.is_tensor(result[k]) else result[k]
                terms[k] = terms.get(k, 0.0) + float(value) / o.accumulate
            for k in COUNT_KEYS:
                terms[k] = terms.get(k, 0) + int(result[k])
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t_step
        clock.stop()
        if ctx.enabled:  # every process stops at the same step: the budget of rank 0 decides
            spent = torch.tensor([clock.offset], dtype=torch.float64, device=device)
            torch.distributed.broadcast(spent, 0)
            clock.offset = float(spent)
        out_of_budget = r.time_budget_s is not None and clock.offset >= r.time_budget_s
        for k, v in {**terms, "data_s": data_s, "compute_s": elapsed - data_s, "elapsed": elapsed,
                     "replaced": replaced}.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["n"] = acc.get("n", 0) + 1
        last = step == o.steps or out_of_budget
        if step % r.log_every == 0 or last:
            n = acc.pop("n")
            mean = {k: v / n for k, v in acc.items()}
            mean["replaced"] = acc["replaced"]
            mean = _mean_over_ranks(mean, ctx, device)
            seqs = config.data.batch_size * o.accumulate * ctx.world_size
            row = {"step": step, "lr": lr, "sequences_per_s": seqs / max(mean["elapsed"], 1e-9),
                   **{k: mean[k] for k in (*MEAN_KEYS, "data_s", "compute_s", *COUNT_KEYS)},
                   "replaced": int(round(mean["replaced"] * (ctx.world_size if ctx.enabled else 1))),
                   "budget_s": clock.offset}
            if held is not None and (last or step % r.recall_every == 0):
                row.update(holdout_row(model, held, config, device))
            log.write(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", erank=f"{row['erank_backbone_3d']:.1f}",
                            seq_s=f"{row['sequences_per_s']:.2f}",
                            data=f"{mean['data_s'] / max(mean['elapsed'], 1e-9):.0%}")
            acc = {}
            message = collapse_message(row, config)
            if message and ctx.is_main and (not warned or r.stop_on_collapse):  # once per onset
                logger.warning("%s%s", message, "; stopping (run.stop_on_collapse)" if r.stop_on_collapse
                               else "; warning again only after a recovery (ranks in log.csv)")
            warned = message is not None
            if message and r.stop_on_collapse:
                collapsed = last = True
        if out_of_budget and ctx.is_main and not collapsed:
            logger.info("time budget spent: %.0f s of %s time at step %d", clock.offset, r.budget_clock, step)
        if ctx.is_main and (step % r.checkpoint_every == 0 or last):
            save_checkpoint({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "config": config.to_dict(), "rng": rng_state(),
                             "data_position": step * o.accumulate, "budget_spent": clock.offset}, ckpt_path)
        bar.update(1)
        if last:
            break
    bar.close()
    log.close()
    if ctx.enabled:
        torch.distributed.barrier()
    return read_log(out / LOG_CSV)


# --- export ---------------------------------------------------------------------------------------
def backbone_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The 3D backbone (``encoder_3d``) of a pre-training checkpoint as a plain U-Net state dict."""
    prefix = "encoder_3d."
    return {k[len(prefix):]: v for k, v in checkpoint["model"].items() if k.startswith(prefix)}


def export_backbone(checkpoint: str | Path, out: str | Path, half: bool = False) -> Path:
    """Write the 3D backbone of ``checkpoint`` to ``out`` (a plain ``state_dict`` that loads into our
    MinkUNet and, unchanged, into MinkowskiEngine's of the same name), atomically; ``half`` stores the
    floating-point tensors in float16 (cast back with ``.float()`` when loading)."""
    from fourdcontrast.io.atomic import atomic_write_bytes

    state = load_checkpoint(checkpoint)
    weights = backbone_state_dict(state)
    if half:
        weights = {k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}
    meta = {"backbone": state["config"]["model"]["backbone_3d"],
            "in_channels": state["config"]["model"]["in_channels"],
            "out_channels": state["config"]["model"]["feature_dim"], "step": state["step"]}
    import io

    buffer = io.BytesIO()
    torch.save(weights, buffer)
    out = Path(out)
    atomic_write_bytes(out, buffer.getvalue())
    logger.debug("exported %s (%s, %d tensors, step %d) to %s", checkpoint, meta["backbone"], len(weights),
                meta["step"], out)
    return out


# --- command line ---------------------------------------------------------------------------------
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="cpu-small",
                        help="a YAML file or the name of a shipped config (configs/pretrain/NAME.yaml): "
                             "paper, cpu-small, or a baseline/ablation (default: cpu-small)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set optim.steps=200 --set data.workers=0")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/pretrain/CONFIG)")
    add_run_folder_arguments(parser, "continue the run in OUT from its checkpoint.pt (an error when there is "
                                     "none)")


def run_cli(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    out = Path(args.out or Path("outputs") / "pretrain" / Path(args.config).stem)
    rows = pretrain(config, out, resume=args.resume, progress=not args.no_progress,
                    overwrite=args.overwrite)
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    recalls = [r["recall"] for r in rows if r.get("recall") is not None]
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"pretrain: {len(losses)} logged steps; loss {losses[0]:.4f} -> {losses[-1]:.4f}"
              if losses else "pretrain: nothing to do (already at the last step)")
        if recalls:
            print(f"feature-match recall (held-out batch): {recalls[0]:.4f} -> {recalls[-1]:.4f}")
        print(f"outputs in {out}: {CHECKPOINT}, {LOG_CSV}, config.yaml")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a pre-training checkpoint.pt")
    parser.add_argument("out", help="the backbone state dict to write (.pth)")
    parser.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")


def run_export_cli(args: argparse.Namespace) -> int:
    export_backbone(args.checkpoint, args.out, half=args.half)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))


__all__ = ["CHECKPOINT", "CSV_FIELDS", "LOG_CSV", "ReplacingDataset", "StreamSampler", "backbone_state_dict",
           "export_backbone", "holdout_batch", "holdout_samples", "learning_rate", "make_dataset", "pretrain",
           "read_log"]

