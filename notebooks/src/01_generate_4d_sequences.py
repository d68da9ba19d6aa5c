# %% [markdown]
# # 01 — Generating 4D sequences (4DContrast, Sec. 3.3)
#
# 4DContrast learns 3D features that know about *objects in motion* without any video or labels. The
# trick (paper, Sec. 3.3 "Generating 4D Correspondence via Scene-Object Augmentation") is to take a
# **static 3D scan** $S$ and a **synthetic object** $O$, and to move the object through the scan along a
# plausible trajectory. The result is a short 4D sequence $F = \{F_0, \dots, F_{t-1}\}$ (the paper uses
# $t = 4$) in which every point's origin is known, so correspondences between frames come for free.
#
# This notebook walks through every step with a picture:
#
# 1. load a room and an object (embedded data, no download);
# 2. the 10 cm **height map**, the **floor**, the **valid region** and the **candidate positions**;
# 3. a sampled **trajectory** (steps of 30–90 cm, turns < 150°);
# 4. the composed **sequence**, frame by frame;
# 5. **scene augmentation**: chunk removal and per-frame resampling, and the **validity check** that
#    discards sequences (with statistics over many draws);
# 6. the per-frame **3D augmentation** (rotation, translation, scale of each 3D view — never of the 4D
#    sequence);
# 7. a widget to change the parameters and an interactive 3D view.
#
# Set the environment variable `FOURDCONTRAST_QUICK=1` for the short preset used in CI.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import fourdcontrast as fc
import fourdviz as fv

QUICK = os.environ.get("FOURDCONTRAST_QUICK", "0") == "1"
PRESET = {"draws": 20 if QUICK else 200, "seed": 7}
plt.rcParams["figure.dpi"] = 72  # keeps the committed notebook small
print("quick preset" if QUICK else "full preset", PRESET)

# %% [markdown]
# ## 1. A static scan and a synthetic object
#
# The paper composes ScanNet scans (1201 train scans) with ModelNet shapes of eight furniture classes
# (chair, desk, dresser, nightstand, sofa, table, bathtub, toilet; Sec. 4, "Pre-training Setup").
# Neither dataset can be redistributed, so fourdcontrast embeds a stand-in that needs no download:
#
# * **rooms**: a procedural room generator (`fc.make_room` / `fc.default_scene`) — floor, walls with
#   doors and windows, furniture, per-point semantic labels and instances, and scan-like imperfections
#   (uneven density, noise, missing regions, no ceiling);
# * **objects**: 46 real CC-0 furniture models from Debian's `sweethome3d-furniture`, brought upright,
#   to metres and to a real size (`fc.load_furniture`), sampled to the paper's **1000 points**
#   (`fc.default_objects`). There is no CC-0 bathtub, so 7 of the 8 classes are covered.
#
# Real ScanNet and ModelNet files load the same way: `fc.read_scannet_scene(...)`, `fc.read_modelnet(...)`.

# %%
scene = fc.default_scene(PRESET["seed"])
objects = fc.default_objects(seed=0)
obj = next(o for o in objects if o.category == "chair")
print(f"scene {scene.name}: {len(scene):,} points, extent {np.round(scene.extent, 2)} m")
print(f"classes: {', '.join(scene.class_names)}")
print(f"object {obj.name} ({obj.category}): {len(obj)} points, "
      f"bounding-circle radius {obj.radius:.2f} m, height {obj.height:.2f} m")
print("object categories available:", sorted({o.category for o in objects}))

# %%
from fourdviz.colors import label_colors

fig = plt.figure(figsize=(11, 4.5))
ax = fig.add_subplot(1, 2, 1, projection="3d")
sub = np.random.default_rng(0).choice(len(scene), 25000, replace=False)
ax.scatter(*scene.points[sub].T, c=label_colors(scene.labels[sub]), s=0.3)
ax.set_title(f"{scene.name}: semantic labels (25k of {len(scene):,} points)")
ax.set_box_aspect(np.ptp(scene.points, axis=0))
ax.set_axis_off()
ax = fig.add_subplot(1, 2, 2, projection="3d")
ax.scatter(*obj.points.T, c=obj.points[:, 2], cmap="viridis", s=3)
ax.set_title(f"object: {obj.name} ({obj.category}), 1000 points")
ax.set_box_aspect(np.ptp(obj.points, axis=0))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Where can the object stand? The 10 cm height map
#
# Sec. 3.3, "Trajectory Generation": *"We voxelize S at 10 cm voxel resolution, and accumulate occupied
# surface voxels in the height dimension to acquire a 2D map of the scene geometry. Valid object locations
# are then identified as those in the 2D map with a voxel accumulation ≤ 1, with the max height of the
# accumulated voxels near to the ground floor (within 20 cm of the average floor height)."*
#
# A column of free floor holds exactly one occupied voxel — the floor itself. A table top, a chair or a
# wall adds more. Real scans sometimes have a ceiling, which would add a voxel to *every* column; so
# `compute_height_map` counts voxels only up to a clearance above the floor (`clearance=1.60` m, a named
# default — see its docstring), which keeps the floor under a ceiling or a high shelf valid while table
# tops and clutter still invalidate it.

