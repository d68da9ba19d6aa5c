"""Backend switch: the same model code builds its layers from our engine or from MinkowskiEngine.

``get_backend("torch")`` (default: our engine, PyTorch plus optional compiled CPU kernels) or
``get_backend("minkowski")`` return a :class:`Backend` whose constructors take the same arguments, and
whose layers have the same parameter names and shapes, so a ``state_dict`` moves between the two
unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fourdcontrast.sparse import functional as F
from fourdcontrast.sparse import nn as snn
from fourdcontrast.sparse.tensor import SparseTensor

BACKENDS = ("torch", "minkowski")


@dataclass(frozen=True)
class Backend:
    """Layer constructors of one backend (see :mod:`fourdcontrast.sparse.nn` for the arguments)."""

    name: str
    Conv: Callable[..., Any]
    ConvTranspose: Callable[..., Any]
    BatchNorm: Callable[..., Any]
    ReLU: Callable[..., Any]
    Linear: Callable[..., Any]
    GlobalAvgPooling: Callable[..., Any]
    GlobalMaxPooling: Callable[..., Any]
    cat: Callable[..., Any]
    SparseTensor: Callable[..., Any]
    conv_types: tuple[type, ...]
    conv_transpose_types: tuple[type, ...]
    batch_norm_types: tuple[type, ...]


def minkowski_engine():
    """The imported ``MinkowskiEngine`` module, or None when it does not import."""
    try:
        return importlib.import_module("MinkowskiEngine")
    except Exception:  # ImportError, or a broken build raising at import time
        return None


def _torch_backend() -> Backend:
    return Backend(
        name="torch",
        Conv=snn.Conv,
        ConvTranspose=snn.ConvTranspose,
        BatchNorm=snn.BatchNorm,
        ReLU=snn.ReLU,
        Linear=snn.Linear,
        GlobalAvgPooling=snn.GlobalAvgPooling,
        GlobalMaxPooling=snn.GlobalMaxPooling,
        cat=F.cat,
        SparseTensor=SparseTensor,
        conv_types=(snn.Conv,),
        conv_transpose_types=(snn.ConvTranspose,),
        batch_norm_types=(snn.BatchNorm,),
    )


def _minkowski_backend() -> Backend:
    ME = minkowski_engine()  # noqa: N806
    if ME is None:
        raise ImportError(
            "backend='minkowski' needs MinkowskiEngine; "
            "install it with scripts/install_minkowski.sh (see docs/sparse_engine.md)"
        )

    def generator(kernel_size, stride, dilation, dimension, region):
        types = {"hypercube": ME.RegionType.HYPER_CUBE, "hypercross": ME.RegionType.HYPER_CROSS}
        region_type = types[region]
        return ME.KernelGenerator(kernel_size=kernel_size, stride=stride, dilation=dilation,
                                  region_type=region_type, dimension=dimension)

    def conv(in_channels, out_channels, kernel_size=3, stride=1, dilation=1, bias=False, dimension=3,
             region="hypercube"):
        return ME.MinkowskiConvolution(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, dilation=dilation, bias=bias,
            kernel_generator=generator(kernel_size, stride, dilation, dimension, region), dimension=dimension)

    def conv_transpose(in_channels, out_channels, kernel_size=2, stride=2, dilation=1, bias=False,
                       dimension=3, region="hypercube"):
        return ME.MinkowskiConvolutionTranspose(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, dilation=dilation, bias=bias,
            kernel_generator=generator(kernel_size, stride, dilation, dimension, region), dimension=dimension)

    def batch_norm(num_features, eps=snn.BN_EPS, momentum=snn.BN_MOMENTUM, affine=True,
                   track_running_stats=True):
        return ME.MinkowskiBatchNorm(num_features, eps=eps, momentum=momentum, affine=affine,
                                     track_running_stats=track_running_stats)

    def sparse_tensor(features, coordinates, tensor_stride=1):
        return ME.SparseTensor(features, coordinates.int().to(features.device), tensor_stride=tensor_stride,
                               device=features.device)

    return Backend(
        name="minkowski",
        Conv=conv,
        ConvTranspose=conv_transpose,
        BatchNorm=batch_norm,
        ReLU=lambda inplace=False: ME.MinkowskiReLU(inplace=inplace),
        Linear=lambda in_features, out_features, bias=True: ME.MinkowskiLinear(
            in_features, out_features, bias),
        GlobalAvgPooling=lambda: ME.MinkowskiGlobalAvgPooling(),
        GlobalMaxPooling=lambda: ME.MinkowskiGlobalMaxPooling(),
        cat=ME.cat,
        SparseTensor=sparse_tensor,
        conv_types=(ME.MinkowskiConvolution,),
        conv_transpose_types=(ME.MinkowskiConvolutionTranspose,),
        batch_norm_types=(ME.MinkowskiBatchNorm,),
    )


def get_backend(name: str = "torch") -> Backend:
    """The layer constructors of ``"torch"`` (our engine) or ``"minkowski"`` (MinkowskiEngine)."""
    if name == "torch":
        return _torch_backend()
    if name == "minkowski":
        return _minkowski_backend()
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
