# %% [markdown]
# # 03 — Pre-training: the meta-architecture, the losses, a run (4DContrast, Sec. 3.2 and 4)
#
# Notebooks 01 and 02 made 4D sequences and their exact correspondences. Here they train a 3D backbone.
# 4DContrast (Sec. 3.2) runs two encoders side by side — a **3D** U-Net Φ3D on every frame on its own
# and a **4D** U-Net Φ4D on the whole sequence — each followed by a SimSiam **predictor** (P3D, P4D), and
# asks features of corresponding voxels to agree:
#
# | term | agreement between | equations | function |
# |---|---|---|---|
# | $L^{3D}$ | 3D features of one point in frames $i$ and $j$ | 3–4 | `fourdcontrast.losses.loss_3d` |
# | $L^{3D4D}$ | 3D feature of a point in frame $i$ and its 4D feature at time $i$ | 5–6 | `losses.loss_3d4d` |
# | $L^{4D}$ | 4D features of one point at times $i$ and $j$ | 7–8 | `losses.loss_4d` |
# | $L$ | $w_{3D} L^{3D} + w_{3D4D} L^{3D4D} + w_{4D} L^{4D}$ | 9 | `losses.total_loss` |
#
# Each term is built from SimSiam's negative cosine similarity $D$ (Eq. 1) with a stop-gradient (Eq. 2).
# Only the 3D backbone is kept for downstream tasks (notebooks 04 and 05): the 4D branch exists to pass
# what it learns about motion into the 3D features through $L^{3D4D}$.
#
# This notebook:
#
# 1. draws the meta-architecture (the paper's Fig. 3) from the model we build;
# 2. evaluates **Eqs. 1–9 one by one on a real batch**, each next to the function that computes it, and
#    checks where the gradient flows;
# 3. runs a **short pre-training** with live curves of every loss term, SimSiam's collapse monitor and
#    the feature-match recall;
# 4. runs **the same pre-training without stop-gradient** and watches it collapse;
# 5. shows the collapse that SimSiam's std monitor **cannot** see — dimensional collapse — with the
#    **effective rank**, and what the direction of the stop-gradient in Eq. 5 does to it (measured curves
#    of the pre-training study);
# 6. lists the **ablation switches** and shows how to run the paper's preset on GPUs with `torchrun`.
#
# `FOURDCONTRAST_QUICK=1` selects the short preset used in CI (a few steps; the curves are then too short
# to say anything).

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import fourdcontrast as fc
import fourdviz.pretraining as fvp
from fourdcontrast import losses
from fourdcontrast.downstream.data import ROOM_CACHE_DIR
from fourdcontrast.models.fourdcontrast import METHODS, FourDContrast
from fourdcontrast.train.config import load_config
from fourdcontrast.train.pretrain import ReplacingDataset, make_dataset, pretrain

QUICK = os.environ.get("FOURDCONTRAST_QUICK", "0") == "1"
PRESET = {"steps": 6, "batch_size": 1, "recall_every": 3, "holdout_sequences": 1} if QUICK else \
         {"steps": 40, "batch_size": 2, "recall_every": 10, "holdout_sequences": 2}
# Two presets at the size of the shipped checkpoint (MinkUNet14S, 10 cm / 20 cm voxels), data generated in
# this process, a log row every step: the paper as printed (cpu-small-paper-literal: the SimSiam losses of
# Eqs. 1-9; sections 1, 2, 4) and the recommended CPU preset (cpu-small: the supplement's SimCLR variant
# with PointInfoNCE and motion-aware pairs; section 3 and notebook 04).
OVERRIDES = [
    "model.backbone_3d=MinkUNet14S", "model.backbone_4d=MinkUNet14S", "data.workers=0", "run.log_every=1",
    f"optim.steps={PRESET['steps']}", f"data.batch_size={PRESET['batch_size']}",
    f"run.recall_every={PRESET['recall_every']}", f"data.holdout_sequences={PRESET['holdout_sequences']}",
    f"run.checkpoint_every={PRESET['steps']}",
]
OUT = ROOM_CACHE_DIR.parent / "notebooks" / ("03-quick" if QUICK else "03")  # ~/.cache/fourdcontrast/...
plt.rcParams["figure.dpi"] = 72  # keeps the committed notebook small
torch.manual_seed(0)
config = load_config("cpu-small", OVERRIDES)
config_paper = load_config("cpu-small-paper-literal", OVERRIDES)
print("quick preset" if QUICK else "full preset", PRESET)
print(f"runs are written to {OUT}")

