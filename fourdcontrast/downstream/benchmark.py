"""The downstream benchmark (``fourdcontrast benchmark downstream``): does pre-training help semantic
segmentation on the embedded rooms, and in the paper's order (scratch < 3D pre-training < 4DContrast, the
largest gains with the least data; Table 2 and Fig. 4)?

For every method a 3D backbone is pre-trained once with the same budget (``cpu-small`` with
``optim.steps`` = the preset's ``pretrain_steps``) and cached under ``CACHE/pretrain/<method>-<N>steps``;
"scratch" uses none. Then, per seed, for every limited-scene fraction and limited-annotation level:

- **linear probe** (frozen backbone, linear classifier on its cached features), all levels;
- **fine-tuning** (whole U-Net), at the preset's fine-tuning levels (a subset on CPUs, see the preset).

The data-efficient subsets are drawn with ``split_seed = seed``, so the seeds' spread includes the choice
of scenes / points; the difference to scratch is paired by seed (same subset). Every finished run is
appended to the CSV at once, so an interrupted benchmark resumes where it stopped (``--resume`` is the
default; ``--fresh`` starts over). The markdown table and plots are rebuilt from the CSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fourdcontrast.io.atomic import atomic_path, atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "BenchmarkPreset", "run_benchmark", "write_report"]

METHODS: tuple[str, ...] = ("scratch", "pointcontrast", "4dcontrast", "csc", "3d-data-3d3d")
"""Initialisations compared (the paper's Table 2 rows but "4D data, 3D-3D only")."""

CSV_FIELDS = ("mode", "protocol", "level", "seed", "method", "miou", "macc", "oa", "train_scenes", "seconds")


@dataclass(frozen=True)
class BenchmarkPreset:
    """Sizes of one benchmark run (every field is our choice, sized for the machine; see ``PRESETS``)."""

    methods: tuple[str, ...] = METHODS
    pretrain_config: str = "cpu-small"
    pretrain_steps: int = 40
    pretrain_overrides: tuple[str, ...] = ()
    rooms: dict = field(default_factory=lambda: {"train": 100, "val": 20, "test": 20})
    scene_fractions: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20)
    point_levels: tuple[int, ...] = (20, 50, 100, 200)
    finetune_scene_fractions: tuple[float, ...] = (0.01, 0.05, 0.20)
    finetune_point_levels: tuple[int, ...] = (20, 200)
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_overrides: tuple[str, ...] = ("optim.steps=40", "optim.bn_recalibration=8")
    finetune_config: str = "cpu"


PRESETS: dict[str, BenchmarkPreset] = {
    "cpu": BenchmarkPreset(),
    "tiny": BenchmarkPreset(
        methods=("scratch", "pointcontrast", "4dcontrast"), pretrain_steps=1,
        pretrain_overrides=("data.scenes=2", "data.trajectories_per_scene=2", "data.holdout_sequences=1",
                            "run.recall_every=0", "data.workers=0"),
        rooms={"train": 4, "val": 1, "test": 1}, scene_fractions=(0.25, 0.5), point_levels=(20, 200),
        finetune_scene_fractions=(0.25,), finetune_point_levels=(20,), seeds=(0, 1),
        finetune_overrides=("optim.steps=2", "optim.bn_recalibration=1", "optim.probe_steps=20")),
}
"""``cpu``: 100 / 20 training / test rooms, pre-training 40 steps per method, probes at every level, fine-
tuning 40 steps (2 crops of 3 m per step) at 1 / 5 / 20 % of scenes and 20 / 200 points, 3 seeds.
``tiny``: the same pipeline in about two minutes (the slow test)."""


