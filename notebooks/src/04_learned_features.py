# %% [markdown]
# # 04 — What the learned 3D features encode
#
# Pre-training (notebook 03) keeps one network: the 3D U-Net Φ3D's backbone. Its output is a feature
# vector for every voxel of a scan. What has 4DContrast taught it? This notebook looks at the per-point
# features of three backbones with the same architecture — the CPU preset's MinkUNet14S, 32-d outputs,
# 10 cm voxels:
#
# * **random** — freshly initialised, never trained (what "from scratch" fine-tuning starts from);
# * **shipped** — the pre-trained checkpoint that comes with the package
#   (`fourdcontrast/assets/pretrained/cpu-small-backbone.pth`, its `PROVENANCE.md` says how it was made);
# * **fresh** (full preset only) — the run of notebook 03, re-used if it is on disk, else trained now.
#
# on sequences none of them was trained on (the held-out stream, a different seed), through:
#
# 1. the **feature-match recall** of each backbone (no labels needed) and how well a voxel's nearest
#    neighbours in feature space share its semantic class;
# 2. **t-SNE** embeddings (UMAP when `umap-learn` is installed) coloured by semantic class and by
#    object-vs-scene;
# 3. an **interactive embedding view**: select points in the embedding and see them highlighted in the 3D
#    scene, or click in the scene and see where those points sit in the embedding;
# 4. **feature-similarity heatmaps across the frames** of a sequence — pick a point (click it in the
#    explorer, or by index where no browser is attached) and colour every frame by similarity to it,
#    random and pre-trained side by side.

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import fourdcontrast as fc
import fourdviz as fv
from fourdcontrast.downstream.data import ROOM_CACHE_DIR
from fourdcontrast.metrics import batch_feature_match_recall, effective_rank
from fourdcontrast.models.resunet import build_backbone
from fourdcontrast.sources.classes import CLASS_NAMES
from fourdcontrast.sparse import SparseTensor
from fourdcontrast.train.checkpoint import load_checkpoint
from fourdcontrast.train.config import load_config
from fourdcontrast.train.pretrain import ReplacingDataset, export_backbone, make_dataset, pretrain

QUICK = os.environ.get("FOURDCONTRAST_QUICK", "0") == "1"
PRESET = {"sequences": 1, "embed_points": 600, "fresh": False} if QUICK else \
         {"sequences": 4, "embed_points": 3000, "fresh": True}
BACKBONE, CHANNELS = "MinkUNet14S", 32  # the shipped checkpoint's network: build_backbone(BACKBONE, 3, 32)
# the shipped checkpoint (FOURDCONTRAST_PRETRAINED=path/to/backbone.pth shows one of yours instead)
SHIPPED = Path(os.environ.get("FOURDCONTRAST_PRETRAINED") or
               Path(fc.__file__).parent / "assets" / "pretrained" / "cpu-small-backbone.pth")
# notebook 03's run (same settings, same folder): re-used when it is there
OVERRIDES = ["model.backbone_3d=MinkUNet14S", "model.backbone_4d=MinkUNet14S", "data.workers=0",
             "run.log_every=1", "optim.steps=40", "data.batch_size=2", "run.recall_every=10",
             "data.holdout_sequences=2", "run.checkpoint_every=40"]
OUT = ROOM_CACHE_DIR.parent / "notebooks"
config = load_config("cpu-small", OVERRIDES)
plt.rcParams["figure.dpi"] = 72  # keeps the committed notebook small
print("quick preset" if QUICK else "full preset", PRESET)

# %% [markdown]
# ## 1. Three backbones
#
# The shipped checkpoint is a plain `state_dict` of the U-Net, stored in half precision to keep the
# package small: load it with `weights_only=True`, cast to float, load it into the same architecture.

# %%
def load_backbone(path):
    net = build_backbone(BACKBONE, 3, CHANNELS)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


torch.manual_seed(0)
backbones = {"random": build_backbone(BACKBONE, 3, CHANNELS).eval(), "shipped": load_backbone(SHIPPED)}
provenance = SHIPPED.parent / "PROVENANCE.md"
print(provenance.read_text()[:1500] if provenance.is_file() else f"{SHIPPED} (no PROVENANCE.md beside it)")

