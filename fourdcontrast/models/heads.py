"""Heads on top of the sparse U-Nets: the SimSiam projector and predictor of 4DContrast (Sec. 3.3.1,
supplement Sec. B / Fig. 8).

Both are per-voxel (1×1×1 or 1×1×1×1 sparse convolutions), so they run on the same sparse tensors as the
backbones, in any dimension and on either backend, with MinkowskiEngine's parameter names.

- Projector: one 1×1 layer (the paper's "1×1×1 sparse convolutional projection layer") followed, as in
  SimSiam's projector, by batch norm without affine parameters (:data:`PROJECTOR_BN`, our choice: the
  paper does not say).
- Predictor: two 1×1 layers shaped like SimSiam's: ``dim → dim/4`` (no bias) → BN → ReLU → ``dim/4 → dim``
  (with bias, no BN on the output: SimSiam reports that BN there makes training oscillate).
"""

from __future__ import annotations

from torch import nn

from fourdcontrast.sparse.backend import get_backend

PROJECTOR_BN = True
"""Batch norm (no affine parameters) after the projector's 1×1 layer, as SimSiam's projector ends
(our choice; the paper names only the 1×1 layer)."""
PREDICTOR_BOTTLENECK = 4
"""The predictor's hidden width is ``dim // PREDICTOR_BOTTLENECK`` (SimSiam: 2048 → 512 → 2048)."""


def _conv1x1(ops, c_in: int, c_out: int, dimension: int, bias: bool):
    return ops.Conv(c_in, c_out, kernel_size=1, bias=bias, dimension=dimension)


PROJECTORS = ("1x1-bn", "1x1-bn-affine", "1x1", "simsiam-3layer")
"""Projector variants (``MethodConfig.projector``):

- ``"1x1-bn"`` (default): the paper's 1×1 layer, then batch norm without affine parameters (SimSiam's
  projector ends so; our choice, the paper names only the 1×1 layer). The BN pins every channel's variance,
  so SimSiam's per-channel std monitor cannot see channels becoming copies of one another.
- ``"1x1-bn-affine"``: the same with a learnable scale and shift after the normalisation.
- ``"1x1"``: the 1×1 layer alone (with bias), exactly as the paper names it.
- ``"simsiam-3layer"``: SimSiam's projector as per-voxel layers: 1×1 → BN → ReLU → 1×1 → BN → ReLU → 1×1 →
  BN without affine parameters (all ``out_channels`` wide).
"""


class Projector(nn.Module):
    """Per-voxel projection ``in_channels → out_channels`` (:data:`PROJECTORS`).

    Args:
        in_channels: channels of the backbone output.
        out_channels: feature width ``d`` of the encoder outputs ``z``.
        dimension: 3 (frames) or 4 (sequences).
        batch_norm: with ``kind="1x1-bn"``, False means ``"1x1"`` (the older switch
            ``MethodConfig.projector_bn``, kept so earlier configs and checkpoints read unchanged).
        backend: ``"torch"`` (our engine) or ``"minkowski"``.
        kind: one of :data:`PROJECTORS`.

    ``forward(x, return_pre_norm=True)`` also returns the features before the last batch norm (the
    output itself for ``"1x1"``): what :func:`~fourdcontrast.metrics.effective_rank` must look at, since
    the normalisation hides the collapse from the per-channel std.
    """

    def __init__(self, in_channels: int, out_channels: int, dimension: int = 3,
                 batch_norm: bool = PROJECTOR_BN, backend: str = "torch", kind: str = "1x1-bn") -> None:
        super().__init__()
        if kind not in PROJECTORS:
            raise ValueError(f"projector kind must be one of {PROJECTORS}, got {kind!r}")
        if kind == "1x1-bn" and not batch_norm:
            kind = "1x1"
        self.kind = kind
        ops = get_backend(backend)
        self.hidden = None
        if kind == "simsiam-3layer":
            self.hidden = nn.Sequential(
                _conv1x1(ops, in_channels, out_channels, dimension, bias=False), ops.BatchNorm(out_channels),
                ops.ReLU(), _conv1x1(ops, out_channels, out_channels, dimension, bias=False),
                ops.BatchNorm(out_channels), ops.ReLU())
            in_channels = out_channels
        self.conv = _conv1x1(ops, in_channels, out_channels, dimension, bias=kind == "1x1")
        self.norm = None
        if kind != "1x1":
            self.norm = ops.BatchNorm(out_channels, affine=kind == "1x1-bn-affine")

    def forward(self, x, return_pre_norm: bool = False):
        if self.hidden is not None:
            x = self.hidden(x)
        pre = self.conv(x)
        out = self.norm(pre) if self.norm is not None else pre
        return (out, pre) if return_pre_norm else out


class Predictor(nn.Module):
    """SimSiam's predictor as two per-voxel layers: ``dim → hidden`` (no bias) → BN → ReLU → ``hidden → dim``.

    Args:
        channels: the feature width ``d`` (input and output).
        hidden: bottleneck width (default ``channels // PREDICTOR_BOTTLENECK``, at least 1).
        dimension: 3 or 4.
        backend: ``"torch"`` or ``"minkowski"``.
    """

    def __init__(self, channels: int, hidden: int | None = None, dimension: int = 3,
                 backend: str = "torch") -> None:
        super().__init__()
        ops = get_backend(backend)
        hidden = hidden or max(1, channels // PREDICTOR_BOTTLENECK)
        self.conv1 = _conv1x1(ops, channels, hidden, dimension, bias=False)
        self.norm1 = ops.BatchNorm(hidden)
        self.relu = ops.ReLU()
        self.conv2 = _conv1x1(ops, hidden, channels, dimension, bias=True)

    def forward(self, x):
        return self.conv2(self.relu(self.norm1(self.conv1(x))))


__all__ = ["PREDICTOR_BOTTLENECK", "PROJECTORS", "PROJECTOR_BN", "Predictor", "Projector"]
