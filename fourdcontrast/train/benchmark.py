"""Speed and memory of one pre-training step: ``fourdcontrast benchmark pretrain`` and
``benchmarks/pretrain_step.py``.

A step is what :func:`~fourdcontrast.train.pretrain.pretrain` does per optimizer step: the meta-architecture's
forward, backward and an SGD update on one collated batch of generated sequences. For a preset
(``configs/pretrain/NAME.yaml``: ``paper`` = MinkUNet34 at 2 cm + MinkUNet14 4D at 5 cm, 4 frames;
``paper-4d-2cm`` = the same with the 4D U-Net at 2 cm) it reports per engine (ours, and MinkowskiEngine
where it imports, with identical weights, in the same run) and per setting of the activation-memory
switches (:data:`SWITCHES`, ours only): seconds per step (median of the timed steps after one warm-up
step), sequences/s, the data time per batch (generating and collating the sequences, one process) and
its share of a step, the voxels, the pairs per loss term, and the peak memory the first step adds (CPU:
resident-set high-water mark; CUDA: ``torch.cuda.max_memory_allocated``), also per sequence, with the
ratios of memory and time to the unswitched step of the same batch and the largest batch that fits in
:data:`MEMORY_LIMIT_GIB`. Each (engine, switches, batch) runs in a fresh subprocess of its own, so one
run's freed memory does not hide another's peak.

``--interleave ROUNDS`` times the switch settings in turn, round after round, in one process (the fair
comparison of step times on a machine whose load changes; memory comes from the separate runs).
``--breakdown`` adds what the unswitched forward keeps for its backward, by U-Net stage and by kind
(:func:`fourdcontrast.train.memory.saved_memory`). ``--backbone CONFIG`` adds the U-Net alone (one
forward+backward of :data:`fourdcontrast.models.benchmark.CONFIGS`' ``CONFIG``, e.g. the 4D U-Net on
the benchmark room sequence at 2 cm) with each switch, the protocol of the engine benchmark whose
MinkowskiEngine figures :data:`MINKOWSKI_BACKBONE_MIB` records.
"""

from __future__ import annotations

import argparse
import dataclasses
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
BACKBONE_SWITCHES: dict[str, dict] = {
    "none": {},
    "compact": {"compact_maps": True},
    "recompute": {"recompute_activations": True},
    "recompute+compact": {"recompute_activations": True, "compact_maps": True},
    "ckpt-all": {"checkpoint": "all"},
    "recompute+compact+ckpt-all-but-dec4": {"recompute_activations": True, "compact_maps": True,
                                            "checkpoint": "all-but-dec4"},
    "recompute+compact+ckpt-all": {"recompute_activations": True, "compact_maps": True, "checkpoint": "all"},
    "fused-loss": {"fused_pair_losses": True},
    "ckpt-all+fused-loss": {"checkpoint": "all", "fused_pair_losses": True},
    "recompute+compact+ckpt-all+fused-loss": {"recompute_activations": True, "compact_maps": True,
                                              "checkpoint": "all", "fused_pair_losses": True},
}
"""Named settings of the activation-memory switches: :class:`~fourdcontrast.models.resunet.MemoryOptions`
fields (``--backbone`` uses them as they are) and ``fused_pair_losses`` (``model.fused_pair_losses``: the
losses, so a pre-training step only; ``--backbone`` ignores it)."""


def _unet_options(name: str) -> dict:
    """The U-Net part of the switch setting ``name`` (for
    :func:`~fourdcontrast.models.resunet.memory_options`)."""
    return {k: v for k, v in BACKBONE_SWITCHES[name].items() if k != "fused_pair_losses"}


def switch_overrides(name: str) -> list[str]:
    """The config overrides of the switch setting ``name`` (a key of :data:`BACKBONE_SWITCHES`) for both
    U-Nets; every switch is set, so ``"none"`` also turns off switches a preset turns on."""
    options = BACKBONE_SWITCHES[name]
    checkpoint = options.get("checkpoint", "none")
    return [f"model.recompute_activations={str(options.get('recompute_activations', False)).lower()}",
            f"model.compact_maps={str(options.get('compact_maps', False)).lower()}",
            f"model.checkpoint_3d={checkpoint}", f"model.checkpoint_4d={checkpoint}",
            f"model.fused_pair_losses={str(options.get('fused_pair_losses', False)).lower()}"]


