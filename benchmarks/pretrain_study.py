"""Which switch ends the dimensional collapse of 4DContrast's SimSiam pre-training, measured on frozen
features (issue 18): every candidate cause as one switch against the ``cpu-small`` preset, several
pre-training seeds each, an equal time budget per run.

Each arm is a pre-training config (a shipped preset + ``--set`` overrides). Every run trains for the same
**budget of process CPU seconds** (``run.time_budget_s`` with ``run.budget_clock: process``) on **one
thread**, data generated in the training process (``data.workers: 0``, so generation is paid from the
same budget): on an idle core that is the wall-clock time of the run, and runs stay comparable when other
jobs share the machine. The learning rate of the cosine arms follows the spent fraction of the budget.

Then, for the 3D backbone of every run (and for random networks of the same shape, "random"):

- **effective rank** of its output on a fixed held-out batch of generated sequences (eval mode);
- **feature-match recall** at 10 and 20 cm on the same batch (frames (0,1), (1,2), (2,3); 3000 sampled
  correspondences per sequence and frame pair);
- **linear probe** mIoU: 200 labelled points per training room (the downstream benchmark's protocol,
  ``configs/finetune/cpu.yaml``), evaluated on the **validation** rooms.

Usage (resumable: finished runs are skipped, an interrupted pre-training resumes from its checkpoint)::

    python benchmarks/pretrain_study.py run --arms all --seeds 0 1 2 --budget 90 --shard 0/2 &
    python benchmarks/pretrain_study.py run --arms all --seeds 0 1 2 --budget 90 --shard 1/2 &
    python benchmarks/pretrain_study.py report

Run at most one study process per core (the two shards above on 2 vCPUs): a CPU second buys less work when
more processes share the cores (on the 2-vCPU EPYC, 4-5 processes did ~0.8× the steps of 2), and the arms
compared must have run under the same load.

On a fresh clone (no run folders) ``restore`` first writes the committed CSV's rows back as the runs'
``result.json`` files, so that new runs add to the committed ones instead of replacing them::

    python benchmarks/pretrain_study.py restore

Results: ``benchmarks/results/pretrain_study.{csv,md,png}`` (``report`` rebuilds them from the runs'
``result.json`` files under ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from fourdcontrast.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUT = ROOT / "outputs" / "pretrain_study"

BASE = "cpu-small-paper-literal"
"""The preset every arm starts from: ``cpu-small`` as it was before this study (the paper as printed at
CPU size)."""

ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (config, overrides)
    "random": ("", ()),
    "random-bn": (BASE, ("optim.lr=1e-12", "optim.weight_decay=0", "optim.momentum=0")),
    "paper-literal": (BASE, ()),
    "recommended": ("cpu-small", ()),
    "eq5-simsiam": (BASE, ("model.eq5_direction=simsiam",)),
    "proj-affine": (BASE, ("model.projector=1x1-bn-affine",)),
    "proj-3layer": (BASE, ("model.projector=simsiam-3layer",)),
    "proj-linear": (BASE, ("model.projector=1x1",)),
    "cosine": (BASE, ("optim.schedule=cosine", "optim.warmup_fraction=0.05")),
    "fix-pred-lr": (BASE, ("optim.fix_pred_lr=true",)),
    "lr-0.1": (BASE, ("optim.lr=0.1",)),
    "lr-0.02": (BASE, ("optim.lr=0.02",)),
    "batch-6": (BASE, ("data.batch_size=6",)),
    "crop-batch-8": (BASE, ("data.crop_size=3.0", "data.batch_size=8")),
    "motion": (BASE, ("model.background_pairs_per_group=256", "model.static_4d_pairs_per_group=32",
                      "model.object_pair_weight=4")),
    "no-4d-terms": (BASE, ("method=4d-data-3d3d",)),
    "simclr-infonce": (BASE, ("method=simclr-infonce",)),
    "simclr-hardest": (BASE, ("method=simclr",)),
    "bf16": (BASE, ("run.amp=true",)),
    "pointcontrast": (BASE, ("method=pointcontrast",)),
    "eq5-simsiam-motion": (BASE, ("model.eq5_direction=simsiam", "model.background_pairs_per_group=256",
                                  "model.static_4d_pairs_per_group=32", "model.object_pair_weight=4")),
    "simclr-infonce-motion": (BASE, ("method=simclr-infonce", "model.background_pairs_per_group=256",
                                     "model.static_4d_pairs_per_group=32")),
    "simclr-hardest-motion": (BASE, ("method=simclr", "model.background_pairs_per_group=256",
                                     "model.static_4d_pairs_per_group=32")),
    "simclr-infonce-motion-crop-batch-8": (BASE, ("method=simclr-infonce",
                                                  "model.background_pairs_per_group=256",
                                                  "model.static_4d_pairs_per_group=32", "data.crop_size=3.0",
                                                  "data.batch_size=8")),
    "objects-2": (BASE, ("data.objects_per_sequence=2",)),
    "simclr-infonce-motion-objects-2": (BASE, ("method=simclr-infonce",
                                               "model.background_pairs_per_group=256",
                                               "model.static_4d_pairs_per_group=32",
                                               "data.objects_per_sequence=2")),
    "hypercross": (BASE, ("model.kernel_shape_4d=hypercross",)),
    "simclr-hardest-cross": (BASE, ("method=simclr", "model.kernel_shape_4d=hypercross")),
    "simclr-hardest-motion-cross": (BASE, ("method=simclr", "model.background_pairs_per_group=256",
                                           "model.static_4d_pairs_per_group=32",
                                           "model.kernel_shape_4d=hypercross")),
    "simclr-infonce-motion-cross": (BASE, ("method=simclr-infonce", "model.background_pairs_per_group=256",
                                           "model.static_4d_pairs_per_group=32",
                                           "model.kernel_shape_4d=hypercross")),
}
"""The study's arms: ``random`` (untrained networks), ``random-bn`` (untrained weights whose batch-norm
statistics followed the training data for the same budget: separates what the weights learned from what the
running statistics alone change), the paper-literal preset, one switch each, and the
PointContrast baseline at the same budget (more arms, e.g. combinations, are added with ``--arm
NAME=CONFIG:k=v,k=v``)."""

RUN_OVERRIDES = ("run.threads=1", "data.workers=0", "run.budget_clock=process", "optim.steps=1000000",
                 "run.recall_every=0", "run.checkpoint_every=20", "run.log_every=5", "run.device=cpu")
"""What every study run sets: one thread, generation in the training process, the process-CPU budget
(``--budget``) ends the run, no held-out evaluation during training (the study evaluates afterwards)."""

EVAL_SEQUENCES = 8
"""Held-out sequences of the fixed evaluation batch (seed 0's held-out stream of ``cpu-small``)."""
RECALL_SAMPLES = 3000
RECALL_THRESHOLDS = (0.10, 0.20)
PROBE_POINTS = 200
PROBE_CONFIG = "cpu"
FIELDS = ("arm", "seed", "machine", "budget_s", "steps", "sequences", "frames", "pretrain_cpu_s",
          "pretrain_wall_s", "final_loss", "train_erank_backbone", "train_erank_z", "std_z3d", "erank",
          "recall_10cm", "recall_20cm", "probe_miou", "probe_miou_objects", "eval_wall_s")


def arm_config(name: str, arms: dict, seed: int, budget: float):
    """The resolved :class:`~fourdcontrast.train.config.PretrainConfig` of one run."""
    from fourdcontrast.train.config import config_from_dict, read_config

    config_name, overrides = arms[name]
    path, raw = read_config(config_name, [*overrides, *RUN_OVERRIDES, f"run.seed={seed}",
                                          f"run.time_budget_s={budget}"])
    return config_from_dict(raw, f"{path} ({name})")


def eval_batch():
    from fourdcontrast.data.dataset import collate_sequences
    from fourdcontrast.train.config import load_config
    from fourdcontrast.train.pretrain import holdout_samples

    config = load_config(BASE, ["run.seed=0", f"data.holdout_sequences={EVAL_SEQUENCES}"])
    return collate_sequences(holdout_samples(config))


def probe_setup():
    from fourdcontrast.downstream.config import load_finetune_config
    from fourdcontrast.downstream.training import datasets

    config = load_finetune_config(PROBE_CONFIG, ["data.eval_split=val", f"data.limited_points={PROBE_POINTS}",
                                                 "model.mode=linear", "run.threads=1"])
    train, val = datasets(config)
    return config, train, val


def evaluate(backbone_state, feature_dim: int, seed: int, batch, probe,
             backbone: str = "MinkUNet14S") -> dict:
    """Effective rank, recall at 10/20 cm and the validation linear probe of one 3D backbone (None: a random
    network drawn with ``seed``)."""
    import torch

    from fourdcontrast.downstream.segmentation import linear_probe
    from fourdcontrast.metrics import batch_feature_match_recall, effective_rank
    from fourdcontrast.models.resunet import build_backbone

    torch.manual_seed(seed)
    net = build_backbone(backbone, 3, feature_dim, 3)
    if backbone_state is not None:
        net.load_state_dict(backbone_state)
    net.eval()
    from fourdcontrast.sparse.backend import get_backend

    with torch.no_grad():
        feats = net(get_backend("torch").SparseTensor(batch.feats_3d, batch.coords_3d)).F.float()
    out = {"erank": effective_rank(feats, generator=torch.Generator().manual_seed(0))}
    for threshold in RECALL_THRESHOLDS:
        values = [batch_feature_match_recall(feats, batch, frames=(t, t + 1), threshold=threshold,
                                             num_samples=RECALL_SAMPLES,
                                             generator=torch.Generator().manual_seed(0))
                  for t in range(batch.length - 1)]
        out[f"recall_{round(threshold * 100)}cm"] = sum(values) / len(values)
    config, train, val = probe
    config = config.replace(run={"seed": seed}) if hasattr(config, "replace") else config
    result = linear_probe(config, train, val, state=backbone_state, progress=False)
    m = result.metrics
    out["probe_miou"] = 100 * m.miou
    names = list(val.class_names)
    iou = list(getattr(m, "iou", []))
    keep = [i for i, n in enumerate(names)
            if n not in ("wall", "floor") and i < len(iou) and iou[i] == iou[i]]
    out["probe_miou_objects"] = 100 * sum(iou[i] for i in keep) / len(keep) if keep else float("nan")
    return out


def run_folder(out: Path, name: str, seed: int, budget: float, machine: str | None = None) -> Path:
    """The folder of one run: ``runs/<arm>-s<seed>-b<budget>``, with ``-<machine>`` off the reference
    machine (so the same arm and seed can be measured on two machines)."""
    tag = machine_tag(machine or cpu_model())
    suffix = "" if name == "random" or tag == REFERENCE_MACHINE else f"-{tag}"
    return out / "runs" / f"{name}-s{seed}-b{budget:g}{suffix}"


def run_one(name: str, arms: dict, seed: int, budget: float, out: Path, batch, probe) -> dict:
    """Pre-train (or resume) one run, evaluate it, write ``result.json`` atomically; returns the row."""
    import torch

    from fourdcontrast.train.checkpoint import load_checkpoint
    from fourdcontrast.train.pretrain import backbone_state_dict, pretrain, read_log

    folder = run_folder(out, name, seed, budget)
    result_path = folder / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    torch.set_num_threads(1)
    row: dict = {"arm": name, "seed": seed, "budget_s": budget, "machine": cpu_model()}
    if name == "random":
        state, d, backbone = None, 32, "MinkUNet14S"
        row.update(steps=0, sequences=0, frames=0)
    else:
        config = arm_config(name, arms, seed, budget)
        from fourdcontrast.train.pretrain import cpu_supports_bf16

        if config.run.amp and not cpu_supports_bf16():
            print(f"skipping {name} seed {seed}: run.amp needs a CPU with native bfloat16, which "
                  f"{cpu_model()} lacks (the run would be float32, i.e. another arm)", flush=True)
            return {}
        ckpt = folder / "checkpoint.pt"
        if folder.exists() and not ckpt.exists():
            shutil.rmtree(folder)  # interrupted before its first checkpoint: start again
        t0, c0 = time.perf_counter(), time.process_time()
        pretrain(config, folder, resume=ckpt.exists(), progress=False)
        row.update(pretrain_wall_s=time.perf_counter() - t0, pretrain_cpu_s=time.process_time() - c0)
        state_all = load_checkpoint(ckpt)
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in backbone_state_dict(state_all).items()}
        d, backbone = config.method_config().feature_dim, config.method_config().backbone_3d
        rows = [r for r in read_log(folder / "log.csv") if r.get("loss") is not None]
        last = rows[-1]
        frames = 2 if config.method_config().data == "static" else config.data.length
        row.update(steps=int(state_all["step"]), sequences=int(state_all["step"]) * config.data.batch_size,
                   frames=int(state_all["step"]) * config.data.batch_size * frames,
                   final_loss=last["loss"], train_erank_backbone=last.get("erank_backbone_3d"),
                   train_erank_z=last.get("erank_z3d"), std_z3d=last.get("std_z3d"))
    t0 = time.perf_counter()
    row.update(evaluate(state, d, seed, batch, probe, backbone))
    row["eval_wall_s"] = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    os.replace(tmp, result_path)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return row