# %%
hm = fc.compute_height_map(scene)
print(f"map {hm.shape[0]}×{hm.shape[1]} cells of {hm.cell_size * 100:.0f} cm; "
      f"floor at z = {hm.floor_height:.3f} m; floor cells {hm.floor.sum()}, valid cells {hm.valid.sum()}")

# %% [markdown]
# **Candidate positions**: *"if O does not exceed the valid region (based on its bounding sphere), then
# the location is taken as a candidate object position."* The object's footprint is its bounding circle in
# the xy-plane (radius above); a cell is a candidate when every cell under that circle is valid.

# %%
hm = fc.candidate_positions(hm, obj.radius)
print(f"candidate cells for r = {obj.radius:.2f} m: {hm.candidates.sum()} "
      f"({hm.candidates.sum() / max(hm.valid.sum(), 1):.0%} of the valid region)")

# %% [markdown]
# ## 3. A trajectory
#
# *"A random position sampled from these candidate positions is taken as the starting point of the
# trajectory, we can randomly sample a step distance in [30, 90] cm and step direction such that the
# angular change in trajectory is < 150°, and then select the nearest valid candidate position as the
# second trajectory point. We repeat this process for t time steps."* The object also turns (yaw) along
# the path, so each frame has its own rotation and translation.

# %%
from fourdcontrast.data.trajectory import turn_angles

rng = np.random.default_rng(PRESET["seed"])
traj = fc.sample_trajectory(scene, obj, length=4, rng=rng, height_map=hm)
print("positions (m):\n", np.round(traj.positions, 2))
print("step lengths (m):", np.round(traj.step_lengths, 2), "— all in [0.30, 0.90]")
print("turn angles (deg):", np.round(np.degrees(turn_angles(traj.positions)), 1), "— all < 150")
print("yaws (deg):", np.round(np.degrees(traj.yaws), 1))
fv.plot_trajectory_sampling(traj, scene)

# %% [markdown]
# ## 4. The composed 4D sequence
#
# *"A sequence of point clouds are then generated based on the computed object trajectory for the scan,
# up to sequence length t, by compositing the object into the scene under its translation and rotation
# steps per frame."* Every point remembers where it came from — `source` (0 = scan, 1 = object) and
# `index` into that source — which is what makes the correspondences of notebook 02 exact.

# %%
composed = fc.compose_sequence(scene, obj, traj)
for t, frame in enumerate(composed.frames):
    print(f"frame {t}: {len(frame):,} points ({(frame.source == fc.SOURCE_OBJECT).sum()} object points)")
fv.plot_sequence(composed, layout="overlay")

# %% [markdown]
# ## 5. Scene augmentation and the validity check
#
# *"We augment the 4D sequences by randomly sampling different points across the geometry in each
# individual frame. We also randomly remove cubic chunks of points in the background 3D scene [...], with
# the number of chunks removed randomly sampled from [5, 15] and the size of the chunks randomly sampled
# in [0.15, 0.45] as a proportion of the scene extent."*
#
# Then the discard rule: *"≥ 30% of the points in the original scan and ≥ 30% of the points of the
# synthetic object should be consistently represented in each frame, and each frame must maintain at
# least 50% of its points through the augmentation process."* `fc.augment_sequence` re-draws a failing
# augmentation (up to `max_tries`), then raises a clear `AugmentationError`. Every number above is a field
# of `fc.AugmentOptions` (defaults: the paper's values); pass `options=fc.AugmentOptions(...)` to change one.