# --- pre-training cache ---------------------------------------------------------------------------
def pretrained_backbone(method: str, preset: BenchmarkPreset, cache: Path,
                        progress: bool) -> tuple[Path, dict]:
    """Pre-train ``method`` with the preset's budget (resuming a cached run) and export its backbone.
    Returns the exported ``.pth`` and the cost record ``{"seconds", "steps", "cached"}``."""
    from fourdcontrast.train.config import load_config
    from fourdcontrast.train.pretrain import CHECKPOINT, export_backbone, pretrain

    out = cache / "pretrain" / f"{method}-{preset.pretrain_steps}steps"
    cost_file = out / "cost.json"
    backbone = out / "backbone.pth"
    if backbone.is_file() and cost_file.is_file():
        return backbone, {**json.loads(cost_file.read_text()), "cached": True}
    overrides = [f"method={method}", f"optim.steps={preset.pretrain_steps}", *preset.pretrain_overrides]
    config = load_config(preset.pretrain_config, overrides)
    start = time.perf_counter()
    logger.info("pre-training %s for %d steps into %s", method, preset.pretrain_steps, out)
    resume = (out / CHECKPOINT).is_file()
    pretrain(config, out, resume=resume, progress=progress, overwrite=not resume)  # no checkpoint: anew
    seconds = time.perf_counter() - start
    export_backbone(out / CHECKPOINT, backbone)
    previous = json.loads(cost_file.read_text())["seconds"] if cost_file.is_file() else 0.0
    cost = {"seconds": previous + seconds, "steps": preset.pretrain_steps}
    atomic_write_bytes(cost_file, json.dumps(cost).encode())
    return backbone, {**cost, "cached": False}


# --- the grid -------------------------------------------------------------------------------------
def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _key(mode, protocol, level, seed, method) -> tuple:
    return (mode, protocol, f"{float(level):g}", int(seed), method)


def _append_row(path: Path, row: dict) -> None:
    """Append one row; the file is rewritten atomically (never half a row on disk)."""
    rows = _read_rows(path) + [row]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows({k: r.get(k, "") for k in CSV_FIELDS} for r in rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def run_benchmark(preset: BenchmarkPreset, out: str | Path, cache: str | Path, room_cache: str | None = None,
                  fresh: bool = False, progress: bool = True, threads: int | None = None) -> list[dict]:
    """Run (or resume) the grid; writes ``downstream.csv``, ``downstream.md``, plots and
    ``downstream_pretrain_cost.json`` into ``out``. Returns the CSV rows."""
    import torch

    from fourdcontrast.downstream.config import load_finetune_config
    from fourdcontrast.downstream.data import ROOM_CACHE_DIR, load_dataset
    from fourdcontrast.downstream.loading import read_state_dict
    from fourdcontrast.downstream.segmentation import finetune, linear_probe

    if threads:
        torch.set_num_threads(threads)
    out, cache = Path(out), Path(cache)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "downstream.csv"
    if fresh and csv_path.exists():
        csv_path.unlink()
    done = {_key(r["mode"], r["protocol"], r["level"], r["seed"], r["method"]) for r in _read_rows(csv_path)}

    rc = ROOM_CACHE_DIR if room_cache is None else (Path(room_cache) if room_cache else None)
    train = load_dataset("embedded", "train", rooms=preset.rooms, cache_dir=rc)
    test = load_dataset("embedded", "test", rooms=preset.rooms, cache_dir=rc)

    costs, states = {}, {"scratch": None}

    def state_of(method: str):
        # pre-trained lazily, in the order the jobs need them (scratch's runs start at once)
        if method not in states:
            path, costs[method] = pretrained_backbone(method, preset, cache, progress)
            states[method] = read_state_dict(path)
            atomic_write_bytes(out / "downstream_pretrain_cost.json", json.dumps(costs, indent=2).encode())
        return states[method]

    base = load_finetune_config(preset.finetune_config, [*preset.finetune_overrides])
    base = base.replace(data={"rooms": dict(preset.rooms)})

    def config_for(mode, protocol, level, seed):
        data = {"limited_scenes": None, "limited_points": None, "split_seed": seed}
        data["limited_scenes" if protocol == "scenes" else "limited_points"] = level
        return base.replace(data=data, model={"mode": "finetune" if mode == "finetune" else "linear"},
                            run={"seed": seed})

    levels = [("scenes", f) for f in preset.scene_fractions] + [("points", p) for p in preset.point_levels]
    ft_levels = ([("scenes", f) for f in preset.finetune_scene_fractions]
                 + [("points", p) for p in preset.finetune_point_levels])
    # linear probes first (cheap, features cached per backbone), then fine-tuning seed by seed, so that a
    # partial run is balanced across methods and levels
    jobs = [("linear", m, p, lv, s) for m in preset.methods for s in preset.seeds for p, lv in levels]
    jobs += [("finetune", m, p, lv, s) for s in preset.seeds for p, lv in ft_levels for m in preset.methods]
    jobs = [j for j in jobs if _key(j[0], j[2], j[3], j[4], j[1]) not in done]
    logger.info("downstream benchmark: %d runs to do (%d done)", len(jobs), len(done))
    from tqdm.auto import tqdm

    feature_caches: dict[str, dict] = {}
    for mode, method, protocol, level, seed in tqdm(jobs, desc="downstream", disable=not progress):
        cfg = config_for(mode, protocol, level, seed)
        if mode == "linear":
            cache_m = feature_caches.setdefault(method, {})
            if len(feature_caches) > 1:  # keep one backbone's features in memory at a time
                for k in [k for k in feature_caches if k != method]:
                    del feature_caches[k]
            result = linear_probe(cfg, train, test, state_of(method), progress=False, feature_cache=cache_m)
        else:
            feature_caches.clear()
            result = finetune(cfg, train, test, state_of(method), progress=False)
        m = result.metrics
        row = {"mode": mode, "protocol": protocol, "level": f"{level:g}", "seed": seed, "method": method,
               "miou": f"{m.miou:.4f}", "macc": f"{m.macc:.4f}", "oa": f"{m.overall_accuracy:.4f}",
               "train_scenes": result.train_scenes, "seconds": f"{result.seconds:.1f}"}
        _append_row(csv_path, row)
        logger.info("%s %s %s=%g seed %d: mIoU %.1f", mode, method, protocol, level, seed, 100 * m.miou)
    for method in preset.methods:
        state_of(method)  # cost records of every method, also when all runs were done before
    rows = _read_rows(csv_path)
    write_report(rows, out, costs, preset)
    return rows


# --- report ---------------------------------------------------------------------------------------
def _stats(values: list[float]) -> tuple[float, float, int]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan, 0
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size)


