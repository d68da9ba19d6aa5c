"""Speed and memory of the sparse backbones: our engine vs MinkowskiEngine (when it imports).

It lives next to the models because it times whole backbones (MinkUNet14/34 of :mod:`.resunet` on either
engine); the engine package :mod:`fourdcontrast.sparse` imports nothing from :mod:`fourdcontrast.models`.

Times: both engines run interleaved, run by run, in one subprocess per configuration
(``python -m fourdcontrast.models.benchmark --worker ...``), so both see the same load. Peak memory: one
forward+backward of one engine in a fresh subprocess of its own (``--memory-worker``), measured as the
kernel's resident-set high-water mark (VmHWM in ``/proc/self/status``, reset through
``/proc/self/clear_refs``) minus the resident set just before the run (model and input already built):
what the first forward+backward *adds*. It cannot be taken in the timing process: memory freed by one run
stays in the process (glibc keeps freed heap blocks), so a later run — of either engine — reuses it and
appears to add less (measured: ME's 4D 5 cm peak read 0.47 GiB after our run, 0.81 GiB in its own
process). (No sampling thread: polling from Python contends for the GIL and slows the run.)

With ``--device cuda`` the models and inputs live on the GPU, times are taken between
``torch.cuda.synchronize()`` calls, and peak memory is ``torch.cuda.max_memory_allocated`` minus the
memory allocated before the run (what torch's caching allocator handed out; ME allocates through torch's
allocator by default, so both engines are counted alike). That figure does not depend on what ran
before in the process, so on CUDA it is taken from the timed runs, without memory workers.

``--precision bf16`` also times the forward under ``torch.autocast(device, dtype=torch.bfloat16)`` (our
engine only; the table gives the bf16/fp32 speed ratio and the relative difference of the bf16 output
from the fp32 one). ``--map-share`` times forwards of our engine on the same input with the kernel maps
already built (the coordinate manager of an earlier forward) and with a fresh manager: the difference is
the time spent building kernel maps (coordinate sets, maps and offset groups), reported as a share of
the forward+backward. ``--quick`` runs small configurations (coarse voxels) once, for smoke tests.

Our engine runs its compiled CPU kernels where they build (:mod:`fourdcontrast.sparse.native`; the
table's ``kernels`` column says which path ran; ``FOURDCONTRAST_NATIVE=0`` times the PyTorch path).

Inputs are room-like surfaces, not random clouds: a floor, two walls, a table and boxes (3D, 2 cm), or the
same room with a chair-sized box moving through it over 4 frames (4D ``(x, y, z, t)``, 5 cm / 2 cm).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fourdcontrast.geometry import as_rng
from fourdcontrast.io.atomic import atomic_write_bytes
from fourdcontrast.sparse.quantize import quantize

logger = logging.getLogger(__name__)

# Paper, Sec. 4: 2 cm voxels for 3D, 5 cm for 4D; 4 frames per sequence.
VOXEL_3D = 0.02
VOXEL_4D = 0.05
FRAMES = 4
ROOM_SIZE = (5.0, 4.0, 2.4)  # metres (x, y, z)
SAMPLES_PER_VOXEL = 3.0  # surface samples per voxel face area (dense enough to cover every surface voxel)
REPEATS = 3
IN_CHANNELS = 3  # occupancy repeated 3× (supplement, Sec. B)
OUT_CHANNELS = 20
# OpenMP threads spin after every parallel region by default; on a machine whose cores are shared with
# other processes (this one: 2 cores, several workers) the spinning thread steals the core the main
# thread needs, and every engine slows down several-fold (measured: ops 2-8x slower with 2 threads than
# with 1). PASSIVE makes idle threads sleep; both engines run in the same worker, so both get it.
OMP_WAIT_POLICY = "PASSIVE"


def _plane(rng, origin, u, v, voxel):
    """Points on the parallelogram origin + a·u + b·v, a, b in [0, 1], dense at ``voxel``."""
    area = float(np.linalg.norm(np.cross(u, v)))
    n = int(SAMPLES_PER_VOXEL * area / voxel**2) + 1
    ab = rng.uniform(0, 1, size=(n, 2))
    return np.asarray(origin) + ab[:, :1] * np.asarray(u) + ab[:, 1:] * np.asarray(v)


def _box(rng, low, high, voxel, bottom=False):
    """Points on the faces of an axis-aligned box (no bottom face unless ``bottom``)."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    size = high - low
    ex, ey, ez = np.diag(size)
    faces = [
        (low + ez, ex, ey), (low, ex, ez), (low + ey, ex, ez), (low, ey, ez), (low + ex, ey, ez),
    ]
    if bottom:
        faces.append((low, ex, ey))
    return np.concatenate([_plane(rng, o, u, v, voxel) for o, u, v in faces])