def parse_arms(extra: list[str]) -> dict:
    arms = dict(ARMS)
    for item in extra or []:
        name, _, rest = item.partition("=")
        config, _, sets = rest.partition(":")
        arms[name] = (config, tuple(s for s in sets.split(",") if s))
    return arms


# --- report ---------------------------------------------------------------------------------------
INT_FIELDS = ("seed", "steps", "sequences", "frames")
RESTORED_MACHINE = "Intel(R) Xeon(R) Processor"
"""The machine of the committed rows that name none: every run before the ``machine`` column (2-vCPU Intel
Xeon, Sapphire Rapids)."""
REFERENCE_MACHINE = "xeon"
"""Runs on this machine are labelled by their arm alone; runs elsewhere get `` @<machine>``. A CPU second
is not the same work on every machine (the 2-vCPU AMD EPYC VM ran ~0.55× the steps of the Xeon in the same
CPU seconds), so equal-budget comparisons pair runs of the same machine only."""


def machine_tag(model: str | None) -> str:
    """A short name of a CPU model string: ``xeon``, ``epyc``, or the model in lower case."""
    low = (model or RESTORED_MACHINE).lower()
    for tag in ("xeon", "epyc"):
        if tag in low:
            return tag
    return "-".join("".join(c if c.isalnum() else " " for c in low).split())[:24] or "cpu"


