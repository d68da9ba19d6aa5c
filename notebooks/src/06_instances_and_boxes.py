# %% [markdown]
# # 06 — Instances and boxes: instance segmentation and 3D detection with the pre-trained U-Net (4DContrast, Sec. 4, Tables 1, 3, 4, 7)
#
# The paper evaluates one pre-trained backbone on three tasks. Besides semantic segmentation (notebook 05)
# it fine-tunes the same U-Net for **instance segmentation** with PointGroup (Table 3: +4.2 mAP@0.5 over
# scratch on ScanNet) and for **3D object detection** with VoteNet (Table 4: +4.8 mAP@0.5; Table 7: the gain
# with 10–80 % of the training scenes). Objects — the things that move in 4DContrast's sequences — are what
# these two tasks are about.
#
# This notebook:
#
# 1. says what PointGroup and VoteNet do, and where the versions here are lighter;
# 2. draws their **training targets** on one training room: per-voxel offsets to the instance centres, vote
#    targets and boxes;
# 3. runs a **short fine-tune** of both tasks, from scratch and from the shipped pre-trained backbone;
# 4. draws **predictions against the ground truth** on a test room — instances and boxes, side by side, and
#    one interactive 3D view;
# 5. makes a **single-view partial scan** of a test room — the stand-in for SUN RGB-D, the paper's
#    out-of-domain detection set (Table 5) — and draws what the camera sees and the objects' amodal boxes;
# 6. shows the **committed benchmark grids** of both tasks and of the single views, when they exist;
# 7. says what the numbers of a short run do and do not mean.

# %%
import json
import os
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

import fourdcontrast as fc
import fourdviz as fv
from fourdcontrast.downstream.benchmark import PRESETS
from fourdcontrast.downstream.config import load_finetune_config
from fourdcontrast.downstream.data import load_dataset
from fourdcontrast.downstream.detection import DETECTION, box_targets, predict_boxes, vote_targets
from fourdcontrast.downstream.instance import INSTANCE, ground_truth_instances, instance_targets, \
    predict_instances, stuff_ids, thing_ids
from fourdcontrast.downstream.report import MAP_METRICS, map_markdown_report, read_results, summarise
from fourdcontrast.downstream.training import finetune
from fourdcontrast.downstream.views import single_view
from fourdcontrast.sources.rooms import default_scene
from fourdcontrast.sparse.quantize import quantize

QUICK = os.environ.get("FOURDCONTRAST_QUICK", "0") == "1"
PRESET = {"rooms": {"train": 3, "val": 1, "test": 1}, "steps": {"instance": 3, "detection": 3}, "bn": 1} if QUICK \
    else {"rooms": {"train": 20, "val": 1, "test": 4}, "steps": {"instance": 200, "detection": 200}, "bn": 4}
ROOT = Path(fc.__file__).resolve().parents[1]
# the shipped checkpoint (FOURDCONTRAST_PRETRAINED=path/to/backbone.pth evaluates one of yours instead)
SHIPPED = Path(os.environ.get("FOURDCONTRAST_PRETRAINED") or
               Path(fc.__file__).parent / "assets" / "pretrained" / "cpu-small-backbone.pth")
# the committed grids: name → (task, preset, CSV); FOURDCONTRAST_INSTANCE_CSV / _DETECTION_CSV / _VIEWS_CSV=path
# read another CSV
GRIDS = {name: (task, preset, Path(os.environ.get(f"FOURDCONTRAST_{name.upper()}_CSV",
                                                  ROOT / "benchmarks" / "results" / name / "downstream.csv")))
         for name, task, preset in (("instance", "instance", "cpu-instance"),
                                    ("detection", "detection", "cpu-detection"),
                                    ("views", "detection", "cpu-views"))}
plt.rcParams["figure.dpi"] = 72  # keeps the committed notebook small
torch.manual_seed(0)
print("quick preset" if QUICK else "full preset", PRESET)

