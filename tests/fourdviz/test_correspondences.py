"""Correspondences from provenance and the checker, on clean and deliberately corrupted sequences."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.records import SOURCE_OBJECT
from fourdviz.correspondences import (
    check_correspondences,
    expected_points,
    match_frames,
    segments,
    subsample_pairs,
)


def test_matches_share_provenance(sequence):
    i, j = match_frames(sequence, 0, 2)
    assert len(i) > 0
    np.testing.assert_array_equal(sequence.frames[0].keys[i], sequence.frames[2].keys[j])
    # every shared key is found
    common = np.intersect1d(sequence.frames[0].keys, sequence.frames[2].keys)
    assert len(i) == len(common)


def test_expected_points_equal_frame_points_on_clean_sequence(sequence):
    for t in range(len(sequence)):
        np.testing.assert_allclose(expected_points(sequence, t), sequence.frames[t].points, atol=1e-5)


def test_clean_sequence_has_no_broken_matches(sequence):
    check = check_correspondences(sequence, 0, 1)
    assert check.num_broken == 0
    assert check.num_ok == len(match_frames(sequence, 0, 1)[0])


def test_corruption_is_flagged(corrupted_sequence):
    seq = corrupted_sequence
    f1 = seq.frames[1]
    moved = np.flatnonzero(f1.source == SOURCE_OBJECT)[:5]
    check = check_correspondences(seq, 1, 2)
    flagged = set(check.idx_i[check.broken].tolist())
    partnered = set(moved.tolist()) & set(check.idx_i.tolist())
    assert flagged == partnered and len(flagged) > 0
    # the deleted points of frame 1 leave object points of frame 2 without partner
    back = check_correspondences(seq, 2, 1)
    assert back.num_missing >= 1


def test_given_pairs_are_checked(sequence):
    i, j = match_frames(sequence, 0, 1)
    wrong = j.copy()
    wrong[:3] = j[[1, 2, 0]]  # three swapped partners
    check = check_correspondences(sequence, 0, 1, pairs=(i[:-4], wrong[:-4]))
    assert check.num_broken == 3
    dropped_obj = (sequence.frames[0].source[i[-4:]] == SOURCE_OBJECT).sum()
    assert check.num_missing == dropped_obj


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 400), budget=st.integers(0, 200), n_keep=st.integers(0, 20), seed=st.integers(0, 9))
def test_subsample_pairs_keeps_flagged_and_respects_budget(n, budget, n_keep, seed):
    keep = np.zeros(n, dtype=bool)
    keep[: min(n_keep, n)] = True
    sel = subsample_pairs(np.arange(n), np.arange(n), budget, seed, keep=keep)
    assert len(sel) == min(n, budget)
    assert len(np.unique(sel)) == len(sel)
    assert set(np.flatnonzero(keep)[:budget].tolist()) <= set(sel.tolist())


def test_segments_separates_with_nan():
    a, b = np.zeros((2, 3)), np.ones((2, 3))
    s = segments(a, b)
    assert s.shape == (6, 3) and np.isnan(s[2]).all() and np.isnan(s[5]).all()
    np.testing.assert_array_equal(s[1], b[0])