def room_points(voxel_size: float, rng=0) -> np.ndarray:
    """(N, 3) points on a room's surfaces: floor, two walls, a table and two boxes (metres)."""
    rng = as_rng(rng)
    sx, sy, sz = ROOM_SIZE
    parts = [
        _plane(rng, (0, 0, 0), (sx, 0, 0), (0, sy, 0), voxel_size),  # floor
        _plane(rng, (0, 0, 0), (sx, 0, 0), (0, 0, sz), voxel_size),  # wall
        _plane(rng, (0, 0, 0), (0, sy, 0), (0, 0, sz), voxel_size),  # wall
        _box(rng, (2.0, 1.5, 0.70), (3.4, 2.5, 0.75), voxel_size, bottom=True),  # table top
        _box(rng, (0.2, 2.8, 0.0), (1.0, 3.8, 0.9), voxel_size),  # cabinet
        _box(rng, (3.8, 0.3, 0.0), (4.6, 1.1, 0.45), voxel_size),  # ottoman
    ]
    return np.concatenate(parts)


def room_like_voxels(rng: np.random.Generator, n_points: int, dimension: int, batch: int = 2,
                     extent: int = 24) -> np.ndarray:
    """Unique voxels on a floor, two walls and a box per batch item (a surface, not a random cloud): the
    input of the MinkowskiEngine parity tests and of ``benchmarks/minkowski_float32_threads.py``.

    Args:
        rng: the generator.
        n_points: points drawn per batch item before voxelisation.
        dimension: 3, or 4 (a random frame index in [0, 4) appended).
        batch: batch items.
        extent: room side in voxels.

    Returns:
        (N, 1 + dimension) int64 unique coordinates, batch index first.
    """
    parts = []
    for b in range(batch):
        pts = rng.uniform(0, extent, size=(n_points, 3))
        kind = rng.integers(0, 4, n_points)
        pts[kind == 0, 2] = 0  # floor
        pts[kind == 1, 0] = 0  # wall
        pts[kind == 2, 1] = extent - 1  # wall
        box = kind == 3
        pts[box] = pts[box] * 0.3 + extent * 0.4
        pts[box, rng.integers(0, 3)] = extent * 0.4
        vox = np.floor(pts).astype(np.int64)
        if dimension == 4:
            vox = np.concatenate([vox, rng.integers(0, 4, (n_points, 1))], axis=1)
        parts.append(np.concatenate([np.full((n_points, 1), b), vox], axis=1))
    return np.unique(np.concatenate(parts), axis=0)


def room_coordinates(voxel_size: float = VOXEL_3D, frames: int = 0, rng=0) -> np.ndarray:
    """Batched integer coordinates of the benchmark room.

    Args:
        voxel_size: voxel edge in metres.
        frames: 0 for a 3D scene ``(b, x, y, z)``; T > 0 for a 4D sequence ``(b, x, y, z, t)`` in which a
            chair-sized box moves across the room.
        rng: seed or generator.

    Returns:
        (N, 1+D) int64 unique coordinates (batch index 0).
    """
    rng = as_rng(rng)
    scene = room_points(voxel_size, rng)
    if frames == 0:
        vox = quantize(scene, voxel_size).coordinates
    else:
        obj = _box(rng, (0, 0, 0), (0.5, 0.5, 0.9), voxel_size)
        per_frame = []
        for t in range(frames):
            moved = obj + np.array([1.0 + 0.6 * t, 0.5 + 0.3 * t, 0.0])
            pts = np.concatenate([scene, moved])
            pts4 = np.concatenate([pts, np.full((len(pts), 1), float(t))], axis=1)
            per_frame.append(quantize(pts4, (voxel_size,) * 3 + (1.0,)).coordinates)
        vox = np.concatenate(per_frame)
    return np.concatenate([np.zeros((len(vox), 1), np.int64), vox], axis=1)


