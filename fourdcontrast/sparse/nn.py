"""Sparse layers as ``torch.nn`` modules, with MinkowskiEngine's parameter names and shapes.

State-dict keys and shapes equal MinkowskiEngine 0.5's: a convolution holds ``kernel``
``(K, C_in, C_out)`` — ``(C_in, C_out)`` when K = 1 and the stride is 1 — and ``bias`` ``(1, C_out)``;
batch norm wraps ``bn`` (a ``BatchNorm1d``); linear wraps ``linear`` (an ``nn.Linear``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence as SequenceABC

import torch
from torch import nn

from fourdcontrast.sparse import functional as F
from fourdcontrast.sparse.kernel_map import as_tuple, kernel_volume
from fourdcontrast.sparse.tensor import SparseTensor

# MinkowskiBatchNorm defaults (= torch's): eps 1e-5, momentum 0.1.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


class _ConvBase(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | SequenceABC[int],
        stride: int | SequenceABC[int],
        dilation: int | SequenceABC[int],
        bias: bool,
        dimension: int,
        region: str,
        transposed: bool,
    ) -> None:
        super().__init__()
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.in_channels, self.out_channels, self.dimension = in_channels, out_channels, dimension
        self.kernel_size = as_tuple(kernel_size, dimension, "kernel_size")
        self.stride = as_tuple(stride, dimension, "stride")
        self.dilation = as_tuple(dilation, dimension, "dilation")
        self.region = region
        self.transposed = transposed
        volume = kernel_volume(self.kernel_size, dimension, region)
        if volume == 1 and all(s == 1 for s in self.stride):
            shape: tuple[int, ...] = (in_channels, out_channels)
        else:
            shape = (volume, in_channels, out_channels)
        self.kernel = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(1, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform ±1/√n with n = fan-in (C_in·K; C_out·K for a transposed convolution), as ME does."""
        volume = kernel_volume(self.kernel_size, self.dimension, self.region)
        n = (self.out_channels if self.transposed else self.in_channels) * volume
        bound = 1.0 / math.sqrt(n)
        with torch.no_grad():
            self.kernel.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"dilation={self.dilation}, region={self.region!r}, bias={self.bias is not None}"
        )


class Conv(_ConvBase):
    """Sparse convolution (``MinkowskiConvolution``); stride 1 keeps the input coordinates.

    Args:
        in_channels, out_channels: feature widths.
        kernel_size: voxels per axis (int or D ints; e.g. ``(3, 3, 3, 1)`` for a spatial-only 4D kernel).
        stride: downsampling per axis (output stride = input stride × stride).
        dilation: kernel tap spacing per axis.
        bias: add a learned (1, C_out) bias.
        dimension: spatial dimension D.
        region: ``"hypercube"`` (default) or ``"hypercross"``.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1, bias=False,
                 dimension=3, region="hypercube") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias, dimension, region,
                         False)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return F.conv(x, self.kernel, self.kernel_size, self.stride, self.dilation, self.region, self.bias)


class ConvTranspose(_ConvBase):
    """Sparse transposed convolution (``MinkowskiConvolutionTranspose``) onto the existing finer coordinates.

    Arguments as :class:`Conv`; ``forward(x, target=None)`` may name the output coordinates explicitly.
    """

    def __init__(self, in_channels, out_channels, kernel_size=2, stride=2, dilation=1, bias=False,
                 dimension=3, region="hypercube") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias, dimension, region,
                         True)

    def forward(self, x: SparseTensor, target: SparseTensor | None = None) -> SparseTensor:
        return F.conv_transpose(
            x, self.kernel, self.kernel_size, self.stride, self.dilation, self.region, self.bias, target
        )


class BatchNorm(nn.Module):
    """Batch normalization over the rows of a sparse tensor (``MinkowskiBatchNorm``; submodule ``bn``)."""

    def __init__(self, num_features: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=affine,
                                 track_running_stats=track_running_stats)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(self.bn(x.features))


class ReLU(nn.Module):
    """ReLU on the features (``MinkowskiReLU``).

    Args:
        inplace: overwrite the input's features (no new (N, C) tensor) instead of returning new ones.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(torch.relu_(x.features) if self.inplace else torch.relu(x.features))

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Linear(nn.Module):
    """A 1×1 layer on the features (``MinkowskiLinear``; submodule ``linear``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(self.linear(x.features))


class GlobalAvgPooling(nn.Module):
    """Mean of the features per batch item → (B, C) (``MinkowskiGlobalAvgPooling``)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return F.global_pool(x, "avg")


class GlobalMaxPooling(nn.Module):
    """Maximum of the features per batch item → (B, C) (``MinkowskiGlobalMaxPooling``)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return F.global_pool(x, "max")
