"""The paper's Fig. 5 on the embedded rooms: semantic predictions of networks fine-tuned from scratch,
PointContrast and 4DContrast at one level of a committed grid, on one test room, next to the ground truth.

Nothing here is tuned or pre-trained: each network is the grid's own cell, fine-tuned again — the same
preset, level, seed and cached backbone (``benchmark.finetune_cell_result``; a backbone the grid has not
pre-trained yet is an error) — and its test mIoU is printed next to the grid's CSV row, which it matches when
run on the grid's machine and torch (fine-tuning is seeded and runs on one thread). The room shown is fixed
before any prediction is looked at: test room ``--room`` (default 0).

Writes into ``--out`` (default the ``cpu-scannet`` grid's folder): ``figure5.png`` (ground truth, each
method's predictions, and its wrong points) and ``figure5.npz`` (the room's name, points, ground truth and
each method's predicted labels, so the figure can be redrawn without a network).

    python benchmarks/figure5.py                           # cpu-scannet, 10 % of the scenes, seed 0
    python benchmarks/figure5.py --methods scratch pointcontrast 4dcontrast --level 0.2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ("scratch", "pointcontrast@3600s", "4dcontrast@3600s")
"""The networks of the figure: the grid's primary comparison at the long budget."""


def run(preset_name: str, methods: tuple[str, ...], protocol: str, level: float, seed: int, room_index: int,
        out: Path, cache: Path) -> dict:
    import torch

    from fourdcontrast.downstream import benchmark as bm
    from fourdcontrast.downstream.report import read_results
    from fourdcontrast.downstream.segmentation import extract_features

    preset = bm.PRESETS[preset_name]
    if preset.task != "segmentation":
        raise SystemExit(f"preset {preset_name} is a {preset.task} grid; Fig. 5 is semantic segmentation")
    torch.set_num_threads(preset.threads or 1)
    backbones = [bm.cached_backbone(m, seed, preset, cache) for m in methods]  # fail before any work
    datasets = bm.load_rooms(preset, "test")
    room = datasets[1].scenes[room_index]
    rows = {(r["method"], r["protocol"], float(r["level"]), int(r["seed"])): r
            for r in read_results(out / "downstream.csv") if r["mode"] == "finetune"}
    predictions = {}
    for method, backbone in zip(methods, backbones, strict=True):
        result, row = bm.finetune_cell_result(backbone, protocol, level, seed, preset, "test", datasets)
        base = bm._finetune_base(preset)
        ((logits, inverse),) = extract_features(result.model, [room], base)
        predictions[method] = logits.argmax(1).numpy()[inverse]
        grid = rows.get((method, protocol, level, seed))
        there = f"{100 * float(grid['miou']):.1f} in the grid's CSV" if grid else "no row in its CSV yet"
        print(f"{method}: test mIoU {100 * float(row['miou']):.1f} here, {there}", flush=True)
    return {"room": room, "predictions": predictions}


def draw(points: np.ndarray, truth: np.ndarray, predictions: dict, class_names, title: str,
         path: Path) -> None:
    import fourdviz as fv

    fv.save_figure(fv.plot_semantic_comparison(points, truth, predictions, class_names, title=title), path,
                   dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-scannet")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="grid labels")
    p.add_argument("--protocol", choices=("scenes", "points"), default="scenes")
    p.add_argument("--level", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--room", type=int, default=0, help="index of the test room shown")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scannet-size")
    p.add_argument("--cache", type=Path, default=ROOT / "outputs" / "downstream",
                   help="the grid's cache (holds pretrain/)")
    args = p.parse_args(argv)
    if len(set(args.methods)) != len(args.methods):
        p.error(f"--methods repeats a label: {args.methods}")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads spin
    from fourdcontrast.io.atomic import atomic_path

    level = int(args.level) if args.protocol == "points" else args.level
    got = run(args.preset, tuple(args.methods), args.protocol, level, args.seed, args.room, args.out,
              args.cache)
    room, predictions = got["room"], got["predictions"]
    with atomic_path(args.out / "figure5.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, room=room.name, points=room.points, truth=room.labels,
                            methods=np.array(list(predictions)), **{f"pred_{k}": v for k, v in
                                                                    enumerate(predictions.values())})
    shown = f"{100 * level:g} % of the scenes" if args.protocol == "scenes" else f"{level} points per scene"
    draw(room.points, room.labels, predictions, room.class_names,
         f"Fig. 5 on the embedded rooms: test room {room.name}, fine-tuned at {shown}, seed {args.seed} "
         f"(grid {args.preset})", args.out / "figure5.png")
    print(f"wrote {args.out / 'figure5.png'} and figure5.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