@dataclass
class Measurement:
    """One configuration × engine."""

    name: str
    engine: str
    voxels: int
    times_s: list[float]
    median_s: float
    voxels_per_s: float
    peak_rss_mb: float  # one forward+backward in a fresh process (see the module docstring)
    threads: int
    loadavg: tuple[float, float, float]
    device: str = "cpu"  # "cpu": peak_rss_mb is resident memory; "cuda": GPU memory allocated by torch
    kernels: str = ""  # our engine: "native" (compiled CPU kernels) or "pytorch"; ME: "minkowski"
    precision: str = "fp32"  # "fp32", or "bf16": the forward under torch.autocast(dtype=bfloat16)
    forward_s: float = float("nan")  # --map-share: median forward with a fresh coordinate manager
    forward_cached_s: float = float("nan")  # --map-share: median forward with its kernel maps cached
    map_share: float = float("nan")  # (forward_s - forward_cached_s) / median_s
    difference_vs_fp32: float = float("nan")  # bf16 rows: max |bf16 - fp32| / max |fp32| of the output


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


CONFIGS = {
    # name: (model, dimension, voxel size, frames)
    "MinkUNet34-3D-2cm": ("MinkUNet34", 3, VOXEL_3D, 0),
    "MinkUNet14-4D-5cm": ("MinkUNet14", 4, VOXEL_4D, FRAMES),
    "MinkUNet14-4D-2cm": ("MinkUNet14", 4, VOXEL_3D, FRAMES),
}
QUICK_CONFIGS = {
    # --quick: the same backbones' code paths on a few thousand voxels (smoke tests, not figures)
    "MinkUNet14-3D-10cm": ("MinkUNet14", 3, 0.10, 0),
    "MinkUNet14-4D-25cm": ("MinkUNet14", 4, 0.25, FRAMES),
}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
"""Precision name -> autocast dtype of the forward (None: plain float32)."""


def _config(name: str) -> tuple[str, int, float, int]:
    if name in CONFIGS:
        return CONFIGS[name]
    return QUICK_CONFIGS[name]


def _autocast(device: str, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op context for fp32)."""
    import contextlib

    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device, dtype=dtype)


def _build(config: str, engine: str, seed: int = 0):
    """The backbone of ``config`` on ``engine`` (seeded weights) and its input coordinates (N, 1+D)."""
    from fourdcontrast.models import resunet

    model_name, dimension, voxel, frames = _config(config)
    coords = room_coordinates(voxel, frames, rng=seed)
    torch.manual_seed(seed)
    model = getattr(resunet, model_name)(IN_CHANNELS, OUT_CHANNELS, dimension=dimension, backend=engine)
    return model, coords


def _make_input(engine: str, coords: np.ndarray, device: str = "cpu"):
    from fourdcontrast.sparse.backend import get_backend

    feats = torch.ones(len(coords), IN_CHANNELS, device=device)
    return get_backend(engine).SparseTensor(feats, torch.as_tensor(coords, device=device))


def check_device(device: str) -> None:
    """Raise ValueError unless ``device`` is ``"cpu"`` or a ``"cuda"`` that torch can use."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device 'cuda': torch {torch.__version__} sees no CUDA device "
                         "(torch.cuda.is_available() is False)")


