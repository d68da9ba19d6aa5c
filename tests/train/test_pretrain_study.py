"""benchmarks/pretrain_study.py: the committed CSV restores the runs' results on a fresh clone, so new
seeds add to the measured ones; the report rebuilds the same rows from them; the paired interval is
Student's with n − 1 degrees of freedom; the bf16 arm is skipped on CPUs without native bfloat16.

Mutants tried (issue 30), each killed by the test named:

- ``T975.get(n - 1, …)`` → ``T975.get(n, …)`` in ``paired_interval`` (the t quantile of n instead of n − 1
  degrees of freedom): ``test_paired_interval_is_the_t_interval_of_the_seed_paired_differences``;
- ``sd / math.sqrt(n)`` → ``sd / n``: the same test;
- pairing by position instead of by seed: the same test;
- the bf16 skip removed from ``run_one`` (``if config.run.amp and not cpu_supports_bf16()`` → ``if False``):
  ``test_the_bf16_arm_is_skipped_on_a_cpu_without_native_bfloat16``.
"""

import csv
import json
import math
from pathlib import Path

import pytest
from script_loader import load_script  # tests/script_loader.py

from fourdcontrast.downstream.stats import paired_t_interval

ROOT = Path(__file__).resolve().parents[2]


def _study():
    return load_script("benchmarks/pretrain_study.py")


def test_restore_writes_typed_results_and_keeps_existing_ones(tmp_path):
    study = _study()
    fields = study.FIELDS
    rows = [{**{f: "" for f in fields}, "arm": "motion", "seed": "1", "budget_s": "90.0", "steps": "33",
             "erank": "7.5", "probe_miou": "16.25"},
            {**{f: "" for f in fields}, "arm": "random", "seed": "0", "budget_s": "0.0", "steps": "0",
             "erank": "13.0", "probe_miou": "15.5"}]
    path = tmp_path / "study.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    existing = out / "runs" / "random-s0-b0" / "result.json"
    existing.parent.mkdir(parents=True)
    existing.write_text(json.dumps({"arm": "random", "seed": 0, "budget_s": 0.0, "erank": 99.0}))
    written = study.restore_results(path, out)
    assert written == [out / "runs" / "motion-s1-b90" / "result.json"]
    restored = json.loads(written[0].read_text())
    assert restored["seed"] == 1 and restored["steps"] == 33 and restored["budget_s"] == 90.0
    assert restored["erank"] == 7.5 and restored["recall_10cm"] is None
    assert restored["machine"] == study.RESTORED_MACHINE  # rows from before the machine column
    assert json.loads(existing.read_text())["erank"] == 99.0  # a run's own result is never replaced
    assert study.restore_results(path, out) == []  # idempotent
    assert {r["arm"] for r in study.read_results(out)} == {"motion", "random"}


