"""Tests of fourdcontrast.metrics.feature_match_recall on constructed cases with known answers."""

import pytest
import torch

from fourdcontrast.metrics import FMR_NUM_SAMPLES, FMR_THRESHOLD, feature_match_recall


def sphere_points(n, seed=0):
    """n points on the unit sphere (metres): L2-normalising them changes nothing, so features equal to
    positions make feature distance and position distance the same ranking."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)


def test_constants():
    assert FMR_THRESHOLD == 0.05 and FMR_NUM_SAMPLES == 1000


def test_canonical_coordinates_as_features_give_recall_one():
    positions_j = sphere_points(300)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(1))
    feats_i = positions_j[perm]  # frame i sees the same points in another order
    pairs = torch.stack([torch.arange(300), perm], 1)
    recall = feature_match_recall(feats_i, positions_j.clone(), positions_j, pairs, chunk_size=64)
    assert recall == 1.0
    # wrong correspondences (every partner shifted by one) on the same features: far fewer hits
    shifted = torch.stack([torch.arange(300), perm.roll(1)], 1)
    assert feature_match_recall(feats_i, positions_j, positions_j, shifted) < 0.1


def test_random_features_give_chance_level():
    # frame j: 10 clusters of 2 points 3 cm apart, clusters 1 m apart: every point has exactly 2 points
    # (itself and its twin) within 5 cm, so a feature match that ignores geometry hits with probability
    # 2 / 20 = 0.1 whatever the nearest-neighbour distribution, as the partners b cover all points evenly
    centres = torch.arange(10, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.0, 0.0])
    positions_j = torch.cat([centres, centres + torch.tensor([0.0, 0.03, 0.0])])
    g = torch.Generator().manual_seed(0)
    feats_j = torch.randn(20, 16, generator=g)
    feats_i = torch.randn(4000, 16, generator=g)
    pairs = torch.stack([torch.arange(4000), torch.arange(4000) % 20], 1)
    chance = 2 / 20
    recall = feature_match_recall(feats_i, feats_j, positions_j, pairs, num_samples=4000)
    assert abs(recall - chance) < 0.02  # binomial std over 4000 samples: 0.0047


@pytest.mark.parametrize(("d", "hit"), [(0.04, True), (0.06, False)])
def test_threshold_on_the_nearest_neighbour_distance(d, hit):
    # every frame-i feature equals the feature of the true partner's neighbour, d metres away
    n = 20
    base = torch.arange(n, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.0, 0.0])
    positions_j = torch.cat([base, base + torch.tensor([0.0, 0.0, d])])  # rows n..2n-1: the neighbours
    feats_j = torch.eye(2 * n, dtype=torch.float64)
    feats_i = feats_j[n:]  # frame i point a looks exactly like neighbour n + a
    pairs = torch.stack([torch.arange(n), torch.arange(n)], 1)  # ... but truly corresponds to row a
    recall = feature_match_recall(feats_i, feats_j, positions_j, pairs)
    assert recall == (1.0 if hit else 0.0)


def test_threshold_is_inclusive():
    positions_j = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]], dtype=torch.float64)
    feats_j = torch.eye(2, dtype=torch.float64)
    pairs = torch.tensor([[0, 0]])
    assert feature_match_recall(feats_j[1:], feats_j, positions_j, pairs, threshold=0.05) == 1.0
    assert feature_match_recall(feats_j[1:], feats_j, positions_j, pairs, threshold=0.049) == 0.0


def test_chunking_does_not_change_the_result_and_ties_go_to_the_first_row():
    g = torch.Generator().manual_seed(3)
    positions_j = torch.rand(500, 3, generator=g)
    feats_j = torch.randn(500, 8, generator=g)
    feats_i = torch.randn(200, 8, generator=g)
    pairs = torch.stack([torch.arange(200), torch.randint(0, 500, (200,), generator=g)], 1)
    whole = feature_match_recall(feats_i, feats_j, positions_j, pairs, threshold=0.2, chunk_size=10_000)
    for chunk in (1, 7, 64):
        chunked = feature_match_recall(feats_i, feats_j, positions_j, pairs, threshold=0.2, chunk_size=chunk)
        assert chunked == whole
    # two identical rows of feats_j in different chunks: the first (row 0, at the partner) wins
    positions = torch.tensor([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    twins = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert feature_match_recall(twins[:1], twins, positions, torch.tensor([[0, 0]]), chunk_size=1) == 1.0


def test_sampling_is_reproducible_and_bounded():
    g = torch.Generator().manual_seed(4)
    positions_j = torch.rand(400, 3, generator=g)
    feats_j, feats_i = torch.randn(400, 8, generator=g), torch.randn(3000, 8, generator=g)
    pairs = torch.stack([torch.arange(3000), torch.randint(0, 400, (3000,), generator=g)], 1)
    a = feature_match_recall(feats_i, feats_j, positions_j, pairs, 0.3, 100, torch.Generator().manual_seed(1))
    b = feature_match_recall(feats_i, feats_j, positions_j, pairs, 0.3, 100, torch.Generator().manual_seed(1))
    assert a == b and 0.0 <= a <= 1.0
    assert round(a * 100) == pytest.approx(a * 100)  # a fraction of exactly 100 samples


def test_no_pairs_and_bad_input():
    feats = torch.randn(4, 3)
    positions = torch.rand(4, 3)
    assert feature_match_recall(feats, feats, positions, torch.zeros(0, 2, dtype=torch.int64)) == 0.0
    with pytest.raises(ValueError, match="positions_j"):
        feature_match_recall(feats, feats, positions[:3], torch.tensor([[0, 0]]))
    with pytest.raises(ValueError, match="widths"):
        feature_match_recall(feats, torch.randn(4, 2), positions, torch.tensor([[0, 0]]))
    with pytest.raises(ValueError, match="pairs"):
        feature_match_recall(feats, feats, positions, torch.tensor([0, 0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_feature_match_recall_on_cuda():
    positions_j = sphere_points(100).cuda()
    pairs = torch.stack([torch.arange(100), torch.arange(100)], 1).cuda()
    recall = feature_match_recall(positions_j, positions_j, positions_j, pairs, generator=torch.Generator())
    assert recall == 1.0


# --- effective rank (the dimensional-collapse monitor) ----------------------------------------------
def test_effective_rank_healthy_full_and_dimensional_collapse():
    from fourdcontrast.metrics import effective_rank

    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(4000, 32, generator=g)
    assert effective_rank(healthy) > 28.0
    # fully collapsed: every row the same vector
    assert effective_rank(torch.ones(500, 32) * 3.0) == 0.0
    # dimensionally collapsed: 32 channels that are mixtures of 2 directions (+ tiny noise)
    basis = torch.randn(2, 32, generator=g)
    low = torch.randn(4000, 2, generator=g) @ basis + 1e-4 * torch.randn(4000, 32, generator=g)
    assert 1.9 < effective_rank(low) < 2.05
    # one direction dominating: rank near 1
    one = torch.randn(4000, 1, generator=g) * torch.ones(1, 32) + 1e-3 * torch.randn(4000, 32, generator=g)
    assert effective_rank(one) < 1.1


def test_effective_rank_known_answer():
    """Centred orthonormal columns scaled by singular values s: exp(−Σ p log p) with p = s² / Σ s²
    (s = 3, 2, 1, 1, 0, …: p = 9, 4, 1, 1 / 15)."""
    import math

    from fourdcontrast.metrics import effective_rank

    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 8, dtype=torch.float64, generator=g)
    q, _ = torch.linalg.qr(x - x.mean(0))  # (600, 8) orthonormal, centred columns
    s = torch.tensor([3.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    p = torch.tensor([9.0, 4.0, 1.0, 1.0]) / 15
    expected = math.exp(-float((p * p.log()).sum()))
    assert effective_rank((q * s).float(), max_rows=None) == pytest.approx(expected, rel=1e-4)
    assert effective_rank(q.float(), max_rows=None) == pytest.approx(8.0, rel=1e-4)


def test_effective_rank_sees_the_collapse_that_the_std_monitor_misses():
    """Channels that are copies of one another, each normalised like a batch norm without affine
    parameters: SimSiam's per-channel std reads healthy, the effective rank reads ~1."""
    from fourdcontrast.metrics import effective_rank
    from fourdcontrast.models.fourdcontrast import collapse_std

    g = torch.Generator().manual_seed(1)
    d = 32
    signs = torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
    base = torch.randn(5000, 1, generator=g)
    z = base * signs + 0.05 * torch.randn(5000, d, generator=g)
    z = (z - z.mean(0)) / z.std(0)  # per-channel normalisation (BN without affine)
    healthy_z = torch.randn(5000, d, generator=g)
    assert float(collapse_std(z)) > 0.5 * float(collapse_std(healthy_z))  # the std cannot tell
    assert effective_rank(z) < 2.0 < 20.0 < effective_rank(healthy_z)


def test_effective_rank_subsamples_deterministically_and_rejects_bad_input():
    from fourdcontrast.metrics import effective_rank

    x = torch.randn(20000, 8, generator=torch.Generator().manual_seed(2))
    a = effective_rank(x, max_rows=1000, generator=torch.Generator().manual_seed(5))
    b = effective_rank(x, max_rows=1000, generator=torch.Generator().manual_seed(5))
    assert a == b and 7.0 < a <= 8.0
    assert effective_rank(x[:1]) == 0.0
    with pytest.raises(ValueError):
        effective_rank(torch.ones(10))
