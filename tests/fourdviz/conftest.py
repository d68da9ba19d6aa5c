"""Fixtures of the visualizer tests: hand-made records from :mod:`vizdata`."""

from __future__ import annotations

import numpy as np
import pytest
from vizdata import make_features, make_sequence

from fourdcontrast.records import SOURCE_OBJECT, Frame, Sequence


@pytest.fixture
def sequence() -> Sequence:
    return make_sequence()


@pytest.fixture
def features(sequence) -> list[np.ndarray]:
    return make_features(sequence)


@pytest.fixture
def corrupted_sequence() -> Sequence:
    """Frame 1 has 5 object points moved by 30 cm and 10 of its object points deleted."""
    seq = make_sequence()
    f = seq.frames[1]
    pts = f.points.copy()
    obj = np.flatnonzero(f.source == SOURCE_OBJECT)
    pts[obj[:5]] += np.array([0.3, 0.0, 0.0], dtype=np.float32)
    keep = np.ones(len(f), bool)
    keep[obj[-10:]] = False
    seq.frames[1] = Frame(
        points=pts[keep],
        source=f.source[keep],
        index=f.index[keep],
        object_pose=f.object_pose,
        view_transform=f.view_transform,
    )
    return seq
