"""The downstream report's non-primary cells: paired t tests by seed, Holm-adjusted over the family,
checked against scipy's paired t test and Holm's procedure computed here by hand.

Mutants tried (issue 30), each killed by the test named:

- ``adjusted = holm(...)`` → ``adjusted = [d.p for _, d in results]`` (raw p-values reported as Holm's) in
  ``other_comparisons``: ``test_other_cells_are_holm_adjusted_over_the_family``;
- ``o["p_holm"] <= 0.05`` → ``o["interval"].p <= 0.05`` in the markdown's count of significant cells:
  ``test_the_markdown_counts_the_cells_significant_after_holm``;
- the header's seeds read from the spec (``p['seeds']``) instead of the rows, in the map report:
  ``test_the_header_names_the_seeds_the_rows_hold_not_the_last_invocations``.
"""

import numpy as np
import pytest
from scipy.stats import ttest_rel

from fourdcontrast.downstream.report import PRIMARY_COMPARISONS, markdown_report, other_comparisons

SEEDS = 4


def _rows(cells):
    """CSV-like rows from {(mode, protocol, level, method): [value per seed]} (values in fractions)."""
    return [dict(split="test", mode=mode, protocol=p, level=f"{lv:g}", seed=s, method=m, miou=v,
                 miou_objects=v / 2)
            for (mode, p, lv, m), values in cells.items() for s, v in enumerate(values)]


def _cells():
    """Scratch and two methods at two non-primary levels and one primary level, both modes, with spread:
    some differences clearly non-zero, some not."""
    rng = np.random.default_rng(7)
    cells = {}
    shifts = {"scratch": 0.0, "pointcontrast": 0.004, "4dcontrast": 0.03}
    for mode in ("finetune", "linear"):
        for p, lv in (("scenes", 0.05), ("scenes", 1.0), ("scenes", 0.01)):
            base = 0.2 + rng.uniform(0, 0.1, SEEDS)  # per-seed variation common to all methods
            for m, shift in shifts.items():
                cells[(mode, p, lv, m)] = list(base + shift * (1 + (lv == 1.0))
                                               + rng.normal(0, 0.006, SEEDS))
    return cells


def _holm_by_hand(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_other_cells_are_holm_adjusted_over_the_family():
    cells = _cells()
    others = other_comparisons(_rows(cells))
    comps = [o["comparison"] for o in others]
    assert not set(comps) & set(PRIMARY_COMPARISONS)
    # every method − scratch and 4dcontrast − pointcontrast at each cell, primary ones left out
    assert len(comps) == 2 * 3 * 3 - 4
    raw = []
    for o in others:
        c = o["comparison"]
        a = 100 * np.asarray(cells[(c.mode, c.protocol, c.level, c.a)])
        b = 100 * np.asarray(cells[(c.mode, c.protocol, c.level, c.b)])
        expected = ttest_rel(a, b)
        assert o["interval"].mean == pytest.approx(float(np.mean(a - b)))
        assert o["interval"].p == pytest.approx(float(expected.pvalue), rel=1e-9)
        raw.append(float(expected.pvalue))
    adjusted = _holm_by_hand(raw)
    assert [o["p_holm"] for o in others] == pytest.approx(adjusted, rel=1e-9)
    # the data are such that the correction matters: some cell is significant raw but not after Holm
    assert any(p <= 0.05 < h for p, h in zip(raw, adjusted, strict=True))
    assert any(h <= 0.05 for h in adjusted)


def test_the_markdown_counts_the_cells_significant_after_holm():
    cells = _cells()
    others = other_comparisons(_rows(cells))
    holm_sig = sum(o["p_holm"] <= 0.05 for o in others)
    raw_sig = sum(o["interval"].p <= 0.05 for o in others)
    assert holm_sig < raw_sig
    text = markdown_report(_rows(cells))
    assert f"{holm_sig} of {len(others)} cells differ at α = 0.05 after Holm's correction." in text
    first = others[0]
    assert f"| {first['interval'].p:.3f} | {first['p_holm']:.3f} |" in text


def test_method_order_puts_each_methods_budgets_after_it_and_unknown_labels_last():
    from fourdcontrast.downstream.report import method_order

    labels = ["zzz", "4dcontrast@3600s", "pointcontrast@10800s", "4dcontrast", "pointcontrast@3600s",
              "scratch", "pointcontrast", "4dcontrast@600s"]
    assert method_order([{"method": m} for m in labels]) == [
        "scratch", "pointcontrast", "pointcontrast@3600s", "pointcontrast@10800s", "4dcontrast",
        "4dcontrast@600s", "4dcontrast@3600s", "zzz"]
    assert method_order([{"method": "shipped"}, {"method": "scratch"}], ("scratch", "shipped")) == \
        ["scratch", "shipped"]


def test_line_style_draws_long_budgets_solid_and_the_grids_own_dotted():
    from fourdcontrast.downstream.report import line_style

    assert line_style("4dcontrast@3600s")["ls"] == "-"
    assert line_style("4dcontrast")["ls"] == ":"
    assert line_style("4dcontrast", long=True) == line_style("4dcontrast@3600s")
    assert line_style("pointcontrast")["color"] != line_style("4dcontrast")["color"]
    assert line_style("scratch@3600s")["ls"] == "--"


def test_the_header_names_the_seeds_the_rows_hold_not_the_last_invocations():
    """A grid resumed with ``--seeds 1`` records ``seeds: [0]`` in its spec although its CSV holds seeds
    0-3 (the defect of the committed scannet-size and instance reports): the header reads the rows."""
    import json

    from fourdcontrast.downstream import benchmark as bm
    from fourdcontrast.downstream.report import map_markdown_report

    rows = _rows(_cells())
    for preset, task, report in (("cpu-scannet", "segmentation", markdown_report),
                                 ("cpu-instance", "instance", map_markdown_report)):
        spec = json.loads(json.dumps({**bm.grid_spec(bm.PRESETS[preset], "test"), "preset_name": preset}))
        spec["preset"]["seeds"] = [0]
        if task == "segmentation":
            text = report(rows, None, spec)
        else:
            map_rows = [{**r, "map50": r["miou"], "map25": r["miou"]} for r in rows]
            text = report(map_rows, task, None, spec)
        assert f"seeds {list(range(SEEDS))} (seed s pre-trains" in text
        assert "seeds [0] (" not in text
