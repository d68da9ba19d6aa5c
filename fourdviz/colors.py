"""Colours shared by every back end, so a frame or a frame pair has the same colour everywhere.

All colours are float RGB in [0, 1]; arrays are (N, 3) float32.
"""

from __future__ import annotations

import numpy as np

SCENE_COLOR = (0.62, 0.64, 0.68)
"""Grey of static scene points when the scan has no colours."""
OK_COLOR = (0.15, 0.65, 0.25)
"""Green of a correct correspondence."""
BROKEN_COLOR = (0.90, 0.10, 0.10)
"""Red of a broken correspondence (positions disagree with the known transforms)."""
MISSING_COLOR = (1.00, 0.55, 0.00)
"""Orange of a point whose partner is missing in the other frame."""
QUERY_COLOR = (0.0, 0.0, 0.0)
"""Black marker of the query point of a similarity heatmap."""
SIMILARITY_CMAP = "viridis"
"""Colour map of cosine similarity (-1 … 1)."""

# Okabe–Ito palette (colour-blind safe): object colour of frame t, and line colour of frame pair k.
_PALETTE = np.array(
    [
        (0.902, 0.624, 0.000),
        (0.337, 0.706, 0.914),
        (0.000, 0.620, 0.451),
        (0.800, 0.475, 0.655),
        (0.000, 0.447, 0.698),
        (0.835, 0.369, 0.000),
        (0.941, 0.894, 0.259),
        (0.400, 0.400, 0.400),
    ],
    dtype=np.float32,
)


def frame_color(t: int) -> tuple[float, float, float]:
    """Colour of the object in frame ``t`` (cycles through an 8-colour colour-blind-safe palette)."""
    return tuple(float(c) for c in _PALETTE[t % len(_PALETTE)])  # type: ignore[return-value]


def pair_color(i: int, j: int, num_frames: int = 8) -> tuple[float, float, float]:
    """Colour of the correspondence lines between frames ``i`` and ``j`` (order does not matter)."""
    a, b = sorted((int(i), int(j)))
    return frame_color(a * num_frames + b + 3)


def to_hex(rgb) -> str:
    """``(r, g, b)`` in [0, 1] → ``'#rrggbb'``."""
    r, g, b = (int(round(255 * float(np.clip(c, 0.0, 1.0)))) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def colormap(
    values: np.ndarray, vmin: float = -1.0, vmax: float = 1.0, name: str = SIMILARITY_CMAP
) -> np.ndarray:
    """Map (N,) scalars to (N, 3) float32 RGB with a matplotlib colour map (viridis by default).

    Falls back to a built-in blue→yellow ramp when matplotlib is not installed. NaNs map to grey.
    """
    values = np.asarray(values, dtype=np.float64)
    u = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    try:
        from matplotlib import colormaps

        rgb = colormaps[name](np.nan_to_num(u))[:, :3]
    except ImportError:
        lo, hi = np.array([0.267, 0.005, 0.329]), np.array([0.993, 0.906, 0.144])
        rgb = lo + np.nan_to_num(u)[:, None] * (hi - lo)
    rgb = np.asarray(rgb, dtype=np.float32)
    rgb[np.isnan(values)] = SCENE_COLOR
    return rgb


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(N,) int labels → (N, 3) float32 distinct colours (tab20 cycle; -1 grey)."""
    labels = np.asarray(labels, dtype=np.int64)
    try:
        from matplotlib import colormaps

        table = np.asarray(colormaps["tab20"].colors, dtype=np.float32)
    except ImportError:
        table = _PALETTE
    out = table[np.mod(labels, len(table))].astype(np.float32)
    out[labels < 0] = SCENE_COLOR
    return out


def point_colors(sequence, frame_index: int, mode: str = "source") -> np.ndarray:
    """(n, 3) float32 colours of the points of one frame.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        frame_index: which frame.
        mode: ``"source"`` — scene points in the scan's colours (grey without), object points in the
            frame's colour; ``"frame"`` — every point in the frame's colour.
    """
    from fourdcontrast.records import SOURCE_OBJECT

    frame = sequence.frames[frame_index]
    if mode == "frame":
        return np.tile(np.asarray(frame_color(frame_index), np.float32), (len(frame), 1))
    if mode != "source":
        raise ValueError(f"point_colors: unknown mode {mode!r} (use 'source' or 'frame')")
    is_obj = frame.source == SOURCE_OBJECT
    out = np.empty((len(frame), 3), dtype=np.float32)
    if sequence.scene.colors is not None:
        out[~is_obj] = sequence.scene.colors[frame.index[~is_obj]]
    else:
        out[~is_obj] = SCENE_COLOR
    out[is_obj] = frame_color(frame_index)
    return out