# %%
if PRESET["fresh"]:
    start = time.perf_counter()
    run = OUT / "03" / "4dcontrast"
    same = (run / "checkpoint.pt").is_file() and load_checkpoint(run / "checkpoint.pt")["config"] == config.to_dict()
    rows = pretrain(config, run, resume=same, overwrite=not same, progress=False)  # notebook 03's run, else anew
    export_backbone(run / "checkpoint.pt", run / "backbone.pth")
    backbones["fresh"] = load_backbone(run / "backbone.pth")
    print(f"fresh: {'notebook 03' if same else 'a new'} run of {int(rows[-1]['step'])} steps of "
          f"{config.data.batch_size} sequences ({time.perf_counter() - start:.0f} s here)")
for name, net in backbones.items():
    print(f"{name:8s} {fc.count_parameters(net) / 1e6:.2f} M parameters")

# %% [markdown]
# ## 2. Held-out sequences and their labels
#
# The held-out stream (`make_dataset(config, holdout=True)`: the same rooms, sequences drawn with another
# seed) is what the pre-training's recall is measured on. The batch has no labels; every 3D voxel gets
# the semantic class of its **representative point** (`Correspondences.voxel_point_3d`), and that point's
# class comes from its **provenance** — a scan point (`frame.source == 0`) has the scan's label of
# `scene.labels[frame.index]`, a point of the moving object takes the object's category (a chair is a
# chair). `fv.voxel_labels_3d(sequence, correspondences, t)` does exactly this.

# %%
data = ReplacingDataset(make_dataset(config, holdout=True))
samples = [data[k][0] for k in range(PRESET["sequences"])]
batch = fc.collate_sequences(samples)
T = batch.length
labels, is_object = [], []
for s in samples:
    for t in range(T):
        lab, obj = fv.voxel_labels_3d(s.sequence, s.correspondences, t)
        labels.append(lab)
        is_object.append(obj)
labels, is_object = np.concatenate(labels), np.concatenate(is_object)
assert len(labels) == len(batch.coords_3d)  # one label per row of the batch
frame_of_row = batch.coords_3d[:, 0].numpy()
seq0 = samples[0].sequence
print(f"{len(samples)} sequences × {T} frames: {len(labels):,} voxels at {config.data.voxel_size_3d * 100:.0f} cm, "
      f"{is_object.sum():,} of them on the moving objects ({', '.join(s.sequence.obj.category for s in samples)})")
print("classes:", {CLASS_NAMES[c]: int(n) for c, n in zip(*np.unique(labels[labels >= 0], return_counts=True))})

# %% [markdown]
# ## 3. Features, and two numbers per backbone
#
# Each backbone embeds every 3D frame of the batch (eval mode). Two scores:
#
# * **feature-match recall** (`fourdcontrast.metrics.batch_feature_match_recall`, the pre-training's
#   label-free monitor): for sampled true correspondences between frames 0 and 1, is the nearest neighbour
#   of a voxel's feature among *all* voxels of the other frame within τ of its true partner? Frames are
#   rotated and scaled differently, so this asks for features that do not change with the pose. Voxels
#   are 10 cm here, so τ = 5 cm means "the very voxel"; 20 cm allows a neighbour.
# * **class agreement of feature neighbours**: for each voxel of a frame, the share of its 10 nearest
#   neighbours in feature space (cosine) that have its semantic class. Chance is the class mix; local
#   geometry alone already scores well (floors look like floors), so it is the *difference* between
#   backbones that matters.
#
# and, as a third, the **effective rank** of the features (`fourdcontrast.metrics.effective_rank`, of 32):
# how many directions of the feature space the backbone really uses — the monitor of dimensional collapse
# (notebook 03 §5). A random network spreads its features widely but meaninglessly; a collapsed one uses
# 1–2 directions; useful pre-training keeps several.

# %%
@torch.no_grad()
def voxel_features(net):
    return net(SparseTensor(batch.feats_3d, batch.coords_3d)).features


def neighbour_agreement(feats, k=10):
    scores = []
    for f in np.unique(frame_of_row):
        rows = np.flatnonzero((frame_of_row == f) & (labels >= 0))
        x = torch.nn.functional.normalize(feats[rows], dim=1)
        sim = x @ x.T
        sim.fill_diagonal_(-2)
        nn = sim.topk(k, dim=1).indices.numpy()
        scores.append((labels[rows][nn] == labels[rows][:, None]).mean())
    return float(np.mean(scores))


