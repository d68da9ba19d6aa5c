"""Generation benchmark: time to produce one augmented, validated sequence with its correspondences."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from fourdcontrast.data import make_sequence
from fourdcontrast.data.correspondence import DEFAULT_BACKEND, compute_correspondences, prepare_scene_cache
from fourdcontrast.data.memory import retain_freed_memory
from fourdcontrast.data.trajectory import candidate_positions, compute_height_map, nearest_candidate_lookup
from fourdcontrast.sources.furniture import default_objects
from fourdcontrast.sources.rooms import default_scene

logger = logging.getLogger(__name__)

PAPER_SCANS = 1201
"""ScanNet train scans (paper, Sec. 4)."""
PAPER_TRAJECTORIES = 20
"""Trajectories per scan (paper, Sec. 4)."""
BENCHMARK_SCENE_SEED = 16
"""Seed of the benchmark scene, the embedded procedural room :func:`fourdcontrast.sources.rooms.default_scene`
of this seed: 152 824 points, the closest of seeds 0–19 to the ~150k points of a ScanNet scan."""
BENCHMARK_OBJECT_POINTS = 1000
"""Points of the benchmark object, the first shipped CC-0 furniture model (paper, Sec. 4: 1000)."""


@dataclass
class GenerationBenchmark:
    """Result of :func:`benchmark_generation`.

    Attributes:
        scene_points: points of the benchmark scene.
        times_ms: (R,) per-sequence wall times, milliseconds.
        cpu_ms: (R,) per-sequence CPU times of the process, milliseconds (less inflated than wall time
            on a machine shared with other jobs).
        discard_rate: discarded augmentation attempts / all attempts.
        points_per_frame: mean points per frame of the generated sequences.
        sequence_cpu_ms: (R,) CPU ms of ``make_sequence`` (trajectory, composition, augmentation).
        correspondence_cpu_ms: (R,) CPU ms of ``compute_correspondences``.
        page_faults: mean minor page faults per sequence (fresh memory pages touched).
        retained_memory: whether the allocator kept freed memory (:func:`retain_freed_memory`).
    """

    scene_points: int
    times_ms: np.ndarray
    cpu_ms: np.ndarray
    discard_rate: float
    points_per_frame: float
    sequence_cpu_ms: np.ndarray | None = None
    correspondence_cpu_ms: np.ndarray | None = None
    page_faults: float = 0.0
    retained_memory: bool = False

    @property
    def median_ms(self) -> float:
        return float(np.median(self.times_ms))

    @property
    def median_cpu_ms(self) -> float:
        return float(np.median(self.cpu_ms))

    @property
    def projected_minutes(self) -> float:
        """Projected minutes for the paper's 1201 scans × 20 trajectories on one core."""
        return self.median_ms * PAPER_SCANS * PAPER_TRAJECTORIES / 1000.0 / 60.0


def benchmark_generation(
    repeats: int = 50,
    seed: int = 0,
    threads: int = 1,
    scene_seed: int = BENCHMARK_SCENE_SEED,
    retain_memory: bool = True,
    backend: str = DEFAULT_BACKEND,
) -> GenerationBenchmark:
    """Time ``make_sequence`` + ``compute_correspondences`` on a ~150k-point scene on ``threads`` cores,
    with the per-scene work (height map, candidates, 4D voxel cache) cached as the generator does.

    Args:
        repeats: timed sequences (after 3 warm-up ones).
        seed: seed of the sequences' randomness.
        threads: torch threads (the target is for one core).
        scene_seed: seed of the embedded room used as the scene.
        retain_memory: call :func:`~fourdcontrast.data.memory.retain_freed_memory` first, as a generation
            or data-loading worker should; False measures with the C allocator's defaults.
        backend: kernels of :func:`compute_correspondences` (``"auto"``, ``"numpy"``, ``"numba"``).
    """
    torch.set_num_threads(threads)
    retained = retain_freed_memory() if retain_memory else False
    rng = np.random.default_rng(seed)
    scene = default_scene(scene_seed)
    obj = default_objects(seed=0, n=BENCHMARK_OBJECT_POINTS)[0]
    hm = candidate_positions(compute_height_map(scene), obj.radius)
    lookup = nearest_candidate_lookup(hm)
    cache = prepare_scene_cache(scene)
    stats: dict = {}
    times, cpu, seq_cpu, corr_cpu, sizes, faults = [], [], [], [], [], 0
    for r in range(repeats + 3):
        if r == 3:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        seq = make_sequence(scene, obj, rng, height_map=hm, lookup=lookup, stats=stats)
        c1 = time.process_time()
        compute_correspondences(seq, cache=cache, backend=backend)
        dt, c2 = (time.perf_counter() - t0) * 1e3, time.process_time()
        if r >= 3:  # warm-up
            times.append(dt)
            cpu.append((c2 - c0) * 1e3)
            seq_cpu.append((c1 - c0) * 1e3)
            corr_cpu.append((c2 - c1) * 1e3)
            sizes.extend(len(f) for f in seq.frames)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    tries = stats.get("tries", 0)
    return GenerationBenchmark(
        scene_points=len(scene),
        times_ms=np.array(times),
        cpu_ms=np.array(cpu),
        discard_rate=stats.get("discarded", 0) / max(tries, 1),
        points_per_frame=float(np.mean(sizes)),
        sequence_cpu_ms=np.array(seq_cpu),
        correspondence_cpu_ms=np.array(corr_cpu),
        page_faults=faults / max(repeats, 1),
        retained_memory=retained,
    )


def format_report(result: GenerationBenchmark, scene_seed: int, backend: str) -> str:
    """The benchmark's printed report: figures, the 20 ms target and the paper-scale projection."""
    p90 = float(np.percentile(result.times_ms, 90))
    faults = f"{result.page_faults:.0f} page faults / sequence"
    return "\n".join([
        f"load average           {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} cores)",
        f"scene points           {result.scene_points}  (default_scene({scene_seed}))",
        f"points per frame       {result.points_per_frame:.0f}",
        f"freed memory retained  {result.retained_memory}  ({faults})",
        f"median ms / sequence   {result.median_ms:.1f}  (target <= 20)",
        f"median CPU ms          {result.median_cpu_ms:.1f}",
        f"  make_sequence        {np.median(result.sequence_cpu_ms):.1f}",
        f"  correspondences      {np.median(result.correspondence_cpu_ms):.1f}  (backend {backend})",
        f"min / p90 ms           {result.times_ms.min():.1f} / {p90:.1f}",
        f"discard rate           {result.discard_rate:.3f}",
        f"projected {PAPER_SCANS} x {PAPER_TRAJECTORIES}    {result.projected_minutes:.1f} min on one core",
    ])


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=50, help="timed sequences (after 3 warm-up ones)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sequences' randomness")
    parser.add_argument("--scene-seed", type=int, default=BENCHMARK_SCENE_SEED, help="embedded room seed")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep the C allocator's defaults (freed memory returns to the OS: page faults)")
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "numba"],
                        help="correspondence kernels")


def run_cli(args: argparse.Namespace) -> int:
    result = benchmark_generation(args.repeats, args.seed, scene_seed=args.scene_seed,
                                  retain_memory=not args.default_malloc, backend=args.backend)
    print(format_report(result, args.scene_seed, args.backend))
    return 0
