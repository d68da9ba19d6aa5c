"""benchmarks/ship_check.py: the rule that decides whether the long pre-training replaces the shipped
checkpoint (issue 27, item 6). (Mutants tried: the rule on one level instead of the mean; a margin of 0; the
missing long backbone found only after the first probe → red.)"""

import pytest
from script_loader import load_script  # tests/script_loader.py


def _module():
    return load_script("benchmarks/ship_check.py")


def _rows(m, scores):
    """Probe rows: ``scores`` maps a candidate to its validation mIoU (%) at each of ``m.LEVELS``."""
    return [{"method": method, "protocol": p, "level": str(lv), "miou": str(v / 100)}
            for method, vals in scores.items() for (p, lv), v in zip(m.LEVELS, vals, strict=True)]


def test_the_long_backbone_ships_only_when_its_mean_probe_beats_the_shipped_one_by_the_margin():
    m = _module()
    # better at one level by 3 points, worse at another: the mean gain +0.7 < 1 keeps the shipped one
    rows = _rows(m, {"shipped": (30.0, 28.0, 31.0), "4dcontrast@3600s": (33.0, 27.0, 31.1)})
    assert m.verdict(rows) is False and "keep the shipped backbone" in m.report(rows)
    rows = _rows(m, {"shipped": (30.0, 28.0, 31.0), "4dcontrast@3600s": (31.0, 29.0, 32.0)})  # +1.0
    assert m.verdict(rows) is True and "ship 4dcontrast@3600s seed 0" in m.report(rows)
    assert "| shipped | 30.0 | 28.0 | 31.0 | 29.7 |" in m.report(rows)
    assert m.verdict(rows[:-1]) is None and "not all done" in m.report(rows[:-1])


def test_a_missing_long_backbone_fails_before_any_probe(tmp_path, monkeypatch):
    from fourdcontrast.downstream import benchmark as bm

    m = _module()
    probed = []
    monkeypatch.setattr(bm, "probe_cells", lambda *a, **k: probed.append(a) or [])
    monkeypatch.setattr(bm, "load_rooms", lambda *a, **k: pytest.fail("rooms loaded before the check"))
    with pytest.raises(FileNotFoundError, match="4dcontrast"):
        m.run(tmp_path, tmp_path / "empty-cache")
    assert probed == []