# %% [markdown]
# ## 1. The meta-architecture
#
# `FourDContrast(config)` builds the four networks of Fig. 3 from one `MethodConfig`. Φ3D and Φ4D are
# sparse residual U-Nets followed by a 1×1 projection layer (the paper: MinkUNet34 for 3D at 2 cm,
# MinkUNet14 in 4D at 5 cm; here MinkUNet14S at 10 cm / 20 cm, the paper as printed otherwise); P3D and P4D are
# SimSiam's two-layer bottleneck predictors applied per voxel (supplement, Sec. B). Every arrow in the
# picture is a line of `FourDContrast.forward` and of `fourdcontrast/losses/simsiam.py`.

# %%
model = FourDContrast(config_paper.method_config())
print(config_paper.method_config())
for name, module in model.named_children():
    n = sum(p.numel() for p in module.parameters())
    print(f"  {name:13s} {type(module).__name__:12s} {n / 1e6:6.3f} M parameters")
fvp.plot_meta_architecture(model)

# %% [markdown]
# ## 2. Equations 1–9 on a real batch
#
# A batch of generated sequences, collated for the sparse networks (`fc.collate_sequences`): the $B·T$
# 3D frames as separate samples, the $B$ sequences as 4D samples, and the correspondences of notebook 02 as
# rows into them, each with a *group* id — the frame pair $(i, j)$ of Eqs. 3/7 or the frame $i$ of Eq. 5.

# %%
data = ReplacingDataset(make_dataset(config_paper))
batch = fc.collate_sequences([data[k][0] for k in range(2)])
T = batch.length
print(f"B = {batch.batch_size} sequences of T = {T} frames")
print(f"3D voxels (all frames): {len(batch.coords_3d):,}, coords_3d rows [b·T+t, x, y, z]")
print(f"4D voxels (all sequences): {len(batch.coords_4d):,}, coords_4d rows [b, x, y, z, t]")
print(f"pairs: 3D-3D {len(batch.pairs_3d):,} | 3D-4D {len(batch.pairs_3d4d):,} | "
      f"4D-4D {len(batch.pairs_4d):,}")

model.train()
with torch.no_grad():
    out = model(batch, return_features=True)
# Leaves with their own gradients, so that we can ask which of p and z each equation differentiates.
z3, p3, z4, p4 = (out[k].detach().clone().requires_grad_(True) for k in ("z3d", "p3d", "z4d", "p4d"))
print({k: tuple(out[k].shape) for k in ("z3d", "p3d", "z4d", "p4d")})

# %% [markdown]
# ### Eq. 1 — `losses.negative_cosine_similarity(p, z)`
#
# $$D(p, z) = -\frac{p}{\lVert p\rVert_2}\cdot\frac{z}{\lVert z\rVert_2}$$
#
# per row, in $[-1, 1]$: $-1$ when the two features point the same way.

# %%
a, b = batch.pairs_3d[:5].T
d = losses.negative_cosine_similarity(p3[a], z3[b])
by_hand = -(p3[a] / p3[a].norm(dim=1, keepdim=True) * (z3[b] / z3[b].norm(dim=1, keepdim=True))).sum(1)
print("D of the first 5 3D-3D pairs:", np.round(d.detach().numpy(), 4))
print("by hand:                     ", np.round(by_hand.detach().numpy(), 4))
assert torch.allclose(d, by_hand, atol=1e-6)

# %% [markdown]
# ### Eq. 2 — `losses.simsiam_loss(p1, z1, p2, z2)`
#
# $$L = \tfrac12 D(p_1, \mathrm{SG}(z_2)) + \tfrac12 D(p_2, \mathrm{SG}(z_1))$$
#
# SimSiam's symmetrised loss for two views. Take the voxels of frame 0 and their partners in frame 1 as
# the two "views": this is exactly the 3D-3D term of that frame pair (Eq. 3, next cell).

# %%
group = batch.pairs_3d_group
pair01 = batch.pairs_3d[group == 0]  # group 0 = sequence 0, frame pair (0, 1)
a, b = pair01.T
l2 = losses.simsiam_loss(p3[a], z3[a], p3[b], z3[b])
print(f"Eq. 2 on the {len(pair01):,} voxel pairs of frames (0, 1) of sequence 0: {l2.item():+.4f}")