SWITCHES: dict[str, list[str]] = {name: switch_overrides(name) for name in BACKBONE_SWITCHES}
"""The settings of :data:`BACKBONE_SWITCHES` as pre-training config overrides (both U-Nets)."""
MINKOWSKI_BACKBONE_MIB = {"MinkUNet34-3D-2cm": (1258.0, 1351.0), "MinkUNet14-4D-5cm": (813.0, 827.0),
                          "MinkUNet14-4D-2cm": (3055.0, 3210.0)}
"""MinkowskiEngine 0.5.4 (CPU build): peak memory (MiB, lowest and highest recorded) of one
forward+backward of the engine benchmark's configurations, each in a fresh process — recorded in
``benchmarks/sparse_engine_profile.md`` (second and third rounds) on the development VM. Reference
figures from an earlier run, used where MinkowskiEngine does not import."""


def resolved_switches(model) -> dict:
    """The memory switches a :class:`~fourdcontrast.models.fourdcontrast.FourDContrast` runs with, as
    recorded in a benchmark row: each U-Net's :class:`~fourdcontrast.models.resunet.MemoryOptions` (None for
    a U-Net the method lacks or another engine's) and ``fused_pair_losses``."""
    out: dict = {"fused_pair_losses": bool(model.config.fused_pair_losses)}
    for name in ("encoder_3d", "encoder_4d"):
        memory = getattr(getattr(model, name, None), "memory", None)
        out[name] = None if memory is None else {"recompute_activations": memory.recompute_activations,
                                                 "compact_maps": memory.compact_maps,
                                                 "checkpoint": list(memory.checkpoint)}
    return out


def measure(preset: str, engine: str, batch_size: int, steps: int, device: str, weights: str | None,
            overrides: list[str], switches: str = "none") -> dict:
    """One engine's figures for one setting of the switches (runs in the worker process); the row records
    the switches the model ran with (:func:`resolved_switches`)."""
    from fourdcontrast.data.dataset import collate_sequences
    from fourdcontrast.models.benchmark import _reset_peak_rss, _status_kb
    from fourdcontrast.models.fourdcontrast import FourDContrast
    from fourdcontrast.train.config import load_config
    from fourdcontrast.train.pretrain import ReplacingDataset, make_dataset

    config = load_config(preset, [*overrides, *SWITCHES[switches], f"data.batch_size={batch_size}",
                                  f"model.backend={engine}"])
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
        "preset": preset, "engine": engine, "switches": switches, "device": device, "batch": batch_size,
        "voxels_3d": len(batch.coords_3d), "voxels_4d": len(batch.coords_4d),
        **{k: int(out[k]) for k in ("pairs_3d", "pairs_3d4d", "pairs_4d")},
        "loss": float(out["loss"].detach()), "warmup_s": warm, "times_s": times, "step_s": median,
        "sequences_per_s": batch_size / median, "data_s": data_s,
        "data_share": data_s / (data_s + median), "base_mib": base / 2**20, "peak_mib": peak / 2**20,
        "peak_mib_per_sequence": peak / 2**20 / batch_size, "threads": torch.get_num_threads(),
        "resolved_switches": resolved_switches(model),
    }


def _unswitched_step_inputs(preset: str, batch_size: int, weights: str | None, overrides: list[str]):
    """(config, model, batch) of one step of ``preset`` with every memory switch off: the model seeded with
    ``run.seed`` (or loaded from ``weights``), one collated batch of ``batch_size`` sequences."""
    from fourdcontrast.data.dataset import collate_sequences
    from fourdcontrast.models.fourdcontrast import FourDContrast
    from fourdcontrast.train.config import load_config
    from fourdcontrast.train.pretrain import ReplacingDataset, make_dataset

    config = load_config(preset, [*overrides, *SWITCHES["none"], f"data.batch_size={batch_size}"])
    data = ReplacingDataset(make_dataset(config))
    batch = collate_sequences([data[i][0] for i in range(batch_size)])
    torch.manual_seed(config.run.seed)
    model = FourDContrast(config.method_config())
    if weights:
        model.load_state_dict(torch.load(weights, weights_only=True))
    return config, model, batch