# %% [markdown]
# ## 1. PointGroup and VoteNet, and the lighter versions here
#
# Both heads sit on the **same U-Net** as semantic segmentation (`MinkUNet14S` at 10 cm voxels in the CPU
# presets), and a pre-trained backbone loads into all of it; only the heads are new.
#
# **Instance segmentation, PointGroup-style** (`fourdcontrast/downstream/instance.py`): per voxel, a
# semantic class and an **offset** in metres to the centre of its instance. Voxels shifted by their
# offsets crowd together at their instance's centre, so clustering the shifted voxels of each predicted
# class by connected components within a small radius (1.5 voxels) separates objects that touch. Each
# cluster is one predicted instance, scored by the mean probability of its class. Walls and floor are
# "stuff": classes, but no instances. Metric: mask mAP@0.5 / @0.25 over the thing classes.
# *Lighter than PointGroup*: no dual set (clusters come from the shifted coordinates only, not also from the
# original ones), no ScoreNet (the score is the class probability), no NMS.
#
# **3D detection, VoteNet-style** (`fourdcontrast/downstream/detection.py`): up to 1024 **seed** voxels
# (farthest-point sampled) each **vote** — an offset to the centre of its object's box plus a feature
# residual; 512 proposals sit at the votes of the first seeds of that order and group the votes within
# 0.3 m; each proposal predicts objectness, a class, a box centre and a box size; per-class 3D NMS thins
# them out. Metric: box mAP@0.25 / @0.5.
# *Lighter than VoteNet*: **no heading** (rooms are axis-aligned, so boxes are, and training rotates by
# multiples of 90° only), seeds are voxels of the sparse U-Net rather than PointNet++ points, box sizes
# are regressed directly (a log size per class, no size templates), the proposal positions are detached
# from the votes, one class per proposal. *Added*, so that it learns in 1000 CPU steps: a seed
# classification term whose class probabilities also act as a prior on each proposal's class.
#
# The cheaper detector **"boxes from instance clusters"** — the axis-aligned box around each predicted
# instance — is reported with instance segmentation as a named baseline.

# %% [markdown]
# ## 2. The training targets, on one training room
#
# The targets are computed from the rooms' per-point instance ids (`Scene.instances`; every piece of
# furniture of the embedded rooms is one instance) at the training voxel size:
#
# * `instance_targets` — per voxel, the offset from the voxel centre to the **mean of its instance's voxel
#   centres** (NaN on stuff voxels, which get no offset loss);
# * `box_targets` — the **axis-aligned box** of each thing instance's points (min xyz / max xyz, metres)
#   and its class;
# * `vote_targets` — per voxel, the offset to the **centre of its instance's box** (what a seed should vote).
#
# The two offsets differ where an object is not symmetric: the mean of a chair's voxels sits towards its
# seat and back, its box centre in the middle of its extent.

# %%
train = load_dataset("embedded", "train", rooms=PRESET["rooms"])
test = load_dataset("embedded", "test", rooms=PRESET["rooms"])
names = train.class_names
STUFF, THINGS = stuff_ids(names), thing_ids(names)
print(f"{len(train.scenes)} training rooms, {len(test.scenes)} test rooms; stuff (no instances): "
      f"{', '.join(names[k] for k in STUFF)}; things: {', '.join(names[k] for k in THINGS)}")

room = train.scenes[0]
voxel = load_finetune_config("cpu-instance").data.voxel_size
q = quantize(room.points, voxel)
centres = (q.coordinates + 0.5) * voxel
semantic, offsets, voxel_instance = instance_targets(centres, q.inverse, room.labels, room.instances,
                                                     train.num_classes, STUFF)
boxes, box_classes, box_ids = box_targets(room.points, room.labels, room.instances, STUFF)
votes = vote_targets(centres, q.inverse, room.instances, boxes, box_ids)
thing_voxels = np.flatnonzero(~np.isnan(offsets).any(1))
print(f"{room.name}: {len(room.points):,} points → {len(centres):,} voxels of {100 * voxel:.0f} cm, "
      f"{len(thing_voxels):,} of them on {len(box_ids)} thing instances:")
