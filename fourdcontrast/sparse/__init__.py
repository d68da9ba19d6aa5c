"""Portable sparse 3D/4D convolution engine (pure PyTorch; MinkowskiEngine optional backend)."""

from fourdcontrast.sparse.quantize import Quantization, quantize, voxel_keys

__all__ = ["Quantization", "quantize", "voxel_keys"]
