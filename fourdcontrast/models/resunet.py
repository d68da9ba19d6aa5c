"""Sparse residual U-Nets (MinkUNet14/18/34 and width variants), one family for 3D and 4D (Sec. 3.3.1).

The topology is MinkowskiEngine's ``examples/minkunet.py``: a 5^D stem at stride 1, four stride-2
downsamplings (kernel 2) each followed by residual blocks, four stride-2 transposed upsamplings (kernel 2)
each followed by concatenation with the encoder's tensor at that stride and residual blocks, and a 1×1
``final`` layer with bias. 4DContrast uses MinkUNet34 (its C widths) as the 3D backbone at 2 cm and
MinkUNet14 as the 4D backbone at 5 cm (supplement, Sec. B).

Parameter counts (``in_channels=3``, ``out_channels=20``, full hypercube kernels):

=================  ============  ============
model              3D            4D
=================  ============  ============
MinkUNet14         11.6 M        33.2 M
MinkUNet18         21.7 M        63.6 M
MinkUNet34         37.9 M        112.0 M
=================  ============  ============

MinkUNet34 equals MinkUNet34C (the PLANES the issue specifies). With ``kernel_shape="spatial"``
(``[3,3,3,1]`` blocks, ``[5,5,5,1]`` stem) MinkUNet14 4D has 12.7 M parameters, with ``"hypercross"`` 5.9 M
(measured by ``tests/models/test_resunet.py``).

Every model takes ``backend="torch"`` (our engine) or ``"minkowski"`` (MinkowskiEngine), builds the same
layers with the same parameter names, and so ``state_dict``s move between backends unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fourdcontrast.sparse.backend import Backend, get_backend

# ME's BasicBlock batch-norm momentum.
BN_MOMENTUM = 0.1
# Kernel choices for the stem and block convolutions (the strided/transposed ones stay 2^D):
# "hypercube": full k^D (default, ME); "spatial": k^3 × 1 in time (4D only);
# "hypercross": centre plus axis-aligned arms.
KERNEL_SHAPES = ("hypercube", "spatial", "hypercross")
STEM_KERNEL = 5
BLOCK_KERNEL = 3


def kernel_spec(size: int, dimension: int, kernel_shape: str) -> tuple[tuple[int, ...], str]:
    """Per-axis kernel size and region of a ``size`` kernel under ``kernel_shape``.

    Returns:
        ``(kernel_size, region)`` for :class:`~fourdcontrast.sparse.nn.Conv`.
    """
    if kernel_shape == "hypercube":
        return (size,) * dimension, "hypercube"
    if kernel_shape == "spatial":
        if dimension < 4:
            raise ValueError("kernel_shape='spatial' needs a time axis (dimension >= 4)")
        return (size,) * 3 + (1,) * (dimension - 3), "hypercube"
    if kernel_shape == "hypercross":
        return (size,) * dimension, "hypercross"
    raise ValueError(f"kernel_shape must be one of {KERNEL_SHAPES}, got {kernel_shape!r}")


def _fan(tensor: torch.Tensor, mode: str) -> int:
    # MinkowskiEngine's rule: (K, C_in, C_out) -> fan_in = C_in·K, fan_out = C_out·K;
    # a 2-D (C_in, C_out) kernel -> fan_in = size(1), fan_out = size(0).
    if tensor.ndim == 2:
        return tensor.shape[1] if mode == "fan_in" else tensor.shape[0]
    return tensor.shape[0] * (tensor.shape[1] if mode == "fan_in" else tensor.shape[2])


def kaiming_normal_(tensor: torch.Tensor, mode: str = "fan_out", nonlinearity: str = "relu") -> torch.Tensor:
    """Kaiming-normal initialisation of a sparse kernel with MinkowskiEngine's fan rule (in place)."""
    std = nn.init.calculate_gain(nonlinearity) / math.sqrt(_fan(tensor, mode))
    with torch.no_grad():
        return tensor.normal_(0.0, std)