def measure_breakdown(preset: str, batch_size: int, weights: str | None, overrides: list[str]) -> dict:
    """The saved-tensor breakdown of the unswitched forward (runs in the worker process): bytes by
    ``"stage|kind"``, kernel maps by stage, the workspace, and the batch size."""
    from fourdcontrast.train.memory import saved_memory

    _, model, batch = _unswitched_step_inputs(preset, batch_size, weights, overrides)
    breakdown, _ = saved_memory(model, batch)
    return {"preset": preset, "batch": batch_size,
            "saved": {f"{s}|{k}": n for (s, k), n in breakdown.saved.items()},
            "kernel_maps": breakdown.kernel_maps, "workspace": breakdown.workspace}


def measure_backbone(config: str, switches: str, repeats: int = 1, engine: str = "torch") -> dict:
    """The U-Net of the engine benchmark's ``config`` alone on ``engine`` (``"torch"`` or ``"minkowski"``,
    which runs unswitched): peak memory of its first forward+backward in this (fresh) process and the
    median time of ``repeats`` more, with the switches ``switches``."""
    from fourdcontrast.models.benchmark import _build, _forward_backward, _make_input
    from fourdcontrast.models.resunet import memory_options

    if engine != "torch" and switches != "none":
        raise ValueError(f"the memory switches need our engine; {engine} runs with switches 'none'")
    model, coords = _build(config, engine)
    if engine == "torch":
        model.memory = memory_options(_unet_options(switches))
    model.train()
    x = _make_input(engine, coords)
    first, peak, _, _ = _forward_backward(model, x)
    times = [_forward_backward(model, _make_input(engine, coords))[0] for _ in range(repeats)]
    return {"config": config, "engine": engine, "switches": switches, "voxels": len(coords), "peak_mib": peak,
            "first_s": first, "step_s": statistics.median(times) if times else first,
            "threads": torch.get_num_threads()}


def measure_interleaved(preset: str, batch_size: int, switches: list[str], rounds: int, weights: str | None,
                        overrides: list[str]) -> dict:
    """Step times of the switch settings taken in turn, round after round, in one process on one batch
    (runs in the worker process): every setting sees the same load, which a shared machine does not
    hold steady from one process to the next. One untimed step per setting first."""
    from fourdcontrast.models.resunet import memory_options

    config, model, batch = _unswitched_step_inputs(preset, batch_size, weights, overrides)
    o = config.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    encoders = [m for m in (model.encoder_3d, model.encoder_4d) if m is not None]

    def step(name: str) -> float:
        for encoder in encoders:
            encoder.memory = memory_options(_unet_options(name))
        model.config = dataclasses.replace(
            model.config, fused_pair_losses=BACKBONE_SWITCHES[name].get("fused_pair_losses", False))
        t = time.perf_counter()
        model(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    for name in switches:
        step(name)
    times: dict[str, list[float]] = {name: [] for name in switches}
    loads = []
    for _ in range(rounds):
        for name in switches:
            times[name].append(step(name))
        loads.append(os.getloadavg()[0])
    return {"preset": preset, "batch": batch_size, "rounds": rounds, "times_s": times,
            "median_s": {name: statistics.median(ts) for name, ts in times.items()}, "loadavg": loads,
            "threads": torch.get_num_threads()}


def run_interleaved(preset: str, batch: int, switches: list[str], rounds: int,
                    overrides: list[str] | None = None, timeout: float = 7200.0) -> dict:
    """:func:`measure_interleaved` in a fresh worker process."""
    argv = ["--worker-kind", "interleave", "--preset", preset, "--batch", str(batch), "--steps", str(rounds),
            "--switches", ",".join(switches)]
    for item in overrides or []:
        argv += ["--set", item]
    return _run_worker(argv, timeout)


def format_interleaved(result: dict) -> str:
    """The interleaved step times as markdown, with each setting's ratio to ``none``."""
    med = result["median_s"]
    ref = med.get("none")
    load = f"{min(result['loadavg']):.1f}-{max(result['loadavg']):.1f}"
    lines = [f"Step times taken in turn ({result['preset']}, batch {result['batch']}, "
             f"{result['rounds']} rounds, load average {load}):", "",
             "| switches | median s/step | vs none | steps (s) |", "|---|---|---|---|"]
    for name, ts in result["times_s"].items():
        ratio = f"{med[name] / ref:.2f}" if ref else ""
        lines.append(f"| {name} | {med[name]:.2f} | {ratio} | {', '.join(f'{t:.1f}' for t in ts)} |")
    return "\n".join(lines)


def _worker(args) -> int:
    if args.worker_kind == "interleave":
        result = measure_interleaved(args.preset, args.batch, args.switches.split(","), args.steps,
                                     args.weights, args.set)
    elif args.worker_kind == "breakdown":
        result = measure_breakdown(args.preset, args.batch, args.weights, args.set)
    elif args.worker_kind == "backbone":
        result = measure_backbone(args.backbone, args.switch, args.steps, args.engine)
    else:
        result = measure(args.preset, args.engine, args.batch, args.steps, args.device, args.weights,
                         args.set, args.switch)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _run_worker(argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "fourdcontrast.train.benchmark", "--worker", *argv]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout)[-2000:]
    raise RuntimeError(f"benchmark worker {' '.join(argv)} failed (exit {proc.returncode}): {tail}")