# %% [markdown]
# ### Eqs. 3–4 — `losses.loss_3d(p, z, pairs, groups, G)`
#
# $$L^{3D}_{A_{ij}} = \sum_{(a,b)\in A_{ij}} \tfrac12 D(p^{3D}_{i,a}, \mathrm{SG}(z^{3D}_{j,b})) + \tfrac12 D(p^{3D}_{j,b}, \mathrm{SG}(z^{3D}_{i,a})),
# \qquad L^{3D} = \sum_{i<j} L^{3D}_{A_{ij}}$$
#
# The sum inside a frame pair is taken as a **mean** (a pair's term must not grow with its number of
# voxels; every term stays in $[-1, 1]$ like SimSiam's), and the frame pairs are then averaged over the
# batch (`reduction="mean"`, the default) — or summed per sequence as Eq. 4 writes it (`reduction="sum"`;
# the same gradient direction, another scale). `losses.reduce_groups` does both.

# %%
G = T * (T - 1) // 2  # frame pairs per sequence
per_pair = []
for g in range(batch.batch_size * G):
    rows = batch.pairs_3d[group == g]
    if len(rows):
        a, b = rows.T
        per_pair.append(losses.simsiam_loss(p3[a], z3[a], p3[b], z3[b]))
l3 = losses.loss_3d(p3, z3, batch.pairs_3d, group, G)
print("Eq. 3 per frame pair:", np.round([v.item() for v in per_pair], 4))
print(f"Eq. 4 (mean over pairs): {l3.item():+.4f} = mean of the above {torch.stack(per_pair).mean():+.4f}")
l3_sum = losses.loss_3d(p3, z3, batch.pairs_3d, group, G, reduction="sum")
print(f"Eq. 4 (sum per sequence): {l3_sum.item():+.4f}")
print(f"model's loss_3d:          {out['loss_3d'].item():+.4f}")
assert torch.allclose(per_pair[0], l2) and torch.allclose(l3, out["loss_3d"], atol=1e-6)
grads = torch.autograd.grad(l3, [p3, z3], allow_unused=True)
print("gradient of L3D reaches p3D:", grads[0] is not None and bool(grads[0].abs().sum() > 0),
      "| z3D:", grads[1] is not None, "(stop-gradient)")

# %% [markdown]
# ### Eqs. 5–6 — `losses.loss_3d4d(p3, z3, p4, z4, pairs, groups, T)`
#
# $$L^{3D4D}_{A_i} = \sum_{a\in A_i} \tfrac12 D(\mathrm{SG}(p^{3D}_{i,a}), z^{4D}_{i,a}) + \tfrac12 D(\mathrm{SG}(p^{4D}_{i,a}), z^{3D}_{i,a}),
# \qquad L^{3D4D} = \sum_i L^{3D4D}_{A_i}$$
#
# Here the stop-gradient sits on the **predictor** outputs, exactly as Eq. 5 writes it (the orange arrows
# of Fig. 3): the gradient flows into the encoder outputs $z^{3D}$ and $z^{4D}$ — this is the path by which
# the 4D network teaches the 3D one.

# %%
l34 = losses.loss_3d4d(p3, z3, p4, z4, batch.pairs_3d4d, batch.pairs_3d4d_group, T)
per_frame = []
for g in range(batch.batch_size * T):
    rows = batch.pairs_3d4d[batch.pairs_3d4d_group == g]
    if len(rows):
        a, w = rows.T
        per_frame.append((0.5 * losses.negative_cosine_similarity(p3[a], z4[w])
                          + 0.5 * losses.negative_cosine_similarity(p4[w], z3[a])).mean())
print("Eq. 5 per frame:", np.round([v.item() for v in per_frame], 4))
print(f"Eq. 6: {l34.item():+.4f} (model: {out['loss_3d4d'].item():+.4f})")
assert torch.allclose(l34, torch.stack(per_frame).mean(), atol=1e-6)
gp3, gz3, gp4, gz4 = torch.autograd.grad(l34, [p3, z3, p4, z4], allow_unused=True)
print("gradient of L3D4D reaches z3D:", gz3 is not None, "| z4D:", gz4 is not None,
      "| p3D:", gp3 is not None, "| p4D:", gp4 is not None)

