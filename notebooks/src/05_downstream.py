# %% [markdown]
# # 05 — Downstream: does pre-training help when labels are scarce? (4DContrast, Sec. 4–5, Fig. 4)
#
# The paper's claim (Sec. 5, Table 2, Fig. 4, Table 6): a 3D backbone pre-trained with 4DContrast
# **fine-tunes to better semantic segmentation** than one trained from scratch and than 3D-only
# pre-training (PointContrast, CSC), and the gain is **largest when little labelled data is available**
# (ScanNet's data-efficient benchmark, Table 6: +1.4 mIoU at 1 % of the scenes, +8.6 at 10 %, +7.3 at 20 %,
# against +2.0 with all of them, Table 2).
#
# This notebook:
#
# 1. explains the **data-efficient protocol** — limited scene reconstructions and limited annotations —
#    and the seeded rule that picks the subsets (`fourdcontrast.downstream.splits`);
# 2. runs a **short fine-tune and a linear probe**, from scratch and from the shipped pre-trained
#    backbone, on the embedded labelled rooms;
# 3. turns the **committed benchmark** (`benchmarks/results/scannet-size/downstream.csv`, from
#    `fourdcontrast benchmark downstream`) into Figure-4-style plots and a Table-2-style table with spreads
#    over seeds, and reads its pre-declared primary comparisons;
# 4. draws **predictions against the ground truth** on a test room;
# 5. says what the numbers mean for the paper's claim.

# %%
import json
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, Markdown, display

import fourdcontrast as fc
import fourdviz as fv
from fourdcontrast.downstream.benchmark import METHODS as BENCHMARK_METHODS
from fourdcontrast.downstream.benchmark import LPFT_POINTS, PRESETS, random_backbone_state
from fourdcontrast.downstream.report import budget_curve_lines, cell_values, compare, line_style, \
    method_order as report_method_order, plot_budget_curve, primary_comparisons, primary_sentence, read_results, \
    sanity_checks, summarise
from fourdcontrast.downstream.config import load_finetune_config
from fourdcontrast.downstream.data import load_dataset
from fourdcontrast.downstream.loading import read_state_dict
from fourdcontrast.downstream.metrics import IGNORE_LABEL
from fourdcontrast.downstream.segmentation import extract_features, finetune, linear_probe
from fourdcontrast.downstream.splits import LIMITED_POINTS, LIMITED_SCENE_FRACTIONS, limited_annotations, \
    limited_scenes
from fourdcontrast.sources.classes import CLASS_NAMES
from fourdviz.colors import label_colors

QUICK = os.environ.get("FOURDCONTRAST_QUICK", "0") == "1"
PRESET = {"rooms": {"train": 3, "val": 1, "test": 1}, "points": 50, "steps": 3, "probe_steps": 30,
          "bn": 1} if QUICK else \
         {"rooms": {"train": 20, "val": 1, "test": 4}, "points": 50, "steps": 100, "probe_steps": 300,
          "bn": 8}
ROOT = Path(fc.__file__).resolve().parents[1]
# the shipped checkpoint (FOURDCONTRAST_PRETRAINED=path/to/backbone.pth evaluates one of yours instead)
SHIPPED = Path(os.environ.get("FOURDCONTRAST_PRETRAINED") or
               Path(fc.__file__).parent / "assets" / "pretrained" / "cpu-small-backbone.pth")
# the ScanNet-sized grid of issue 27 (FOURDCONTRAST_DOWNSTREAM_CSV=benchmarks/results/downstream.csv: the 100-room one)
CSV = Path(os.environ.get("FOURDCONTRAST_DOWNSTREAM_CSV",
                          ROOT / "benchmarks" / "results" / "scannet-size" / "downstream.csv"))
plt.rcParams["figure.dpi"] = 72  # keeps the committed notebook small
torch.manual_seed(0)
print("quick preset" if QUICK else "full preset", PRESET)

# %% [markdown]
# ## 1. The data-efficient protocol
#
# ScanNet's data-efficient benchmark (Hou et al., CVPR 2021; the paper's Fig. 4 and Table 6) asks how a
# pre-trained backbone fares with little supervision, in two ways:
#
# * **limited scene reconstructions** — train on 1 %, 5 %, 10 % or 20 % of the training scenes, fully
#   labelled;
# * **limited annotations** — train on every scene, but with only 20, 50, 100 or 200 labelled points per
#   scene.
#
# ScanNet ships fixed lists for both. For the embedded rooms (and anywhere no list exists) the subsets come
# from a **seeded rule without a random-number generator**, so every machine picks the same ones: a scene is
# kept when its `sha256(f"{seed}:{name}")` is among the smallest; a point keeps its label when its
# SplitMix64 priority is. The subsets are **nested** (the 1 % scenes are among the 5 % ones; the 20 labelled
# points among the 50), so a curve over the levels is a curve over *more of the same* data.