# %%
augmented = fc.augment_sequence(composed, rng=np.random.default_rng(PRESET["seed"]))
report = fc.validity(composed, augmented)
print(f"{len(augmented.chunks)} chunks removed; edges (m):\n", np.round(augmented.chunks[:, 1] - augmented.chunks[:, 0], 2))
print(f"scan points present in every frame: {report.scene_fraction:.0%} (≥ 30%)")
print(f"object points present in every frame: {report.object_fraction:.0%} (≥ 30%)")
print("points kept per frame:", [f"{k:.0%}" for k in report.kept_fraction], "(each ≥ 50%)  → valid:", report.ok)
fv.plot_sequence(augmented, layout="side")

# %% [markdown]
# The removed chunks seen from above: frame 0 before and after augmentation, coloured by height, with the
# chunks' outlines in red. Chunks are boxes in 3D, so a floor patch under a chunk that starts above the
# floor survives; the per-frame resampling thins everything else.

# %%
from matplotlib.patches import Rectangle

fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
for ax, frame, title in [(axes[0], composed.frames[0], "composed"), (axes[1], augmented.frames[0], "augmented")]:
    show = np.random.default_rng(1).choice(len(frame), min(30000, len(frame)), replace=False)
    p = frame.points[show]
    ax.scatter(p[:, 0], p[:, 1], c=p[:, 2], s=0.3, cmap="viridis", vmin=0, vmax=2.5)
    for lo, hi in augmented.chunks:
        ax.add_patch(Rectangle(lo[:2], *(hi - lo)[:2], fill=False, ec="red", lw=1.2))
    ax.set_title(f"{title} frame 0: {len(frame):,} points (30k drawn)")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Why sequences are discarded — statistics over many draws
#
# With the paper's ranges the rule rarely fires on a room-sized scan: chunks are large but a room is
# larger, and resampling keeps 80–95 % of each frame (`DEFAULT_RESAMPLE_FRACTION`). To *see* the rule at
# work we also draw with harsher settings (10–20 chunks of 0.3–0.5 × the extent): then whole walls vanish
# and frames lose more than half of their points. The histograms show where each rule cuts.

# %%
from fourdcontrast.data.augment import AugmentationError


def draw_stats(n, **options):
    rows = []
    for k in range(n):
        try:
            seq = fc.augment_sequence(composed, rng=np.random.default_rng(1000 + k),
                                      options=fc.AugmentOptions(max_tries=1, **options))
            v = fc.validity(composed, seq)
            rows.append((v.scene_fraction, v.object_fraction, v.kept_fraction.min(), True))
        except AugmentationError:
            rows.append((np.nan, np.nan, np.nan, False))
    return np.array(rows, dtype=float)


paper = draw_stats(PRESET["draws"])
HARSH = dict(chunk_count=(10, 20), chunk_size=(0.3, 0.5))  # more and larger chunks than the paper
harsh = draw_stats(PRESET["draws"], **HARSH)
print(f"paper settings: discard rate {1 - paper[:, 3].mean():.1%} over {len(paper)} draws")
print(f"harsh settings: discard rate {1 - harsh[:, 3].mean():.1%} over {len(harsh)} draws")


def fractions(options, n):
    out = []
    for k in range(n):
        rng_k = np.random.default_rng(2000 + k)
        no_rules = fc.AugmentOptions(max_tries=1, min_scene_fraction=0, min_object_fraction=0, min_kept_fraction=0,
                                     **options)
        seq = fc.augment_sequence(composed, rng=rng_k, options=no_rules)
        v = fc.validity(composed, seq)
        out.append((v.scene_fraction, v.object_fraction, v.kept_fraction.min()))
    return np.array(out)


f_paper = fractions({}, PRESET["draws"])
f_harsh = fractions(HARSH, PRESET["draws"])
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, col, name, thr in zip(axes, range(3), ["scan points in every frame", "object points in every frame",
                                               "min. points kept per frame"], [0.3, 0.3, 0.5]):
    ax.hist(f_paper[:, col], bins=20, range=(0, 1), alpha=0.7, label="paper ranges")
    ax.hist(f_harsh[:, col], bins=20, range=(0, 1), alpha=0.7, label="harsh ranges")
    ax.axvline(thr, color="red", ls="--", label=f"threshold {thr:.0%}")
    ax.set_title(name)
    ax.set_xlabel("fraction")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The per-frame 3D augmentation