# %% [markdown]
# ### Eqs. 7–8 — `losses.loss_4d(p4, z4, pairs, groups, G)`
#
# $$L^{4D}_{A_{ij}} = \sum_{a} \tfrac12 D(p^{4D}_{i,a}, \mathrm{SG}(z^{4D}_{j,a})) + \tfrac12 D(p^{4D}_{j,a}, \mathrm{SG}(z^{4D}_{i,a})),
# \qquad L^{4D} = \sum_{i<j} L^{4D}_{A_{ij}}$$
#
# Eq. 3 on the 4D features of one point at two time steps (the blue arrows): the moving object's voxels
# are at different places at times $i$ and $j$, the scene's at the same place one time step apart.

# %%
l4 = losses.loss_4d(p4, z4, batch.pairs_4d, batch.pairs_4d_group, G)
print(f"Eq. 8: {l4.item():+.4f} (model: {out['loss_4d'].item():+.4f})")
grads = torch.autograd.grad(l4, [p4, z4], allow_unused=True)
print("gradient of L4D reaches p4D:", grads[0] is not None, "| z4D:", grads[1] is not None, "(stop-gradient)")

# %% [markdown]
# ### Eq. 9 — `losses.total_loss(l3d, l3d4d, l4d, w3d, w3d4d, w4d)`
#
# $$L = w_{3D} L^{3D} + w_{3D4D} L^{3D4D} + w_{4D} L^{4D}$$
#
# The paper leaves the weights open; ours are 1 (`losses.W3D`, `W3D4D`, `W4D`, fields of `MethodConfig`).
# Setting one to 0 is an ablation (section 6).

# %%
total = losses.total_loss(l3, l34, l4)
print(f"L = {losses.W3D}·{l3.item():+.4f} + {losses.W3D4D}·{l34.item():+.4f} + {losses.W4D}·{l4.item():+.4f} "
      f"= {total.item():+.4f}; model(batch)['loss'] = {out['loss'].item():+.4f}")
assert torch.allclose(total, out["loss"], atol=1e-6)
print(f"collapse monitor now: std_z3d = {out['std_z3d'].item():.4f}, std_z4d = {out['std_z4d'].item():.4f} "
      f"(healthy 1/√d = {out['std_healthy']:.4f})")

# %% [markdown]
# ## 3. A short pre-training run, live
#
# This run uses the **recommended CPU preset** (`configs/pretrain/cpu-small.yaml`): the same meta-architecture
# without predictors, trained with the supplement's SimCLR variant (PointInfoNCE on the same 3D-3D, 3D-4D
# and 4D-4D pairs; Fig. 7 / Table 10) and motion-aware pair sampling — section 5 shows why the SimSiam
# losses of Eqs. 1–9 as printed are not it. (Its terms are InfoNCE losses, not cosine similarities: lower
# is better, with no floor at −1.)
#
# `fourdcontrast.train.pretrain.pretrain(config, out)` is the whole loop (also `fourdcontrast pretrain
# --config cpu-small --out DIR`): sequences generated on the fly in a deterministic order, SGD with the
# paper's step decay, a row of `log.csv` per logged step, checkpoints that resume to the same losses. The
# curves below are redrawn from `log.csv` while it runs:
#
# * **the loss terms** — each in $[-1, 1]$, $-1$ = corresponding features perfectly aligned;
# * **the collapse monitor** (`fourdcontrast.models.fourdcontrast.collapse_std`, SimSiam's Fig. 2): the
#   standard deviation over voxels of the L2-normalised encoder outputs $z/\lVert z\rVert$, averaged over
#   channels. Spread-out features sit near $1/\sqrt{d}$; **collapsed** ones (every voxel the same
#   vector, a trivial way to make every $D = -1$) go to 0;
# * **the effective rank** (`fourdcontrast.metrics.effective_rank`) of the backbone output and of $z$
#   before the projector's batch norm: how many directions the features really use (section 5 explains
#   why this is the monitor to watch);
# * **feature-match recall** on a fixed held-out batch (`fourdcontrast.metrics.batch_feature_match_recall`):
#   for sampled 3D-3D correspondences of frames 0 and 1, is the nearest neighbour *in feature space* of a
#   voxel of frame 0, among all voxels of frame 1, within 5 cm of its true partner? It needs no labels. At
#   the CPU preset's 10 cm voxels this asks for the exact partner voxel among thousands, so expect small
#   numbers that grow slowly.

# %%
def draw(runs, title=None):
    return fvp.plot_pretrain_log(runs, healthy_std=model.config.feature_dim ** -0.5,
                                 total_steps=config.optim.steps, title=title)


