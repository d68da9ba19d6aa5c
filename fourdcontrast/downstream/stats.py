"""Statistics of paired comparisons: the paired t interval (n − 1 degrees of freedom) and Holm's step-down
correction for a family of tests.

A comparison "A − B" in the downstream benchmark is a set of paired differences, one per seed: seed ``s``
pre-trains both methods with seed ``s`` and fine-tunes / probes both on the same data subset (split seed
``s``), so the seed-to-seed variation common to both cancels in the difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedInterval", "holm", "paired_t_interval"]


@dataclass(frozen=True)
class PairedInterval:
    """A paired-difference estimate.

    Attributes:
        mean: mean difference (units of the inputs).
        low, high: the two-sided confidence interval of the mean (NaN when ``n < 2``).
        std: sample standard deviation of the differences (ddof 1; NaN when ``n < 2``).
        n: number of pairs.
        t: t statistic ``mean / (std / sqrt(n))`` (±inf when std is 0 and mean is not).
        p: two-sided p-value of "mean difference = 0" under the t distribution with n − 1 df.
        level: confidence level of ``low``, ``high``.
    """

    mean: float
    low: float
    high: float
    std: float
    n: int
    t: float
    p: float
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below 0."""
        return bool(self.low > 0 or self.high < 0)


def paired_t_interval(differences: Sequence[float], level: float = 0.95) -> PairedInterval:
    """Mean of paired differences with its t interval: ``mean ± t_{(1+level)/2, n−1} · std / sqrt(n)``,
    and the two-sided p-value of the paired t test.

    Args:
        differences: (n,) one difference per pair (NaN entries are dropped).
        level: confidence level in (0, 1).
    """
    from scipy.stats import t as student_t

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = np.asarray(differences, dtype=np.float64).reshape(-1)
    d = d[~np.isnan(d)]
    n = int(d.size)
    if n == 0:
        return PairedInterval(math.nan, math.nan, math.nan, math.nan, 0, math.nan, math.nan, level)
    mean = float(d.mean())
    if n == 1:
        return PairedInterval(mean, math.nan, math.nan, math.nan, 1, math.nan, math.nan, level)
    std = float(d.std(ddof=1))
    se = std / math.sqrt(n)
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * se
    if se == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / se
        p = float(2 * student_t.sf(abs(t), n - 1))
    return PairedInterval(mean, mean - half, mean + half, std, n, t, p, level)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control; reject where adjusted p ≤ α).

    With the m finite p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of the i-th is
    ``max_{j ≤ i} min(1, (m − j + 1) · p_(j))``; NaN inputs stay NaN and do not count in m.

    Returns:
        (len(pvalues),) adjusted p-values in the input order.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
