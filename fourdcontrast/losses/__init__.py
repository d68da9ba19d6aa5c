"""The pre-training losses.

- :mod:`fourdcontrast.losses.simsiam`: the paper's Sec. 3.1–3.2 — SimSiam's D (Eq. 1) and loss (Eq. 2),
  the 4DContrast terms L3D (Eqs. 3–4), L3D4D (Eqs. 5–6), L4D (Eqs. 7–8), their sum (Eq. 9) and
  :func:`reduce_groups`, with the weights and reduction constants.
- :mod:`fourdcontrast.losses.contrastive`: the baselines and the SimCLR variant of the supplement
  (Fig. 7, Table 10) — match average pooling, FCGF's hardest-contrastive loss, PointContrast's
  PointInfoNCE and Contrastive Scene Contexts' partitioned PointInfoNCE, with their anchors' constants.

Every public name of both modules is exported here, so ``from fourdcontrast import losses;
losses.loss_3d4d`` and ``losses.W3D`` read as before the split.
"""

from fourdcontrast.losses.contrastive import (
    CSC_NBINS_XY,
    CSC_NBINS_ZY,
    CSC_NUM_SHELLS,
    CSC_R1,
    CSC_R2,
    HC_DIST_EPS,
    HC_NEG_MARGIN,
    HC_NUM_NEG_CANDIDATES,
    HC_NUM_POS,
    HC_POS_MARGIN,
    NCE_NUM_PAIRS,
    NCE_TEMPERATURE,
    csc_info_nce_loss,
    hardest_contrastive_loss,
    match_average_pool,
    point_info_nce_loss,
    shape_context_partitions,
)
from fourdcontrast.losses.simsiam import (
    COSINE_EPS,
    DEFAULT_REDUCTION,
    EQ5_DIRECTIONS,
    PAIR_CHUNK,
    REDUCTIONS,
    W3D,
    W3D4D,
    W4D,
    loss_3d,
    loss_3d4d,
    loss_4d,
    negative_cosine_similarity,
    pair_dot,
    reduce_groups,
    simsiam_loss,
    total_loss,
)

__all__ = [
    "COSINE_EPS",
    "EQ5_DIRECTIONS",
    "CSC_NBINS_XY",
    "CSC_NBINS_ZY",
    "CSC_NUM_SHELLS",
    "CSC_R1",
    "CSC_R2",
    "DEFAULT_REDUCTION",
    "HC_DIST_EPS",
    "HC_NEG_MARGIN",
    "HC_NUM_NEG_CANDIDATES",
    "HC_NUM_POS",
    "HC_POS_MARGIN",
    "NCE_NUM_PAIRS",
    "NCE_TEMPERATURE",
    "PAIR_CHUNK",
    "REDUCTIONS",
    "W3D",
    "W3D4D",
    "W4D",
    "csc_info_nce_loss",
    "hardest_contrastive_loss",
    "loss_3d",
    "loss_3d4d",
    "loss_4d",
    "match_average_pool",
    "negative_cosine_similarity",
    "pair_dot",
    "point_info_nce_loss",
    "reduce_groups",
    "shape_context_partitions",
    "simsiam_loss",
    "total_loss",
]