start = time.perf_counter()
rows = fvp.run_with_live_log(lambda: pretrain(config, OUT / "4dcontrast", progress=False, overwrite=True),
                             OUT / "4dcontrast" / "log.csv",
                             lambda r: draw(r, "4DContrast, recommended CPU preset (cpu-small)"))
seconds_sg = time.perf_counter() - start
print(f"{config.optim.steps} steps in {seconds_sg:.0f} s ({fvp.steps_per_second(rows):.2f} steps/s); "
      f"files: {sorted(p.name for p in (OUT / '4dcontrast').iterdir())}")

# %% [markdown]
# ## 4. The stop-gradient experiment
#
# SimSiam's central finding (Chen & He 2021, Fig. 2) is that without the stop-gradient the two branches
# can agree trivially: every voxel gets the same feature, every $D$ reaches $-1$, and the features carry no
# information. This is a lesson about the SimSiam losses of Eqs. 1–9, so both runs use the paper as printed
# (`cpu-small-paper-literal`); one switch removes every stop-gradient of Eqs. 3, 5 and 7
# (`MethodConfig.stop_gradient=False`, the method `no-stop-gradient`,
# `configs/pretrain/no-stop-gradient.yaml`); everything else — data, initial weights, order of the
# batches — is the same run.

# %%
rows_paper = pretrain(config_paper, OUT / "paper-literal", progress=False, overwrite=True)
config_nosg = load_config("cpu-small-paper-literal", [*OVERRIDES, "method=no-stop-gradient"])
assert config_nosg.method_config().stop_gradient is False
rows_nosg = fvp.run_with_live_log(lambda: pretrain(config_nosg, OUT / "no-stop-gradient", progress=False,
                                                                  overwrite=True),
                                  OUT / "no-stop-gradient" / "log.csv",
                                  lambda r: draw({"with SG": rows_paper, "without SG": r},
                                                 "the paper as printed, with and without stop-gradient"))

# %%
last, last_nosg = rows_paper[-1], rows_nosg[-1]
print(f"after {int(last['step'])} steps        with SG   without SG")
for key in ("loss", "loss_3d", "loss_3d4d", "loss_4d", "std_z3d", "std_z4d", "recall"):
    print(f"  {key:10s}        {last[key]:+.4f}    {last_nosg[key]:+.4f}")

# %% [markdown]
# Without the stop-gradient the loss races towards its floor of $-3$ (every term at $-1$) and the collapse
# monitor falls faster. A low loss alone does not say whether the features learned something or agreed
# trivially; the direct test is to compare how similar the features of **corresponding** voxels are with how
# similar those of **random, unrelated** voxel pairs are. Learning widens that gap; collapse closes it from
# above (everything becomes alike). Below: the held-out batch through the initial weights and the two
# trained models.
#
# (The projector ends in a batch norm without affine parameters, as SimSiam's does, so $z$ cannot become
# literally one constant vector per batch and the monitor cannot reach exactly 0; the collapse shows as
# features that agree with everything.)

# %%
from fourdcontrast.train.checkpoint import load_checkpoint
from fourdcontrast.train.pretrain import holdout_batch

held = holdout_batch(config_paper)


def agreement(state=None, method_cfg=config_paper.method_config()):
    torch.manual_seed(config_paper.run.seed)  # the initial weights of both runs
    m = FourDContrast(method_cfg)
    if state is not None:
        m.load_state_dict(state)
    m.train()  # batch statistics, as the losses see the features (untrained running statistics are not)
    with torch.no_grad():
        o = m(held, return_features=True)
    g = torch.Generator().manual_seed(0)
    result = {}
    for name, z, pairs in (("3D-3D", o["z3d"], held.pairs_3d), ("4D-4D", o["z4d"], held.pairs_4d)):
        z = torch.nn.functional.normalize(z, dim=1)
        a, b = pairs.T
        shuffled = b[torch.randperm(len(b), generator=g)]
        result[name] = ((z[a] * z[b]).sum(1).mean().item(), (z[a] * z[shuffled]).sum(1).mean().item())
    return result