def _forward_backward(model, x, device: str = "cpu", precision: str = "fp32"
                      ) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """One timed forward+backward: (seconds, peak added memory in MiB, output coordinates, output features).

    Memory is resident memory on the CPU, GPU memory allocated by torch on CUDA. ``precision`` "bf16"
    runs the forward under bfloat16 autocast (the backward outside it, as in training).
    """
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        if not _reset_peak_rss():
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs is not writable)")
        base = _status_kb("VmRSS") * 1024
    start = time.perf_counter()
    with _autocast(device, precision):
        out = model(x)
    out.F.float().sum().backward()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    top = torch.cuda.max_memory_allocated() if cuda else _status_kb("VmHWM") * 1024
    peak = (top - base) / 2**20
    model.zero_grad(set_to_none=True)
    return elapsed, peak, out.C.detach().long().cpu(), out.F.detach().float().cpu()


def _map_build_times(model, coords: np.ndarray, device: str, precision: str, repeats: int
                     ) -> tuple[list[float], list[float]]:
    """Forward times of our engine with a fresh coordinate manager and with its kernel maps cached.

    Both forwards see the same input and reuse one workspace (scratch buffers), so the difference is
    the time spent on coordinate sets, kernel maps and offset groups.

    Returns:
        (fresh forward seconds, cached forward seconds), ``repeats`` each, interleaved.
    """
    from fourdcontrast.sparse import CoordinateManager, SparseTensor

    coords_t = torch.as_tensor(coords, device=device)
    feats = torch.ones(len(coords), IN_CHANNELS, device=device)
    warm = SparseTensor(feats, coords_t)
    with _autocast(device, precision):
        model(warm)  # builds and caches every map in warm.manager
    fresh, cached = [], []
    for _ in range(repeats):
        for kind in ("fresh", "cached"):
            if kind == "fresh":
                manager = CoordinateManager()
                manager.workspace = warm.manager.workspace
                x = SparseTensor(feats, coords_t, manager=manager)
            else:
                x = SparseTensor(feats, coords_t, manager=warm.manager, coordinate_key=warm.coordinate_key)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with _autocast(device, precision):
                model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            (fresh if kind == "fresh" else cached).append(time.perf_counter() - start)
    return fresh, cached


def _relative_difference(coords_a, feats_a, coords_b, feats_b) -> float:
    """max |a − b| / max |b| after matching rows by coordinates."""
    table = {tuple(c): i for i, c in enumerate(coords_b.tolist())}
    perm = torch.tensor([table[tuple(c)] for c in coords_a.tolist()])
    ref = feats_b[perm]
    return float((feats_a - ref).abs().max() / ref.abs().max())


def measure(config: str, engines: list[str], repeats: int = REPEATS, seed: int = 0, device: str = "cpu",
            precisions: tuple[str, ...] = ("fp32",), map_share: bool = False
            ) -> tuple[list[Measurement], float | None]:
    """Forward+backward of one configuration on each engine, interleaved run by run (same load for both).

    The engines get identical weights (ME's state dict loaded into ours) and input; the first, untimed
    round of each precision warms up allocators and provides the output comparison.

    Args:
        config: a key of :data:`CONFIGS` or :data:`QUICK_CONFIGS`.
        engines: ``"torch"`` (ours) and/or ``"minkowski"``.
        repeats: timed runs per engine and precision.
        seed: seed of the input and the weights.
        device: ``"cpu"`` or ``"cuda"``.
        precisions: keys of :data:`PRECISIONS`; ``"bf16"`` runs our engine only.
        map_share: also time forwards with cached and with fresh kernel maps (our engine).

    Returns:
        One :class:`Measurement` per engine and precision (on the CPU ``peak_rss_mb`` is left NaN: memory
        is measured by :func:`measure_memory` in a process of its own) and the relative output
        difference ours vs ME in float32 (None with one engine).
    """
    models, coords = {}, None
    for engine in engines:
        models[engine], coords = _build(config, engine, seed)
        models[engine].train()
    if "minkowski" in models and "torch" in models:
        models["torch"].load_state_dict(models["minkowski"].state_dict())
    for model in models.values():
        model.to(device)
    # every (engine, precision) pair runs once per round, the order reversed every other round: all of
    # them see the same load (bf16 runs our engine only)
    combos = [(e, p) for p in precisions for e in engines if p == "fp32" or e == "torch"]
    times = {c: [] for c in combos}
    peaks = {c: [] for c in combos}
    outputs = {}
    for r in range(repeats + 1):
        for engine, precision in combos if r % 2 == 0 else combos[::-1]:
            elapsed, peak, c, f = _forward_backward(models[engine], _make_input(engine, coords, device),
                                                    device, precision)
            logger.info("%s %s %s run %d: %.3f s", config, engine, precision, r, elapsed)
            if r == 0:
                outputs[engine, precision] = (c, f)
            else:
                times[engine, precision].append(elapsed)
                peaks[engine, precision].append(peak)
    diff = None
    if ("minkowski", "fp32") in outputs and ("torch", "fp32") in outputs:
        diff = _relative_difference(*outputs["torch", "fp32"], *outputs["minkowski", "fp32"])
    rows = []
    for engine, precision in combos:
        versus = float("nan")
        if engine == "torch" and precision != "fp32" and ("torch", "fp32") in outputs:
            versus = _relative_difference(*outputs["torch", precision], *outputs["torch", "fp32"])
        run_times = times[engine, precision]
        median = statistics.median(run_times) if run_times else float("nan")
        peak = max(peaks[engine, precision]) if device == "cuda" and run_times else float("nan")
        row = Measurement(config, engine, len(coords), run_times, median, len(coords) / median, peak,
                          torch.get_num_threads(), os.getloadavg(), device,
                          kernels_of(engine, device, precision), precision, difference_vs_fp32=versus)
        if map_share and engine == "torch":
            fresh, cached = _map_build_times(models["torch"], coords, device, precision, max(repeats, 1))
            row.forward_s, row.forward_cached_s = statistics.median(fresh), statistics.median(cached)
            row.map_share = max(row.forward_s - row.forward_cached_s, 0.0) / median
        rows.append(row)
    return rows, diff


