import math

import numpy as np
import pytest

from fourdcontrast.downstream.stats import holm, paired_t_interval


def test_paired_t_interval_known_answer():
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t_{0.975, 2} = 4.302652729911275
    d = paired_t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert (d.mean, d.std, d.n) == (pytest.approx(2.0), pytest.approx(1.0), 3)
    assert d.low == pytest.approx(2 - half) and d.high == pytest.approx(2 + half)
    assert d.t == pytest.approx(2 * math.sqrt(3))
    # two-sided p with 2 df in closed form: 1 - t / sqrt(t^2 + 2)
    assert d.p == pytest.approx(1 - d.t / math.sqrt(d.t ** 2 + 2))
    assert not d.excludes_zero  # [-0.48, 4.48]
    assert paired_t_interval([4.0, 5.0, 6.0]).excludes_zero
    assert paired_t_interval([-4.0, -5.0, -6.0]).high < 0
    # the level matters: a 50 % interval is narrower (t_{0.75, 2} = 0.8164965809277261)
    narrow = paired_t_interval([1.0, 2.0, 3.0], level=0.5)
    assert narrow.high - narrow.mean == pytest.approx(0.8164965809277261 / math.sqrt(3))


def test_paired_t_interval_edge_cases():
    one = paired_t_interval([1.5])
    assert one.n == 1 and one.mean == 1.5 and math.isnan(one.low) and math.isnan(one.p)
    assert paired_t_interval([]).n == 0
    assert paired_t_interval([np.nan, 1.0, 3.0]).n == 2  # NaN dropped
    same = paired_t_interval([2.0, 2.0, 2.0])
    assert same.low == same.high == 2.0 and same.p == 0.0 and same.excludes_zero
    zero = paired_t_interval([0.0, 0.0])
    assert zero.p == 1.0 and not zero.excludes_zero
    with pytest.raises(ValueError):
        paired_t_interval([1.0, 2.0], level=1.0)


def test_holm_known_answer():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04
    # → monotone 0.02, 0.03, 0.06, 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    out = holm([0.01, np.nan, 0.02])  # NaN stays NaN and does not count in m
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
    assert holm([]).shape == (0,)