for b, c, i in zip(boxes, box_classes, box_ids):
    size = b[3:] - b[:3]
    print(f"  instance {i:2d} {names[c]:10s} box {size[0]:.2f} × {size[1]:.2f} × {size[2]:.2f} m")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
point_ids = np.where(np.isin(room.instances, box_ids), room.instances, -1)  # stuff → -1 (grey)
arrows = thing_voxels[np.argsort(centres[thing_voxels, 2])][::2]  # every second thing voxel, lowest first
for ax, target, what in ((axes[0], offsets, "offsets to the instance centres (instance_targets)"),
                         (axes[1], votes, "votes to the box centres (vote_targets), boxes")):
    fv.plot_instances(room.points, point_ids, ax=ax, point_size=0.6, max_points=8000, title=what)
    ax.quiver(centres[arrows, 0], centres[arrows, 1], target[arrows, 0], target[arrows, 1], angles="xy",
              scale_units="xy", scale=1, width=0.002, color="k", alpha=0.5)
    ends = centres[arrows] + target[arrows]
    ax.scatter(ends[:, 0], ends[:, 1], marker="x", s=40, c="k", zorder=6)
fv.plot_boxes(axes[1], boxes, box_classes, class_names=names)
axes[2].remove()
ax3 = fig.add_subplot(1, 3, 3, projection="3d")
fv.plot_instances(room.points, point_ids, ax=ax3, point_size=1.0, max_points=3000,
                  title="the boxes in 3D (box_targets)")
fv.plot_boxes(ax3, boxes, box_classes, class_names=names, legend=False)
fig.suptitle(f"{room.name}: training targets of instance segmentation and detection "
             "(× where the arrows end: every voxel of an instance points at the same spot)", fontsize=11)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. A short fine-tune of both tasks, from scratch and from the shipped backbone
#
# `fourdcontrast.downstream.training.finetune(config, train, evaluation, state, task=INSTANCE or DETECTION)`
# — the same loop, data-efficient protocol, augmentation and run folder as semantic segmentation (the CLI:
# `fourdcontrast finetune --task instance --set model.init=backbone.pth`). Configs:
# `configs/finetune/cpu-instance.yaml` (SGD at lr 0.1, 1000 steps of two whole rooms) and `cpu-detection.yaml`
# (lr 0.02, 1000 steps of two whole rooms: with 3 m crops most objects in a sample are cut, and both tasks
# barely learnt on the validation rooms); here far fewer steps (the preset above: 200 for each), on the
# training rooms loaded above, evaluated on the test rooms. "4DContrast" is the shipped checkpoint
# `cpu-small-backbone.pth` (a MinkUNet14S pre-trained with the cpu preset).

# %%
state = {k: v.float() for k, v in torch.load(SHIPPED, map_location="cpu", weights_only=True).items()}
TASKS = {"instance": INSTANCE, "detection": DETECTION}
configs = {name: load_finetune_config(f"cpu-{name}", [f"optim.steps={PRESET['steps'][name]}",
                                                      f"optim.bn_recalibration={PRESET['bn']}"]
                                      ).replace(data={"rooms": PRESET["rooms"]})
           for name in TASKS}
INITS = {"scratch": None, "4DContrast": state}
results = {}
for name, task in TASKS.items():
    for init, weights in INITS.items():
        r = finetune(configs[name], train, test, weights, progress=False, task=task)
        results[(name, init)] = r
        m = r.metrics
        extra = "".join(f", {MAP_METRICS[k].split(' (')[0]} {100 * v:.1f}" for k, v in m.extra.items())
        print(f"{name:9s} {init:10s} {m.kind} mAP@0.5 {100 * m.map50:5.1f}  mAP@0.25 {100 * m.map25:5.1f}"
              f"  ({m.predictions} predicted, {m.instances} true){extra}   "
              f"[{r.seconds:.0f} s, {r.cpu_seconds:.0f} CPU-s]")