def _label(arm: str, tag: str) -> str:
    return arm if not tag or tag == REFERENCE_MACHINE else f"{arm} @{tag}"


def _label_parts(label: str) -> tuple[str, str]:
    """``(arm, machine tag)`` of a report label (tag ``""`` on the reference machine)."""
    arm, _, tag = label.partition(" @")
    return arm, tag


def group_label(row: dict) -> str:
    """The report's row label: the arm, plus `` @machine`` off the reference machine (random networks do
    not depend on the machine)."""
    return _label(row["arm"], "" if row["arm"] == "random" else machine_tag(row.get("machine")))


def restore_results(csv_path: Path, out: Path) -> list[Path]:
    """Write every row of a committed ``pretrain_study.csv`` as the ``result.json`` of its run folder under
    ``out/runs`` (only where none exists). The run folders are not committed, the CSV is: this lets a fresh
    clone add seeds or arms and re-make the report without re-running what is already measured. Restored
    runs have no checkpoint, so they cannot be resumed to a longer budget. Returns the files written."""
    written = []
    with open(csv_path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict = {}
            for key, value in raw.items():
                if key in ("arm", "machine"):
                    row[key] = value or None
                elif value in ("", None):
                    row[key] = None
                else:
                    row[key] = int(float(value)) if key in INT_FIELDS else float(value)
            row["machine"] = row.get("machine") or RESTORED_MACHINE
            path = run_folder(out, row["arm"], row["seed"], row["budget_s"], row["machine"]) / "result.json"
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1))
            os.replace(tmp, path)
            written.append(path)
    return written


