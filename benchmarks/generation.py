"""Median time to produce one augmented, validated 4-frame sequence with its correspondences from a
~150k-point scene (the embedded room of seed 16) on one core (target ≤ 20 ms), the discard rate, and the
projected time for the paper's 1201 scans × 20 trajectories."""

import argparse
import os

import numpy as np

from fourdcontrast.data.benchmark import (
    BENCHMARK_SCENE_SEED,
    PAPER_SCANS,
    PAPER_TRAJECTORIES,
    benchmark_generation,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene-seed", type=int, default=BENCHMARK_SCENE_SEED)
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep the C allocator's defaults (freed memory goes back to the OS: page faults)",
    )
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "numba"])
    args = parser.parse_args()
    print(f"load average           {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} cores)")
    result = benchmark_generation(
        args.repeats,
        args.seed,
        scene_seed=args.scene_seed,
        retain_memory=not args.default_malloc,
        backend=args.backend,
    )
    print(f"scene points           {result.scene_points}  (default_scene({args.scene_seed}))")
    print(f"points per frame       {result.points_per_frame:.0f}")
    faults = f"{result.page_faults:.0f} page faults / sequence"
    print(f"freed memory retained  {result.retained_memory}  ({faults})")
    print(f"median ms / sequence   {result.median_ms:.1f}  (target <= 20)")
    print(f"median CPU ms          {result.median_cpu_ms:.1f}")
    print(f"  make_sequence        {np.median(result.sequence_cpu_ms):.1f}")
    print(f"  correspondences      {np.median(result.correspondence_cpu_ms):.1f}  (backend {args.backend})")
    p90 = float(np.percentile(result.times_ms, 90))
    print(f"min / p90 ms           {result.times_ms.min():.1f} / {p90:.1f}")
    print(f"discard rate           {result.discard_rate:.3f}")
    print(f"projected {PAPER_SCANS} x {PAPER_TRAJECTORIES}    {result.projected_minutes:.1f} min on one core")
