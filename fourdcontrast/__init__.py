"""fourdcontrast — 4DContrast (Chen, Nießner, Dai; ECCV 2022) as a toolkit.

The public API is re-exported here so notebooks read ``fc.sample_trajectory(...)``.
"""

# --- sparse engine and backbones (engine branch) ---
from fourdcontrast.models.resunet import (
    BasicBlock,
    MinkUNet14,
    MinkUNet18,
    MinkUNet34,
    MinkUNet34C,
    count_parameters,
)

# --- end sparse engine ---
from fourdcontrast.records import (
    SOURCE_OBJECT,
    SOURCE_SCENE,
    Frame,
    HeightMap,
    Scene,
    Sequence,
    ShapeObject,
    Trajectory,
)

# --- sparse engine (engine branch) ---
from fourdcontrast.sparse import CoordinateManager, SparseTensor, get_backend, sparse_collate

# --- end sparse engine ---
from fourdcontrast.sparse.quantize import Quantization, quantize

__version__ = "0.1.0"

__all__ = [
    # sparse engine and backbones
    "BasicBlock",
    "CoordinateManager",
    "MinkUNet14",
    "MinkUNet18",
    "MinkUNet34",
    "MinkUNet34C",
    "SparseTensor",
    "count_parameters",
    "get_backend",
    "sparse_collate",
    # foundation
    "SOURCE_OBJECT",
    "SOURCE_SCENE",
    "Frame",
    "HeightMap",
    "Quantization",
    "Scene",
    "Sequence",
    "ShapeObject",
    "Trajectory",
    "quantize",
]