def summarise(rows: list[dict]) -> dict:
    """``{(mode, protocol, level, method): {"mean", "std", "n", "delta", "delta_std"}}`` in mIoU points
    (percent); delta = method − scratch paired by seed."""
    by = {}
    for r in rows:
        by.setdefault((r["mode"], r["protocol"], float(r["level"]), r["method"]), {})[int(r["seed"])] = \
            100 * float(r["miou"])
    out = {}
    for (mode, protocol, level, method), seeds in by.items():
        mean, std, n = _stats(list(seeds.values()))
        scratch = by.get((mode, protocol, level, "scratch"), {})
        paired = [v - scratch[s] for s, v in seeds.items() if s in scratch]
        dmean, dstd, dn = _stats(paired) if method != "scratch" else (math.nan, math.nan, 0)
        out[(mode, protocol, level, method)] = {"mean": mean, "std": std, "n": n, "delta": dmean,
                                                "delta_std": dstd, "delta_n": dn}
    return out


def _level_name(protocol: str, level: float) -> str:
    return f"{100 * level:g} % scenes" if protocol == "scenes" else f"{level:g} pts/scene"


def markdown_table(rows: list[dict], costs: dict | None = None, preset: BenchmarkPreset | None = None) -> str:
    s = summarise(rows)
    lines = ["# Downstream benchmark: semantic segmentation on the embedded rooms", "",
             "mIoU in percent on the test rooms, mean ± std over seeds (n = seeds); below it the "
             "difference to scratch, paired by seed (same data subset), mean ± std.", ""]
    if costs:
        lines.append("Pre-training (same budget for every method): " + ", ".join(
            f"{m} {c['steps']} steps {c['seconds'] / 60:.1f} min" for m, c in costs.items()) + ".")
        lines.append("")
    for mode, title in (("linear", "Linear probe (frozen backbone)"), ("finetune", "Fine-tuning")):
        keys = sorted({(p, lv) for (md, p, lv, _) in s if md == mode}, key=lambda k: (k[0] != "scenes", k[1]))
        if not keys:
            continue
        methods = [m for m in (preset.methods if preset else METHODS)
                   if any((mode, p, lv, m) in s for p, lv in keys)]
        lines += [f"## {title}", "", "| method | " + " | ".join(_level_name(p, lv) for p, lv in keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for m in methods:
            cells = []
            for p, lv in keys:
                e = s.get((mode, p, lv, m))
                if e is None:
                    cells.append("–")
                    continue
                cell = f"{e['mean']:.1f} ± {e['std']:.1f} (n={e['n']})"
                if m != "scratch" and not math.isnan(e["delta"]):
                    cell += f"<br>Δ {e['delta']:+.1f} ± {e['delta_std']:.1f}"
                cells.append(cell)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_figure4(rows: list[dict], path: Path, preset: BenchmarkPreset | None = None) -> None:
    """Fig.-4-style plots: mIoU vs % of scenes and vs labelled points, one row per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(rows)
    modes = [m for m in ("linear", "finetune") if any(k[0] == m for k in s)]
    if not modes:
        return
    fig, axes = plt.subplots(len(modes), 2, figsize=(10, 3.8 * len(modes)), squeeze=False)
    methods = preset.methods if preset else METHODS
    for i, mode in enumerate(modes):
        for j, protocol in enumerate(("scenes", "points")):
            ax = axes[i, j]
            for m in methods:
                pts = sorted((lv, e) for (md, p, lv, mm), e in s.items()
                             if md == mode and p == protocol and mm == m)
                if not pts:
                    continue
                x = [100 * lv if protocol == "scenes" else lv for lv, _ in pts]
                ax.errorbar(x, [e["mean"] for _, e in pts], yerr=[e["std"] for _, e in pts], marker="o",
                            capsize=3, label=m)
            ax.set_xscale("log")
            ax.set_xlabel("% of training scenes" if protocol == "scenes" else "labelled points per scene")
            ax.set_ylabel("mIoU (%)")
            ax.set_title(f"{'linear probe' if mode == 'linear' else 'fine-tuning'}: limited "
                         f"{'scenes' if protocol == 'scenes' else 'annotations'}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_report(rows: list[dict], out: Path, costs: dict | None = None,
                 preset: BenchmarkPreset | None = None) -> None:
    atomic_write_bytes(out / "downstream.md", (markdown_table(rows, costs, preset) + "\n").encode())
    plot_figure4(rows, out / "downstream_figure4.png", preset)


# --- command line ---------------------------------------------------------------------------------
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes (default cpu)")
    parser.add_argument("--out", default="benchmarks/results", help="where the CSV / markdown / plots go")
    parser.add_argument("--cache", default="outputs/downstream", help="pre-trained backbones are cached here")
    parser.add_argument("--room-cache", default=None, help="labelled-room cache folder ('' for none)")
    parser.add_argument("--fresh", action="store_true", help="discard the CSV's finished runs")
    parser.add_argument("--report-only", action="store_true", help="rebuild report + plots from the CSV")
    parser.add_argument("--seeds", type=int, default=None, help="use only the first N seeds of the preset")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--no-progress", action="store_true")


def run_cli(args: argparse.Namespace) -> int:
    preset = PRESETS[args.preset]
    if args.seeds:
        preset = replace(preset, seeds=preset.seeds[: args.seeds])
    out = Path(args.out)
    if args.report_only:
        costs_file = out / "downstream_pretrain_cost.json"
        costs = json.loads(costs_file.read_text()) if costs_file.is_file() else None
        rows = _read_rows(out / "downstream.csv")
        write_report(rows, out, costs, preset)
    else:
        rows = run_benchmark(preset, out, args.cache, args.room_cache, args.fresh, not args.no_progress,
                             args.threads)
    print((out / "downstream.md").read_text())
    print(f"{len(rows)} runs in {out / 'downstream.csv'}; plots in {out / 'downstream_figure4.png'}")
    return 0
