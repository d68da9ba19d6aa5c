# %% [markdown]
# # 02 — Correspondences: 3D-3D, 3D-4D, 4D-4D (4DContrast, Sec. 3.2)
#
# 4DContrast trains with three contrastive losses, all built on **correspondences** that the data
# generation of notebook 01 gives for free (Sec. 3.2, Fig. 3):
#
# | loss | what corresponds | equation |
# |---|---|---|
# | $L^{3D}$ | a point in the 3D view of frame $F_i$ and the same point in the 3D view of frame $F_j$ (every pair $i<j$) | Eqs. 3–4 |
# | $L^{3D4D}$ | a point in the 3D view of frame $F_i$ and the same point in the 4D sequence at time $i$ | Eqs. 5–6 |
# | $L^{4D}$ | a point in the 4D sequence at time $i$ and the same point at time $j$ | Eqs. 7–8 |
#
# Each is a symmetrised SimSiam negative cosine similarity $D(p, \mathrm{SG}(z))$ (Eqs. 1–2) over the
# corresponding pairs. So the quality of pre-training rests on the correspondences being *right*. Here
# we look at them, count them, break them on purpose to see the checker catch it, see how the voxel sizes
# (2 cm for 3D, 5 cm for 4D, Sec. 4) change what is matched, and preview what a backbone's features look
# like on a sequence.
#
# **Exactness.** Every point of every frame records its provenance: `source` (0 = scan, 1 = object) and
# `index` into that source. Two points of two frames correspond **iff** their (source, index) are equal —
# no nearest-neighbour guess is involved.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

import fourdcontrast as fc
import fourdviz as fv

QUICK = os.environ.get("FOURDCONTRAST_QUICK", "0") == "1"
PRESET = {"seed": 3, "backbone": "MinkUNet14" if QUICK else "MinkUNet34", "channels": 32 if QUICK else 96}
plt.rcParams["figure.dpi"] = 72  # keeps the committed notebook small
torch.manual_seed(0)
print("quick preset" if QUICK else "full preset", PRESET)

scene = fc.default_scene(PRESET["seed"])
obj = next(o for o in fc.default_objects(seed=0) if o.category == "chair")
seq = fc.make_sequence(scene, obj, rng=np.random.default_rng(PRESET["seed"]))
print(f"sequence of {len(seq)} frames in {scene.name} with a {obj.category}; points per frame:",
      [len(f) for f in seq.frames])

# %% [markdown]
# ## 1. 3D-3D correspondences between frames ($A_{ij}$, Eq. 3)
#
# `fc.frame_correspondences(seq, i, j)` returns the rows of frames $i$ and $j$ that hold the same source
# point. Per-frame resampling and chunk removal mean that not every point survives in both frames.

# %%
T = len(seq)
counts = np.zeros((T, T), dtype=int)
object_counts = np.zeros((T, T), dtype=int)
for i in range(T):
    for j in range(T):
        a, b = fc.frame_correspondences(seq, i, j)
        counts[i, j] = len(a)
        object_counts[i, j] = int((seq.frames[i].source[a] == fc.SOURCE_OBJECT).sum())
print("matched points per frame pair (diagonal: frame size)\n", counts)
print("of which object points\n", object_counts)

# %% [markdown]
# In the 4D (scene) coordinates the scan points of a match sit at the same place in both frames and
# the object's points move with the object. Object matches are drawn first (scene matches are trivially
# static in this view).

# %%
fv.plot_correspondences(seq, pairs=[(0, 1), (1, 2), (2, 3)])

# %% [markdown]
# What the **3D** network sees is different: each frame's 3D view has its own random rotation,
# translation and scale (Sec. 3.3). The same matches now connect points that are far apart — $L^{3D}$
# asks the 3D features to be invariant to exactly this.

# %%
fv.plot_correspondences(seq, pairs=[(0, 1)], use_view=True)