# %%
train = load_dataset("embedded", "train", rooms=PRESET["rooms"])
test = load_dataset("embedded", "test", rooms=PRESET["rooms"])
names = [s.name for s in train.scenes]
print(f"{len(train.scenes)} training rooms, {len(test.scenes)} test rooms, {train.num_classes} classes: "
      f"{', '.join(train.class_names)}")
hundred = [f"train_room_{k:03d}" for k in range(100)]  # the benchmark's 100 training rooms, by name
previous = set()
for fraction in LIMITED_SCENE_FRACTIONS:
    kept = limited_scenes(hundred, fraction, seed=0)
    assert previous <= set(kept)  # nested
    previous = set(kept)
    print(f"{fraction:4.0%} of 100 scenes (seed 0): {len(kept):2d} → {', '.join(kept[:6])}{' …' if len(kept) > 6 else ''}")

# %%
room = train.scenes[0]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
draw = np.random.default_rng(0).choice(len(room), min(len(room), 25_000), replace=False)
for ax, n in zip(axes, [None, 200, 20]):
    lab = room.labels if n is None else limited_annotations(room.labels, n, room.name, seed=0)
    shown = np.flatnonzero(lab != IGNORE_LABEL)
    shown = np.intersect1d(shown, draw) if n is None else shown
    ax.scatter(*room.points[draw[::3], :2].T, s=0.2, c="#d0d0d0")
    ax.scatter(*room.points[shown, :2].T, s=1 if n is None else 25, c=label_colors(lab[shown]),
               edgecolors="k" if n else "none", linewidths=0.4)
    ax.set_title(f"{room.name}: " + ("all points labelled" if n is None else f"{n} labelled points"), fontsize=10)
    ax.set_aspect("equal")
    ax.set_axis_off()
plt.tight_layout()
plt.show()
print("limited annotations: the nested levels", LIMITED_POINTS)

# %% [markdown]
# ## 2. A short fine-tune and a linear probe
#
# Two ways to use a pre-trained backbone (`fourdcontrast.downstream.segmentation`, CLI
# `fourdcontrast finetune --config cpu --set model.init=backbone.pth`):
#
# * **fine-tuning** — every weight trains; the U-Net's last 1×1 layer becomes the classifier (the
#   paper's protocol: SGD, polynomial decay; here the CPU preset `configs/finetune/cpu.yaml`: 10 cm
#   voxels, 3 m crops, batch 2);
# * **linear probe** — the backbone stays frozen; a linear classifier is fitted on its per-voxel features.
#   It measures what the features already separate, without the fine-tuning's capacity to repair them;
# * **LP-FT** — fine-tuning that keeps what the probe shows is there (Kumar et al., ICLR 2022): the head is
#   first fitted on the frozen features (the probe), then every weight trains from there, the backbone at
#   0.1× the head's learning rate, 8 crops a step (`optim.recipe=lp-ft`; what the validation rule of
#   `benchmarks/downstream_recipes.py` picked for few labelled points, `LPFT_POINTS`). With the paper's recipe
#   a fresh head's first gradients overwrite pre-trained features that few labels cannot rebuild.
#
# All from scratch and from the shipped checkpoint (`cpu-small-backbone.pth`, a MinkUNet14S, the cpu
# preset's backbone), with the limited-annotation protocol at the level above on the training rooms, and
# evaluated on the test rooms (mIoU over all their points).

# %%
def notebook_config(extra=()):
    cfg = load_finetune_config("cpu", [f"optim.steps={PRESET['steps']}", f"optim.probe_steps={PRESET['probe_steps']}",
                                       f"optim.bn_recalibration={PRESET['bn']}", *extra])
    return cfg.replace(data={"rooms": PRESET["rooms"], "limited_points": PRESET["points"]})


