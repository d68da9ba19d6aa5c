"""Tests of fourdcontrast.losses: values computed by hand on 2-d unit features such as (1,0), (0,1),
(0.6,0.8) (cosines 0, 0.6, 0.8 and 1 are read off), gradient flow term by term, and properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fourdcontrast.losses import (
    CSC_NUM_SHELLS,
    DEFAULT_REDUCTION,
    HC_NEG_MARGIN,
    HC_NUM_NEG_CANDIDATES,
    HC_NUM_POS,
    HC_POS_MARGIN,
    NCE_NUM_PAIRS,
    NCE_TEMPERATURE,
    W3D,
    W3D4D,
    W4D,
    csc_info_nce_loss,
    hardest_contrastive_loss,
    loss_3d,
    loss_3d4d,
    loss_4d,
    match_average_pool,
    negative_cosine_similarity,
    pair_dot,
    point_info_nce_loss,
    reduce_groups,
    shape_context_partitions,
    simsiam_loss,
    total_loss,
)


def t(rows, requires_grad=False):
    return torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)


def idx(rows):
    if not rows:
        return torch.zeros(0, 2, dtype=torch.int64)
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 2)


def randn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def has_grad(x):
    return x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_constants_are_the_anchor_settings():
    assert DEFAULT_REDUCTION == "mean"
    assert (W3D, W3D4D, W4D) == (1.0, 1.0, 1.0)
    assert (HC_NUM_POS, HC_NUM_NEG_CANDIDATES, HC_POS_MARGIN, HC_NEG_MARGIN) == (1024, 2048, 0.1, 1.4)
    assert (NCE_NUM_PAIRS, NCE_TEMPERATURE) == (4096, 0.4)
    assert CSC_NUM_SHELLS == 2


# ------------------------------------------------------------------------------------------- Eq. 1, 2


def test_negative_cosine_similarity_by_hand():
    p = t([[1, 0], [0, 1], [0.6, 0.8], [2, 0], [0, 0]])
    z = t([[0.6, 0.8], [0.6, 0.8], [3, 4], [-3, 0], [1, 0]])
    d = negative_cosine_similarity(p, z)
    assert d.shape == (5,)
    torch.testing.assert_close(d, t([-0.6, -0.8, -1.0, 1.0, 0.0]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=12, max_size=12))
def test_negative_cosine_similarity_is_bounded(values):
    x = torch.tensor(values, dtype=torch.float64).reshape(3, 4)
    d = negative_cosine_similarity(x[:, :2], x[:, 2:])
    assert bool(((d >= -1 - 1e-9) & (d <= 1 + 1e-9)).all())


def test_negative_cosine_similarity_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        negative_cosine_similarity(t([[1, 0]]), t([[1, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        negative_cosine_similarity(t([1, 0]), t([1, 0]))


def test_simsiam_loss_by_hand():
    p1, z2 = t([[1, 0], [0, 1]]), t([[0.6, 0.8], [0.6, 0.8]])  # D = -0.6, -0.8: mean -0.7
    p2, z1 = t([[1, 0], [1, 0]]), t([[1, 0], [0, 1]])  # D = -1, 0: mean -0.5
    torch.testing.assert_close(simsiam_loss(p1, z1, p2, z2), torch.tensor(-0.6, dtype=torch.float64))


def test_simsiam_loss_stop_gradient():
    p1, z1, p2, z2 = (randn(4, 3, seed=s) for s in range(4))
    simsiam_loss(p1, z1, p2, z2).backward()
    assert has_grad(p1) and has_grad(p2)
    assert z1.grad is None and z2.grad is None
    p1, z1, p2, z2 = (randn(4, 3, seed=s) for s in range(4))
    simsiam_loss(p1, z1, p2, z2, stop_gradient=False).backward()
    assert all(has_grad(x) for x in (p1, z1, p2, z2))


def test_simsiam_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        simsiam_loss(t([[1, 0]]), t([[1, 0]]), t([[1, 0]]), t([[1, 0], [0, 1]]))


# ------------------------------------------------------------------------------------ reduce_groups


def test_reduce_groups_mean_and_sum_by_hand():
    # G = 2: groups 0 -> {1, 2} (mean 1.5) and 1 -> {3} of sequence 0;
    #        group 5 -> {4, 10} (mean 7) of sequence 2
    values = t([10, 1, 3, 4, 2])
    groups = torch.tensor([5, 0, 1, 5, 0])
    mean = reduce_groups(values, groups, 2)
    torch.testing.assert_close(mean, torch.tensor((1.5 + 3 + 7) / 3, dtype=torch.float64))
    # sum over each sequence's groups (4.5 and 7), mean over the two sequences that have any
    total = reduce_groups(values, groups, 2, reduction="sum")
    torch.testing.assert_close(total, torch.tensor((4.5 + 7) / 2, dtype=torch.float64))


def test_reduce_groups_group_mean_is_not_the_correspondence_mean():
    values = t([0, 0, 0, 1])
    groups = torch.tensor([0, 0, 0, 1])
    assert float(reduce_groups(values, groups, 1)) == pytest.approx(0.5)  # not 0.25


def test_reduce_groups_empty_input_is_zero_with_grad():
    values = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    for reduction in ("mean", "sum"):
        out = reduce_groups(values, torch.zeros(0, dtype=torch.int64), 3, reduction)
        assert out.shape == () and out.item() == 0.0 and out.requires_grad
        out.backward()
        assert values.grad is not None and values.grad.shape == (0,)


def test_reduce_groups_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        reduce_groups(t([1.0]), torch.tensor([0]), 1, reduction="max")
    with pytest.raises(ValueError, match="groups"):
        reduce_groups(t([1.0, 2.0]), torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="groups"):
        reduce_groups(t([1.0]), torch.tensor([0.0]), 1)
    with pytest.raises(ValueError, match="groups_per_sequence"):
        reduce_groups(t([1.0]), torch.tensor([0]), 0)


def _reduce_reference(values, groups, g, reduction):
    by_group = {}
    for v, k in zip(values, groups, strict=True):
        by_group.setdefault(k, []).append(v)
    means = {k: sum(vs) / len(vs) for k, vs in by_group.items()}
    if reduction == "mean":
        return sum(means.values()) / len(means)
    by_seq = {}
    for k, m in means.items():
        by_seq[k // g] = by_seq.get(k // g, 0.0) + m
    return sum(by_seq.values()) / len(by_seq)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1, 1), st.integers(0, 11)), min_size=1, max_size=30),
    st.integers(1, 4),
    st.sampled_from(["mean", "sum"]),
    st.randoms(use_true_random=False),
)
def test_reduce_groups_matches_reference_and_is_permutation_invariant(items, g, reduction, rnd):
    values = [v for v, _ in items]
    groups = [k for _, k in items]
    expected = _reduce_reference(values, groups, g, reduction)
    out = reduce_groups(t(values), torch.tensor(groups), g, reduction)
    assert float(out) == pytest.approx(expected, abs=1e-9)
    order = list(range(len(items)))
    rnd.shuffle(order)
    values_shuffled = t([values[i] for i in order])
    shuffled = reduce_groups(values_shuffled, torch.tensor([groups[i] for i in order]), g, reduction)
    assert float(shuffled) == pytest.approx(expected, abs=1e-9)


# ------------------------------------------------------------------------------ Eqs. 3–8 by hand

# p0 = (1,0), p1 = (0,1), p2 = (0.6,0.8); z0 = (0,1), z1 = (0.6,0.8), z2 = (1,0)
# pair (0,1): ½D(p0,z1) + ½D(p1,z0) = ½(-0.6) + ½(-1)   = -0.8
# pair (0,2): ½D(p0,z2) + ½D(p2,z0) = ½(-1)   + ½(-0.8) = -0.9
# pair (1,2): ½D(p1,z2) + ½D(p2,z1) = ½(0)    + ½(-1)   = -0.5
P_HAND = [[1, 0], [0, 1], [0.6, 0.8]]
Z_HAND = [[0, 1], [0.6, 0.8], [1, 0]]
PAIRS_HAND = [[0, 1], [0, 2], [1, 2]]


@pytest.mark.parametrize("loss", [loss_3d, loss_4d])
def test_loss_3d_and_4d_by_hand(loss):
    groups = torch.tensor([0, 0, 1])  # frame pair 0: {-0.8, -0.9}, frame pair 1: {-0.5}; G = 3
    mean = loss(t(P_HAND), t(Z_HAND), idx(PAIRS_HAND), groups, 3)
    torch.testing.assert_close(mean, torch.tensor((-0.85 - 0.5) / 2, dtype=torch.float64))
    total = loss(t(P_HAND), t(Z_HAND), idx(PAIRS_HAND), groups, 3, reduction="sum")
    torch.testing.assert_close(total, torch.tensor(-0.85 - 0.5, dtype=torch.float64))
    # two sequences (groups 0 and 3 with G = 3): Eq. 4 per sequence, then the mean over sequences
    two = loss(t(P_HAND), t(Z_HAND), idx(PAIRS_HAND), torch.tensor([0, 3, 3]), 3, reduction="sum")
    torch.testing.assert_close(two, torch.tensor((-0.8 + (-0.9 - 0.5) / 2) / 2, dtype=torch.float64))


def test_loss_3d4d_by_hand():
    p3, z3 = t([[1, 0], [0, 1]]), t([[0.6, 0.8], [0, 1]])
    p4, z4 = t([[0, 1], [0.6, 0.8]]), t([[1, 0], [0.6, 0.8]])
    pairs = idx([[0, 1], [1, 0]])  # (3D row, 4D row)
    # (0,1): ½D(p3[0], z4[1]) + ½D(p4[1], z3[0]) = ½(-0.6) + ½(-1) = -0.8
    # (1,0): ½D(p3[1], z4[0]) + ½D(p4[0], z3[1]) = ½(0)    + ½(-1) = -0.5
    out = loss_3d4d(p3, z3, p4, z4, pairs, torch.tensor([0, 1]), 2)
    torch.testing.assert_close(out, torch.tensor(-0.65, dtype=torch.float64))


def test_losses_with_no_pairs_are_zero_with_grad():
    p, z = randn(3, 2, seed=0), randn(3, 2, seed=1)
    empty = torch.zeros(0, dtype=torch.int64)
    out = loss_3d(p, z, idx([]), empty, 1)
    assert out.item() == 0.0
    out.backward()
    assert p.grad is not None
    out = loss_3d4d(randn(3, 2), randn(3, 2), randn(4, 2), randn(4, 2), idx([]), empty, 4)
    assert out.item() == 0.0 and out.requires_grad


def test_loss_3d_rejects_bad_input():
    with pytest.raises(ValueError, match="pairs"):
        loss_3d(t(P_HAND), t(Z_HAND), torch.tensor([[0, 1, 2]]), torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="groups"):
        loss_3d(t(P_HAND), t(Z_HAND), idx(PAIRS_HAND), torch.tensor([0, 0]), 1)
    with pytest.raises(ValueError, match="same"):
        loss_4d(t(P_HAND), t(Z_HAND[:2]), idx(PAIRS_HAND), torch.tensor([0, 0, 0]), 1)
    with pytest.raises(ValueError, match="widths"):
        loss_3d4d(randn(2, 2), randn(2, 2), randn(2, 3), randn(2, 3), idx([[0, 0]]), torch.tensor([0]), 1)


# ------------------------------------------------------------------------------ gradient flow


@pytest.mark.parametrize("loss", [loss_3d, loss_4d])
def test_loss_3d_4d_gradient_reaches_predictor_only(loss):
    p, z = randn(5, 4, seed=1), randn(5, 4, seed=2)
    loss(p, z, idx([[0, 1], [2, 3]]), torch.tensor([0, 1]), 2).backward()
    assert has_grad(p) and z.grad is None
    # term by term: D(p[a], SG z[b]) sends gradient to row a only, D(p[b], SG z[a]) to row b only
    p, z = randn(5, 4, seed=1), randn(5, 4, seed=2)
    loss(p, z, idx([[0, 1]]), torch.tensor([0]), 1).backward()
    rows = p.grad.abs().sum(1) > 0
    assert rows.tolist() == [True, True, False, False, False]
    p, z = randn(5, 4, seed=1), randn(5, 4, seed=2)
    loss(p, z, idx([[0, 1], [2, 3]]), torch.tensor([0, 1]), 2, stop_gradient=False).backward()
    assert has_grad(p) and has_grad(z)


def test_loss_3d4d_gradient_reaches_encoders_only():
    p3, z3, p4, z4 = randn(3, 4, seed=1), randn(3, 4, seed=2), randn(4, 4, seed=3), randn(4, 4, seed=4)
    loss_3d4d(p3, z3, p4, z4, idx([[0, 3], [2, 1]]), torch.tensor([0, 1]), 2).backward()
    assert p3.grad is None and p4.grad is None
    assert has_grad(z3) and has_grad(z4)
    # term by term: ½D(SG p3[a], z4[w]) reaches z4 row w, ½D(SG p4[w], z3[a]) reaches z3 row a
    assert (z4.grad.abs().sum(1) > 0).tolist() == [False, True, False, True]
    assert (z3.grad.abs().sum(1) > 0).tolist() == [True, False, True]
    p3, z3, p4, z4 = randn(3, 4, seed=1), randn(3, 4, seed=2), randn(4, 4, seed=3), randn(4, 4, seed=4)
    loss_3d4d(p3, z3, p4, z4, idx([[0, 3], [2, 1]]), torch.tensor([0, 1]), 2, stop_gradient=False).backward()
    assert all(has_grad(x) for x in (p3, z3, p4, z4))


def test_loss_3d4d_pairs_each_predictor_with_the_other_networks_encoder():
    # p3 = (1,0), z3 = (0.6,0.8), p4 = (0,1), z4 = (0.8,0.6)
    # Eq. 5: ½D(p3, z4) + ½D(p4, z3) = ½(-0.8) + ½(-0.8) = -0.8 (same-network ½D(p3,z3) + ½D(p4,z4): -0.6)
    p3, z3, p4, z4 = t([[1, 0]]), t([[0.6, 0.8]]), t([[0, 1]]), t([[0.8, 0.6]])
    out = loss_3d4d(p3, z3, p4, z4, idx([[0, 0]]), torch.tensor([0]), 1)
    assert float(out) == pytest.approx(-0.8)


def test_total_loss_weighting():
    one, two, three = (torch.tensor(v) for v in (1.0, 2.0, 3.0))
    assert float(total_loss(one, two, three)) == pytest.approx(6.0)
    assert float(total_loss(one, two, three, w3d=0.5, w3d4d=2.0, w4d=-1.0)) == pytest.approx(0.5 + 4 - 3)


# ------------------------------------------------------------------------- match average pooling


def test_match_average_pool_chain_and_isolated_row():
    features = t([[1, 2], [3, 4], [5, 9], [7, 7]], requires_grad=True)
    out = match_average_pool(features, idx([[0, 1], [2, 1]]))  # chain 0–1–2, row 3 isolated
    torch.testing.assert_close(out, t([[3, 5], [3, 5], [3, 5], [7, 7]]))
    out[0, 0].backward()
    torch.testing.assert_close(features.grad, t([[1 / 3, 0], [1 / 3, 0], [1 / 3, 0], [0, 0]]))


def test_match_average_pool_long_chain_and_no_pairs():
    n = 50
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    chain = torch.stack([perm[:-1], perm[1:]], 1)  # one component, labelled in scrambled order
    features = torch.arange(n, dtype=torch.float64)[:, None]
    order = torch.randperm(n - 1, generator=torch.Generator().manual_seed(1))
    out = match_average_pool(features, chain[order])
    torch.testing.assert_close(out, torch.full((n, 1), (n - 1) / 2, dtype=torch.float64))
    torch.testing.assert_close(match_average_pool(features, idx([])), features)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=15)
        )
    )
)
def test_match_average_pool_matches_connected_components(case):
    n, edges = case
    features = torch.arange(2 * n, dtype=torch.float64).reshape(n, 2) ** 1.5
    out = match_average_pool(features, idx([list(e) for e in edges]))
    rows = [e[0] for e in edges] + [n - 1]
    cols = [e[1] for e in edges] + [n - 1]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    f = features.numpy()
    expected = np.stack([f[labels == labels[i]].mean(0) for i in range(n)])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_match_average_pool_rejects_bad_input():
    with pytest.raises(ValueError, match="pairs"):
        match_average_pool(t([[1, 2]]), torch.tensor([[0.0, 0.0]]))
    with pytest.raises(ValueError, match="features"):
        match_average_pool(t([1, 2]), idx([]))


# ------------------------------------------------------------------------- hardest contrastive

# f0 = (1,0), (0,1); f1 = (0.6,0.8), (0.8,0.6), (0,1): unit vectors, ‖u − v‖ = sqrt(2 − 2 cos)
F0_HC = [[1, 0], [0, 1]]
F1_HC = [[0.6, 0.8], [0.8, 0.6], [0, 1]]


def test_hardest_contrastive_by_hand():
    pairs = idx([[0, 0], [1, 2]])
    out = hardest_contrastive_loss(t(F0_HC), t(F1_HC), pairs, num_pos=10, num_neg_candidates=10)
    # positives: d(f0[0], f1[0]) = sqrt(0.8), d(f0[1], f1[2]) = 0
    pos = ((math.sqrt(0.8) - 0.1) ** 2 + 0.0) / 2
    # anchors of f0: f0[0] -> nearest non-partner f1[1] (cos 0.8, nearer than its partner), sqrt(0.4);
    #                f0[1] -> nearest non-partner f1[0] (cos 0.8), sqrt(0.4)
    neg0 = (1.4 - math.sqrt(0.4)) ** 2
    # anchors of f1: f1[0] -> f0[1] (cos 0.8), sqrt(0.4); f1[2] -> f0[0] (cos 0), sqrt(2) > 1.4: zero
    neg1 = ((1.4 - math.sqrt(0.4)) ** 2 + 0.0) / 2
    assert float(out) == pytest.approx(pos + 0.5 * (neg0 + neg1), abs=1e-6)


def test_hardest_contrastive_masks_every_partner_not_only_sampled_ones():
    # f0[0] corresponds to both f1[0] and f1[1]; one of the two pairs is sampled
    pairs = idx([[0, 0], [0, 1]])
    n1 = (1.4 - math.sqrt(0.4)) ** 2  # anchor f1[0] -> f0[1]
    if_first = (math.sqrt(0.8) - 0.1) ** 2 + 0.5 * (0.0 + n1)  # f0[0]'s only non-partner is f1[2]: sqrt 2
    if_second = (math.sqrt(0.4) - 0.1) ** 2 + 0.5 * (0.0 + (1.4 - math.sqrt(0.8)) ** 2)  # f1[1] -> f0[1]
    seen = set()
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        out = float(hardest_contrastive_loss(t(F0_HC), t(F1_HC), pairs, num_pos=1, generator=g))
        match = [v for v in (if_first, if_second) if abs(out - v) < 1e-6]
        assert match, out
        seen.add(match[0])
    assert len(seen) == 2


def test_hardest_contrastive_is_reproducible_and_gradient_flows():
    f0, f1 = randn(300, 8, seed=1), randn(280, 8, seed=2)
    pairs = torch.stack([torch.arange(250), torch.arange(250).flip(0)], 1)
    kw = dict(num_pos=64, num_neg_candidates=100)
    a = hardest_contrastive_loss(f0, f1, pairs, generator=torch.Generator().manual_seed(7), **kw)
    b = hardest_contrastive_loss(f0, f1, pairs, generator=torch.Generator().manual_seed(7), **kw)
    c = hardest_contrastive_loss(f0, f1, pairs, generator=torch.Generator().manual_seed(8), **kw)
    assert a.item() == b.item() and a.item() != c.item() and a.item() > 0
    a.backward()
    assert has_grad(f0) and has_grad(f1)


def test_hardest_contrastive_edge_cases():
    f0, f1 = randn(3, 2, seed=1), randn(3, 2, seed=2)
    out = hardest_contrastive_loss(f0, f1, idx([]))
    assert out.item() == 0.0 and out.requires_grad
    with pytest.raises(ValueError, match="widths"):
        hardest_contrastive_loss(randn(3, 2), randn(3, 3), idx([[0, 0]]))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_hardest_contrastive_is_nonnegative_and_pair_order_invariant(seed):
    g = torch.Generator().manual_seed(seed)
    f0, f1 = torch.randn(6, 3, generator=g), torch.randn(7, 3, generator=g)
    pairs = torch.stack([torch.randint(0, 6, (5,), generator=g), torch.randint(0, 7, (5,), generator=g)], 1)
    out = hardest_contrastive_loss(f0, f1, pairs)
    flipped = hardest_contrastive_loss(f0, f1, pairs.flip(0))
    assert float(out) >= 0
    assert float(out) == pytest.approx(float(flipped), abs=1e-6)


# ------------------------------------------------------------------------- PointInfoNCE


def test_point_info_nce_by_hand():
    f0 = t([[1, 0], [0, 1], [0.6, 0.8]])
    f1 = t([[0.6, 0.8], [1, 0], [0, 1]])
    pairs = idx([[0, 1], [1, 2], [2, 0]])  # q = f0, k = (1,0), (0,1), (0.6,0.8)
    # logits q·kᵀ/0.4: [2.5, 0, 1.5], [0, 2.5, 2], [1.5, 2, 2.5]; positives on the diagonal
    rows = [[2.5, 0, 1.5], [0, 2.5, 2], [1.5, 2, 2.5]]
    expected = sum(math.log(sum(math.exp(v) for v in row)) - row[i] for i, row in enumerate(rows)) / 3
    assert float(point_info_nce_loss(f0, f1, pairs)) == pytest.approx(expected, abs=1e-9)


def test_point_info_nce_sampling_reproducible_and_bounded():
    f0, f1 = randn(200, 8, seed=1), randn(200, 8, seed=2)
    pairs = torch.stack([torch.arange(200), torch.arange(200)], 1)
    a = point_info_nce_loss(f0, f1, pairs, num_pairs=32, generator=torch.Generator().manual_seed(3))
    b = point_info_nce_loss(f0, f1, pairs, num_pairs=32, generator=torch.Generator().manual_seed(3))
    c = point_info_nce_loss(f0, f1, pairs, num_pairs=32, generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item() != c.item()
    # same features on both sides: the positive logit is the largest possible, loss < log(32)
    same = point_info_nce_loss(f0, f0, pairs, num_pairs=32, generator=torch.Generator().manual_seed(3))
    assert 0 < same.item() < math.log(32)
    out = point_info_nce_loss(f0, f1, idx([]))
    assert out.item() == 0.0 and out.requires_grad


# ------------------------------------------------------------------------- shape context / CSC


def test_shape_context_partitions_hand_placed():
    xyz = t(
        [
            [0, 0, 0],  # 0: anchor
            [0.1, 0.2, 0.3],  # d 0.37 < 0.5: shell 0; dy>0: xy 1; dz>0: zy 1 -> 0 + 2 + 1 = 3
            [-0.3, -0.4, 0.2],  # d 0.54 >= 0.5: shell 1; dy<0: xy 0; θzy=atan2(.2,-.4)>0: zy 1 -> 5
            [1.0, -1.0, -1.0],  # d 1.73: shell 1; xy 0; zy 0 -> 4
            [2.0, 1.0, 0.0],  # d 2.24 > r2 -> -1
            [0.01, 0.0, -0.02],  # d 0.02 < r1: inner shell; θxy = 0: xy 1; θzy = -π/2: zy 0 -> 2
            [-1.0, 0.0, 0.0],  # θxy = atan2(0, -1) = π, taken as -π: xy 0; θzy = atan2(0, 0) = 0: zy 1 -> 5
            [0.0, 0.0, 2.0],  # d = r2 exactly (kept): shell 1; θxy = 0: xy 1; θzy = π/2: zy 1 -> 7
        ]
    )
    part = shape_context_partitions(xyz)
    assert part.shape == (8, 8) and part.dtype == torch.int64
    assert part[0].tolist() == [-1, 3, 5, 4, -1, 2, 5, 7]
    assert part.diagonal().tolist() == [-1] * 8
    assert int(part[1, 0]) == 0  # seen from point 1 the anchor is at (-0.1,-0.2,-0.3): all sectors 0
    # 4 x 4 sectors of [-π, π): [-π,-π/2) 0, [-π/2,0) 1, [0,π/2) 2, [π/2,π) 3
    fine = shape_context_partitions(xyz, nbins_xy=4, nbins_zy=4)
    assert int(fine[0, 1]) == 0 * 16 + 2 * 4 + 2  # θxy 1.11, θzy 0.98
    assert int(fine[0, 2]) == 1 * 16 + 0 * 4 + 3  # θxy -2.21, θzy 2.68
    # other radii move the log-space shell edge to sqrt(r1 r2): 0.2 with r1 = 0.1, r2 = 0.4
    small = shape_context_partitions(xyz, r1=0.1, r2=0.4)
    assert small[0].tolist() == [-1, 7, -1, -1, -1, 2, -1, -1]


def test_shape_context_partitions_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        shape_context_partitions(t([[0, 0]]))
    with pytest.raises(ValueError, match="r1"):
        shape_context_partitions(t([[0, 0, 0]]), r1=2.0, r2=1.0)


def _csc_reference(f0, f1, pairs, xyz, temperature=NCE_TEMPERATURE):
    q = torch.nn.functional.normalize(f0[pairs[:, 0]], dim=1)
    k = torch.nn.functional.normalize(f1[pairs[:, 1]], dim=1)
    part = shape_context_partitions(xyz[pairs[:, 0]])
    logits = q @ k.T / temperature
    losses = []
    for i in range(len(q)):
        for p in range(8):
            negatives = [j for j in range(len(q)) if int(part[i, j]) == p]
            if negatives:
                row = torch.cat([logits[i, i : i + 1], logits[i, negatives]])
                losses.append(torch.nn.functional.cross_entropy(row[None], torch.tensor([0])))
    return torch.stack(losses).mean()


def test_csc_info_nce_matches_explicit_per_partition_computation():
    g = torch.Generator().manual_seed(5)
    xyz = (torch.rand(9, 3, generator=g, dtype=torch.float64) * 2.5).requires_grad_(False)
    f0, f1 = randn(9, 4, seed=6), randn(10, 4, seed=7)
    pairs = idx([[i, (3 * i) % 10] for i in range(9)])
    out = csc_info_nce_loss(f0, f1, pairs, xyz)
    ref_f0, ref_f1 = f0.detach().clone().requires_grad_(True), f1.detach().clone().requires_grad_(True)
    ref = _csc_reference(ref_f0, ref_f1, pairs, xyz)
    torch.testing.assert_close(out, ref)
    out.backward()
    ref.backward()
    torch.testing.assert_close(f0.grad, ref_f0.grad)
    torch.testing.assert_close(f1.grad, ref_f1.grad)


def test_csc_info_nce_by_hand_two_points():
    # two anchors 0.3 m apart along +y: each is the other's only neighbour, one cell per anchor
    xyz = t([[0, 0, 0], [0, 0.3, 0]])
    f0, f1 = t([[1, 0], [0, 1]]), t([[0.6, 0.8], [1, 0]])
    pairs = idx([[0, 1], [1, 0]])  # q = (1,0), (0,1); k = (1,0), (0.6,0.8)
    # anchor 0: positive 1/0.4 = 2.5, negative 0.6/0.4 = 1.5; anchor 1: positive 0.8/0.4 = 2, negative 0
    expected = (math.log(math.exp(2.5) + math.exp(1.5)) - 2.5 + math.log(math.exp(2) + 1) - 2) / 2
    assert float(csc_info_nce_loss(f0, f1, pairs, xyz)) == pytest.approx(expected, abs=1e-9)
    # a lone anchor has no negative in any partition: zero (with a gradient path), not NaN
    lone = csc_info_nce_loss(f0, f1, idx([[0, 1]]), xyz)
    assert lone.item() == 0.0


def test_csc_info_nce_reproducible_and_validated():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(120, 3, generator=g) * 3
    f0, f1 = torch.randn(120, 8, generator=g), torch.randn(120, 8, generator=g)
    pairs = torch.stack([torch.arange(120), torch.arange(120)], 1)
    a = csc_info_nce_loss(f0, f1, pairs, xyz, num_pairs=40, generator=torch.Generator().manual_seed(1))
    b = csc_info_nce_loss(f0, f1, pairs, xyz, num_pairs=40, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item() and a.item() > 0
    with pytest.raises(ValueError, match="xyz"):
        csc_info_nce_loss(f0, f1, pairs, xyz[:5])


# ------------------------------------------------------------------------- CUDA smoke test


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_losses_run_on_cuda():
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)  # a CPU generator drives CUDA inputs
    p, z = torch.randn(50, 8, device=dev, requires_grad=True), torch.randn(50, 8, device=dev)
    pairs = torch.stack([torch.arange(40), torch.arange(10, 50)], 1).to(dev)
    groups = (torch.arange(40) // 7).to(dev)
    l3d, l4d = loss_3d(p, z, pairs, groups, 6), loss_4d(p, z, pairs, groups, 6)
    out = total_loss(l3d, loss_3d4d(p, z, p, z, pairs, groups, 6), l4d)
    out.backward()
    assert out.device.type == "cuda" and p.grad is not None
    xyz = torch.rand(50, 3, device=dev)
    for value in (
        hardest_contrastive_loss(p, z, pairs, num_pos=16, num_neg_candidates=20, generator=g),
        point_info_nce_loss(p, z, pairs, num_pairs=16, generator=g),
        csc_info_nce_loss(p, z, pairs, xyz, num_pairs=16, generator=g),
        match_average_pool(p, pairs).sum(),
    ):
        assert value.device.type == "cuda" and torch.isfinite(value)


# --- switches of issue 18: weighted group means, the direction of Eq. 5 -----------------------------
def test_reduce_groups_weighted_mean_within_groups():
    values = torch.tensor([1.0, 3.0, 10.0, 20.0, 5.0])
    groups = torch.tensor([0, 0, 1, 1, 1])
    weights = torch.tensor([1.0, 3.0, 2.0, 1.0, 1.0])
    got = reduce_groups(values, groups, 2, "mean", weights)
    expected = ((1 * 1 + 3 * 3) / 4 + (2 * 10 + 20 + 5) / 4) / 2
    assert torch.isclose(got, torch.tensor(expected))
    plain = reduce_groups(values, groups, 2, "mean")
    assert torch.isclose(reduce_groups(values, groups, 2, "mean", torch.ones(5)), plain)
    with pytest.raises(ValueError):
        reduce_groups(values, groups, 2, "mean", torch.ones(4))


@pytest.mark.parametrize("direction", ["paper", "simsiam"])
def test_loss_3d4d_direction_decides_which_outputs_get_the_gradient(direction):
    g = torch.Generator().manual_seed(0)
    p3, z3, p4, z4 = (torch.randn(6, 4, generator=g, requires_grad=True) for _ in range(4))
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    groups = torch.tensor([0, 0, 1])
    loss = loss_3d4d(p3, z3, p4, z4, pairs, groups, 2, direction=direction)
    loss.backward()
    predicted, encoded = (p3.grad, p4.grad), (z3.grad, z4.grad)
    trained, frozen = (encoded, predicted) if direction == "paper" else (predicted, encoded)
    assert all(t is not None and t.abs().sum() > 0 for t in trained)
    assert all(t is None or t.abs().sum() == 0 for t in frozen)
    with pytest.raises(ValueError):
        loss_3d4d(p3, z3, p4, z4, pairs, groups, 2, direction="sideways")


def test_loss_3d4d_directions_agree_in_value():
    g = torch.Generator().manual_seed(1)
    p3, z3, p4, z4 = (torch.randn(5, 3, generator=g) for _ in range(4))
    pairs, groups = torch.tensor([[0, 0], [1, 2], [4, 3]]), torch.tensor([0, 1, 1])
    a = loss_3d4d(p3, z3, p4, z4, pairs, groups, 2, direction="paper")
    b = loss_3d4d(p3, z3, p4, z4, pairs, groups, 2, direction="simsiam")
    assert torch.isclose(a, b)


# --- fused pair losses (model.fused_pair_losses) ------------------------------------------------------


def test_pair_dot_equals_the_gathered_dot_and_its_gradients():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 6, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(30, 6, dtype=torch.float64, generator=g, requires_grad=True)
    a, b = torch.randint(0, 40, (97,), generator=g), torch.randint(0, 30, (97,), generator=g)
    w = torch.randn(97, dtype=torch.float64, generator=g)
    ref = (x[a] * y[b]).sum(1)
    gx, gy = torch.autograd.grad((ref * w).sum(), (x, y))
    for chunk in (1, 7, 97, 1000):  # chunk boundaries inside, at and beyond K
        out = pair_dot(x, y, a, b, chunk=chunk)
        assert torch.equal(out, ref)
        fx, fy = torch.autograd.grad((out * w).sum(), (x, y))
        torch.testing.assert_close(fx, gx, rtol=0, atol=1e-12)
        torch.testing.assert_close(fy, gy, rtol=0, atol=1e-12)
    # a detached side gets no gradient and is not needed; no pairs gives an empty result
    out = pair_dot(x, y.detach(), a, b, chunk=10)
    assert torch.autograd.grad(out.sum(), x)[0].shape == x.shape
    assert pair_dot(x, y, a[:0], b[:0]).shape == (0,)
    with pytest.raises(ValueError, match="chunk"):
        pair_dot(x, y, a, b, chunk=0)


@pytest.mark.parametrize("stop_gradient", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_losses_equal_the_gathered_losses_in_value_and_gradient(stop_gradient, weighted, monkeypatch):
    """Every SimSiam term with ``fused=True`` gives the loss of the gathered path and the same gradients
    for p and z (float64, 1e-10), Eq. 5 in both directions; chunks smaller than K are exercised."""
    import fourdcontrast.losses.simsiam as simsiam

    monkeypatch.setattr(simsiam, "PAIR_CHUNK", 5)
    g = torch.Generator().manual_seed(0)

    def leaf(n):
        return torch.randn(n, 8, dtype=torch.float64, generator=g).requires_grad_()

    p3, z3, p4, z4 = leaf(20), leaf(20), leaf(15), leaf(15)

    def rows(k, n_a, n_b):
        a, b = torch.randint(0, n_a, (k,), generator=g), torch.randint(0, n_b, (k,), generator=g)
        return torch.stack([a, b], 1)

    pairs3, pairs34 = rows(33, 20, 20), rows(26, 20, 15)
    groups3, groups34 = torch.randint(0, 6, (33,), generator=g), torch.randint(0, 8, (26,), generator=g)
    w3 = torch.rand(33, dtype=torch.float64, generator=g) + 0.5 if weighted else None
    w34 = torch.rand(26, dtype=torch.float64, generator=g) + 0.5 if weighted else None
    terms = [
        lambda fused: loss_3d(p3, z3, pairs3, groups3, 3, stop_gradient=stop_gradient, weights=w3,
                              fused=fused),
        lambda fused: loss_4d(p4, z4, pairs3 % 15, groups3, 3, stop_gradient=stop_gradient, weights=w3,
                              fused=fused),
        *(lambda fused, d=d: loss_3d4d(p3, z3, p4, z4, pairs34, groups34, 4, stop_gradient=stop_gradient,
                                       direction=d, weights=w34, fused=fused) for d in ("paper", "simsiam")),
    ]
    for term in terms:
        ref, out = term(False), term(True)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        grads_ref = torch.autograd.grad(ref, (p3, z3, p4, z4), allow_unused=True)
        grads = torch.autograd.grad(out, (p3, z3, p4, z4), allow_unused=True)
        for x, gr, gf in zip((p3, z3, p4, z4), grads_ref, grads, strict=True):
            zero = torch.zeros_like(x)  # None: no gradient reaches x (the same in both paths)
            torch.testing.assert_close(zero if gf is None else gf, zero if gr is None else gr,
                                       rtol=0, atol=1e-10)
        assert any(gf is not None and gf.any() for gf in grads)