features = {name: voxel_features(net) for name, net in backbones.items()}
scores = {}
generator = torch.Generator().manual_seed(0)
print(f"{'backbone':9s} {'FMR@5cm':>8s} {'FMR@10cm':>9s} {'FMR@20cm':>9s} {'10-NN class agreement':>22s} "
      f"{'eff. rank':>9s}")
for name, f in features.items():
    fmr = [batch_feature_match_recall(f, batch, (0, 1), threshold=tau, generator=generator.manual_seed(0))
           for tau in (0.05, 0.10, 0.20)]
    scores[name] = {"fmr": fmr, "knn": neighbour_agreement(f),
                    "erank": effective_rank(f, generator=torch.Generator().manual_seed(0))}
    print(f"{name:9s} {fmr[0]:8.1%} {fmr[1]:9.1%} {fmr[2]:9.1%} {scores[name]['knn']:22.1%} "
          f"{scores[name]['erank']:9.2f}")

# %% [markdown]
# ## 4. Embeddings: what separates in feature space
#
# The voxels of frame 0 of the first sequence, every voxel of the moving object kept, the rest subsampled;
# the same voxels for every backbone. Left: semantic class; right: moving object vs scene.

# %%
rows0 = np.flatnonzero(frame_of_row == 0)
points0 = batch.points_3d[rows0].numpy()  # scene (4D) coordinates of the voxels, metres
xy, chosen, method = fv.embed_many({name: f[rows0].numpy() for name, f in features.items()},
                                   max_points=PRESET["embed_points"], rng=0, keep=is_object[rows0])
colorings = {"semantic class": (labels[rows0][chosen], CLASS_NAMES),
             "object vs scene": fv.object_vs_scene(is_object[rows0][chosen])}
titles = {name: f"FMR@20cm {s['fmr'][2]:.0%}, 10-NN {s['knn']:.0%}" for name, s in scores.items()}
print(f"{method}: {len(chosen):,} of {len(rows0):,} voxels of frame 0 ({is_object[rows0].sum()} on the "
      f"{seq0.obj.category})")
fv.plot_embedding_grid(xy, colorings, method=method, titles=titles)

# %% [markdown]
# ## 5. The interactive embedding view
#
# `fv.EmbeddingExplorer(points, embeddings, colorings)`: the embedding on the left, the same voxels in
# the room on the right.
#
# * **embedding → scene**: drag a box in the embedding (or switch to the lasso in the plot's toolbar); the
#   selected points light up in magenta in 3D, and the line above the plots says what they are;
# * **scene → embedding**: click a point in 3D to select everything within the radius around it, or pick
#   a class in "select class" — the embedding shows where those points lie (the rest fades);
# * "features" switches between the backbones (the selection stays), "colour by" between the colourings.
#
# (The view needs a live kernel; the static pictures below it are made with the same calls from code.)

# %%
# NBVAL_IGNORE_OUTPUT
explorer = fv.EmbeddingExplorer(points0[chosen], xy, colorings,
                                title=f"frame 0 of a held-out sequence with a {seq0.obj.category}")
explorer

# %% [markdown]
# From code, the same selections (what `select_box`, a click and the class menu do). First the voxels of the
# moving object: do they form their own island in feature space, for which backbone?

# %%
object_rows = np.flatnonzero(is_object[rows0][chosen])
explorer.select(object_rows, source="the moving object")
explorer.embedding_menu.value = "shipped"  # the selection stays when the features change
fv.plot_selection_across(xy, colorings["semantic class"][0], explorer.selected, CLASS_NAMES,
                         title=f"the {seq0.obj.category}'s voxels, selected, in each embedding")

# %% [markdown]
# Embedding → scene: a box around the densest spot of the pre-trained embedding — which voxels are these, and
# where are they in the room?

# %%
explorer.embedding_menu.value = "shipped"
e = xy["shipped"]
dist = np.linalg.norm(e[:, None] - e[None], axis=2)
densest = np.argmin(np.sort(dist, axis=1)[:, 30])
near = e[np.argsort(dist[densest])[:40]]
explorer.select_box(near[:, 0].min(), near[:, 0].max(), near[:, 1].min(), near[:, 1].max())
print(explorer.describe().replace("<b>", "").replace("</b>", ""))
explorer.snapshot("a box in the shipped features' embedding")

