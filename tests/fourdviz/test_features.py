"""Cosine similarity to a query point and 2D embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fourdviz.features import check_features, cosine_similarity, embed, query_similarity


def test_query_point_is_most_similar_to_itself(features):
    sims = query_similarity(features, 1, 7)
    assert sims[1][7] == pytest.approx(1.0, abs=1e-5)
    assert all(s.shape == (len(f),) for s, f in zip(sims, features, strict=True))
    assert max(float(s.max()) for s in sims) <= 1.0


def test_same_provenance_same_similarity(sequence, features):
    sims = query_similarity(features, 0, 3)
    k = sequence.frames[0].keys[3]
    for t, f in enumerate(sequence.frames):
        hit = np.flatnonzero(f.keys == k)
        if len(hit):
            assert sims[t][hit[0]] == pytest.approx(1.0, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float64, (5, 4), elements=st.floats(-10, 10).filter(lambda v: v == 0 or abs(v) > 1e-3)),
    scale=st.floats(0.01, 100),
)
def test_cosine_similarity_is_scale_invariant_and_bounded(x, scale):
    q = np.array([1.0, -2.0, 0.5, 3.0])
    a = cosine_similarity([x], q)[0]
    b = cosine_similarity([x * scale], q * 3)[0]
    assert np.all(np.abs(a) <= 1.0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.all(a[~x.any(axis=1)] == 0)  # zero features are similar to nothing


def test_check_features_names_bad_frame(sequence, features):
    with pytest.raises(ValueError, match="frames"):
        check_features(sequence, features[:-1])
    with pytest.raises(ValueError, match="frame 2"):
        check_features(sequence, [*features[:2], features[2][:, None], *features[3:]])


def test_embed_subsamples_and_is_deterministic(features):
    x = np.concatenate(features)
    xy, chosen, method = embed(x, method="pca", max_points=100, rng=3)
    xy2, chosen2, _ = embed(x, method="pca", max_points=100, rng=3)
    assert xy.shape == (100, 2) and method == "pca"
    np.testing.assert_array_equal(chosen, chosen2)
    np.testing.assert_allclose(xy, xy2)


def test_embed_tsne_separates_clusters():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (60, 8)), rng.normal(5, 0.1, (60, 8))])
    xy, chosen, method = embed(x, method="tsne", rng=0)
    assert method == "tsne"
    a, b = xy[chosen < 60], xy[chosen >= 60]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 3 * max(a.std(0).max(), b.std(0).max())


def test_embed_rejects_unknown_method(features):
    with pytest.raises(ValueError, match="unknown method"):
        embed(features[0], method="mds")