gaps = {"initial weights": agreement(),
        "with SG": agreement(load_checkpoint(OUT / "paper-literal" / "checkpoint.pt")["model"]),
        "without SG": agreement(load_checkpoint(OUT / "no-stop-gradient" / "checkpoint.pt")["model"],
                                config_nosg.method_config())}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for ax, term in zip(axes, ("3D-3D", "4D-4D")):
    names = list(gaps)
    x = np.arange(len(names))
    ax.bar(x - 0.18, [gaps[n][term][0] for n in names], 0.36, label="corresponding voxels", color="#2ca02c")
    ax.bar(x + 0.18, [gaps[n][term][1] for n in names], 0.36, label="random voxel pairs", color="#7f7f7f")
    ax.set_xticks(x, names)
    ax.set_ylim(-0.2, 1.05)
    ax.set_ylabel("mean cosine similarity of z")
    ax.set_title(f"{term} correspondences of the held-out batch", fontsize=10)
    ax.axhline(0, color="k", lw=0.6)
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()
for n, g in gaps.items():
    print(f"{n:18s} " + "   ".join(f"{t}: corresponding {c:+.2f}, random {r:+.2f}, gap {c - r:+.2f}"
                                     for t, (c, r) in g.items()))

# %% [markdown]
# Both trained models make corresponding voxels agree. With the stop-gradient, unrelated voxels stay
# clearly less alike than corresponding ones; without it, the similarity of *random* pairs climbs too and the
# gap shrinks — the features drift towards agreeing with everything, the collapse SimSiam's stop-gradient
# prevents. Run longer (`optim.steps`) and the gap keeps closing. (In the quick CI preset the runs are only a
# few steps long and the curves have barely separated; the committed notebook shows the full preset.)
#
# ## 5. The collapse the std monitor cannot see: effective rank, and the direction of Eq. 5
#
# SimSiam's monitor catches **complete** collapse (every voxel the same vector). There is a subtler failure,
# **dimensional collapse** (Jing et al. 2022): the features spread over only a few directions of the
# $d$-dimensional space — the channels become copies of one another. Our projector ends, like SimSiam's,
# in a batch norm without affine parameters, which rescales **every channel** to unit variance: the
# per-channel std then reads "healthy" however many directions the channels really span.
#
# The **effective rank** (Roy & Vetterli 2007) counts the directions: with $\sigma_k$ the singular values
# of the centred $(N, d)$ feature matrix and $p_k = \sigma_k^2 / \sum \sigma^2$, it is
# $\exp(-\sum_k p_k \log p_k)$ — $d$ for features spread evenly, 1 for features along one line. A
# constructed example shows the difference:

# %%
from fourdcontrast.metrics import COLLAPSE_RANK_FRACTION, effective_rank
from fourdcontrast.models.fourdcontrast import collapse_std

g = torch.Generator().manual_seed(0)
d = 32
healthy = torch.randn(4000, d, generator=g)
copies = torch.randn(4000, 1, generator=g) * torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
copies = copies + 0.05 * torch.randn(4000, d, generator=g)
copies = (copies - copies.mean(0)) / copies.std(0)  # what a batch norm without affine parameters does
for name, z in (("healthy features", healthy), ("32 normalised copies of one channel", copies)):
    print(f"{name:38s} std monitor {float(collapse_std(z)):.3f} (healthy 1/sqrt(d) = {d ** -0.5:.3f})   "
          f"effective rank {effective_rank(z):5.2f} of {d}")

# %% [markdown]
# The trainer logs both ranks every `log_every` steps (`log.csv`: `erank_backbone_3d`, `erank_z3d`, …; the
# progress bar shows `erank`), evaluates the backbone's rank on the held-out batch with the recall
# (`holdout_erank`), and warns — or, with `run.stop_on_collapse`, stops — when a rank falls below
# `run.collapse_rank_fraction` (default `COLLAPSE_RANK_FRACTION` = 0.1) of $d$. The runs above:

# %%
for name, r in (("paper, with SG", rows_paper[-1]), ("paper, no SG", rows_nosg[-1]),
                ("recommended", rows[-1])):
    print(f"{name:14s} step {int(r['step'])}: std_z3d {r['std_z3d']:.3f}   erank of the backbone output "
          f"{r['erank_backbone_3d']:5.2f}, of z before BN {r['erank_z3d']:5.2f} (of {d}; collapse below "
          f"{COLLAPSE_RANK_FRACTION * d:.1f})")