def kernels_of(engine: str, device: str = "cpu", precision: str = "fp32") -> str:
    """Which convolution code an engine runs: ``"native"``, ``"pytorch"`` (ours) or ``"minkowski"``."""
    if engine != "torch":
        return engine
    from fourdcontrast.sparse import native

    dtype = PRECISIONS[precision] or torch.float32
    return "native" if native.usable(torch.zeros(1, device=device, dtype=dtype)) else "pytorch"


def measure_memory(config: str, engine: str, seed: int = 0, device: str = "cpu", precision: str = "fp32"
                   ) -> float:
    """Peak resident memory (MiB) that the first forward+backward of ``config`` adds in this process.

    Meant for a fresh process (``--memory-worker``): in a process that already ran a pass, freed memory
    is reused and the figure reads low.
    """
    model, coords = _build(config, engine, seed)
    model.train().to(device)
    x = _make_input(engine, coords, device)
    _, peak, _, _ = _forward_backward(model, x, device, precision)
    return peak


def _worker(args) -> int:
    rows, diff = measure(args.config, args.engines, args.repeats, device=args.device,
                         precisions=tuple(args.precisions), map_share=args.map_share)
    print(json.dumps({"rows": [asdict(r) for r in rows], "difference": diff}))
    return 0


# Environment variables that set the thread count of every math library either engine uses (torch's
# OpenMP and MKL; the OpenBLAS MinkowskiEngine is built against).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _subprocess(argv: list[str], timeout: float, omp_wait_policy: str | None = None,
                threads: int | None = None) -> dict | None:
    cmd = [sys.executable, "-m", "fourdcontrast.models.benchmark", *argv]
    env = dict(os.environ)
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        logger.warning("timed out after %.0f s: %s", timeout, " ".join(argv))
        return None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        logger.warning("failed (%s): %s\n%s", proc.returncode, " ".join(argv), "\n".join(tail))
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_benchmark(configs: list[str], engines: list[str], repeats: int = REPEATS, timeout: float = 1800.0,
                  omp_wait_policy: str | None = OMP_WAIT_POLICY, threads: int | None = None,
                  device: str = "cpu", precisions: tuple[str, ...] = ("fp32",), map_share: bool = False,
                  memory: bool = True) -> tuple[list[Measurement], dict[str, float]]:
    """Measure every configuration: times with the engines interleaved in one fresh subprocess per
    configuration, then (on the CPU) each engine's peak memory in a fresh subprocess of its own.

    ``omp_wait_policy`` is exported as ``OMP_WAIT_POLICY`` to the worker (both engines run in it, so both
    get it); None keeps the caller's environment. ``threads`` (None: the libraries' default, one per
    core) sets the thread count of torch, MKL and OpenBLAS in the worker. ``device``: ``"cpu"`` or
    ``"cuda"`` (see the module docstring for what memory means there). ``precisions`` and ``map_share``:
    see :func:`measure`. ``timeout``: seconds per worker process. ``memory``: False skips the CPU memory
    workers (peak memory then NaN).

    Returns:
        The measurements and, per configuration, the relative output difference ours vs ME.
    """
    rows: list[Measurement] = []
    diffs: dict[str, float] = {}
    for config in configs:
        logger.info("measuring %s on %s ...", config, ", ".join(engines))
        argv = ["--worker", "--config", config, "--repeats", str(repeats), "--device", device]
        for engine in engines:
            argv += ["--engine", engine]
        for precision in precisions:
            argv += ["--precision", precision]
        if map_share:
            argv.append("--map-share")
        res = _subprocess(argv, timeout, omp_wait_policy, threads)
        if res is None:
            continue
        for row in res["rows"]:
            row["loadavg"] = tuple(row["loadavg"])
            if device != "cuda" and memory:  # CUDA rows carry the allocator's peak of their timed runs
                mem = _subprocess(["--memory-worker", "--config", config, "--engine", row["engine"],
                                   "--device", device, "--precision", row["precision"]],
                                  timeout, omp_wait_policy, threads)
                row["peak_rss_mb"] = float("nan") if mem is None else mem["peak_rss_mb"]
            rows.append(Measurement(**row))
        if res["difference"] is not None:
            diffs[config] = res["difference"]
    return rows, diffs


