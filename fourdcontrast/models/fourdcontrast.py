"""The 4DContrast pre-training meta-architecture (paper Sec. 3.2 and 3.3.1, supplement Sec. B, Fig. 8).

::

    3D frames ──► Φ3D = MinkUNet34 (2 cm) → 1×1×1 projector ──► z3D ──► P3D ──► p3D
    4D sequence ► Φ4D = MinkUNet14 (5 cm × 1 frame) → 1×1×1×1 projector ► z4D ► P4D ► p4D

    L3D   (Eqs. 3–4): ½ D(p3D_i,a, SG z3D_j,b) + ½ D(p3D_j,b, SG z3D_i,a)   over frame pairs i < j
    L3D4D (Eqs. 5–6): ½ D(SG p3D_i,a, z4D_i,a) + ½ D(SG p4D_i,a, z3D_i,a)   over frames
    L4D   (Eqs. 7–8): as L3D on the 4D features                              over time pairs i < j
    L     (Eq. 9)   : w3D L3D + w3D4D L3D4D + w4D L4D

:class:`FourDContrast` takes a :class:`~fourdcontrast.data.dataset.Batch` and returns a dict of named loss
terms and diagnostics. Every baseline and ablation of the paper is one field of :class:`MethodConfig`
(see :data:`METHODS` and :func:`method_config`):

- ``framework``: ``"simsiam"`` (4DContrast), ``"simclr"`` (supplement Fig. 7 / Table 10: no predictors,
  match-average pooled 4D features, hardest-contrastive or PointInfoNCE), ``"pointinfonce"``
  (PointContrast) or ``"csc"`` (Contrastive Scene Contexts);
- ``data``: ``"sequences"`` (our 4D data) or ``"static"`` (two views of a static scan,
  :mod:`fourdcontrast.data.static`) — read by the trainer to choose its dataset;
- ``backbone_4d=None`` drops the 4D branch (the 3D-3D-only rows), ``second_dimension=3`` replaces Φ4D by a
  second 3D U-Net on the frames in scene coordinates ("two 3D backbones", supplement Table 8);
- ``w3d`` / ``w3d4d`` / ``w4d`` (loss switches), ``stop_gradient=False`` (the collapse demonstration).

The model runs unchanged on our engine (``backend="torch"``) and on MinkowskiEngine
(``backend="minkowski"``), with the same parameter names, so one ``state_dict`` serves both.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from fourdcontrast import losses
from fourdcontrast.metrics import effective_rank
from fourdcontrast.models.heads import PROJECTOR_BN, PROJECTORS, Predictor, Projector
from fourdcontrast.models.resunet import (
    BACKBONES,
    CHECKPOINT_PRESETS,
    KERNEL_SHAPES,
    STAGES,
    build_backbone,
    is_checkpoint_spec,
)
from fourdcontrast.sparse.backend import get_backend

FRAMEWORKS = ("simsiam", "simclr", "pointinfonce", "csc")
"""Contrastive frameworks: SimSiam (4DContrast), SimCLR (supplement), PointContrast's PointInfoNCE, CSC."""
DATA_KINDS = ("sequences", "static")
"""Pre-training data: generated 4D sequences, or two augmented views of a static scan."""
SIMCLR_LOSSES = ("hardest", "infonce")
"""Contrastive loss of the SimCLR variant: FCGF's hardest-contrastive (the supplement's) or PointInfoNCE."""
DEFAULT_FEATURE_DIM = 96
"""Width d of the encoder outputs z and predictor outputs p (our choice; the paper does not give it):
the width of MinkUNet34C's last decoder stage, so the U-Net's final 1×1 layer keeps its width."""
DEFAULT_MAX_PAIRS_PER_GROUP = None
"""Correspondences sampled per frame pair / frame of a sequence for the SimSiam terms (our choice):
``None`` uses all of them — the per-voxel heads are computed for every voxel anyway, so the losses cost
little next to the backbones."""
EQ5_DIRECTIONS = losses.EQ5_DIRECTIONS
"""Where the stop-gradients of L3D4D (Eq. 5) sit: ``"paper"`` as printed, ½ D(SG p3D, z4D) + ½ D(SG p4D,
z3D) — the gradient reaches the encoder outputs z and no predictor sits on the trained side, the
configuration SimSiam's Table 1 reports as collapsing; ``"simsiam"``, ½ D(p3D, SG z4D) + ½ D(p4D, SG z3D),
the form of Eqs. 3 and 7 (the gradient goes through the predictors)."""
SEQUENCE_LENGTH_BATCH = {3: 16, 4: 12, 5: 10}
"""Sequences per batch for each sequence length in the paper's ablation (supplement Table 9)."""