state = {k: v.float() for k, v in torch.load(SHIPPED, map_location="cpu", weights_only=True).items()}
base, lpft = notebook_config(), notebook_config(LPFT_POINTS)
print(f"backbone {base.model.backbone}, voxels {base.data.voxel_size * 100:.0f} cm, {base.optim.steps} fine-tuning "
      f"steps of {base.optim.batch_size} crops ({lpft.optim.batch_size} for LP-FT), {PRESET['points']} labelled "
      "points per training room")
results = {}
for init, weights in (("scratch", None), ("shipped", state)):
    for mode, run, cfg in (("finetune", finetune, base), ("lp-ft", finetune, lpft), ("linear", linear_probe, base)):
        start = time.perf_counter()
        cfg = cfg.replace(model={"mode": "linear" if mode == "linear" else "finetune"})
        results[(init, mode)] = run(cfg, train, test, weights, progress=False)
        m = results[(init, mode)].metrics
        print(f"{init:8s} {mode:9s} mIoU {100 * m.miou:5.1f}  mAcc {100 * m.macc:5.1f}  OA {100 * m.overall_accuracy:5.1f}"
              f"   ({time.perf_counter() - start:.0f} s)")
report = results[("shipped", "finetune")].load_report
print("initialisation of the fine-tuned U-Net:", report.summary() if report is not None else "none")

# %% [markdown]
# Per class (fine-tuned):

# %%
columns = [(init, mode) for mode in ("finetune", "lp-ft") for init in ("scratch", "shipped")]
ious = np.array([[results[c].metrics.iou[k] for k in range(len(CLASS_NAMES))] for c in columns])
print(f"{'class':12s} " + " ".join(f"{init + (' LP-FT' if mode == 'lp-ft' else ''):>14s}" for init, mode in columns))
for k, name in enumerate(CLASS_NAMES):
    if not np.isnan(ious[:, k]).all():
        print(f"{name:12s} " + " ".join(f"{100 * v:14.1f}" for v in ious[:, k]))

# %% [markdown]
# ## 3. Figure 4 and Table 2, on the embedded rooms
#
# One run proves little: the fine-tuning seed, the choice of scenes and of labelled points all move mIoU by
# more than pre-training does. So the comparison is a **grid**: every level of both protocols, several
# seeds (the subsets change with the seed too), the difference to scratch **paired by seed** (same scenes,
# same labelled points).
#
# ### 3a. A small grid, run here
#
# Linear probes are cheap once a backbone's features are extracted (they are cached per room and per
# backbone), so this notebook runs a grid of them itself — scratch vs the shipped backbone, both protocols, a
# few seeds — on the rooms loaded above. "Scratch" is a different random network per seed; the shipped
# backbone is a single pre-training, so here its seeds vary only the data subsets.

# %%
def level_label(protocol, level):
    return f"{100 * float(level):g} %" if protocol == "scenes" else f"{float(level):g}"


def method_order(rows):
    """The report's order (scratch, then each method at its budgets ascending), the notebook's ``shipped``
    last."""
    return report_method_order(rows, (*BENCHMARK_METHODS, "shipped"))