# %% [markdown]
# **Why 4DContrast as printed collapses.** Eq. 5 puts the stop-gradient on the *predictor* outputs and lets
# the gradient into the *encoder* outputs: $\tfrac12 D(\mathrm{SG}(p^{3D}), z^{4D}) +
# \tfrac12 D(\mathrm{SG}(p^{4D}), z^{3D})$. Each encoder is then regressed onto a detached prediction of the
# other branch with **no predictor on the trained side** — the configuration SimSiam's Table 1 reports as
# collapsing. One switch, `model.eq5_direction` (`"paper"` / `"simsiam"`), moves the stop-gradient to
# SimSiam's side: $\tfrac12 D(p^{3D}, \mathrm{SG}(z^{4D})) + \tfrac12 D(p^{4D}, \mathrm{SG}(z^{3D}))$.
#
# The pre-training study (`benchmarks/pretrain_study.py`, results in `benchmarks/results/pretrain_study.md`)
# ran every candidate cause as one switch, at an equal budget of CPU seconds per run. Its logged curves
# (seed 0): the std monitor reads healthy for every run, while the effective rank of the paper-literal
# preset falls towards the collapse line; moving Eq. 5's stop-gradient to SimSiam's side slows that, and
# the recommended preset (a contrastive loss, whose negatives push features apart) and PointContrast keep
# their rank:

# %%
import csv as _csv

RESULTS = Path(fc.__file__).resolve().parents[1] / "benchmarks" / "results"
with open(RESULTS / "pretrain_study_curves.csv", newline="") as fh:
    curve_rows = list(_csv.DictReader(fh))
study_runs: dict = {}
for r in curve_rows:
    name = f"{r['arm']} ({float(r['budget_s']):.0f} s)"
    study_runs.setdefault(name, []).append({k: float(v) for k, v in r.items() if k != "arm" and v})