# %% [markdown]
# ## 2. From points to voxels
#
# The networks are sparse voxel U-Nets: the 3D backbone sees each frame's 3D view voxelized at
# **2 cm**, the 4D backbone sees the sequence voxelized at **5 cm** in space and one voxel per frame in
# time (Sec. 4). The losses are evaluated on voxels, so `fc.compute_correspondences` maps every point to its
# 3D voxel and its 4D voxel and turns the point pairs into voxel pairs (one pair per voxel, through its
# first point):
#
# * `pairs_3d[(i, j)]` — (3D voxel of frame i, 3D voxel of frame j) for $L^{3D}$,
# * `pairs_3d4d[i]` — (3D voxel of frame i, 4D voxel) for $L^{3D4D}$,
# * `pairs_4d[(i, j)]` — (4D voxel at time i, 4D voxel at time j) for $L^{4D}$.

# %%
corr = fc.compute_correspondences(seq, 0.02, 0.05)
print("3D voxels per frame:", [len(c) for c in corr.coords_3d], "| 4D voxels in the sequence:", len(corr.coords_4d))
print("3D-4D pairs per frame:", [len(p) for p in corr.pairs_3d4d])
rows = [(i, j, counts[i, j], len(corr.pairs_3d[(i, j)]), len(corr.pairs_4d[(i, j)]))
        for i in range(T) for j in range(i + 1, T)]
print(f"{'pair':>6} {'points':>8} {'3D voxel pairs':>15} {'4D voxel pairs':>15}")
for i, j, n, n3, n4 in rows:
    print(f"{i}-{j:<4} {n:>8,} {n3:>15,} {n4:>15,}")

fig, ax = plt.subplots(figsize=(7, 3))
x = np.arange(len(rows))
ax.bar(x - 0.2, [r[3] for r in rows], 0.4, label="3D-3D voxel pairs (2 cm)")
ax.bar(x + 0.2, [r[4] for r in rows], 0.4, label="4D-4D voxel pairs (5 cm)")
ax.set_xticks(x, [f"{r[0]}-{r[1]}" for r in rows])
ax.set_xlabel("frame pair")
ax.set_ylabel("pairs")
ax.legend()
ax.set_title("correspondences per frame pair")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. 3D-4D correspondences (Eq. 5)
#
# For each frame, every 3D voxel of its 3D view is tied to the 4D voxel of the same points at that time:
# on the left the augmented 3D view of frame 0, on the right the same points in the 4D sequence.

# %%
fv.plot_correspondences_3d4d(seq, frame=0)

# %% [markdown]
# ## 4. The correspondence checker — on a deliberately corrupted sequence
#
# `fv.check_correspondences` recomputes where the known transforms put every matched point (scan points
# stay where they were scanned; object points follow the per-frame `object_pose`) and classifies matches
# as **ok** or **broken** (positions disagree). Given a list of pairs to check (say, a matcher's output),
# it also reports **missing** matches: object points whose partner exists by provenance but is absent
# from the list. We corrupt frame 1 in two ways a buggy pipeline might — 300 object points displaced by
# 15 cm (a wrong pose) and 200 scan points given the provenance of other points (a shuffled index) — and
# drop 100 object pairs from the pipeline's list.

# %%
from dataclasses import replace

rng = np.random.default_rng(0)
f1 = seq.frames[1]
points = f1.points.copy()
index = f1.index.copy()
obj_rows = np.flatnonzero(f1.source == fc.SOURCE_OBJECT)
moved = rng.choice(obj_rows, 300, replace=False)
points[moved] += np.array([0.15, 0.0, 0.0], dtype=np.float32)
scene_rows = np.flatnonzero(f1.source == fc.SOURCE_SCENE)
shuffled = rng.choice(scene_rows, 200, replace=False)
index[shuffled] = rng.permutation(index[shuffled])
broken_seq = replace(seq, frames=[seq.frames[0], replace(f1, points=points, index=index), *seq.frames[2:]])

a, b = fc.frame_correspondences(broken_seq, 0, 1)
is_obj = broken_seq.frames[0].source[a] == fc.SOURCE_OBJECT
drop = rng.choice(np.flatnonzero(is_obj), 100, replace=False)
keep = np.setdiff1d(np.arange(len(a)), drop)
given = (a[keep], b[keep])

for name, s, pairs in [("clean", seq, fc.frame_correspondences(seq, 0, 1)), ("corrupted", broken_seq, given)]:
    check = fv.check_correspondences(s, 0, 1, pairs=pairs)
    print(f"{name:>9}: {check.num_ok:,} ok, {int(check.broken.sum()):,} broken, "
          f"{len(check.missing_i):,} missing")