def run_benchmark(preset: str = "paper", batch: int | list[int] = DEFAULT_BATCH, steps: int = DEFAULT_STEPS,
                  device: str = "cpu", engines: list[str] | None = None, overrides: list[str] | None = None,
                  timeout: float = 3600.0, switches: list[str] | None = None) -> list[dict]:
    """Measure every engine (and, on ours, every named setting of :data:`SWITCHES`) at every batch size on
    the same batch with the same initial weights; see the module docstring.

    Args:
        batch: sequences per step, or several batch sizes (each measured; the fit of memory against
            batch size gives the largest batch that fits).
        switches: keys of :data:`SWITCHES` for our engine (default ``["none"]``); MinkowskiEngine runs
            unswitched.
    """
    from fourdcontrast.models.fourdcontrast import FourDContrast
    from fourdcontrast.sparse.backend import minkowski_engine
    from fourdcontrast.train.config import load_config

    overrides = list(overrides or [])
    batches = [batch] if isinstance(batch, int) else list(batch)
    switches = list(switches or ["none"])
    unknown = [s for s in switches if s not in SWITCHES]
    if unknown:
        raise ValueError(f"unknown switches {unknown}; choose from {sorted(SWITCHES)}")
    if engines is None:
        engines = ["torch"] + (["minkowski"] if minkowski_engine() is not None else [])
    config = load_config(preset, overrides)
    torch.manual_seed(config.run.seed)
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "weights.pt")
        torch.save(FourDContrast(config.method_config()).state_dict(), weights)
        rows = []
        for engine in engines:
            for name in switches if engine == "torch" else ["none"]:
                for b in batches:
                    logger.info("measuring %s (%s) on %s (%s, batch %d)...", engine, name, device, preset, b)
                    argv = ["--preset", preset, "--engine", engine, "--batch", str(b), "--steps", str(steps),
                            "--device", device, "--weights", weights, "--switch", name]
                    for item in overrides:
                        argv += ["--set", item]
                    row = _run_worker(argv, timeout)
                    logger.info("  %.2f s/step, peak %.0f MiB (%.0f per sequence)", row["step_s"],
                                row["peak_mib"], row["peak_mib_per_sequence"])
                    rows.append(row)
    return rows


def run_breakdown(preset: str, batch: int, overrides: list[str] | None = None, timeout: float = 3600.0
                  ) -> dict:
    """The saved-tensor breakdown of the unswitched forward, in a fresh worker process."""
    argv = ["--worker-kind", "breakdown", "--preset", preset, "--batch", str(batch)]
    for item in overrides or []:
        argv += ["--set", item]
    return _run_worker(argv, timeout)


def run_backbone(config: str, switches: list[str] | None = None, repeats: int = 1, timeout: float = 3600.0,
                 engines: list[str] | None = None) -> list[dict]:
    """The U-Net alone (``--backbone``) on each engine (default: ours) — on ours with each of ``switches``
    (keys of :data:`BACKBONE_SWITCHES`), on MinkowskiEngine unswitched — each in a fresh worker process."""
    rows = []
    names = switches or [n for n, o in BACKBONE_SWITCHES.items() if "fused_pair_losses" not in o]
    for engine in engines or ["torch"]:
        for name in names if engine == "torch" else ["none"]:
            logger.info("measuring the backbone %s on %s (%s)...", config, engine, name)
            row = _run_worker(["--worker-kind", "backbone", "--backbone", config, "--engine", engine,
                               "--switch", name, "--steps", str(repeats)], timeout)
            logger.info("  %.2f s, peak %.0f MiB", row["step_s"], row["peak_mib"])
            rows.append(row)
    return rows