@dataclass(frozen=True)
class MethodConfig:
    """Everything that distinguishes 4DContrast from its baselines and ablations (one switch each).

    Attributes:
        framework: one of :data:`FRAMEWORKS`.
        data: one of :data:`DATA_KINDS` (which dataset the trainer feeds).
        backbone_3d: the 3D U-Net (:data:`~fourdcontrast.models.resunet.BACKBONES`; paper: MinkUNet34).
        backbone_4d: the second U-Net (paper: MinkUNet14 4D), or None for no second branch.
        second_dimension: 4 (Φ4D on the sequence) or 3 ("two 3D backbones": the second U-Net sees each
            frame in scene coordinates at the 4D voxel size, with no time axis).
        kernel_shape_4d: kernels of the 4D U-Net: ``"hypercube"`` (default), ``"spatial"`` or
            ``"hypercross"``.
        in_channels: input channels (occupancy repeated into 3, supplement Sec. B).
        feature_dim: width of z and p (:data:`DEFAULT_FEATURE_DIM`).
        predictor_hidden: the predictors' bottleneck width (default ``feature_dim // 4``, as SimSiam).
        w3d, w3d4d, w4d: the weights of Eq. 9 (paper: unspecified constants; ours 1 each).
        stop_gradient: False removes every stop-gradient (the collapse demonstration).
        reduction: how the per-group means combine (``losses.reduce_groups``): ``"mean"`` or ``"sum"``.
        max_pairs_per_group: correspondences sampled per group for SimSiam (None: all).
        simclr_loss: for ``framework="simclr"``, one of :data:`SIMCLR_LOSSES`.
        projector_bn: batch norm (no affine) after each projector's 1×1 layer (SimSiam's projector ends with
            BN; the paper does not say; :data:`~fourdcontrast.models.heads.PROJECTOR_BN`). False is the
            same as ``projector="1x1"``.
        backend: ``"torch"`` (our engine) or ``"minkowski"``.
        projector: the projector variant (:data:`~fourdcontrast.models.heads.PROJECTORS`; default
            ``"1x1-bn"``, the paper's 1×1 layer with SimSiam's closing batch norm).
        eq5_direction: the stop-gradient placement of Eq. 5 (:data:`EQ5_DIRECTIONS`; default ``"paper"``).
        background_pairs_per_group: motion-aware pair sampling for the SimSiam terms: keep every pair that
            touches the moving object and at most this many of the other pairs per group (frame pair or
            frame); None (default, the paper) keeps all. With any motion-aware switch on,
            ``max_pairs_per_group`` must be None (the object pairs are never dropped).
        static_4d_pairs_per_group: at most this many L4D background pairs per time pair that join the same
            (x, y, z) at two times (the static scene: 97.6 % of L4D pairs,
            ``benchmarks/results/pair_shares.md``); 0 drops them, None (default)
            keeps them.
        object_pair_weight: weight of a pair touching the moving object in its group's mean (default 1: a
            plain mean, the paper); SimSiam terms only (the pair caps above also apply to the SimCLR,
            PointContrast and CSC losses, the weight does not).
        recompute_activations: both U-Nets keep only their convolution outputs for the backward and
            recompute batch norm, residual sums, ReLUs and concatenations there (less memory, same results;
            :class:`~fourdcontrast.models.resunet.MemoryOptions`). Our engine only.
        checkpoint_3d, checkpoint_4d: U-Net stages recomputed whole in the backward (activation
            checkpointing): ``"none"``, ``"all-but-dec4"``, ``"all"``, ``"decoder"``... or stage names
            joined by commas (``"dec3,dec4"``; :data:`~fourdcontrast.models.resunet.STAGES`).
        compact_maps: the U-Nets' submanifold kernel maps store half their offsets (mirrored maps).
        fused_pair_losses: the SimSiam terms compute each pair's cosine from rows normalised once per voxel
            (:func:`~fourdcontrast.losses.pair_dot`), keeping no gathered (K, C) pair rows for the backward
            (less memory, the same loss; default False). SimSiam losses only.
    """

    framework: str = "simsiam"
    data: str = "sequences"
    backbone_3d: str = "MinkUNet34"
    backbone_4d: str | None = "MinkUNet14"
    second_dimension: int = 4
    kernel_shape_4d: str = "hypercube"
    in_channels: int = 3
    feature_dim: int = DEFAULT_FEATURE_DIM
    predictor_hidden: int | None = None
    w3d: float = losses.W3D
    w3d4d: float = losses.W3D4D
    w4d: float = losses.W4D
    stop_gradient: bool = True
    reduction: str = losses.DEFAULT_REDUCTION
    max_pairs_per_group: int | None = DEFAULT_MAX_PAIRS_PER_GROUP
    simclr_loss: str = "hardest"
    projector_bn: bool = PROJECTOR_BN
    backend: str = "torch"
    projector: str = "1x1-bn"
    eq5_direction: str = "paper"
    background_pairs_per_group: int | None = None
    static_4d_pairs_per_group: int | None = None
    object_pair_weight: float = 1.0
    recompute_activations: bool = False
    checkpoint_3d: str = "none"
    checkpoint_4d: str = "none"
    compact_maps: bool = False
    fused_pair_losses: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.framework in FRAMEWORKS, f"framework must be one of {FRAMEWORKS}"),
            (is_checkpoint_spec(self.checkpoint_3d) and is_checkpoint_spec(self.checkpoint_4d),
             f"checkpoint_3d / checkpoint_4d must be one of {sorted(CHECKPOINT_PRESETS)} or stage names "
             f"from {STAGES} joined by commas"),
            (self.data in DATA_KINDS, f"data must be one of {DATA_KINDS}"),
            (self.backbone_3d in BACKBONES, f"backbone_3d must be one of {sorted(BACKBONES)}"),
            (self.backbone_4d is None or self.backbone_4d in BACKBONES,
             f"backbone_4d must be None or one of {sorted(BACKBONES)}"),
            (self.second_dimension in (3, 4), "second_dimension must be 3 or 4"),
            (self.kernel_shape_4d in KERNEL_SHAPES, f"kernel_shape_4d must be one of {KERNEL_SHAPES}"),
            (self.simclr_loss in SIMCLR_LOSSES, f"simclr_loss must be one of {SIMCLR_LOSSES}"),
            (self.projector in PROJECTORS, f"projector must be one of {PROJECTORS}"),
            (self.eq5_direction in EQ5_DIRECTIONS, f"eq5_direction must be one of {EQ5_DIRECTIONS}"),
            (self.background_pairs_per_group is None or self.background_pairs_per_group >= 0,
             "background_pairs_per_group must be None or >= 0"),
            (self.static_4d_pairs_per_group is None or self.static_4d_pairs_per_group >= 0,
             "static_4d_pairs_per_group must be None or >= 0"),
            (self.object_pair_weight > 0, "object_pair_weight must be positive"),
            (self.max_pairs_per_group is None or (self.background_pairs_per_group is None
                                                  and self.static_4d_pairs_per_group is None
                                                  and self.object_pair_weight == 1.0),
             "motion-aware sampling never drops object pairs: use background_pairs_per_group instead of "
             "max_pairs_per_group"),
            (self.feature_dim >= 1 and self.in_channels >= 1, "feature_dim and in_channels must be positive"),
            (self.max_pairs_per_group is None or self.max_pairs_per_group >= 1,
             "max_pairs_per_group must be None or positive"),
            (self.backbone_4d is not None or (self.w3d4d == 0 and self.w4d == 0),
             "w3d4d and w4d must be 0 without a second backbone"),
            (self.framework not in ("pointinfonce", "csc") or self.backbone_4d is None,
             "PointContrast / CSC pre-train the 3D backbone alone: set backbone_4d=None"),
            (self.data == "sequences" or self.backbone_4d is None,
             "static pairs have no motion: use backbone_4d=None with data='static'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"MethodConfig: {message} (got {self})")

    def memory_options(self, branch: int) -> dict:
        """The memory switches of the 3D (``branch=3``) or second (``4``) U-Net, as ``build_backbone``'s
        ``memory`` argument."""
        return {"recompute_activations": self.recompute_activations, "compact_maps": self.compact_maps,
                "checkpoint": self.checkpoint_3d if branch == 3 else self.checkpoint_4d}

    @property
    def uses_predictor(self) -> bool:
        """SimSiam has predictors; SimCLR, PointContrast and CSC do not."""
        return self.framework == "simsiam"

    def to_dict(self) -> dict:
        return asdict(self)


METHODS: dict[str, dict] = {
    "4dcontrast": {},
    "simclr": {"framework": "simclr"},
    "simclr-infonce": {"framework": "simclr", "simclr_loss": "infonce"},
    "pointcontrast": {"framework": "pointinfonce", "data": "static", "backbone_4d": None, "w3d4d": 0.0,
                      "w4d": 0.0},
    "csc": {"framework": "csc", "data": "static", "backbone_4d": None, "w3d4d": 0.0, "w4d": 0.0},
    "3d-data-3d3d": {"data": "static", "backbone_4d": None, "w3d4d": 0.0, "w4d": 0.0},
    "4d-data-3d3d": {"backbone_4d": None, "w3d4d": 0.0, "w4d": 0.0},
    "two-3d-backbones": {"second_dimension": 3, "backbone_4d": "MinkUNet34"},
    "no-3d4d": {"w3d4d": 0.0},
    "no-4d4d": {"w4d": 0.0},
    "no-3d3d": {"w3d": 0.0},
    "no-stop-gradient": {"stop_gradient": False},
}
"""The paper's method, baselines (Table 2) and ablations (Tables 7–10) as overrides of
:class:`MethodConfig`. "two-3d-backbones" uses MinkUNet34 as the second U-Net: 37.9 M parameters against
MinkUNet14 4D's 33.2 M, the closest of our U-Nets ("comparable in parameters", supplement Sec. A).
Sequence length is a data setting (:data:`SEQUENCE_LENGTH_BATCH`)."""


def method_config(name: str = "4dcontrast", **overrides) -> MethodConfig:
    """The :class:`MethodConfig` of method ``name`` (a key of :data:`METHODS`), with ``overrides`` on top."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return replace(MethodConfig(), **{**METHODS[name], **overrides})


def collapse_std(z: torch.Tensor) -> torch.Tensor:
    """SimSiam's collapse monitor: the mean over channels of the std over rows of the L2-normalised
    (N, d) outputs. About ``1/sqrt(d)`` for healthy outputs, 0 for collapsed ones (SimSiam Fig. 2)."""
    with torch.no_grad():
        if len(z) < 2:
            return z.new_zeros(())
        return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def sample_pairs_per_group(pairs: torch.Tensor, groups: torch.Tensor, max_per_group: int | None,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_per_group`` random rows of ``pairs`` (K, 2) per group id in ``groups`` (K,).

    Returns the kept ``(pairs, groups)``, grouped by group id (all rows when ``max_per_group`` is None).
    """
    if max_per_group is None or len(pairs) == 0:
        return pairs, groups
    perm = torch.randperm(len(pairs), generator=generator, device="cpu").to(pairs.device)
    order = perm[torch.argsort(groups[perm], stable=True)]
    g = groups[order]
    first = torch.searchsorted(g, g, side="left")
    keep = order[(torch.arange(len(g), device=g.device) - first) < max_per_group]
    keep = keep.sort().values
    return pairs[keep], groups[keep]


def _segments(batch_index: torch.Tensor, count: int) -> list[int]:
    """Start row of each of ``count`` consecutive batch items (rows are grouped by batch index)."""
    sizes = torch.bincount(batch_index, minlength=count)
    return [0, *torch.cumsum(sizes, 0).tolist()]


class FourDContrast(nn.Module):
    """The meta-architecture: Φ3D, P3D, Φ4D, P4D and the losses of the chosen framework.

    Args:
        config: the method (:class:`MethodConfig`; default: 4DContrast with the paper's networks).

    Attributes:
        encoder_3d: the 3D U-Net (the backbone kept for fine-tuning), ``in_channels → feature_dim``.
        projector_3d: its 1×1×1 projector; Φ3D = projector_3d ∘ encoder_3d.
        predictor_3d: P3D (SimSiam only, else None).
        encoder_4d, projector_4d, predictor_4d: the same for the second branch (None without one).
    """

    def __init__(self, config: MethodConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or MethodConfig()
        d, b = c.feature_dim, c.backend
        self.encoder_3d = build_backbone(c.backbone_3d, c.in_channels, d, 3, backend=b,
                                         memory=c.memory_options(3))
        self.projector_3d = Projector(d, d, 3, batch_norm=c.projector_bn, backend=b, kind=c.projector)
        self.predictor_3d = Predictor(d, c.predictor_hidden, 3, backend=b) if c.uses_predictor else None
        self.encoder_4d = self.projector_4d = self.predictor_4d = None
        if c.backbone_4d is not None:
            dim = c.second_dimension
            shape = c.kernel_shape_4d if dim == 4 else "hypercube"
            self.encoder_4d = build_backbone(c.backbone_4d, c.in_channels, d, dim, shape, backend=b,
                                             memory=c.memory_options(4))
            self.projector_4d = Projector(d, d, dim, batch_norm=c.projector_bn, backend=b, kind=c.projector)
            self.predictor_4d = Predictor(d, c.predictor_hidden, dim, backend=b) if c.uses_predictor else None
        self._ops = get_backend(b)

    # --- encoders ---------------------------------------------------------------------------------------
    def _input_rows(self, x, feats: torch.Tensor) -> torch.Tensor:
        """Rows of ``feats`` (features on the coordinates of input ``x``) in the order of the batch rows:
        MinkowskiEngine stores unique coordinates in its own order (``inverse_mapping`` maps back)."""
        return feats[x.inverse_mapping] if self.config.backend == "minkowski" else feats

    def _branch(self, encoder, projector, predictor, feats, coords, ranks: dict | None = None,
                name: str = ""):
        """(z, p) per input row: (N, d) encoder and predictor outputs (p None without predictor).

        With ``ranks`` (a dict), also stores the effective rank of the backbone output
        (``erank_backbone_<name>``) and of the projector's output before its last batch norm
        (``erank_z<name>``): :data:`ERANK_KEYS`."""
        x = self._ops.SparseTensor(feats, coords)
        features = encoder(x)
        h, pre = projector(features, return_pre_norm=True)
        if ranks is not None:
            generator = torch.Generator().manual_seed(0)  # fixed subsample; leaves the loss's generator alone
            ranks[f"erank_backbone_{name}"] = effective_rank(features.F, generator=generator)
            ranks[f"erank_z{name}"] = effective_rank(pre.F, generator=generator)
        p = self._input_rows(x, predictor(h).F) if predictor is not None else None
        return self._input_rows(x, h.F), p

    def encode_3d(self, batch, ranks: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z3D, p3D): (N3, d) Φ3D and P3D outputs, one row per row of ``batch.coords_3d`` (``ranks``: see
        ``_branch``)."""
        return self._branch(self.encoder_3d, self.projector_3d, self.predictor_3d, batch.feats_3d,
                            batch.coords_3d, ranks, "3d")

    def backbone_features_3d(self, batch) -> torch.Tensor:
        """(N3, d) outputs of the 3D backbone alone (the U-Net kept for fine-tuning), one row per row of
        ``batch.coords_3d``: what feature-match recall and the downstream tasks look at."""
        x = self._ops.SparseTensor(batch.feats_3d, batch.coords_3d)
        return self._input_rows(x, self.encoder_3d(x).F)

    def encode_4d(self, batch, ranks: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z4D, p4D): (N4, d) Φ4D and P4D outputs, one row per row of ``batch.coords_4d``.

        With ``second_dimension=3`` the second U-Net sees frame ``t`` of sequence ``b`` as 3D sample
        ``b·T + t`` (the 4D coordinates without time), rows unchanged.
        """
        coords = batch.coords_4d
        if self.config.second_dimension == 3:
            coords = torch.cat([coords[:, :1] * batch.length + coords[:, 4:5], coords[:, 1:4]], dim=1)
        return self._branch(self.encoder_4d, self.projector_4d, self.predictor_4d, batch.feats_4d, coords,
                            ranks, "4d")

    # --- forward ----------------------------------------------------------------------------------------
    def forward(self, batch, generator: torch.Generator | None = None, return_features: bool = False) -> dict:
        """Loss terms and diagnostics of one batch.

        Args:
            batch: a :class:`~fourdcontrast.data.dataset.Batch` (``B`` sequences of ``T`` frames).
            generator: randomness of pair sampling and of the contrastive losses (default: torch's).
            return_features: also return ``z3d`` / ``p3d`` / ``z4d`` / ``p4d``.

        Returns:
            ``loss`` (Eq. 9, what to back-propagate), ``loss_3d``, ``loss_3d4d``, ``loss_4d`` (the terms
            before weighting; 0 when absent), ``pairs_3d``, ``pairs_3d4d``, ``pairs_4d`` (correspondences
            used per term, ints), ``std_z3d``, ``std_z4d`` (:func:`collapse_std`; ``1/sqrt(d)`` is healthy)
            and ``std_healthy`` (``1/sqrt(d)``); ``erank_backbone_3d``, ``erank_z3d`` and, with a second
            branch, ``erank_backbone_4d``, ``erank_z4d`` (floats:
            :func:`~fourdcontrast.metrics.effective_rank`
            of the U-Net output and of the projector output before its last batch norm, the monitor of
            dimensional collapse that the std cannot see; 0 without a second branch), ``object_pairs_3d``,
            ``object_pairs_3d4d``, ``object_pairs_4d`` (ints: pairs touching the moving object).
        """
        c = self.config
        if batch.length < 2:
            raise ValueError(f"a batch needs at least 2 frames per sequence, got {batch.length}")
        ranks: dict = {"erank_backbone_4d": 0.0, "erank_z4d": 0.0}
        z3, p3 = self.encode_3d(batch, ranks)
        z4 = p4 = None
        if self.encoder_4d is not None:
            z4, p4 = self.encode_4d(batch, ranks)
        zero = z3.sum() * 0
        out: dict = {"loss_3d": zero, "loss_3d4d": zero, "loss_4d": zero, "pairs_3d": 0, "pairs_3d4d": 0,
                     "pairs_4d": 0, "object_pairs_3d": 0, "object_pairs_3d4d": 0, "object_pairs_4d": 0,
                     **ranks}
        if c.framework == "simsiam":
            self._simsiam_terms(out, batch, z3, p3, z4, p4, generator)
        else:
            self._contrastive_terms(out, batch, z3, z4, generator)
        out["loss"] = losses.total_loss(out["loss_3d"], out["loss_3d4d"], out["loss_4d"], c.w3d, c.w3d4d,
                                        c.w4d)
        out["std_z3d"] = collapse_std(z3)
        out["std_z4d"] = collapse_std(z4) if z4 is not None else zero.detach()
        out["std_healthy"] = 1.0 / math.sqrt(c.feature_dim)
        if return_features:
            out.update(z3d=z3, p3d=p3, z4d=z4, p4d=p4)
        return out

    @property
    def motion_aware(self) -> bool:
        """Whether any motion-aware sampling switch is on (they need ``batch.object_3d`` / ``object_4d``).
        Static pairs (``data="static"``: PointContrast, CSC, 3D data) have no moving object: the switches
        do not apply to them, so ``--set method=pointcontrast`` on a motion-aware preset is PointContrast."""
        c = self.config
        return c.data == "sequences" and (c.background_pairs_per_group is not None
                                          or c.static_4d_pairs_per_group is not None
                                          or c.object_pair_weight != 1.0)

    def _select_pairs(self, pairs, groups, flags, static, generator):
        """The pairs of one SimSiam term after the sampling switches, their weights (None: a plain mean
        within each group) and how many of them touch the moving object.

        Args:
            pairs, groups: (K, 2) and (K,) of the term.
            flags: ``pairs -> (K,) bool`` marking the pairs that touch the moving object, or None when the
                batch has no object flags.
            static: (K,) bool, the L4D pairs that join the same (x, y, z) at two times (None for the other
                terms).
            generator: randomness of the sampling.
        """
        c = self.config
        if flags is None or not self.motion_aware:
            pairs, groups = sample_pairs_per_group(pairs, groups, c.max_pairs_per_group, generator)
            return pairs, groups, None, int(flags(pairs).sum()) if flags is not None else 0
        is_object = flags(pairs)
        if c.background_pairs_per_group is not None or (static is not None
                                                         and c.static_4d_pairs_per_group is not None):
            background = torch.nonzero(~is_object).flatten()
            if static is not None and c.static_4d_pairs_per_group is not None:
                still = background[static[background]]
                kept, _ = sample_pairs_per_group(still[:, None], groups[still], c.static_4d_pairs_per_group,
                                                 generator)
                background = torch.cat([background[~static[background]], kept.flatten()])
            kept, _ = sample_pairs_per_group(background[:, None], groups[background],
                                             c.background_pairs_per_group, generator)
            keep = is_object.clone()
            keep[kept.flatten()] = True
            pairs, groups, is_object = pairs[keep], groups[keep], is_object[keep]
        weights = None
        if c.object_pair_weight != 1.0:
            weights = 1.0 + (c.object_pair_weight - 1.0) * is_object.to(torch.float32)
        return pairs, groups, weights, int(is_object.sum())

    def _simsiam_terms(self, out, batch, z3, p3, z4, p4, generator) -> None:
        c = self.config
        n_pairs = batch.length * (batch.length - 1) // 2
        common = dict(reduction=c.reduction, stop_gradient=c.stop_gradient, fused=c.fused_pair_losses)
        o3, o4 = batch.object_3d, batch.object_4d
        if self.motion_aware and o3 is None:
            raise ValueError("motion-aware pair sampling needs batch.object_3d / object_4d "
                             "(collate_sequences fills them)")

        def flags(a, b):
            return None if a is None or b is None else (lambda pairs: a[pairs[:, 0]] | b[pairs[:, 1]])

        pairs, groups, weights, n_obj = self._select_pairs(batch.pairs_3d, batch.pairs_3d_group,
                                                           flags(o3, o3), None, generator)
        out["loss_3d"] = losses.loss_3d(p3, z3, pairs, groups, n_pairs, weights=weights, **common)
        out["pairs_3d"], out["object_pairs_3d"] = len(pairs), n_obj
        if z4 is None:
            return
        pairs, groups, weights, n_obj = self._select_pairs(batch.pairs_3d4d, batch.pairs_3d4d_group,
                                                           flags(o3, o4), None, generator)
        out["loss_3d4d"] = losses.loss_3d4d(p3, z3, p4, z4, pairs, groups, batch.length,
                                            direction=c.eq5_direction, weights=weights, **common)
        out["pairs_3d4d"], out["object_pairs_3d4d"] = len(pairs), n_obj
        xyz = batch.coords_4d[:, 1:4]
        static = (xyz[batch.pairs_4d[:, 0]] == xyz[batch.pairs_4d[:, 1]]).all(dim=1)
        pairs, groups, weights, n_obj = self._select_pairs(batch.pairs_4d, batch.pairs_4d_group,
                                                           flags(o4, o4), static, generator)
        out["loss_4d"] = losses.loss_4d(p4, z4, pairs, groups, n_pairs, weights=weights, **common)
        out["pairs_4d"], out["object_pairs_4d"] = len(pairs), n_obj

    def _pair_loss(self, f0, f1, pairs, xyz, generator):
        """One contrastive loss between two sets of rows (no predictor frameworks)."""
        c = self.config
        if c.framework == "csc":
            return losses.csc_info_nce_loss(f0, f1, pairs, xyz, generator=generator)
        if c.framework == "pointinfonce" or c.simclr_loss == "infonce":
            return losses.point_info_nce_loss(f0, f1, pairs, generator=generator)
        return losses.hardest_contrastive_loss(f0, f1, pairs, generator=generator)

    def _contrastive_terms(self, out, batch, z3, z4, generator) -> None:
        """PointContrast / CSC / SimCLR: one loss per frame pair (3D-3D, 4D-4D) or frame (3D-4D), the
        negatives drawn from the two frames (or the frame and its sequence) of the pair, then averaged."""
        B, T = batch.batch_size, batch.length  # noqa: N806
        frame_pairs = list(itertools.combinations(range(T), 2))
        s3 = _segments(batch.coords_3d[:, 0].long(), B * T)
        xyz = batch.points_3d if self.config.framework == "csc" else None
        if xyz is None and self.config.framework == "csc":
            raise ValueError("CSC needs batch.points_3d (collate_sequences fills it)")

        def over_groups(pairs, groups, n_groups, rows0, rows1, f0_all, f1_all, with_xyz=False):
            counts = torch.bincount(groups, minlength=n_groups).tolist()
            ends = list(itertools.accumulate(counts))
            terms = []
            for g, n in enumerate(counts):
                if n == 0:
                    continue
                (a0, a1), (b0, b1) = rows0(g), rows1(g)
                local = pairs[ends[g] - n: ends[g]] - pairs.new_tensor([a0, b0])
                pts = xyz[a0:a1] if with_xyz and xyz is not None else None
                terms.append(self._pair_loss(f0_all[a0:a1], f1_all[b0:b1], local, pts, generator))
            return (torch.stack(terms).mean() if terms else f0_all.sum() * 0), len(pairs)

        def frame(b, t):
            return s3[b * T + t], s3[b * T + t + 1]

        o3, o4 = batch.object_3d, batch.object_4d
        if self.motion_aware and o3 is None:
            raise ValueError("motion-aware pair sampling needs batch.object_3d / object_4d "
                             "(collate_sequences fills them)")

        def select(pairs, groups, a, b, static=None):
            """Motion-aware sampling of the pairs (weights do not apply to these losses)."""
            flags = None if a is None or b is None else (lambda q: a[q[:, 0]] | b[q[:, 1]])
            kept, kept_groups, _, n_object = self._select_pairs(pairs, groups, flags, static, generator)
            return kept, kept_groups, n_object

        pairs3, groups3, out["object_pairs_3d"] = select(batch.pairs_3d, batch.pairs_3d_group, o3, o3)
        out["loss_3d"], out["pairs_3d"] = over_groups(
            pairs3, groups3, B * len(frame_pairs),
            lambda g: frame(g // len(frame_pairs), frame_pairs[g % len(frame_pairs)][0]),
            lambda g: frame(g // len(frame_pairs), frame_pairs[g % len(frame_pairs)][1]),
            z3, z3, with_xyz=True)
        if z4 is None:
            return
        s4 = _segments(batch.coords_4d[:, 0].long(), B)
        pooled = losses.match_average_pool(z4, batch.pairs_4d)

        def sequence(b):
            return s4[b], s4[b + 1]

        pairs34, groups34, out["object_pairs_3d4d"] = select(batch.pairs_3d4d, batch.pairs_3d4d_group, o3, o4)
        xyz = batch.coords_4d[:, 1:4]
        static = (xyz[batch.pairs_4d[:, 0]] == xyz[batch.pairs_4d[:, 1]]).all(dim=1)
        pairs4, groups4, out["object_pairs_4d"] = select(batch.pairs_4d, batch.pairs_4d_group, o4, o4, static)
        out["loss_3d4d"], out["pairs_3d4d"] = over_groups(
            pairs34, groups34, B * T,
            lambda g: frame(g // T, g % T), lambda g: sequence(g // T), z3, pooled)
        out["loss_4d"], out["pairs_4d"] = over_groups(
            pairs4, groups4, B * len(frame_pairs),
            lambda g: sequence(g // len(frame_pairs)), lambda g: sequence(g // len(frame_pairs)), z4, z4)


ERANK_KEYS = ("erank_backbone_3d", "erank_z3d", "erank_backbone_4d", "erank_z4d")
"""The effective ranks :meth:`FourDContrast.forward` reports (see its Returns)."""

__all__ = [
    "DATA_KINDS",
    "EQ5_DIRECTIONS",
    "ERANK_KEYS",
    "DEFAULT_FEATURE_DIM",
    "DEFAULT_MAX_PAIRS_PER_GROUP",
    "FRAMEWORKS",
    "METHODS",
    "SEQUENCE_LENGTH_BATCH",
    "SIMCLR_LOSSES",
    "FourDContrast",
    "MethodConfig",
    "collapse_std",
    "method_config",
    "sample_pairs_per_group",
]