def format_table(rows: list[Measurement], diffs: dict[str, float]) -> str:
    """A text table with times (median and best run), throughput, memory, map-build share, and ratios
    (ours/ME speed and memory, bf16/fp32 speed)."""
    by = {(r.name, r.engine, r.precision): r for r in rows}
    lines = [
        f"{'configuration':<20} {'engine':<10} {'kernels':<9} {'prec':<5} {'voxels':>8} {'median s':>9} "
        f"{'best s':>7} {'kvox/s':>8} {'peak MiB':>9} {'maps %':>6} {'load1':>6}  runs (s)",
    ]
    for r in rows:
        runs = " ".join(f"{t:.3f}" for t in r.times_s)
        best = min(r.times_s) if r.times_s else float("nan")
        share = f"{100 * r.map_share:>6.1f}" if r.map_share == r.map_share else f"{'-':>6}"
        lines.append(
            f"{r.name:<20} {r.engine:<10} {r.kernels or '-':<9} {r.precision:<5} {r.voxels:>8} "
            f"{r.median_s:>9.3f} {best:>7.3f} {r.voxels_per_s / 1e3:>8.1f} {r.peak_rss_mb:>9.0f} {share} "
            f"{r.loadavg[0]:>6.2f}  {runs}"
        )
    for name in dict.fromkeys(r.name for r in rows):
        ours, theirs = by.get((name, "torch", "fp32")), by.get((name, "minkowski", "fp32"))
        if ours and theirs:
            diff = diffs.get(name)
            diff_txt = f"; outputs differ by {diff:.1e} (relative)" if diff is not None else ""
            lines.append(
                f"{name}: ours/ME speed-up {theirs.median_s / ours.median_s:.2f}x (median), "
                f"{min(theirs.times_s) / min(ours.times_s):.2f}x (best run); "
                f"peak memory {ours.peak_rss_mb / max(theirs.peak_rss_mb, 1e-9):.2f}x of ME's{diff_txt}"
            )
        low = by.get((name, "torch", "bf16"))
        if ours and low:
            lines.append(
                f"{name}: bf16 autocast {ours.median_s / low.median_s:.2f}x the speed of fp32 (median); "
                f"peak memory {low.peak_rss_mb / max(ours.peak_rss_mb, 1e-9):.2f}x; "
                f"output differs from fp32 by {low.difference_vs_fp32:.1e} (relative)"
            )
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS | QUICK_CONFIGS),
                        help="configuration(s) to run (default: all of the full-size ones)")
    parser.add_argument("--engine", action="append", choices=["torch", "minkowski"],
                        help="engine(s) (default: torch, plus minkowski when it imports); ours uses its "
                             "compiled CPU kernels when built (FOURDCONTRAST_NATIVE=0: the PyTorch path)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed repeats after one warm-up run")
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--omp-wait-policy", default=OMP_WAIT_POLICY,
                        help="OMP_WAIT_POLICY for the workers (default PASSIVE; '' keeps the environment's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of torch/MKL/OpenBLAS in the workers (default: one per core)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="run the models on the CPU (default) or the GPU")
    parser.add_argument("--precision", action="append", choices=sorted(PRECISIONS),
                        help="fp32 (default) and/or bf16 (forward under bfloat16 autocast; our engine only)")
    parser.add_argument("--map-share", action="store_true",
                        help="also time forwards with cached vs fresh kernel maps (share of map building)")
    parser.add_argument("--quick", action="store_true",
                        help="small configurations, one timed run (smoke test; not for figures)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    parser.add_argument("--skip-memory", action="store_true",
                        help="no memory workers on the CPU (faster smoke runs; peak memory not measured)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)


def run_cli(args: argparse.Namespace) -> int:
    try:
        check_device(args.device)
    except ValueError as exc:
        logger.error("error: %s", exc)
        return 1
    precisions = tuple(dict.fromkeys(args.precision or ["fp32"]))
    if args.memory_worker:
        peak = measure_memory(args.config[0], (args.engine or ["torch"])[0], device=args.device,
                              precision=precisions[0])
        print(json.dumps({"peak_rss_mb": peak}))
        return 0
    if args.worker:
        return _worker(argparse.Namespace(config=args.config[0], engines=args.engine or ["torch"],
                                          repeats=args.repeats, device=args.device, precisions=precisions,
                                          map_share=args.map_share))
    from fourdcontrast.sparse.backend import minkowski_engine

    engines = args.engine or (["torch", "minkowski"] if minkowski_engine() is not None else ["torch"])
    configs = args.config or list(QUICK_CONFIGS if args.quick else CONFIGS)
    repeats = 1 if args.quick and args.repeats == REPEATS else args.repeats
    policy = args.omp_wait_policy or None
    rows, diffs = run_benchmark(configs, engines, repeats, timeout=args.timeout, omp_wait_policy=policy,
                                threads=args.threads, device=args.device, precisions=precisions,
                                map_share=args.map_share, memory=not args.skip_memory)
    threads = rows[0].threads if rows else torch.get_num_threads()
    where = (f"GPU {torch.cuda.get_device_name()}" if args.device == "cuda"
             else f"{threads} threads, {os.cpu_count()} CPUs")
    memory = ("torch.cuda.max_memory_allocated added by a forward+backward (largest of the timed runs)"
              if args.device == "cuda" else
              "VmHWM - VmRSS added by the first forward+backward, each engine in its own process")
    print(f"torch {torch.__version__}, {where}, load average {os.getloadavg()[0]:.2f}, "
          f"OMP_WAIT_POLICY={policy or os.environ.get('OMP_WAIT_POLICY')}; peak memory = {memory}")
    print(format_table(rows, diffs))
    if args.json:
        payload = {"torch": torch.__version__, "device": where, "rows": [_finite(asdict(r)) for r in rows],
                   "differences": diffs}
        atomic_write_bytes(args.json, json.dumps(payload, indent=1).encode())
    failed = [c for c in configs if c not in {r.name for r in rows}]
    if failed:
        logger.error("error: %s failed (see the warnings above)", ", ".join(failed))
        return 1
    return 0


def _finite(record: dict) -> dict:
    """A measurement record with NaN floats as None (strict JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(_parser)
    sys.exit(run_cli(_parser.parse_args()))
