"""How should the VoteNet-style detector and the PointGroup-style instance segmentation be set up so that they
learn in 1000 CPU steps? A screen on the VALIDATION rooms only (issue 28), from scratch, before the grids
touch a test room.

Every arm fine-tunes ``configs/finetune/cpu-<task>.yaml`` (MinkUNet14S at 10 cm, 3 m crops, batch 2, 1000
steps; SGD lr 0.02 for detection, 0.1 for instances) from a random U-Net (the run's seed) on the embedded
split's 100 training rooms and scores mAP@0.5 / @0.25 (boxes / masks) on its 20 validation rooms.

Detection arms, in the order the detector was built:

- ``votenet``: VoteNet's choices where ours had a switch: proposals by farthest-point sampling of the votes
  (``detection.sampling=vote``), 128 proposals, no seed classification term, boxes of the crop's points;
- ``seed-fps``: proposals on the seeds' farthest-point sample (VoteNet's ``seed_fps``);
- ``seed-class``: + the seed classification term and its prior on the proposals' class (not in VoteNet);
- ``k512``: + 512 proposals a sample (the default);
- ``complete``: + boxes of the whole objects a crop cuts (``data.complete_instances``; the default);
- ``whole-rooms``: the defaults on whole rooms instead of 3 m crops (``data.crop=null``; ~4x a step).

Instance arms: ``crop-centres`` (offsets to the centre of the instance's voxels inside the crop),
``complete`` (to the centre of the whole instance, ``data.complete_instances``) and ``whole-rooms``. Each
instance run is also evaluated at the clustering settings of :data:`CLUSTER_SWEEP` (radius in voxels,
smallest cluster in voxels; evaluation only, the same network), rows ``<arm>/r<radius>-m<min>``. An
exploratory sweep of the ``complete`` network (seed 0) gave mAP@0.5 / @0.25 8.4 / 11.7 at r1-m5, 17.0 /
23.6 at r1.5-m5 (the old default), 18.5 / 29.6 at r1.5-m50, 18.5 / 33.8 at r2-m50 and r3-m50.

**What this screen found before it was written down** (exploratory runs of the same loop with the switches
patched in, seed 0, validation rooms, a loaded 2-core Xeon): vote-FPS proposals gave ~1 positive proposal per
object a step and 0.0 / 0.6 mAP@0.5 / @0.25; seed-FPS with per-class sizes 0.3 / 2.0; + the seed term 0.1 /
8.4; 512 proposals 0.6 / 7.5, + the prior 0.9 / 13.8; complete boxes 0.9 / 9.7 (size loss 0.47 vs 0.70).
Every crop arm stays near 0 at IoU 0.5: box sizes are ~1.2x off per axis after 1000 steps. The same
defaults on whole rooms (``whole-rooms``) gave 15.6 / 61.1 (chair 27 / 78, bed 20 / 100), at ~3x a crop
step's cost: a 3 m crop holds ~4 objects, most of them cut, and a proposal never sees a whole bed or sofa.
``configs/finetune/cpu-detection.yaml`` therefore trains on whole rooms.

Views arms (``--task views``, issue 28 item 6): detection on single-view partial scans
(``configs/finetune/cpu-detection-views.yaml``, the ``cpu-views`` grid's 1200 training / 100 validation views
at 5 cm cells) at 1000 and 3000 steps; the rule (:data:`VIEWS_RULE`): the grid takes the smallest step count
within 1 mAP@0.5 point of the best. A first look at 1000 steps, from scratch, seed 0, before this arm
existed: 4.8 / 19.3 mAP@0.5 / @0.25 on the validation views (248 CPU-s).

Rows are appended to ``benchmarks/results/task_setups.csv`` as each run finishes (atomically; an
interrupted screen resumes); ``report`` writes ``task_setups.md``. Run with
``python benchmarks/task_setups.py run --task detection [--arms ...] [--seeds ...] [--part P]`` (one process
per core, each with its own ``--part``), then ``... report``. The rows of the first runs (before
``OMP_WAIT_POLICY=PASSIVE`` was set here) count ~25 % of spinning OpenMP threads in their CPU seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CSV_PATH = RESULTS / "task_setups.csv"
MD_PATH = RESULTS / "task_setups.md"
STEPS = 1000
BASE = ["data.eval_split=val", "run.threads=1", f"optim.steps={STEPS}"]
DETECTION_ARMS: dict[str, list[str]] = {
    "votenet": ["detection.sampling=vote", "detection.proposals=128", "detection.seed_class_weight=0",
                "detection.seed_class_prior=false", "data.complete_instances=false", "data.crop=3.0"],
    "seed-fps": ["detection.sampling=seed", "detection.proposals=128", "detection.seed_class_weight=0",
                 "detection.seed_class_prior=false", "data.complete_instances=false", "data.crop=3.0"],
    "seed-class": ["detection.sampling=seed", "detection.proposals=128", "detection.seed_class_weight=1",
                   "detection.seed_class_prior=true", "data.complete_instances=false", "data.crop=3.0"],
    "k512": ["detection.sampling=seed", "detection.proposals=512", "detection.seed_class_weight=1",
             "detection.seed_class_prior=true", "data.complete_instances=false", "data.crop=3.0"],
    "complete": ["detection.sampling=seed", "detection.proposals=512", "detection.seed_class_weight=1",
                 "detection.seed_class_prior=true", "data.complete_instances=true", "data.crop=3.0"],
    "whole-rooms": ["detection.sampling=seed", "detection.proposals=512", "detection.seed_class_weight=1",
                    "detection.seed_class_prior=true", "data.crop=null"],
}
ARMS: dict[str, dict[str, list[str]]] = {
    "detection": DETECTION_ARMS,
    "instance": {"crop-centres": ["data.complete_instances=false", "data.crop=3.0"],
                 "complete": ["data.complete_instances=true", "data.crop=3.0"],
                 "whole-rooms": ["data.crop=null"]},
    "views": {"steps-1000": ["optim.steps=1000"], "steps-3000": ["optim.steps=3000"]},
}
CONFIGS: dict[str, tuple[str, str]] = {"detection": ("cpu-detection", "detection"),
                                       "instance": ("cpu-instance", "instance"),
                                       "views": ("cpu-detection-views", "detection")}
"""Screen task → (fine-tuning config, downstream task)."""
VIEW_ROOMS: dict[str, int] = {"train": 1200, "val": 100, "test": 200}
"""The views screen's data: the ``cpu-views`` grid's views (5 cm cells), validation views only."""
VIEWS_RULE = ("the cpu-views grid fine-tunes for the smallest step count of the views arms whose scratch "
              "validation mAP@0.5 is within 1 point of the best arm's (declared before the arms ran)")
CLUSTER_SWEEP: tuple[tuple[float, int], ...] = ((1.5, 5), (1.5, 20), (2.0, 20), (2.0, 50), (3.0, 50))
"""Clustering settings (radius in voxels, smallest cluster in voxels) every instance network is also scored
at."""
FIELDS = ("split", "task", "arm", "seed", "steps", "map50", "map25", "predictions", "instances", "cpu_s",
          "cpu")


def _csv_path(part: str | None) -> Path:
    return CSV_PATH if not part else CSV_PATH.with_name(f"{CSV_PATH.stem}_{part}.csv")


def read_rows(part: str | None = None, every_part: bool = True) -> list[dict]:
    from fourdcontrast.downstream.benchmark import read_rows as read_csv

    paths = [_csv_path(part)] if not every_part else sorted(RESULTS.glob(f"{CSV_PATH.stem}*.csv"))
    return [row for path in paths for row in read_csv(path)]


def run(task: str, arms: list[str], seeds: list[int], part: str | None) -> None:
    import torch

    from fourdcontrast.downstream.benchmark import _write_rows
    from fourdcontrast.downstream.config import load_finetune_config
    from fourdcontrast.downstream.data import load_dataset
    from fourdcontrast.downstream.tasks import get_task
    from fourdcontrast.downstream.training import finetune
    from fourdcontrast.machine import cpu_model

    torch.set_num_threads(1)
    rows = read_rows(part, every_part=False)
    done = {(r["task"], r["arm"], r["seed"]) for r in read_rows()}
    train = val = None
    for seed in seeds:
        for arm in arms:
            if (task, arm, str(seed)) in done:
                continue
            config, task_name = CONFIGS[task]
            views = ["data.store_voxel=0.05", f"data.rooms={VIEW_ROOMS}"] if task == "views" else []
            cfg = load_finetune_config(config, [*BASE, *views, f"run.seed={seed}", *ARMS[task][arm]])
            if train is None:
                kw = {"rooms": cfg.data.rooms, "store_voxel": cfg.data.store_voxel}
                train = load_dataset(cfg.data.dataset, "train", **kw)
                val = load_dataset(cfg.data.dataset, "val", **kw)
            result = finetune(cfg, train, val, None, progress=False, task=get_task(task_name))
            m = result.metrics
            rows.append({"split": "val", "task": task, "arm": arm, "seed": seed, "steps": cfg.optim.steps,
                         "map50": f"{100 * m.map50:.2f}", "map25": f"{100 * m.map25:.2f}",
                         "predictions": m.predictions, "instances": m.instances,
                         "cpu_s": f"{result.cpu_seconds:.0f}", "cpu": cpu_model()})
            _write_rows(_csv_path(part), rows, FIELDS)
            logging.info("%s %s seed %d: mAP@0.5 %.2f, @0.25 %.2f (%.0f CPU-s)", task, arm, seed,
                         100 * m.map50, 100 * m.map25, result.cpu_seconds)
            if task == "instance":
                from fourdcontrast.downstream.instance import evaluate_instances

                for radius, smallest in CLUSTER_SWEEP:
                    c = evaluate_instances(result.model, val.scenes, cfg, val.class_names, radius, smallest)
                    rows.append({"split": "val", "task": task, "arm": f"{arm}/r{radius:g}-m{smallest}",
                                 "seed": seed, "steps": STEPS, "map50": f"{100 * c.map50:.2f}",
                                 "map25": f"{100 * c.map25:.2f}", "predictions": c.predictions,
                                 "instances": c.instances, "cpu_s": "", "cpu": cpu_model()})
                _write_rows(_csv_path(part), rows, FIELDS)


def report() -> str:
    import numpy as np

    rows = read_rows()
    lines = ["# Instance and detection set-up on the validation rooms (issue 28)", "",
             "Generated by `python benchmarks/task_setups.py report` from `task_setups.csv`; the arms are in "
             "the script's docstring. From scratch, 1000 steps of `configs/finetune/cpu-<task>.yaml`, 100 "
             "training / 20 validation rooms (views: the steps of the arm, `cpu-detection-views.yaml`, 1200 "
             "training / 100 validation views); mAP (%) of boxes (detection, views) or masks (instances), "
             "mean over seeds (n). CPU: " + ", ".join(sorted({r["cpu"] for r in rows})) + ".", "",
             "| task | arm | mAP@0.5 | mAP@0.25 | predicted | CPU s |", "|---|---|---|---|---|---|"]
    for task, arms in ARMS.items():
        names = [a for arm in arms for a in [arm, *(f"{arm}/r{r:g}-m{m}" for r, m in CLUSTER_SWEEP)]]
        for arm in names:
            sel = [r for r in rows if (r["task"], r["arm"]) == (task, arm)]
            if not sel:
                continue
            cpu = f"{np.mean([float(r['cpu_s']) for r in sel]):.0f}" if sel[0]["cpu_s"] else "–"
            lines.append(f"| {task} | {arm} | {np.mean([float(r['map50']) for r in sel]):.1f} | "
                         f"{np.mean([float(r['map25']) for r in sel]):.1f} (n={len(sel)}) | "
                         f"{np.mean([int(r['predictions']) for r in sel]):.0f} | {cpu} |")
    lines += ["", f"Views: {VIEWS_RULE}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "report"))
    p.add_argument("--task", choices=list(ARMS), default="detection")
    p.add_argument("--arms", nargs="+", default=None, help="arms of the task (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--part", default=None, help="write task_setups_PART.csv (parallel processes)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads spin
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "run":
        arms = args.arms or list(ARMS[args.task])
        unknown = set(arms) - set(ARMS[args.task])
        if unknown:
            p.error(f"unknown {args.task} arms {sorted(unknown)}; arms: {list(ARMS[args.task])}")
        run(args.task, arms, args.seeds, args.part)
    from fourdcontrast.io.atomic import atomic_write_bytes

    if read_rows():
        atomic_write_bytes(MD_PATH, report().encode())
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