def test_the_committed_study_csv_restores_every_row(tmp_path):
    study = _study()
    committed = ROOT / "benchmarks" / "results" / "pretrain_study.csv"
    with open(committed, newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    assert len(study.restore_results(committed, tmp_path)) == n > 0


def test_runs_are_grouped_and_paired_by_machine(tmp_path):
    """A CPU second is not the same work everywhere: rows of another machine than the reference get their
    own group, and the Δ vs paper-literal pairs runs of one machine only."""
    study = _study()
    assert study.machine_tag("Intel(R) Xeon(R) Processor") == "xeon"
    assert study.machine_tag("AMD EPYC 7B13") == "epyc"
    assert study.machine_tag(None) == "xeon"  # restored rows
    assert study.group_label({"arm": "cosine", "machine": "AMD EPYC"}) == "cosine @epyc"
    assert study.group_label({"arm": "cosine", "machine": "Intel(R) Xeon(R) Processor"}) == "cosine"
    assert study.group_label({"arm": "random", "machine": "AMD EPYC"}) == "random"
    # the same arm and seed on two machines: two folders
    xeon_dir = study.run_folder(tmp_path, "cosine", 1, 90.0, "Intel(R) Xeon(R) Processor")
    epyc_dir = study.run_folder(tmp_path, "cosine", 1, 90.0, "AMD EPYC")
    assert xeon_dir.name == "cosine-s1-b90" and epyc_dir.name == "cosine-s1-b90-epyc"

    def row(arm, seed, machine, probe):
        return {"arm": arm, "seed": seed, "machine": machine, "budget_s": 90.0, "steps": 10, "erank": 5.0,
                "recall_10cm": 0.01, "recall_20cm": 0.02, "probe_miou": probe, "probe_miou_objects": 5.0}

    xeon, epyc = "Intel(R) Xeon(R) Processor", "AMD EPYC"
    rows = [row("random", s, xeon, 15.0) for s in (0, 1)]
    rows += [row("paper-literal", 0, xeon, 15.0), row("paper-literal", 1, epyc, 16.0),
             row("cosine", 0, xeon, 17.0), row("cosine", 1, epyc, 19.0)]
    md = study.write_report(rows, results=tmp_path).read_text()
    assert "| cosine | 90 | 1 |" in md and "| cosine @epyc | 90 | 1 |" in md
    assert "| +2.00 (n=1) | +2.00 (n=1) |" in md  # xeon: 17 − 15 vs random, 17 − 15 vs paper-literal
    assert "| +4.00 (n=1) | +3.00 (n=1) |" in md  # epyc: 19 − 15 vs random, 19 − 16 vs its own paper-literal
    with open(tmp_path / "pretrain_study.csv", newline="") as f:
        assert {r["machine"] for r in csv.DictReader(f)} == {xeon, epyc}


def test_targets_are_reported_per_machine_against_pointcontrast_of_that_machine(tmp_path):
    """The issue's targets get one table per (machine, budget); PointContrast is paired with the
    recommended preset on the same machine only."""
    study = _study()
    xeon, epyc = "Intel(R) Xeon(R) Processor", "AMD EPYC"

    def row(arm, seed, machine, probe, budget=300.0, erank=9.0, recall=0.1):
        return {"arm": arm, "seed": seed, "machine": machine, "budget_s": budget, "steps": 10, "erank": erank,
                "recall_10cm": 0.01, "recall_20cm": recall, "probe_miou": probe, "probe_miou_objects": 5.0}

    rows = [row("random", s, xeon, 15.0, budget=0.0, erank=12.0, recall=0.02) for s in (0, 1)]
    rows += [row("recommended", s, xeon, 20.0 + s) for s in (0, 1)]
    rows += [row("pointcontrast", s, xeon, 19.0 + 0.5 * s) for s in (0, 1)]  # xeon: +1.0 and +1.5
    rows += [row("recommended", s, epyc, 18.0 + s, erank=7.0, recall=0.06) for s in (0, 1)]
    rows += [row("pointcontrast", s, epyc, 21.0 + s) for s in (0, 1)]  # epyc: −3 on both seeds
    md = study.write_report(rows, results=tmp_path).read_text()
    xeon_part = md.split("5 minutes of one core, xeon machine")[1].split("## ")[0]
    epyc_part = md.split("5 minutes of one core, epyc machine")[1].split("## ")[0]
    d = paired_t_interval([1.0, 1.5])  # the interval includes 0: met on the mean, not significantly
    assert f"Δ = +1.25 [{d.low:+.2f}, {d.high:+.2f}] (n = 2)" in xeon_part and d.low < 0 < d.high
    assert "**met** (interval includes 0)" in xeon_part
    assert "Δ = -3.00 [-3.00, -3.00] (n = 2)" in epyc_part
    assert "| 7.00 ± 0.00 (n = 2; per seed 7.00, 7.00) | **not met** |" in epyc_part
    assert "| 3.0× ± 0.0 | **not met** |" in epyc_part and "| 5.0× ± 0.0 | **met** |" in xeon_part


def test_paired_interval_is_the_t_interval_of_the_seed_paired_differences():
    """Data with spread, paired by seed (not by position; unpaired seeds dropped), against the paired t
    interval of :mod:`fourdcontrast.downstream.stats` (scipy's t quantile, n − 1 degrees of freedom) for
    every n the study has had (2-6 seeds)."""
    study = _study()
    diffs = [1.0, 2.5, 4.0, 0.5, -1.5, 3.25]
    base = [10.0, 12.0, 9.0, 11.5, 13.0, 8.0]
    for n in range(2, 7):
        a = [{"seed": s, "probe_miou": base[s] + diffs[s]} for s in reversed(range(n))]  # another order
        b = [{"seed": s, "probe_miou": base[s]} for s in range(n)] + [{"seed": 99, "probe_miou": 0.0}]
        m, lo, hi, k = study.paired_interval(a, b, "probe_miou")
        ref = paired_t_interval(diffs[:n])
        assert k == n and m == pytest.approx(ref.mean)
        assert (lo, hi) == (pytest.approx(ref.low, abs=2e-3), pytest.approx(ref.high, abs=2e-3)), n
    # n = 3 by hand: differences 1, 2.5, 4: mean 2.5, sd 1.5, t(0.975, 2 df) = 4.303
    m, lo, hi, n = study.paired_interval([{"seed": s, "x": v} for s, v in enumerate((1.0, 2.5, 4.0))],
                                         [{"seed": s, "x": 0.0} for s in range(3)], "x")
    half = 4.303 * 1.5 / math.sqrt(3)
    assert (m, n) == (2.5, 3) and lo == pytest.approx(2.5 - half) and hi == pytest.approx(2.5 + half)
    one = study.paired_interval([{"seed": 0, "x": 1.0}], [{"seed": 0, "x": 0.0}, {"seed": 1, "x": 0.0}], "x")
    assert one[0] == 1.0 and math.isnan(one[1]) and math.isnan(one[2]) and one[3] == 1


def test_the_bf16_arm_is_skipped_on_a_cpu_without_native_bfloat16(tmp_path, monkeypatch, capsys):
    """Without native bfloat16, ``run.amp`` would silently train in float32 (another arm): ``run_one``
    returns no row, pre-trains nothing and writes no folder; with it, the arm pre-trains with amp on."""
    import fourdcontrast.train.pretrain as tp

    study = _study()
    called = []

    class Started(Exception):
        pass

    def fake_pretrain(config, out, **kwargs):
        called.append(config.run.amp)
        raise Started

    monkeypatch.setattr(tp, "pretrain", fake_pretrain)
    monkeypatch.setattr(tp, "cpu_supports_bf16", lambda: False)
    assert study.run_one("bf16", study.ARMS, 0, 90.0, tmp_path, None, None) == {}
    assert called == [] and not (tmp_path / "runs").exists()
    assert "skipping bf16 seed 0" in capsys.readouterr().out
    with pytest.raises(Started):  # another arm on the same CPU is not skipped
        study.run_one("cosine", study.ARMS, 0, 90.0, tmp_path, None, None)
    monkeypatch.setattr(tp, "cpu_supports_bf16", lambda: True)
    with pytest.raises(Started):
        study.run_one("bf16", study.ARMS, 0, 90.0, tmp_path, None, None)
    assert called == [False, True]