#
# *"Additionally, we further augment the static 3D frame interpretations of the sequence (but not the
# sequence) by applying random rotation, translation, and scaling to each individually considered 3D
# frame."* Each frame's 3D view (`frame.view_points()`) has its own recorded similarity transform
# `frame.view_transform`; the 4D sequence (`frame.points`) keeps the shared scene coordinates, so the 4D
# network sees the object move through a fixed scene while the 3D network sees every frame differently.

# %%
for t, frame in enumerate(augmented.frames):
    r = frame.view_transform[:3, :3]
    scale = np.cbrt(np.linalg.det(r))
    yaw = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    print(f"frame {t}: yaw {yaw:7.1f}°, scale {scale:.3f}, translation {np.round(frame.view_transform[:3, 3], 2)} m")
fv.plot_sequence(augmented, layout="side", use_view=True)

# %% [markdown]
# ## 7. Play with the parameters
#
# Change the step range, the turn limit, the number of chunks and the seed, and watch the trajectory and
# the augmented sequence change. (The widgets need a live kernel; in a static rendering you see the
# first state.)

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets
from IPython.display import display


def show_draw(step_min=0.30, step_max=0.90, max_turn=150.0, chunks_min=5, chunks_max=15, seed=7):
    if step_min >= step_max or chunks_min > chunks_max:
        print("choose min ≤ max")
        return
    g = np.random.default_rng(seed)
    tr = fc.sample_trajectory(scene, obj, length=4, rng=g, height_map=hm, step_range=(step_min, step_max),
                              max_turn_deg=max_turn)
    options = fc.AugmentOptions(chunk_count=(chunks_min, chunks_max))
    seq = fc.augment_sequence(fc.compose_sequence(scene, obj, tr), rng=g, options=options)
    display(fv.plot_trajectory_sampling(tr, scene), fv.plot_sequence(seq, layout="overlay"))


widgets.interact(
    show_draw,
    step_min=widgets.FloatSlider(value=0.30, min=0.1, max=1.0, step=0.05, description="step min (m)"),
    step_max=widgets.FloatSlider(value=0.90, min=0.2, max=1.5, step=0.05, description="step max (m)"),
    max_turn=widgets.FloatSlider(value=150.0, min=10.0, max=180.0, step=5.0, description="max turn (°)"),
    chunks_min=widgets.IntSlider(value=5, min=0, max=30, description="chunks min"),
    chunks_max=widgets.IntSlider(value=15, min=0, max=30, description="chunks max"),
    seed=widgets.IntSlider(value=7, min=0, max=100, description="seed"),
);

# %% [markdown]
# The trajectory explorer re-samples with sliders for the sampler's parameters and draws the height map,
# the valid region and the candidates; the sequence explorer is an interactive 3D view with a frame slider,
# toggles for scene / object / correspondences, and click-to-similarity (used in notebook 02).

# %%
# NBVAL_IGNORE_OUTPUT
fv.explore_trajectory(scene, obj)

# %%
# NBVAL_IGNORE_OUTPUT
fv.explore_sequence(augmented)

# %% [markdown]
# ## 8. Many sequences at once
#
# For pre-training, the paper generates **20 trajectories per scan** with t = 4. `fc.make_sequence` does
# sample → compose → augment in one call (with retries), and the command line
# `fourdcontrast generate --scenes default --objects default --trajectories-per-scene 20 --workers 2 --out DIR`
# writes them into shards with a manifest, resumable after an interruption.

# %%
draws = 4 if QUICK else 20
seqs = [fc.make_sequence(scene, objects[k % len(objects)], rng=np.random.default_rng(k), height_map=None)
        for k in range(draws)]
print(f"{len(seqs)} sequences; objects: {sorted({s.obj.category for s in seqs})}")
fig, axes = plt.subplots(1, min(4, draws), figsize=(13, 3.4))
for ax, s in zip(np.atleast_1d(axes), seqs):
    hm_s = s.trajectory.height_map
    ax.imshow(hm_s.valid.T, origin="lower", cmap="Greys", alpha=0.35,
              extent=[hm_s.origin[0], hm_s.origin[0] + hm_s.shape[0] * hm_s.cell_size,
                      hm_s.origin[1], hm_s.origin[1] + hm_s.shape[1] * hm_s.cell_size])
    ax.plot(*s.trajectory.positions[:, :2].T, "-o", color="tab:red")
    ax.set_title(f"{s.obj.category}", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
plt.suptitle("trajectories of different objects in the same room (valid region in grey)")
plt.tight_layout()
plt.show()