def figure4(rows, title):
    summary = summarise(rows)
    modes = [m for m in ("finetune", "linear") if any(k[0] == m for k in summary)]
    if not modes:
        print("nothing to plot")
        return None
    fig, axes = plt.subplots(len(modes), 2, figsize=(11, 3.6 * len(modes)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, protocol in enumerate(("scenes", "points")):
            ax = axes[i, j]
            ax.set_xscale("log")
            xs = set()
            for method in method_order(rows):
                pts = sorted((lv, e) for (md, p, lv, mm), e in summary.items()
                             if md == mode and p == protocol and mm == method)
                if not pts:
                    continue
                x = [lv for lv, _ in pts]
                xs |= set(x)
                # the report's styles; the shipped backbone is drawn as the long 4DContrast pre-training
                style = line_style("4dcontrast", long=True) if method == "shipped" else line_style(method)
                ax.errorbar(x, [e["mean"] for _, e in pts], yerr=[np.nan_to_num(e["std"]) for _, e in pts],
                            marker="o", capsize=3, label=method, **style)
            if not xs:  # no cell of this mode at this protocol: no empty frame
                ax.set_visible(False)
                continue
            ax.minorticks_off()
            if len(xs) == 1:  # one level: centre it on a log axis that spans a factor of 4
                (x0,) = xs
                ax.set_xlim(x0 / 2, x0 * 2)
            ax.set_xticks(sorted(xs), [level_label(protocol, v) for v in sorted(xs)])
            ax.set_xlabel("share of training scenes" if protocol == "scenes" else "labelled points per scene")
            ax.set_ylabel("mIoU (%), test rooms")
            ax.set_title(f"{'fine-tuning' if mode == 'finetune' else 'linear probe'}: limited "
                         f"{'scene reconstructions' if protocol == 'scenes' else 'annotations'}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    plt.tight_layout()
    return fig


def table(rows, mode):
    summary = summarise(rows)
    keys = sorted({(p, lv) for (md, p, lv, _) in summary if md == mode}, key=lambda k: (k[0] != "scenes", k[1]))
    if not keys:
        return ""
    lines = ["| method | " + " | ".join(f"{level_label(p, lv)} {'scenes' if p == 'scenes' else 'pts'}"
                                      for p, lv in keys) + " |", "|---|" + "---|" * len(keys)]
    for method in method_order(rows):
        cells = []
        for p, lv in keys:
            e = summary.get((mode, p, lv, method))
            if e is None:
                cells.append("–")
                continue
            cell = f"{e['mean']:.1f}" + (f" ± {e['std']:.1f}" if e["n"] > 1 else "") + f" (n={e['n']})"
            if method != "scratch" and e.get("delta_n", 0) > 1:
                cell += f"<br>Δ {e['delta']:+.1f} [{e['low']:+.1f}, {e['high']:+.1f}]"
            elif method != "scratch" and e.get("delta_n", 0) == 1:
                cell += f"<br>Δ {e['delta']:+.1f}"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def show_tables(rows, what):
    for mode, name in (("finetune", "Fine-tuning"), ("linear", "Linear probe (frozen backbone)")):
        t = table(rows, mode)
        if t:
            display(Markdown(f"**{name}, {what}** — mIoU (%) on the test rooms, mean ± std over seeds (n); "
                             f"Δ: difference to scratch paired by seed [95 % t interval]\n\n{t}"))


GRID = {"scenes": [0.1, 0.25, 1.0] if not QUICK else [1.0], "points": [20, 200] if not QUICK else [20],
        "seeds": [0, 1, 2] if not QUICK else [0]}
grid_rows, caches = [], {}  # features by backbone: each seed's random network, the shipped one
start = time.perf_counter()
probe = load_finetune_config("cpu", [f"optim.probe_steps={PRESET['probe_steps']}",
                                     "optim.probe_max_voxels=100000"]).replace(
    data={"rooms": PRESET["rooms"]}, model={"mode": "linear"})
for seed in GRID["seeds"]:
    for protocol, levels in (("scenes", GRID["scenes"]), ("points", GRID["points"])):
        for level in levels:
            data = {"limited_scenes": level if protocol == "scenes" else None,
                    "limited_points": level if protocol == "points" else None, "split_seed": seed}
            scratch = random_backbone_state(probe.model.backbone, probe.model.in_channels,
                                            probe.model.feature_dim, seed)
            for method, weights, key in (("scratch", scratch, f"scratch-{seed}"), ("shipped", state, "shipped")):
                r = linear_probe(probe.replace(data=data, run={"seed": seed}), train, test, weights,
                                 progress=False, feature_cache=caches.setdefault(key, {}))
                grid_rows.append({"mode": "linear", "protocol": protocol, "level": f"{level:g}", "seed": seed,
                                  "method": method, "miou": f"{r.metrics.miou:.4f}"})
print(f"{len(grid_rows)} linear probes on {len(train.scenes)} training / {len(test.scenes)} test rooms, "
      f"seeds {GRID['seeds']}, in {time.perf_counter() - start:.0f} s")
figure4(grid_rows, "run here: linear probes, scratch vs shipped (mean ± std over seeds)")
plt.show()
show_tables(grid_rows, "run here")

# %% [markdown]
# ### 3b. The committed benchmark, at ScanNet's size
#
# `fourdcontrast benchmark downstream --preset cpu-scannet --jobs 2` (issue 27) runs the grid at the paper's
# data scale: **1200 training rooms** (so 1 % of the scenes is 12 rooms, as 1 % of ScanNet's 1201 training
# scans is 12), 60 validation and 60 test rooms; fine-tuning at 1, 5, 10 and 20 % of the scenes and at 20 and
# 200 labelled points per room, with the recipe (LP-FT: the head fitted on frozen features first) and the step
# counts that rules on the validation rooms picked before any test room was touched (8000 steps at the scene
# levels, 500 at the point levels); scratch, PointContrast, 4DContrast (recommended) and the paper-literal
# preset pre-trained 300 CPU-s per seed, and PointContrast and 4DContrast again for **3600 CPU-s**
# (`@3600s`); linear probes at every level; scratch at 100 % is the ceiling. Its primary comparisons
# (4DContrast@3600s − scratch and − PointContrast@3600s, fine-tuned, at 10 % and 20 % of the scenes and at 20
# points) were declared in code before it ran.
#
# The grid costs ~25 CPU-hours and runs across sittings: each finished run is appended to the CSV, so the
# committed file can be **partial** — below is what it held when this notebook was built (the run counts say
# which cells exist). The 100-room `cpu` grid of issue 19 stays in `benchmarks/results/downstream.csv`
# (`FOURDCONTRAST_DOWNSTREAM_CSV=` shows it here instead).

# %%
rows = read_results(CSV)
earlier = bool(rows) and rows[0]["format"] == 1
spec_file = CSV.with_name("downstream_grid.json")  # the grid that wrote the CSV (absent for the earlier format)
spec = json.loads(spec_file.read_text()) if spec_file.is_file() else None
grid = spec.get("preset_name", "?") if spec else None
print(f"{CSV.relative_to(ROOT) if CSV.is_relative_to(ROOT) else CSV}: {len(rows)} test runs"
      + (" — EARLIER FORMAT (one pre-training per method, 40 fine-tuning steps)" if earlier else f", grid `{grid}`"))
if grid in PRESETS:
    preset = PRESETS[grid]
    budget = (f"{preset.pretrain_budget_s:g} s of {preset.pretrain_budget_clock} time"
              if preset.pretrain_budget_s else f"{preset.pretrain_steps} steps")
    if preset.long_budget_s:
        budget += f" (and {preset.long_budget_s:g} s for {', '.join(preset.long_budget_methods)})"
    steps = ", ".join(f"{preset.steps_for(p, lv)} steps at {level_label(p, lv)}{' scenes' if p == 'scenes' else ' pts'}"
                      for p, lv in preset.finetune_levels)
    print(f"the {grid} preset: {', '.join(preset.methods)}; seeds {preset.seeds}; pre-training {budget} per "
          f"method and seed; fine-tuning {steps}; {preset.rooms['train']} training / {preset.rooms['test']} test rooms")
done = {}
for r in rows:
    done.setdefault((r["mode"], r["method"]), []).append(int(r["seed"]))
for (mode, method), seeds in sorted(done.items()):
    print(f"  {mode:9s} {method:24s} {len(seeds):3d} runs, seeds {sorted(set(seeds))}")
if earlier:
    label = "the earlier 40-step grid (one pre-training per method)"
elif grid in ("cpu", "cpu-scannet"):
    label = f"the {grid} grid"
else:
    label = f"a `{grid}` grid (NOT a committed grid: sizes for testing, numbers mean nothing)"
if rows:
    figure4(rows, f"{label} (Figure 4 on the embedded rooms; mean ± std over seeds; dotted: 300-s "
                  "pre-training, solid: @3600s)")
    plt.show()
    show_tables(rows, label)
    # headroom: what scratch reaches at each share of the scenes (the last is the 100 % ceiling when run)
    by_share = sorted((lv, e) for (md, p, lv, m), e in summarise(rows).items()
                      if md == "finetune" and p == "scenes" and m == "scratch")
    if by_share:
        print("scratch fine-tuned, by share of the training scenes: "
              + ", ".join(f"{level_label('scenes', lv)} {e['mean']:.1f} (n={e['n']})" for lv, e in by_share))
    curve = budget_curve_lines(rows, spec)
    if curve:  # the gain over scratch against the pre-training budget: table, then plot
        display(Markdown("\n".join(curve)))
        png = Path(tempfile.mkdtemp()) / "budget_curve.png"
        plot_budget_curve(rows, png, (spec or {}).get("preset", {}).get("pretrain_budget_s"))
        display(Image(filename=str(png)))
else:
    print("no committed benchmark results at build time: `fourdcontrast benchmark downstream --preset cpu-scannet "
          "--jobs 2 --out benchmarks/results/scannet-size` makes them (~25 CPU-hours; it resumes)")

# %% [markdown]
# ### 3c. The second grid: the recipe the long-budget re-screen picked
#
# The grid above fine-tunes the scene levels with LP-FT, which a validation screen picked with the 300-s
# backbones at 500 steps. A re-screen declared afterwards, at the grid's real setting (3600-s backbones, 8000
# steps, validation rooms, the same arms and rule; `benchmarks/results/scannet-size/steps_check.md`), picked
# the paper's recipe (fresh head, one learning rate). As declared, a second test grid at 10 % and 20 % of the
# scenes with that recipe is reported **beside** the first, never replacing it (`--preset
# cpu-scannet-rescreened`; it runs across sittings, so it may be partial).

# %%
second_csv = ROOT / "benchmarks" / "results" / "scannet-size-rescreened" / "downstream.csv"
second = read_results(second_csv) if second_csv.is_file() else []
if second:
    print(f"{second_csv.relative_to(ROOT)}: {len(second)} test runs, seeds "
          f"{sorted({int(r['seed']) for r in second})}")
    show_tables(second, "the second grid (paper recipe at the scene levels)")
else:
    print("the second grid has no committed rows yet: `fourdcontrast benchmark downstream --preset "
          "cpu-scannet-rescreened --out benchmarks/results/scannet-size-rescreened` makes them (~2.6 CPU-h)")

# %% [markdown]
# ## 4. Predictions against the ground truth
#
# A test room seen from above (the ceiling-less rooms show the floor plan), coloured by the ground truth and
# by the predictions of the two LP-FT networks of section 2 — every point is predicted (voxel
# predictions sliced back to the points; 30k of them drawn) — and where each is wrong
# (`fv.plot_semantic_comparison`, which also draws the paper's Fig. 5 from a grid's own networks:
# `python benchmarks/figure5.py`).

# %%
room = test.scenes[0]
predictions = {}
for init in ("scratch", "shipped"):
    model = results[(init, "lp-ft")].model
    (logits, inverse), = extract_features(model, [room], base)
    predictions[init] = logits.argmax(1).numpy()[inverse]
display(fv.plot_semantic_comparison(room.points, room.labels,
                                    {f"{k} fine-tuned (LP-FT)": v for k, v in predictions.items()}, CLASS_NAMES,
                                    title=f"{room.name}: ground truth and predictions, seen from above"))

# %% [markdown]
# ## 5. What this says about the paper's claim
#
# The cells below are computed from whatever the benchmark CSV holds, so the verdict follows the data:

# %%
def verdict(rows, mode, method):
    paired = {}
    for r in rows:
        if r["mode"] == mode and r["method"] in (method, "scratch"):
            paired.setdefault((r["protocol"], float(r["level"]), int(r["seed"])), {})[r["method"]] = \
                100 * float(r["miou"])
    by_level = {}
    for (p, lv, _), v in paired.items():
        if len(v) == 2:
            by_level.setdefault((p, lv), []).append(v[method] - v["scratch"])
    if not by_level:
        return f"{mode}: no paired {method} − scratch runs"
    out = [f"{mode}: {method} − scratch, paired by seed (mIoU points):"]
    for (p, lv), d in sorted(by_level.items(), key=lambda kv: (kv[0][0] != "scenes", kv[0][1])):
        d = np.array(d)
        spread = f" ± {d.std(ddof=1):.1f}" if len(d) > 1 else ""
        out.append(f"  {level_label(p, lv):>6s} {'scenes' if p == 'scenes' else 'pts/scene':9s} "
                   f"{d.mean():+5.1f}{spread} — better in {(d > 0).sum()} of {len(d)} seeds")
    return "\n".join(out)


print("run here:")
print(verdict(grid_rows, "linear", "shipped"))
print(f"\nbenchmark CSV: {label}:")
if rows and not earlier:
    values = cell_values(rows)
    for c in primary_comparisons(spec):  # declared before the grid ran (the preset's `primary`)
        print(" ", primary_sentence(c, compare(values, c)))
    for check in sanity_checks(rows):
        print(f"  sanity — {check.name}: "
              f"{ {True: 'holds', False: 'FAILS', None: 'not measured'}[check.passed]} ({check.detail})")
else:
    for mode in ("finetune", "linear"):
        print(verdict(rows, mode, "4dcontrast"))
for mode, recipe in (("finetune", "the paper's recipe"), ("lp-ft", "LP-FT")):
    ft = {k: results[(k, mode)].metrics.miou for k in ("scratch", "shipped")}
    print(f"the single fine-tuning of section 2 with {recipe} ({PRESET['points']} pts/scene, {len(train.scenes)} "
          f"rooms, {PRESET['steps']} steps): shipped − scratch = {100 * (ft['shipped'] - ft['scratch']):+.1f} mIoU")

# %% [markdown]
# How to read it:
#
# * The paper's gains (+2.0 mIoU with all of ScanNet, Table 2; +1.4 at 1 % of the scenes and up to +8.6 at
#   10 %, Table 6) come from 50K pre-training steps of MinkUNet34 at 2 cm on 1201 real scans, and 10K–15K
#   fine-tuning steps of batch 48 or 6. The CPU grid pre-trains a 2 M-parameter U-Net at 10 cm for 300 or
#   3600 CPU seconds (5 or 60 minutes of one core; ~90–130 or ~1500 steps of 4DContrast) on procedural
#   rooms and fine-tunes for the step counts picked on the validation rooms. A difference whose paired 95 %
#   interval includes 0 is no evidence either way.
# * How long fine-tuning runs decides what it shows. The validation check of the step counts
#   (`benchmarks/results/scannet-size/steps_check.md`, one seed) found, at 10 % of the scenes (120 rooms),
#   4DContrast ahead of scratch by 6.5 mIoU after 1000 steps and by 0.3 after 8000: with that many labelled
#   rooms and steps scratch catches up. With 20 labelled points per room the lead grew with steps (+8.4 →
#   +11.3 from 500 to 1000). The grid fine-tunes towards convergence (8000 steps at the scene levels), so
#   its scene-level numbers measure what each initialisation reaches, not how fast it gets there.
#   The same check for the 3600-s backbone (a diagnosis declared before its runs, same file): under the grid's
#   recipe (LP-FT) it leads scratch by 5.5 mIoU after 1000 steps and is overtaken by 8000 (−5.2); with the
#   paper's recipe (fresh head, one learning rate) it ends 0.9 ahead of scratch at 8000 steps. The recipe the
#   first screen picked with 300-s backbones at 500 steps does not carry to the long backbone at 8000 steps,
#   which is why a re-screen at the grid's real setting was declared (`scannet_steps.py --rescreen-long`).
# * Headroom decides what limited scenes can show. On ScanNet scratch reaches 49.3 mIoU with 10 % of the scenes
#   and 70.0 with all of them (Tables 6 and 2): 10 % leaves a third of the way to go, and pre-training fills
#   part of it. Compare the line "scratch fine-tuned, by share of the training scenes" above: where 10 % of
#   these procedural rooms already reaches what all of them reach, there is nothing left for pre-training to
#   buy at the scene levels, and the data-efficient question moves to fewer labels (the point levels).
#   At 1 % of the scenes (12 rooms) scratch is well below the ceiling (74.2 / 54.2 / 69.8 over seeds 0–2), and
#   still the 3600-s 4DContrast fine-tunes level with it (73.6 / 55.8 / 70.4): +0.5 [−2.4, +3.3] over three
#   seeds — after 8000 fine-tuning steps on fully labelled rooms its head start is gone, headroom or not.
# * Where labels are few it is not gone: with 200 labelled points per room (500 steps) the 3600-s 4DContrast
#   fine-tunes to 50.5 mIoU against scratch's 24.6, **+25.9 [+23.1, +28.7]** (3 seeds; one of the 3 of the
#   grid's 47 non-primary cells that survive Holm's correction), and at 20 points +20.5 [+12.3, +28.8]. How
#   much survives depends on the pre-training budget: the 300-s backbones give +7.1 [+3.6, +10.6] at 200
#   points (the budget curve above). At 10 % of the scenes the curve runs the other way: +0.5 [−0.4, +1.3]
#   at 300 CPU-s, −2.2 [−8.6, +4.3] at 3600, −5.6 at 10800 (one seed) — with whole labelled rooms a longer
#   pre-training is not a better starting point for fine-tuning here.
# * The linear probe isolates the features; fine-tuning can wash a weak initialisation out (or not have time
#   to use a good one). The paper reports fine-tuning only.
# * What the toolkit makes possible is to ask the question properly at any scale: the same protocol, rules
#   and code run on ScanNet (`data.dataset: scannet`, `configs/finetune/paper.yaml`) with a backbone from
#   `configs/pretrain/paper.yaml` on GPUs (notebook 03, section 5).
