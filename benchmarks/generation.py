"""Median time to produce one augmented, validated 4-frame sequence with its correspondences from a
~150k-point scene on one core (target ≤ 20 ms), the discard rate, and the projected time for the paper's
1201 scans × 20 trajectories."""

import argparse

import numpy as np

from fourdcontrast.data.benchmark import PAPER_SCANS, PAPER_TRAJECTORIES, benchmark_generation

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = benchmark_generation(args.repeats, args.seed)
    print(f"scene points           {result.scene_points}")
    print(f"points per frame       {result.points_per_frame:.0f}")
    print(f"median ms / sequence   {result.median_ms:.1f}  (target <= 20)")
    print(f"median CPU ms          {result.median_cpu_ms:.1f}")
    print(f"  make_sequence        {np.median(result.sequence_cpu_ms):.1f}")
    print(f"  correspondences      {np.median(result.correspondence_cpu_ms):.1f}")
    p90 = float(np.percentile(result.times_ms, 90))
    print(f"min / p90 ms           {result.times_ms.min():.1f} / {p90:.1f}")
    print(f"discard rate           {result.discard_rate:.3f}")
    print(f"projected {PAPER_SCANS} x {PAPER_TRAJECTORIES}    {result.projected_minutes:.1f} min on one core")