# %%
fv.plot_correspondence_check(broken_seq, 0, 1, pairs=given)

# %% [markdown]
# The clean sequence passes; in the corrupted one the displaced object points and the shuffled scan
# points show up in red, the dropped pairs in orange.
#
# ## 5. How the voxel size changes what is matched
#
# Voxelization merges nearby points: a coarser grid gives fewer voxels, fewer (but more robust) pairs, and
# a cheaper network. The paper uses 2 cm for 3D and halves the 4D resolution to 5 cm because 4D sparse
# convolutions cost much more memory (Sec. 4). Here: voxels and voxel pairs of frames 0-1 and of
# 3D-4D for a range of sizes.

# %%
sizes = [0.02, 0.05, 0.10] if QUICK else [0.01, 0.02, 0.03, 0.05, 0.08, 0.10]
stats = []
for v in sizes:
    c = fc.compute_correspondences(seq, v, v)
    stats.append((v, len(c.coords_3d[0]), len(c.pairs_3d[(0, 1)]), len(c.coords_4d), len(c.pairs_4d[(0, 1)])))
stats = np.array(stats)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(stats[:, 0] * 100, stats[:, 1], "o-", label="3D voxels, frame 0")
ax.plot(stats[:, 0] * 100, stats[:, 2], "o--", label="3D-3D pairs, frames 0-1")
ax.plot(stats[:, 0] * 100, stats[:, 3], "s-", label="4D voxels, sequence")
ax.plot(stats[:, 0] * 100, stats[:, 4], "s--", label="4D-4D pairs, times 0-1")
ax.axvline(2, color="gray", lw=0.8)
ax.axvline(5, color="gray", lw=0.8)
ax.set_xlabel("voxel size (cm)")
ax.set_yscale("log")
ax.set_ylabel("count")
ax.legend(fontsize=8)
ax.set_title("voxels and correspondences vs. voxel size (grey: the paper's 2 cm / 5 cm)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Preview: feature similarity with a randomly initialised backbone
#
# The 3D backbone is a sparse residual U-Net (MinkUNet34 in the paper, Sec. 3.3.1); the input feature of
# every voxel is occupancy repeated to 3 channels (supplement, Sec. B). Below, an **untrained** backbone
# embeds the four 3D views, and every point is coloured by the cosine similarity of its feature to one
# query point on the object (features centred by their mean). Random features only encode local
# geometry, so the heatmap lights up wherever the surface looks locally alike — after 4DContrast pre-training (notebook 04) we hope to see
# the object stand out in every frame.

# %%
Net = {"MinkUNet14": fc.MinkUNet14, "MinkUNet34": fc.MinkUNet34}[PRESET["backbone"]]
net = Net(3, PRESET["channels"], dimension=3).eval()
coords = [torch.as_tensor(c) for c in corr.coords_3d]
x = fc.sparse_collate(coords, [torch.ones(len(c), 3) for c in coords])
with torch.no_grad():
    voxel_features = net(x).F.numpy()
offsets = np.cumsum([0] + [len(c) for c in coords])
features = [voxel_features[offsets[t]:offsets[t + 1]][corr.point_to_voxel_3d[t]] for t in range(T)]
print(f"{PRESET['backbone']} ({fc.count_parameters(net) / 1e6:.1f} M parameters): "
      f"{len(voxel_features):,} voxels → {features[0].shape[1]}-d features for every point")
# An untrained ReLU network maps every point into nearly the same direction (all cosine similarities
# close to 1); subtracting the mean feature first makes the differences visible.
mean_feature = np.concatenate(features).mean(axis=0)
features = [f - mean_feature for f in features]
query_row = int(np.flatnonzero(seq.frames[0].source == fc.SOURCE_OBJECT)[0])
fv.plot_similarity(seq, features, query=(0, query_row))

# %% [markdown]
# Click a point in the interactive explorer to move the query (needs a live kernel; in a static rendering
# use `query=(frame, index)` above instead).

# %%
# NBVAL_IGNORE_OUTPUT
fv.explore_sequence(seq, features)