def read_results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/result.json"))]


def _mean_sd(values: list[float]) -> tuple[float, float, int]:
    values = [v for v in values if v is not None and v == v]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return m, sd, n


T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Two-sided 95 % quantiles of Student's t for n − 1 degrees of freedom."""


def paired_interval(a: list[dict], b: list[dict], key: str) -> tuple[float, float, float, int]:
    """Mean of ``a − b`` paired by seed and its 95 % t interval (nan when fewer than 2 pairs)."""
    bs = {r["seed"]: r[key] for r in b}
    diffs = [r[key] - bs[r["seed"]] for r in a if r["seed"] in bs]
    m, sd, n = _mean_sd(diffs)
    if n < 2:
        return m, float("nan"), float("nan"), n
    h = T975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return m, m - h, m + h, n


def write_report(rows: list[dict], results: Path = RESULTS, budget: float | None = None) -> Path:
    """CSV, markdown (mean ± sd over seeds, paired differences to ``random`` and ``paper-literal``) and
    one figure (probe mIoU and effective rank per arm, every seed shown)."""
    results.mkdir(parents=True, exist_ok=True)
    seen_random: set = set()
    unique = []
    for r in rows:  # an untrained network does not depend on the budget: one row per seed, budget 0
        if r["arm"] == "random":
            if r["seed"] in seen_random:
                continue
            seen_random.add(r["seed"])
            r = {**r, "budget_s": 0.0}
        unique.append(r)
    rows = unique
    if budget is not None:
        rows = [r for r in rows if r["budget_s"] == budget or r["arm"] == "random"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: (r["arm"], r["budget_s"], machine_tag(r.get("machine")), r["seed"])):
        writer.writerow(r)
    csv_path = results / "pretrain_study.csv"
    tmp = csv_path.with_suffix(".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, csv_path)
    by_arm: dict[tuple, list[dict]] = {}
    for r in rows:
        key = ("random", 0) if r["arm"] == "random" else (group_label(r), r["budget_s"])
        if key[0] == "random" and any(x["seed"] == r["seed"] for x in by_arm.get(key, [])):
            continue  # an untrained network does not depend on the budget: one row per seed
        by_arm.setdefault(key, []).append(r)
    lines = ["# Pre-training study (issue 18): which switch ends the collapse", "",
             "Machines: every run names its CPU (`machine` in the CSV). Rows without a suffix ran on a "
             "2-vCPU Intel Xeon (Sapphire Rapids) VM; rows marked `@epyc` on a 2-vCPU AMD EPYC VM, which "
             "does ~0.55× the steps in the same CPU seconds: a row is one (arm, budget, machine), and "
             "the Δ vs paper-literal pairs runs of the same machine only (random networks, untrained, are "
             "the same everywhere). Load changes the work per CPU second too: every run here shared its "
             "machine with at most one other study process, i.e. one process per vCPU "
             "(`pretrain_study_epyc_loaded.csv` keeps earlier EPYC runs made with 4-5 processes, which did "
             "~0.8× the steps of these). "
             f"torch {__import__('torch').__version__}. Each run: one thread, data "
             "generated in the training process, stopped after its budget of "
             "process CPU seconds (= wall-clock on an idle core). Evaluation on a fixed held-out batch of "
             f"{EVAL_SEQUENCES} generated sequences (effective rank of the 3D backbone output, of 32; "
             f"feature-match recall over frames (0,1), (1,2), (2,3), {RECALL_SAMPLES} correspondences each) "
             f"and a linear probe ({PROBE_POINTS} labelled points per training room, 100 training rooms, "
             "evaluated on the 20 **validation** rooms). mean ± sd over seeds (n); Δ columns: paired by "
             "seed, 95 % t interval.", "",
             "| arm | budget s | n | steps | erank | recall@10cm | recall@20cm | probe mIoU | probe mIoU w/o "
             "wall, floor | Δ probe vs random | Δ probe vs paper-literal |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    rand = by_arm.get(("random", 0), [])

    def fmt(values, digits=2):
        m, sd, n = _mean_sd(values)
        return f"{m:.{digits}f} ± {sd:.{digits}f}" if n > 1 else (f"{m:.{digits}f}" if n else "–")

    def delta(a, b):
        m, lo, hi, n = paired_interval(a, b, "probe_miou")
        if n == 0:
            return "–"
        return f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" if n > 1 else f"{m:+.2f} (n=1)"

    order = sorted(by_arm, key=lambda k: (k[0] != "random", _label_parts(k[0])[1],
                                          _label_parts(k[0])[0] != "paper-literal", k[1], k[0]))
    for key in order:
        rs = by_arm[key]
        arm, tag = _label_parts(key[0])
        ref = by_arm.get((_label("paper-literal", tag), key[1]), [])
        lines.append(
            f"| {key[0]} | {key[1] if key[0] != 'random' else 0:g} | {len(rs)} | "
            f"{fmt([r.get('steps') for r in rs], 0)} | {fmt([r['erank'] for r in rs])} | "
            f"{fmt([r['recall_10cm'] for r in rs], 4)} | {fmt([r['recall_20cm'] for r in rs], 4)} | "
            f"{fmt([r['probe_miou'] for r in rs])} | {fmt([r['probe_miou_objects'] for r in rs])} | "
            f"{delta(rs, rand) if key[0] != 'random' else ''} | "
            f"{delta(rs, ref) if arm not in ('random', 'paper-literal') else ''} |")
    lines += targets_section(by_arm)
    md = results / "pretrain_study.md"
    existing = md.read_text() if md.exists() else ""
    marker = "<!-- findings -->"
    tail = existing[existing.index(marker):] if marker in existing else marker + "\n"
    tmp = md.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n\n" + tail)
    os.replace(tmp, md)
    plot(by_arm, order, results / "pretrain_study.png")
    return md


def targets_section(by_arm: dict) -> list[str]:
    """Issue 18's targets, computed from the rows of the ``recommended`` arm at each of its budgets, on each
    machine, against the random networks and PointContrast at the same budget on the same machine (paired
    by seed); one table per (machine, budget)."""
    groups = []  # (off the reference machine, machine tag, budget, row label); the reference machine first
    for label, budget in by_arm:
        arm, tag = _label_parts(label)
        if arm == "recommended":
            groups.append((tag != "", tag, budget, label))
    rand = by_arm.get(("random", 0), [])
    random_recall = {x["seed"]: x["recall_20cm"] for x in rand}
    lines: list[str] = []

    def ok(flag):
        return "**met**" if flag else "**not met**"

    def iv(d):
        return f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}] (n = {d[3]})"

    for _, tag, budget, label in sorted(groups):
        rec, pc = by_arm[(label, budget)], by_arm.get((_label("pointcontrast", tag), budget), [])
        erank, sd_erank, n = _mean_sd([r["erank"] for r in rec])
        ratios = [r["recall_20cm"] / random_recall.get(r["seed"], float("nan")) for r in rec]
        per_seed = ", ".join(f"{r['erank']:.2f}" for r in rec)
        ratio, sd_ratio, _ = _mean_sd(ratios)
        d_rand = paired_interval(rec, rand, "probe_miou")
        if pc:
            d_pc = paired_interval(rec, pc, "probe_miou")
            d_pc_obj = paired_interval(rec, pc, "probe_miou_objects")
            pc_row = (f"| linear probe ≥ PointContrast at the same budget | Δ = {iv(d_pc)}; without wall and "
                      f"floor Δ = {iv(d_pc_obj)} | {ok(d_pc[0] >= 0)}"
                      f"{' (interval above 0)' if d_pc[1] > 0 else ' (interval includes 0)'} |")
        else:
            pc_row = ("| linear probe ≥ PointContrast at the same budget | PointContrast not run at "
                      f"{budget:g} s | – |")
        where = f", {tag or REFERENCE_MACHINE} machine"
        lines += ["", f"## Targets of issue 18 (recommended preset `cpu-small`, {budget:g} s of CPU per run "
                  f"on one thread, i.e. {budget / 60:g} minutes of one core{where}; n seeds)", "",
                  "| target | measured | |", "|---|---|---|",
                  f"| effective rank of the backbone output ≥ 8 of 32 | {erank:.2f} ± {sd_erank:.2f} "
                  f"(n = {n}; per seed {per_seed}) | {ok(erank >= 8)} |",
                  f"| held-out recall @ 20 cm ≥ 4 × a random network | {ratio:.1f}× ± {sd_ratio:.1f} | "
                  f"{ok(ratio >= 4)} |",
                  f"| linear probe ≥ scratch + 3 mIoU, paired 95 % interval above 0 | Δ = {iv(d_rand)} | "
                  f"{ok(d_rand[0] >= 3 and d_rand[1] > 0)} |",
                  pc_row]
    return lines