def _fits(rows: list[dict]) -> tuple[int, str]:
    """Largest batch whose total resident memory (process before the step + the step's peak) stays within
    :data:`MEMORY_LIMIT_GIB`, from rows of one (preset, engine, switches): a straight-line fit of memory
    against batch size when two or more sizes were measured, else proportional to the one measured."""
    limit = MEMORY_LIMIT_GIB * 1024
    points = sorted({r["batch"]: r["base_mib"] + r["peak_mib"] for r in rows}.items())
    if len(points) >= 2:
        (b0, m0), (b1, m1) = points[0], points[-1]
        slope = (m1 - m0) / (b1 - b0)
        if slope <= 0:
            return 0, "no growth with batch size measured"
        return int((limit - (m0 - slope * b0)) // slope), (
            f"fit over batches {b0}-{b1}: {m0 - slope * b0:.0f} MiB + {slope:.0f} MiB per sequence")
    b, m = points[0]
    return int(limit // (m / b)), f"proportional to batch {b} ({m:.0f} MiB in all)"


def format_report(rows: list[dict]) -> str:
    """A markdown table with the switches' memory and time ratios, the ME/ours ratio and the largest batch
    that fits in :data:`MEMORY_LIMIT_GIB`."""
    lines = ["| preset | engine | switches | device | batch | voxels 3D / 4D | pairs 3D / 3D4D / 4D | s/step "
             "| seq/s | data s/batch (share) | peak MiB (per seq) | memory / time vs none |",
             "|" + "---|" * 12]
    base = {(r["preset"], r["engine"], r["batch"]): r for r in rows if r.get("switches", "none") == "none"}
    for r in rows:
        ref = base.get((r["preset"], r["engine"], r["batch"]))
        ratio = ""
        if ref is not None and ref is not r:
            ratio = f"{r['peak_mib'] / ref['peak_mib']:.2f} / {r['step_s'] / ref['step_s']:.2f}"
        lines.append(
            f"| {r['preset']} | {r['engine']} | {r.get('switches', 'none')} | {r['device']} | {r['batch']} | "
            f"{r['voxels_3d']:,} / {r['voxels_4d']:,} | {r['pairs_3d']:,} / {r['pairs_3d4d']:,} / "
            f"{r['pairs_4d']:,} | {r['step_s']:.2f} | {r['sequences_per_s']:.3f} | {r['data_s']:.2f} "
            f"({r['data_share']:.0%}) | {r['peak_mib']:.0f} ({r['peak_mib_per_sequence']:.0f}) | {ratio} |")
    by = {(r["engine"], r["batch"]): r for r in rows if r.get("switches", "none") == "none"}
    for (engine, b), r in by.items():
        if engine == "torch" and ("minkowski", b) in by:
            me = by[("minkowski", b)]
            lines.append(f"\nbatch {b}: ours vs MinkowskiEngine: {me['step_s'] / r['step_s']:.2f}x faster "
                         f"per step; peak memory ours/ME {r['peak_mib'] / me['peak_mib']:.2f}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["preset"], r["engine"], r.get("switches", "none"), r["device"]), []).append(r)
    lines.append("")
    for (preset, engine, name, device), group in groups.items():
        if device != "cpu" or "base_mib" not in group[0]:
            continue
        fits, how = _fits(group)
        per = min(r["peak_mib_per_sequence"] for r in group) / 1024
        lines.append(f"{preset} {engine} {name}: {per:.2f} GiB per sequence (peak / batch, lowest measured); "
                     f"largest batch in {MEMORY_LIMIT_GIB:.0f} GiB: {fits} ({how})")
    return "\n".join(lines)


def format_breakdown(result: dict) -> str:
    """The breakdown of :func:`run_breakdown` as markdown (MiB per sequence)."""
    from fourdcontrast.train.memory import MemoryBreakdown

    saved = {tuple(k.split("|")): v for k, v in result["saved"].items()}
    breakdown = MemoryBreakdown(saved=saved, kernel_maps=result["kernel_maps"], workspace=result["workspace"])
    per = result["batch"]
    kinds = ", ".join(f"{k} {v / 2**20 / per:.0f}" for k, v in
                      sorted(breakdown.by_kind().items(), key=lambda kv: -kv[1]))
    return (f"Saved for the backward by the unswitched forward ({result['preset']}, batch {per}), MiB per "
            f"sequence:\n\n{breakdown.table(per=per)}\n\nby kind: {kinds}; total "
            f"{breakdown.total / 2**20 / per:.0f} MiB per sequence")


def format_backbone(rows: list[dict]) -> str:
    """The ``--backbone`` rows as markdown: against MinkowskiEngine measured in the same run where it was,
    else against its recorded peak (:data:`MINKOWSKI_BACKBONE_MIB`)."""
    lines = ["| backbone | engine | switches | voxels | peak MiB | s (fwd+bwd) | memory / time vs none | "
             "vs ME's peak |", "|" + "---|" * 8]
    base = {(r["config"], r.get("engine", "torch")): r for r in rows if r["switches"] == "none"}
    for r in rows:
        engine = r.get("engine", "torch")
        ref = base.get((r["config"], engine))
        ratio = (f"{r['peak_mib'] / ref['peak_mib']:.2f} / {r['step_s'] / ref['step_s']:.2f}"
                 if ref is not None and ref is not r else "")
        measured = base.get((r["config"], "minkowski"))
        recorded = MINKOWSKI_BACKBONE_MIB.get(r["config"])
        if engine == "minkowski":
            vs = ""
        elif measured is not None:
            vs = (f"{r['peak_mib'] / measured['peak_mib']:.2f}x (same run; time "
                  f"{r['step_s'] / measured['step_s']:.2f}x)")
        elif recorded:
            vs = f"{r['peak_mib'] / recorded[1]:.2f}-{r['peak_mib'] / recorded[0]:.2f}x (recorded)"
        else:
            vs = "n/a"
        lines.append(f"| {r['config']} | {engine} | {r['switches']} | {r['voxels']:,} | "
                     f"{r['peak_mib']:.0f} | {r['step_s']:.2f} | {ratio} | {vs} |")
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper", help="a pre-training config (default: paper)")
    parser.add_argument("--batch", default=str(DEFAULT_BATCH),
                        help="sequences per step; several comma-separated (default 4)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--engines", default=None,
                        help="comma-separated: torch,minkowski (default: both where ME imports)")
    parser.add_argument("--switches", default="none",
                        help="comma-separated settings of the memory switches for our engine: "
                             f"{sorted(SWITCHES)}")
    parser.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                        help="time the --switches settings in turn for ROUNDS rounds in one process (one "
                             "batch size) instead of one process each (memory is not measured then)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also account what the unswitched forward saves, by stage and kind")
    parser.add_argument("--backbone", default=None,
                        help="measure only this engine-benchmark U-Net (e.g. MinkUNet14-4D-2cm) with each "
                             f"of --backbone-switches ({sorted(BACKBONE_SWITCHES)}; default all)")
    parser.add_argument("--backbone-switches", default=None, help="comma-separated, for --backbone")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-kind", default="step", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--switch", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)


