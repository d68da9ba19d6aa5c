"""fourdcontrast — 4DContrast (Chen, Nießner, Dai; ECCV 2022) as a toolkit.

The public API is re-exported here so notebooks read ``fc.sample_trajectory(...)``.
"""

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
from fourdcontrast.sparse.quantize import Quantization, quantize

__version__ = "0.1.0"

__all__ = [
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