def plot(by_arm: dict, order: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 0.32 * len(order) + 1.6), sharey=True)
    labels = [f"{a} ({b:g} s)" if a != "random" else "random" for a, b in order]
    for ax, key, title in zip(axes, ("probe_miou", "erank", "recall_20cm"),
                              ("linear probe mIoU (val rooms)",
                               "effective rank of the backbone output (of 32)",
                               "feature-match recall @ 20 cm"), strict=True):
        for y, k in enumerate(order):
            values = [r[key] for r in by_arm[k]]
            ax.scatter(values, [y] * len(values), s=18, color="#1f77b4", alpha=0.7)
            m, _, n = _mean_sd(values)
            if n:
                ax.plot([m, m], [y - 0.3, y + 0.3], color="#d62728", lw=2)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(order)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


CURVE_FIELDS = ("arm", "seed", "budget_s", "step", "loss", "loss_3d", "loss_3d4d", "loss_4d", "std_z3d",
                "erank_backbone_3d", "erank_z3d", "erank_backbone_4d", "erank_z4d", "budget_spent_s")


def write_curves(out: Path, arms: list[str], seed: int, budget: float, results: Path = RESULTS) -> Path:
    """The training logs of ``arms`` (one seed; ``NAME`` at ``budget`` or ``NAME@BUDGET``) as one CSV, for
    notebook 03's curves."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    from fourdcontrast.train.pretrain import read_log

    for item in arms:
        arm, _, at = item.partition("@")
        b = float(at) if at else budget
        for row in read_log(out / "runs" / f"{arm}-s{seed}-b{b:g}" / "log.csv"):
            if row.get("loss") is not None:
                writer.writerow({**row, "arm": arm, "seed": seed, "budget_s": b,
                                 "step": int(row["step"]), "budget_spent_s": row.get("budget_s")})
    path = results / "pretrain_study_curves.csv"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--arms", nargs="+", default=["all"])
    run.add_argument("--arm", action="append", default=[], metavar="NAME=CONFIG:k=v,k=v")
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--budget", type=float, default=90.0, help="process CPU seconds per run")
    run.add_argument("--shard", default="0/1", help="i/n: run every n-th job from the i-th")
    run.add_argument("--by-arm", action="store_true", help="finish every seed of an arm before the next arm")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    rep = sub.add_parser("report")
    rep.add_argument("--out", type=Path, default=DEFAULT_OUT)
    rep.add_argument("--budget", type=float, default=None)
    res = sub.add_parser("restore", help="write the committed CSV's rows back as run results")
    res.add_argument("--out", type=Path, default=DEFAULT_OUT)
    res.add_argument("--csv", type=Path, default=RESULTS / "pretrain_study.csv")
    cur = sub.add_parser("curves")
    cur.add_argument("--out", type=Path, default=DEFAULT_OUT)
    cur.add_argument("--arms", nargs="+", required=True)
    cur.add_argument("--seed", type=int, default=0)
    cur.add_argument("--budget", type=float, default=90.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.command == "report":
        print(write_report(read_results(args.out), budget=args.budget))
        return 0
    if args.command == "restore":
        print(f"{len(restore_results(args.csv, args.out))} results restored under {args.out / 'runs'}")
        return 0
    if args.command == "curves":
        print(write_curves(args.out, args.arms, args.seed, args.budget))
        return 0
    arms = parse_arms(args.arm)
    names = list(arms) if args.arms == ["all"] else args.arms
    unknown = [n for n in names if n not in arms]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {sorted(arms)}")
    i, n = (int(x) for x in args.shard.split("/"))
    jobs = ([(name, seed) for name in names for seed in args.seeds] if args.by_arm
            else [(name, seed) for seed in args.seeds for name in names])
    batch, probe = eval_batch(), probe_setup()
    for k, (name, seed) in enumerate(jobs):
        if k % n == i:
            run_one(name, arms, seed, args.budget, args.out, batch, probe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