def run_cli(args: argparse.Namespace) -> int:
    if args.worker:
        args.batch = int(args.batch)
        return _worker(args)
    from fourdcontrast.models.benchmark import check_device

    check_device(args.device)
    if args.interleave:
        result = run_interleaved(args.preset, int(str(args.batch).split(",")[0]), args.switches.split(","),
                                 args.interleave, args.set)
        print(format_interleaved(result))
    elif args.backbone:
        names = args.backbone_switches.split(",") if args.backbone_switches else None
        engines = args.engines.split(",") if args.engines else None
        rows = run_backbone(args.backbone, names, repeats=args.steps, engines=engines)
        print(format_backbone(rows))
        result: object = rows
    else:
        engines = args.engines.split(",") if args.engines else None
        batches = [int(b) for b in str(args.batch).split(",")]
        rows = run_benchmark(args.preset, batches, args.steps, args.device, engines, args.set,
                             switches=args.switches.split(","))
        print(format_report(rows))
        result = rows
        if args.breakdown:
            breakdown = run_breakdown(args.preset, min(batches), args.set)
            print("\n" + format_breakdown(breakdown))
            result = {"rows": rows, "breakdown": breakdown}
    if args.json:
        from fourdcontrast.io.atomic import atomic_write_bytes

        atomic_write_bytes(Path(args.json), json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))
