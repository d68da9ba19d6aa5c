"""Speed and memory of one pre-training step: ``fourdcontrast benchmark pretrain`` and
``benchmarks/pretrain_step.py``.

A step is what :func:`~fourdcontrast.train.pretrain.pretrain` does per optimizer step: the meta-architecture's
forward, backward and an SGD update on one collated batch of generated sequences. For a preset
(``configs/pretrain/NAME.yaml``: ``paper`` = MinkUNet34 at 2 cm + MinkUNet14 4D at 5 cm, 4 frames) it
reports per engine (ours, and MinkowskiEngine where it imports, with identical weights, in the same run):
seconds per step (median of the timed steps after one warm-up step), sequences/s, the data time per
batch (generating and collating the sequences, one process) and its share of a step, the voxels, the
pairs per loss term, and the peak memory the first step adds (CPU: resident-set high-water mark; CUDA:
``torch.cuda.max_memory_allocated``), also per sequence. Each engine runs in a fresh subprocess of its
own, so one engine's freed memory does not hide the other's peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEFAULT_STEPS = 3
"""Timed steps per engine (after one warm-up step)."""
DEFAULT_BATCH = 4
"""Sequences per step for the benchmark (the paper trains with 12 on GPUs)."""
MEMORY_LIMIT_GIB = 24.0
"""Memory of the machine the "largest batch that fits" estimate is made for (this VM: 24 GiB)."""


def measure(preset: str, engine: str, batch_size: int, steps: int, device: str, weights: str | None,
            overrides: list[str]) -> dict:
    """One engine's figures (runs in the worker process)."""
    from fourdcontrast.data.dataset import collate_sequences
    from fourdcontrast.models.fourdcontrast import FourDContrast
    from fourdcontrast.sparse.benchmark import _reset_peak_rss, _status_kb
    from fourdcontrast.train.config import load_config
    from fourdcontrast.train.pretrain import ReplacingDataset, make_dataset

    config = load_config(preset, [*overrides, f"data.batch_size={batch_size}", f"model.backend={engine}"])
    t0 = time.perf_counter()
    data = ReplacingDataset(make_dataset(config))
    items = [data[i] for i in range(batch_size)]
    batch = collate_sequences([s for s, _ in items])
    data_s = time.perf_counter() - t0
    torch.manual_seed(config.run.seed)
    model = FourDContrast(config.method_config())
    if weights:
        model.load_state_dict(torch.load(weights, weights_only=True))
    model.to(device)
    batch = batch.to(device)
    o = config.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cuda = device.startswith("cuda")

    def step() -> tuple[float, dict]:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = model(batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
        base = _status_kb("VmRSS") * 1024
    warm, out = step()
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else (_status_kb("VmHWM") * 1024 - base)
    times = [step()[0] for _ in range(steps)]
    median = statistics.median(times) if times else warm
    return {
        "preset": preset, "engine": engine, "device": device, "batch": batch_size,
        "voxels_3d": len(batch.coords_3d), "voxels_4d": len(batch.coords_4d),
        **{k: int(out[k]) for k in ("pairs_3d", "pairs_3d4d", "pairs_4d")},
        "loss": float(out["loss"].detach()), "warmup_s": warm, "times_s": times, "step_s": median,
        "sequences_per_s": batch_size / median, "data_s": data_s,
        "data_share": data_s / (data_s + median), "peak_mib": peak / 2**20,
        "peak_mib_per_sequence": peak / 2**20 / batch_size, "threads": torch.get_num_threads(),
    }


def _worker(args) -> int:
    result = measure(args.preset, args.engine, args.batch, args.steps, args.device, args.weights, args.set)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _run_worker(preset, engine, batch, steps, device, weights, overrides, timeout) -> dict:
    cmd = [sys.executable, "-m", "fourdcontrast.train.benchmark", "--worker", "--preset", preset, "--engine",
           engine, "--batch", str(batch), "--steps", str(steps), "--device", device]
    if weights:
        cmd += ["--weights", weights]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout)[-2000:]
    raise RuntimeError(f"{engine} worker failed (exit {proc.returncode}): {tail}")


def run_benchmark(preset: str = "paper", batch: int = DEFAULT_BATCH, steps: int = DEFAULT_STEPS,
                  device: str = "cpu", engines: list[str] | None = None, overrides: list[str] | None = None,
                  timeout: float = 3600.0) -> list[dict]:
    """Measure every engine on the same batch with the same initial weights; see the module docstring."""
    from fourdcontrast.models.fourdcontrast import FourDContrast
    from fourdcontrast.sparse.backend import minkowski_engine
    from fourdcontrast.train.config import load_config

    overrides = list(overrides or [])
    if engines is None:
        engines = ["torch"] + (["minkowski"] if minkowski_engine() is not None else [])
    config = load_config(preset, overrides)
    torch.manual_seed(config.run.seed)
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "weights.pt")
        torch.save(FourDContrast(config.method_config()).state_dict(), weights)
        rows = []
        for engine in engines:
            logger.info("measuring %s on %s (%s, batch %d)...", engine, device, preset, batch)
            rows.append(_run_worker(preset, engine, batch, steps, device, weights, overrides, timeout))
    return rows


def format_report(rows: list[dict]) -> str:
    """A markdown table, the ME/ours ratio and the memory extrapolation to the paper's batch."""
    lines = ["| preset | engine | device | batch | voxels 3D / 4D | pairs 3D / 3D4D / 4D | s/step | seq/s | "
             "data s/batch (share) | peak MiB (per seq) |", "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['engine']} | {r['device']} | {r['batch']} | {r['voxels_3d']:,} / "
            f"{r['voxels_4d']:,} | {r['pairs_3d']:,} / {r['pairs_3d4d']:,} / {r['pairs_4d']:,} | "
            f"{r['step_s']:.2f} | {r['sequences_per_s']:.3f} | {r['data_s']:.2f} ({r['data_share']:.0%}) | "
            f"{r['peak_mib']:.0f} ({r['peak_mib_per_sequence']:.0f}) |")
    by = {r["engine"]: r for r in rows}
    if "torch" in by and "minkowski" in by:
        ratio = by["minkowski"]["step_s"] / by["torch"]["step_s"]
        lines.append(f"\nours vs MinkowskiEngine: {ratio:.2f}x faster per step (target >= 2x); "
                     f"peak memory ours/ME {by['torch']['peak_mib'] / by['minkowski']['peak_mib']:.2f}")
    for r in rows:
        per = r["peak_mib_per_sequence"] / 1024
        if r["device"] == "cpu" and per > 0:
            fits = int(MEMORY_LIMIT_GIB // per)
            lines.append(f"{r['engine']}: ~{per:.2f} GiB per sequence -> about {fits} "
                         f"sequences fit in {MEMORY_LIMIT_GIB:.0f} GiB; the paper's batch of 12 needs "
                         f"~{12 * per:.1f} GiB (linear extrapolation from batch {r['batch']})")
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper", help="a pre-training config (default: paper)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="sequences per step (default 4)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--engines", default=None,
                        help="comma-separated: torch,minkowski (default: both where ME imports)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)


def run_cli(args: argparse.Namespace) -> int:
    if args.worker:
        return _worker(args)
    from fourdcontrast.sparse.benchmark import check_device

    check_device(args.device)
    engines = args.engines.split(",") if args.engines else None
    rows = run_benchmark(args.preset, args.batch, args.steps, args.device, engines, args.set)
    print(format_report(rows))
    if args.json:
        from fourdcontrast.io.atomic import atomic_write_bytes

        atomic_write_bytes(Path(args.json), json.dumps(rows, indent=1).encode())
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))
