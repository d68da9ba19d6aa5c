"""The initialisations the downstream benchmark compares, and the pre-training config each one gets.

Their own module because both the grid (:mod:`.benchmark`) and the report (:mod:`.report`) need the list:
neither imports the other for it.
"""

from __future__ import annotations

__all__ = ["METHODS", "PRETRAINING"]

METHODS: tuple[str, ...] = ("scratch", "pointcontrast", "csc", "3d-data-3d3d", "4d-data-3d3d", "4dcontrast",
                            "4dcontrast-paper-literal")
"""Initialisations compared: the paper's Table 2 rows (scratch, PointContrast, CSC, "3D data, 3D-3D only",
"4D data, 3D-3D only", 4DContrast) and 4DContrast as the paper prints it."""

PRETRAINING: dict[str, tuple[str, str | None]] = {
    "pointcontrast": ("cpu-small", "pointcontrast"),
    "csc": ("cpu-small", "csc"),
    "3d-data-3d3d": ("cpu-small", "3d-data-3d3d"),
    "4d-data-3d3d": ("cpu-small", "4d-data-3d3d"),
    "4dcontrast": ("cpu-small", None),
    "4dcontrast-paper-literal": ("cpu-small-paper-literal", None),
}
"""Benchmark method → (pre-training config in ``configs/pretrain/``, ``method`` override or None for the
config's own method). The baselines share ``cpu-small``'s backbone, data, voxels and optimiser, so they
differ from 4DContrast only in the method's switches."""