fig, (ax_std, ax_rank) = plt.subplots(1, 2, figsize=(12, 3.6))
for (name, rs), color in zip(study_runs.items(), ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#7f7f7f")):
    steps = [r["step"] for r in rs]
    ax_std.plot(steps, [r["std_z3d"] for r in rs], color=color, label=name)
    ax_rank.plot(steps, [r["erank_backbone_3d"] for r in rs], color=color, label=name)
ax_std.axhline(d ** -0.5, color="k", lw=0.8, ls=":", label="healthy 1/√d")
ax_std.set(title="SimSiam's monitor: std of z3D/‖z3D‖", xlabel="step", ylim=(0, 0.2))
ax_rank.axhline(COLLAPSE_RANK_FRACTION * d, color="k", lw=0.8, ls=":", label=f"collapse: 0.1·d")
ax_rank.set(title="effective rank of the 3D backbone output (of 32)", xlabel="step", ylim=(0, None))
for ax in (ax_std, ax_rank):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# And what the frozen features are worth at the end of each arm: effective rank, feature-match recall and
# a linear probe on the validation rooms (mean over the seeds run; the markdown file has the spreads).
# A budget is CPU seconds, and a CPU second is not the same work everywhere: rows marked `@epyc` ran on
# another VM that did ~0.6× the steps in the same seconds, so they are kept apart.

# %%
with open(RESULTS / "pretrain_study.csv", newline="") as fh:
    study = list(_csv.DictReader(fh))


def study_label(row: dict) -> str:
    machine = (row.get("machine") or "Intel Xeon").lower()  # rows without one: the Xeon
    if row["arm"] == "random" or "xeon" in machine:
        return row["arm"]
    return f"{row['arm']} @{'epyc' if 'epyc' in machine else machine.split()[0]}"


arms: dict = {}
for r in study:
    arms.setdefault((study_label(r), float(r["budget_s"])), []).append(r)
order = sorted(arms, key=lambda k: -np.mean([float(r["probe_miou"]) for r in arms[k]]))
print(f"{'arm':40s} {'budget s':>8s} {'n':>2s} {'erank':>6s} {'recall@20cm':>11s} {'probe mIoU':>10s}")
for key in order:
    rs = arms[key]
    print(f"{key[0]:40s} {key[1]:8.0f} {len(rs):2d} {np.mean([float(r['erank']) for r in rs]):6.2f} "
          f"{np.mean([float(r['recall_20cm']) for r in rs]):11.4f} "
          f"{np.mean([float(r['probe_miou']) for r in rs]):10.2f}")

# %% [markdown]
# ## 6. Ablation switches, and the paper's preset on GPUs
#
# Every baseline and ablation of the paper is one entry of `METHODS` — a set of `MethodConfig` overrides —
# and a shipped config under `configs/pretrain/`:

# %%
where = {
    "4dcontrast": "Table 2: Ours", "pointcontrast": "Table 2: PointContrast", "csc": "Table 2: CSC",
    "3d-data-3d3d": "Table 2: 3D data, 3D-3D", "4d-data-3d3d": "Table 2: 4D data, 3D-3D",
    "simclr": "supp. Table 10", "simclr-infonce": "supp. Sec. C", "two-3d-backbones": "supp. Table 8",
    "no-3d4d": "ours: one term off", "no-4d4d": "ours: one term off", "no-3d3d": "ours: one term off",
    "no-stop-gradient": "SimSiam Fig. 2",
}
shipped = {"4dcontrast": "paper, cpu-small, seq3, seq5", "no-4d4d": "no-4d", "no-3d3d": "",
           "simclr-infonce": ""}
config_dir = Path(fc.__file__).resolve().parents[1] / "configs" / "pretrain"
print(f"{'method':17s} {'in the paper':25s} {'configs/pretrain/':30s} switches (MethodConfig fields)")
for name, switches in METHODS.items():
    files = shipped.get(name, name)
    assert all((config_dir / f"{f}.yaml").is_file() for f in files.split(", ") if f), files
    text = ", ".join(f"{k}={v}" for k, v in switches.items()) or "(the defaults)"
    print(f"{name:17s} {where[name]:25s} {files or '--set method=' + name:30s} {text}")
print("sequence length (supp. Table 9): seq3.yaml / seq5.yaml set data.length = 3 / 5 with batch 16 / 10")

# %% [markdown]
# Any of them runs with the same command — on a preset's sizes, `--set method=NAME` switches the method and
# its switches win over the preset's model section (e.g. PointContrast drops the 4D branch):
#
# ```bash
# fourdcontrast pretrain --config cpu-small --set method=no-3d4d --out runs/no-3d4d   # CPU, ~10 min
# fourdcontrast pretrain --config no-3d4d --out runs/no-3d4d-paper                    # the paper's sizes
# ```
#
# **The paper's preset** (`configs/pretrain/paper.yaml`): MinkUNet34 at 2 cm, MinkUNet14 4D at 5 cm,
# sequences of 4 frames, batch 12, SGD lr 0.25 × 0.99 every 1000 steps, 50K steps. It needs a GPU (the 3D
# backbone alone takes ~1 GiB per room-sized frame in float32, 48 frames per batch). On one GPU with enough
# memory, or on several with `torchrun` (DistributedDataParallel, NCCL, synchronised batch norm; the batch
# size is per process, so 4 × 3 keeps the paper's 12):
#
# ```bash
# # optional: generate the sequences once (paper: 20 trajectories per ScanNet scan, ModelNet objects)
# fourdcontrast generate --scenes /data/scannet/scans --objects /data/ModelNet40 \
#     --trajectories-per-scene 20 --workers 16 --out data/seq
# # one GPU
# fourdcontrast pretrain --config paper --set data.source=shards --set data.shards=data/seq --out runs/paper
# # four GPUs, 3 sequences each (global batch 12), bfloat16 autocast
# torchrun --nproc_per_node 4 -m fourdcontrast pretrain --config paper --set data.batch_size=3 \
#     --set run.amp=true --set data.source=shards --set data.shards=data/seq --out runs/paper
# # interrupted? the same command with --resume continues with the losses an uninterrupted run logs
# fourdcontrast export-backbone runs/paper/checkpoint.pt runs/paper/backbone.pth   # for fine-tuning
# ```
#
# The resolved paper preset and the size of its networks:

# %%
paper = load_config("paper")
d, o, m = paper.data, paper.optim, paper.method_config()
print(f"model: {m.backbone_3d} (3D) + {m.backbone_4d} {m.second_dimension}D ({m.kernel_shape_4d} kernels), "
      f"d = {m.feature_dim}")
print(f"data: batch {d.batch_size} sequences × {d.length} frames, voxels {d.voxel_size_3d * 100:.0f} cm (3D) "
      f"/ {d.voxel_size_4d * 100:.0f} cm (4D)")
print(f"optim: lr {o.lr}, ×{o.lr_decay} every {o.lr_decay_every} steps, {o.steps:,} steps")
paper_model = FourDContrast(paper.method_config())
for name in ("encoder_3d", "encoder_4d"):
    n = sum(p.numel() for p in getattr(paper_model, name).parameters())
    print(f"  {name}: {n / 1e6:.1f} M parameters")
del paper_model

# %% [markdown]
# Next: notebook 04 looks at what the learned 3D features encode (embeddings, similarity across frames) for a
# random, the shipped pre-trained and a freshly trained backbone; notebook 05 measures what pre-training buys
# downstream.