# %% [markdown]
# Scene → embedding: a click on a wall in 3D selects the voxels within 50 cm of it; where do they land in
# each embedding?

# %%
walls = np.flatnonzero(colorings["semantic class"][0] == CLASS_NAMES.index("wall"))
explorer.select_around(int(walls[len(walls) // 2]), radius=0.5)
print(explorer.describe().replace("<b>", "").replace("</b>", ""))
fv.plot_selection_across(xy, colorings["semantic class"][0], explorer.selected, CLASS_NAMES,
                         points=points0[chosen], title="the voxels within 50 cm of a wall voxel")

# %% [markdown]
# ## 6. Feature similarity across the frames of a sequence
#
# Pick one point and colour every point of every frame by the cosine similarity of its feature to that
# point's. A feature that knows *what* the point is (not where it is, or how the frame was rotated) lights
# up the same object in every frame — including frames where the object has moved. The features are per
# voxel; every point takes its voxel's (`Correspondences.point_to_voxel_3d`). We centre each backbone's
# features by their mean first (an untrained ReLU network puts all features in nearly one direction, see
# notebook 02).
#
# The query is picked by index here — `QUERY = (frame, point row)`, by default the first point of the
# moving object in frame 0; in the explorer below, click any point instead. The static view is a close-up:
# the points within 1.5 m of the object's path (`crop=1.5`), every object point drawn.

# %%
s0 = samples[0]
starts = np.cumsum([0] + [len(c) for c in s0.correspondences.coords_3d])


def per_point(feats):
    f = feats[: starts[-1]].numpy()
    f = f - f.mean(axis=0)
    return [f[starts[t]:starts[t + 1]][s0.correspondences.point_to_voxel_3d[t]] for t in range(T)]


point_features = {name: per_point(f) for name, f in features.items()}
QUERY = (0, int(np.flatnonzero(seq0.frames[0].source == fc.SOURCE_OBJECT)[0]))
fv.plot_similarity_rows(seq0, point_features, QUERY, crop=1.5, max_points=2500,
                        titles={n: f"FMR@20cm {s['fmr'][2]:.0%}" for n, s in scores.items()})

# %%
# NBVAL_IGNORE_OUTPUT
fv.explore_sequence(seq0, point_features["shipped"], layout="side")

# %% [markdown]
# ## 7. What this shows
#
# * The **random** network's features are a function of local geometry only. That already separates floor
#   from wall (surface orientation), which is why the neighbour score is far above chance even untrained —
#   and why scratch training is not as weak a baseline as "random" suggests. In its embedding a patch of
#   one wall scatters everywhere.
# * After a **few minutes of pre-training** with the recommended CPU preset (`cpu-small`: the supplement's
#   SimCLR variant with PointInfoNCE and motion-aware pairs; the shipped run had 3600 CPU-seconds, the fresh
#   one 40 steps) the embedding is organised differently: the floor and the moving object's voxels form
#   their own strands, and the voxels of one wall patch land in one compact region — the features now
#   describe *what* a voxel belongs to more than its exact local shape, which is what agreeing across
#   differently rotated frames (L3D) and with the 4D network (L3D4D) asks for. The numbers, computed above
#   and summarised below, say the same. These runs are minutes of a 2 M-parameter network at 10 cm; the
#   paper's are 50K steps of MinkUNet34 at 2 cm.
# * Whether such features make a *better starting point* for a labelled task is a separate question,
#   answered by fine-tuning and probing in notebook 05.

# %%
base = scores["random"]
for name, sc in scores.items():
    if name == "random":
        continue
    ratio = sc["fmr"][2] / max(base["fmr"][2], 1e-9)
    print(f"{name:8s}: recall @ 20 cm {sc['fmr'][2]:.1%} = {ratio:.1f}x the random network's "
          f"({base['fmr'][2]:.1%}); effective rank {sc['erank']:.1f} of {CHANNELS} (random {base['erank']:.1f}; "
          f"collapse below {0.1 * CHANNELS:.1f}); 10-NN class agreement {sc['knn']:.1%} (random {base['knn']:.1%})")