report = results[("instance", "4DContrast")].load_report
print("initialisation of the pre-trained U-Net:", report.summary() if report is not None else "none")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, name in zip(axes, TASKS):
    for init in INITS:
        rows = [r for r in results[(name, init)].rows if r["stage"] == "ft"]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=".",
                label=init, color="k" if init == "scratch" else "#d62728")
    ax.set_title(f"{name}: training loss", fontsize=10)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Per class, AP@0.5 / AP@0.25 (%) of each run on the test rooms (classes without ground truth there are
# not listed):

# %%
for name in TASKS:
    for init in INITS:
        print(f"--- {name}, {init}\n{results[(name, init)].metrics.table()}\n")

# %% [markdown]
# ## 4. Predictions against the ground truth
#
# One test room from above. Top row: instances — the ground truth, then each fine-tuned network's predicted
# instances (`predict_instances`), coloured like the ground-truth instance they overlap (point IoU ≥ 0.5;
# an object found gets its true colour, other predictions their own colours; grey: stuff and
# unassigned points). Bottom row: boxes — the ground truth (`box_targets`), then the detectors' boxes after
# NMS (`predict_boxes`) over the true boxes (dashed), each with its score: for a readable picture only the 8
# highest-scored boxes (of those scored ≥ 0.05) are drawn; the mAP counts every box.

# %%
MOST_BOXES, MIN_SCORE = 8, 0.05  # display only: every box counts in the mAP


def drawn_boxes(scores, most=MOST_BOXES, floor=MIN_SCORE):
    """Indices of the boxes drawn: the ``most`` highest-scored of those scored ≥ ``floor``."""
    order = np.argsort(-scores, kind="stable")
    return order[scores[order] >= floor][:most]


scene = test.scenes[0]
gt_masks, gt_classes, gt_ids = ground_truth_instances(scene, STUFF)
gt_boxes, gt_box_classes, _ = box_targets(scene.points, scene.labels, scene.instances, STUFF)
panels = {"ground truth": {"instances": fv.masks_to_ids(gt_masks, gt_ids), "boxes": gt_boxes,
                           "classes": gt_box_classes}}
predicted = {}
for init in INITS:
    inst = predict_instances(results[("instance", init)].model, scene, configs["instance"], STUFF)
    pb, pc, ps = predict_boxes(results[("detection", init)].model, scene, configs["detection"], THINGS)
    keep = drawn_boxes(ps)
    predicted[init] = (inst, pb[keep], pc[keep], ps[keep])
    panels[init] = {"instances": fv.masks_to_ids(inst["masks"]), "boxes": pb[keep], "classes": pc[keep],
                    "scores": ps[keep]}
    found = ", ".join(f"{names[c]} ×{n}" for c, n in zip(*np.unique(inst["classes"], return_counts=True))) or "–"
    drawn = f"the {len(keep)} drawn scored {ps[keep].min():.2f}–{ps[keep].max():.2f}" if len(keep) else "none drawn"
    print(f"{init:10s}: {len(inst['masks'])} instances ({found}); {len(pb)} boxes after NMS, {drawn}")
print(f"ground truth: {len(gt_ids)} instances ({', '.join(names[c] for c in gt_classes)})")
fv.plot_detection_comparison(scene.points, panels, class_names=names, point_size=0.8, max_points=8000,
                             title=f"{scene.name}: ground truth vs fine-tuned from scratch vs from 4DContrast "
                                   f"({PRESET['steps']['instance']} / {PRESET['steps']['detection']} steps)")

# %% [markdown]
# The boxes in 3D:

# %%
box_panels = {k: {kk: v[kk] for kk in ("boxes", "classes", "scores") if kk in v} for k, v in panels.items()}
fv.plot_detection_comparison(scene.points, box_panels, class_names=names, view="3d", max_points=2000,
                             title=f"{scene.name}: boxes in 3D")

# %% [markdown]
# ### Interactive
#
# `fv.boxes_figure(points, boxes, classes, scores, instance_ids=…, reference_boxes=…)`: the 4DContrast
# network's boxes (one wireframe per box, its class and score on hover; the legend switches classes on and
# off) over the points coloured by its predicted instances, the true boxes dashed. `fv.instances_figure`
# draws instances alone. (A plotly `FigureWidget`: it needs a live kernel; the static pictures above are
# made from the same predictions.)

# %%
# NBVAL_IGNORE_OUTPUT
inst, pb, pc, ps = predicted["4DContrast"]
ids = fv.match_instances(fv.masks_to_ids(inst["masks"]), panels["ground truth"]["instances"])
view = fv.boxes_figure(scene.points, pb, pc, ps, class_names=names, instance_ids=ids, reference_boxes=gt_boxes,
                       max_points=8000, widget=True,
                       title=f"{scene.name}: 4DContrast fine-tuned — predicted instances and boxes (true boxes dashed)")
display(view, include=["application/vnd.jupyter.widget-view+json"])  # the widget only (its text is all the data)

# %% [markdown]
# ## 5. Single views: the out-of-domain detection set (paper Table 5)
#
# The paper also fine-tunes detection on **SUN RGB-D**: single RGB-D frames, not reconstructed rooms. Does
# pre-training on whole reconstructions transfer to the partial, one-sided point clouds a depth camera gives?
# SUN RGB-D cannot be downloaded here, so `fourdcontrast.downstream.views` makes its stand-in from held-out
# rooms: a Kinect-like camera (57° × 43°, 0.5–4.5 m) stands on free floor at 1.0–1.6 m, aims at a piece of
# furniture, and a z-buffer keeps the points it sees. An object with at least 50 visible points is an object
# of the view, and its box is **amodal** — the whole object's, hidden back included — as SUN RGB-D's boxes
# are. `data.dataset: embedded-views` trains and scores detection on such views
# (`fourdcontrast finetune --config cpu-detection-views`).

# %%
view_room = default_scene(5)
one_view = single_view(view_room, rng=0)
display(fv.plot_view(one_view, view_room))  # a fourdviz figure: displayed, not plt.show()
amodal, view_classes = fv.view_boxes(one_view)
seen_boxes, _, _ = box_targets(one_view.points, one_view.labels, one_view.instances,
                               stuff_ids(one_view.class_names))
for box, seen_box, c in zip(amodal, seen_boxes, view_classes):
    size, seen_size = box[3:] - box[:3], seen_box[3:] - seen_box[:3]
    print(f"{one_view.class_names[c]:>9}: whole box {np.round(size, 2)} m, visible part {np.round(seen_size, 2)} m")
print(f"{len(one_view.points):,} of {len(view_room.points):,} points seen; "
      f"{len(one_view.hidden_points):,} hidden points of its objects kept for their boxes")

# %% [markdown]
# ## 6. The committed benchmark grids
#
# One short run on a few rooms says little: fine-tuning seeds and the choice of rooms move mAP by more than
# pre-training does. The comparison that counts is the grid of `fourdcontrast benchmark downstream` with the
# presets `cpu-instance`, `cpu-detection` and `cpu-views` (issue 28): scratch, PointContrast, 4DContrast and the
# paper-literal preset, 3 pre-training seeds, the data-efficient levels of the paper's Table 7 (10, 20 % of
# the scenes for every method; 40, 80, 100 % for scratch and 4DContrast), 8000 fine-tuning steps (what a
# doubling ladder on the validation rooms picked: `benchmarks/results/<task>/steps_check_<task>.md`), the test
# rooms evaluated once, with pre-declared primary comparisons (4DContrast − scratch and − PointContrast at
# 10 % and 20 %, mAP@0.5, paired 95 % intervals) and sanity checks; the single views at 100 % of 1200 training
# views (3000 steps), every method and budget. Below, whatever was committed when this notebook was built (the full report
# is `downstream.md` beside each CSV).

# %%
def method_style(method):
    base, _, budget = method.partition("@")
    colour = {"scratch": "k", "4dcontrast": "#d62728", "pointcontrast": "#1f77b4"}.get(base, "0.5")
    return dict(color=colour, lw=2.5 if base == "4dcontrast" else 1.4, marker="s" if budget else "o",
                ls="--" if base == "scratch" else ":" if budget else "-")


def grid_plot(rows, task):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, metric in zip(axes, ("map50", "map25")):
        summary = {k: e for k, e in summarise(rows, metric).items() if k[0] == "finetune" and k[1] == "scenes"}
        for method in sorted({k[3] for k in summary}):
            pts = sorted((k[2], e) for k, e in summary.items() if k[3] == method)
            ax.errorbar([lv for lv, _ in pts], [e["mean"] for _, e in pts],
                        yerr=[np.nan_to_num(e["std"]) for _, e in pts], capsize=3, label=method,
                        **method_style(method))
        levels = sorted({k[2] for k in summary})
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(levels, [f"{100 * lv:g} %" for lv in levels])
        ax.set_xlabel("share of training scenes")
        ax.set_ylabel(f"{MAP_METRICS[metric]} (%), test rooms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{task}: fine-tuned, mean ± std over seeds", fontsize=11)
    plt.tight_layout()
    plt.show()


KEEP = ("## Primary comparisons: results", "## Sanity checks", "## Fine-tuned: mAP@0.5 (%)",
        "## Fine-tuned: mAP@0.25 (%)")
for name, (task, preset, csv) in GRIDS.items():
    rows = read_results(csv)
    shown = csv.relative_to(ROOT) if csv.is_relative_to(ROOT) else csv
    if not rows:
        display(Markdown(f"**{name}**: the grid has not been committed yet (no `{shown}`). "
                         f"`fourdcontrast benchmark downstream --preset {preset} --jobs 2 --out "
                         f"benchmarks/results/{name}` makes it (it resumes where it stopped)."))
        continue
    spec_file = csv.with_name("downstream_grid.json")  # the grid that wrote the CSV: its declared comparisons
    if spec_file.is_file():
        spec = json.loads(spec_file.read_text())
        grid = f"grid `{spec.get('preset_name', '?')}`"
    else:
        spec = {"preset": json.loads(json.dumps(asdict(PRESETS[preset]))), "preset_name": preset}
        grid = f"no {spec_file.name} beside it: read as the `{preset}` grid"
    print(f"{name}: {shown}, {len(rows)} test runs, {grid}")
    grid_plot(rows, name)
    sections = map_markdown_report(rows, task, spec=spec).split("\n## ")
    display(Markdown("\n\n".join("## " + s for s in sections[1:] if ("## " + s).startswith(KEEP))))

# %% [markdown]
# ## 7. What a short run says
#
# * The mAPs of section 3 come from a few hundred steps (a few in the quick preset) on 20 training rooms,
#   one seed, and four test rooms with a few objects each: **they are not the benchmark** and cannot say
#   whether pre-training helps. One run per arm has no spread to compare a difference with, and the
#   fine-tuning budget is a fifth to a third of the configs' 1000 steps (the grids: 8000). The answer is the grid of section 6 — intervals over seeds, pre-declared
#   comparisons, sanity checks — or, where it has not been committed yet, the command that makes it.
# * The paper's gains (instance segmentation +4.2 mAP@0.5, detection +4.8, Table 1; detection at 10 % of
#   the scenes 15.5 → 20.0, Table 7) come from PointGroup and VoteNet trained for hundreds of epochs on
#   ScanNet's 1201 real scans, with a MinkUNet34 pre-trained for 50K steps at 2 cm. The CPU presets here
#   are a 2 M-parameter U-Net at 10 cm, lighter heads (section 1) and procedural rooms.
# * The pictures are the useful part of a short run: whether offsets gather an object's voxels, whether
#   boxes land on objects and have the right size, which classes are confused — the same calls
#   (`fv.plot_detection_comparison`, `fv.boxes_figure`) work on a grid's checkpoints or on ScanNet scenes
#   (`data.dataset: scannet`).
