import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fourdcontrast.sparse import quantize


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 60), st.sampled_from([3, 4])),
           elements=st.floats(-3, 3, allow_nan=False)),
    st.floats(0.01, 0.5),
)
def test_quantize_maps_are_consistent(points, voxel):
    q = quantize(points, voxel)
    expected = np.floor(points / voxel).astype(np.int64)
    # every point lies in its voxel; voxels are unique and sorted; index picks the first point
    np.testing.assert_array_equal(q.coordinates[q.inverse], expected)
    assert len(np.unique(q.coordinates, axis=0)) == len(q.coordinates)
    np.testing.assert_array_equal(q.coordinates, np.unique(expected, axis=0))
    np.testing.assert_array_equal(q.inverse[q.index], np.arange(len(q.coordinates)))
    for v in range(len(q.coordinates)):
        assert q.index[v] == np.flatnonzero(q.inverse == v).min()


def test_quantize_mean_features_and_per_axis_size():
    pts = np.array([[0.01, 0, 0, 0], [0.03, 0, 0, 0], [0.07, 0, 0, 1]])
    q = quantize(pts, (0.05, 0.05, 0.05, 1.0), features=np.array([[1.0], [3.0], [5.0]]), reduce="mean")
    np.testing.assert_array_equal(q.coordinates, [[0, 0, 0, 0], [1, 0, 0, 1]])
    np.testing.assert_allclose(q.features, [[2.0], [5.0]])


def test_quantize_torch_in_torch_out():
    q = quantize(torch.rand(50, 3), 0.1)
    assert isinstance(q.coordinates, torch.Tensor) and q.coordinates.dtype == torch.int64


def test_quantize_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([[0.0, np.nan, 0.0]]), 0.02)
