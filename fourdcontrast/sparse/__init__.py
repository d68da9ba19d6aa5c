"""Portable sparse 3D/4D convolution engine (PyTorch, with optional compiled CPU kernels; MinkowskiEngine
optional backend)."""

from fourdcontrast.sparse import native
from fourdcontrast.sparse.backend import BACKENDS, Backend, get_backend, minkowski_engine
from fourdcontrast.sparse.functional import SparseConvolutionFunction, cat, conv, conv_transpose, global_pool
from fourdcontrast.sparse.kernel_map import (
    CoordinateManager,
    KernelMap,
    Workspace,
    kernel_offsets,
    kernel_volume,
)
from fourdcontrast.sparse.nn import (
    BatchNorm,
    Conv,
    ConvTranspose,
    GlobalAvgPooling,
    GlobalMaxPooling,
    Linear,
    ReLU,
)
from fourdcontrast.sparse.quantize import Quantization, pack_keys, quantize, unique_voxels, voxel_keys
from fourdcontrast.sparse.tensor import SparseTensor, batched_coordinates, sparse_collate

__all__ = [
    "BACKENDS",
    "Backend",
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "CoordinateManager",
    "GlobalAvgPooling",
    "GlobalMaxPooling",
    "KernelMap",
    "Linear",
    "Quantization",
    "ReLU",
    "SparseConvolutionFunction",
    "SparseTensor",
    "Workspace",
    "batched_coordinates",
    "cat",
    "conv",
    "conv_transpose",
    "get_backend",
    "global_pool",
    "kernel_offsets",
    "kernel_volume",
    "minkowski_engine",
    "native",
    "quantize",
    "sparse_collate",
    "pack_keys",
    "unique_voxels",
    "voxel_keys",
]