def weight_initialization(model: nn.Module, backend: Backend) -> None:
    """ME's ``ResNetBase.weight_initialization``: kaiming-normal (fan_out, relu) for convolutions (not the
    transposed ones, which keep their uniform reset), BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, backend.conv_types) and not isinstance(m, backend.conv_transpose_types):
            kaiming_normal_(m.kernel, mode="fan_out", nonlinearity="relu")
        if isinstance(m, backend.batch_norm_types):
            nn.init.constant_(m.bn.weight, 1)
            nn.init.constant_(m.bn.bias, 0)


class BasicBlock(nn.Module):
    """Residual block: conv3 → BN → ReLU → conv3 → BN, plus the (optionally projected) input, → ReLU.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the first convolution.
        dilation: dilation of both convolutions.
        downsample: module applied to the input for the residual when shapes differ (or None).
        bn_momentum: batch-norm momentum (ME: 0.1).
        dimension: spatial dimension D.
        kernel_shape: one of :data:`KERNEL_SHAPES`.
        backend: ``"torch"`` or ``"minkowski"``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, bn_momentum: float = BN_MOMENTUM, dimension: int = 3,
                 kernel_shape: str = "hypercube", backend: str = "torch") -> None:
        super().__init__()
        ops = get_backend(backend)
        ks, region = kernel_spec(BLOCK_KERNEL, dimension, kernel_shape)
        self.conv1 = ops.Conv(inplanes, planes, kernel_size=ks, stride=stride, dilation=dilation,
                              dimension=dimension, region=region)
        self.norm1 = ops.BatchNorm(planes, momentum=bn_momentum)
        self.conv2 = ops.Conv(planes, planes, kernel_size=ks, stride=1, dilation=dilation,
                              dimension=dimension, region=region)
        self.norm2 = ops.BatchNorm(planes, momentum=bn_momentum)
        self.relu = ops.ReLU(inplace=True)  # as ME's examples: applied only to fresh tensors
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class MinkUNetBase(nn.Module):
    """The MinkUNet topology; subclasses set ``BLOCK``, ``LAYERS`` and ``PLANES``.

    Args:
        in_channels: input feature channels (4DContrast: 3, occupancy repeated).
        out_channels: channels of the ``final`` 1×1 layer (with bias).
        dimension: spatial dimension D (3 for scenes, 4 for sequences ``(x, y, z, t)``).
        kernel_shape: ``"hypercube"`` (default, full k^D kernels), ``"spatial"`` (k^3 × 1, 4D only) or
            ``"hypercross"``, for the stem and the block convolutions.
        backend: ``"torch"`` (our engine) or ``"minkowski"`` (MinkowskiEngine).

    ``forward`` takes a sparse tensor of the chosen backend at tensor stride 1 and returns one with
    ``out_channels`` features on the same coordinates.
    """

    BLOCK: type[BasicBlock] = BasicBlock
    PLANES: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    DILATIONS: tuple[int, ...] = (1, 1, 1, 1, 1, 1, 1, 1)
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    INIT_DIM = 32

    def __init__(self, in_channels: int, out_channels: int, dimension: int = 3,
                 kernel_shape: str = "hypercube", backend: str = "torch") -> None:
        super().__init__()
        if kernel_shape not in KERNEL_SHAPES:
            raise ValueError(f"kernel_shape must be one of {KERNEL_SHAPES}, got {kernel_shape!r}")
        self.dimension, self.kernel_shape, self.backend = dimension, kernel_shape, backend
        ops = self._ops = get_backend(backend)
        D = dimension  # noqa: N806
        P, L = self.PLANES, self.LAYERS  # noqa: N806
        exp = self.BLOCK.expansion
        stem_ks, stem_region = kernel_spec(STEM_KERNEL, D, kernel_shape)

        def down(ch):
            return ops.Conv(ch, ch, kernel_size=2, stride=2, dimension=D)

        def up(c_in, c_out):
            return ops.ConvTranspose(c_in, c_out, kernel_size=2, stride=2, dimension=D)

        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = ops.Conv(in_channels, self.inplanes, kernel_size=stem_ks, dimension=D,
                                  region=stem_region)
        self.bn0 = ops.BatchNorm(self.inplanes)
        self.conv1p1s2 = down(self.inplanes)
        self.bn1 = ops.BatchNorm(self.inplanes)
        self.block1 = self._make_layer(P[0], L[0])
        self.conv2p2s2 = down(self.inplanes)
        self.bn2 = ops.BatchNorm(self.inplanes)
        self.block2 = self._make_layer(P[1], L[1])
        self.conv3p4s2 = down(self.inplanes)
        self.bn3 = ops.BatchNorm(self.inplanes)
        self.block3 = self._make_layer(P[2], L[2])
        self.conv4p8s2 = down(self.inplanes)
        self.bn4 = ops.BatchNorm(self.inplanes)
        self.block4 = self._make_layer(P[3], L[3])

        self.convtr4p16s2 = up(self.inplanes, P[4])
        self.bntr4 = ops.BatchNorm(P[4])
        self.inplanes = P[4] + P[2] * exp
        self.block5 = self._make_layer(P[4], L[4])
        self.convtr5p8s2 = up(self.inplanes, P[5])
        self.bntr5 = ops.BatchNorm(P[5])
        self.inplanes = P[5] + P[1] * exp
        self.block6 = self._make_layer(P[5], L[5])
        self.convtr6p4s2 = up(self.inplanes, P[6])
        self.bntr6 = ops.BatchNorm(P[6])
        self.inplanes = P[6] + P[0] * exp
        self.block7 = self._make_layer(P[6], L[6])
        self.convtr7p2s2 = up(self.inplanes, P[7])
        self.bntr7 = ops.BatchNorm(P[7])
        self.inplanes = P[7] + self.INIT_DIM
        self.block8 = self._make_layer(P[7], L[7])

        self.final = ops.Conv(P[7] * exp, out_channels, kernel_size=1, bias=True, dimension=D)
        self.relu = ops.ReLU(inplace=True)  # as ME's examples: applied only to fresh tensors
        weight_initialization(self, ops)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1,
                    bn_momentum: float = BN_MOMENTUM) -> nn.Sequential:
        ops, block = self._ops, self.BLOCK
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                ops.Conv(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                         dimension=self.dimension),
                ops.BatchNorm(planes * block.expansion),
            )
        common = dict(dimension=self.dimension, kernel_shape=self.kernel_shape, backend=self.backend)
        layers = [block(self.inplanes, planes, stride=stride, dilation=dilation, downsample=downsample,
                        bn_momentum=bn_momentum, **common)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, stride=1, dilation=dilation, bn_momentum=bn_momentum,
                                **common))
        return nn.Sequential(*layers)

    def forward(self, x):
        cat = self._ops.cat
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        out = self.relu(self.bn1(self.conv1p1s2(out_p1)))
        out_b1p2 = self.block1(out)
        out = self.relu(self.bn2(self.conv2p2s2(out_b1p2)))
        out_b2p4 = self.block2(out)
        out = self.relu(self.bn3(self.conv3p4s2(out_b2p4)))
        out_b3p8 = self.block3(out)
        out = self.relu(self.bn4(self.conv4p8s2(out_b3p8)))
        out = self.block4(out)

        out = self.relu(self.bntr4(self.convtr4p16s2(out)))
        out = self.block5(cat(out, out_b3p8))
        out = self.relu(self.bntr5(self.convtr5p8s2(out)))
        out = self.block6(cat(out, out_b2p4))
        out = self.relu(self.bntr6(self.convtr6p4s2(out)))
        out = self.block7(cat(out, out_b1p2))
        out = self.relu(self.bntr7(self.convtr7p2s2(out)))
        out = self.block8(cat(out, out_p1))
        return self.final(out)


class MinkUNet14(MinkUNetBase):
    """MinkUNet14: one block per stage (4DContrast's 4D backbone)."""

    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class MinkUNet18(MinkUNetBase):
    LAYERS = (2, 2, 2, 2, 2, 2, 2, 2)


class MinkUNet34(MinkUNetBase):
    """MinkUNet34: LAYERS (2, 3, 4, 6, 2, 2, 2, 2) (4DContrast's 3D backbone)."""

    LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)


class MinkUNet14A(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet14B(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet14C(MinkUNet14):
    PLANES = (32, 64, 128, 256, 192, 192, 128, 128)


class MinkUNet14S(MinkUNet14):
    """MinkUNet14 at half the widths of MinkUNet14A (ours, not in MinkowskiEngine's examples): 2.0 M
    parameters in 3D, for the CPU presets and the shipped checkpoint (≤ 10 MB in half precision)."""

    INIT_DIM = 16
    PLANES = (16, 32, 64, 128, 64, 64, 48, 48)


class MinkUNet18A(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet18B(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet34A(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 64)


class MinkUNet34B(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 32)


class MinkUNet34C(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 96, 96)


BACKBONES: dict[str, type[MinkUNetBase]] = {
    cls.__name__: cls
    for cls in (MinkUNet14, MinkUNet14A, MinkUNet14B, MinkUNet14C, MinkUNet14S, MinkUNet18, MinkUNet18A,
                MinkUNet18B, MinkUNet34, MinkUNet34A, MinkUNet34B, MinkUNet34C)
}
"""The U-Nets by name, for configs (``backbone_3d: MinkUNet34``)."""


def build_backbone(name: str, in_channels: int, out_channels: int, dimension: int = 3,
                   kernel_shape: str = "hypercube", backend: str = "torch") -> MinkUNetBase:
    """The U-Net ``name`` (a key of :data:`BACKBONES`) with the given channels, dimension and kernels.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](in_channels, out_channels, dimension=dimension, kernel_shape=kernel_shape,
                           backend=backend)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "BACKBONES",
    "KERNEL_SHAPES",
    "BasicBlock",
    "MinkUNet14",
    "MinkUNet14A",
    "MinkUNet14B",
    "MinkUNet14C",
    "MinkUNet14S",
    "MinkUNet18",
    "MinkUNet18A",
    "MinkUNet18B",
    "MinkUNet34",
    "MinkUNet34A",
    "MinkUNet34B",
    "MinkUNet34C",
    "MinkUNetBase",
    "build_backbone",
    "count_parameters",
    "kaiming_normal_",
    "kernel_spec",
]
