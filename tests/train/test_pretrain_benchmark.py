"""The pre-training step benchmark runs end to end (tiny sizes) and reports what the issues ask for."""

from fourdcontrast.train.benchmark import SWITCHES, format_report, run_benchmark

TINY = ["data.voxel_size_3d=0.2", "data.voxel_size_4d=0.4", "data.workers=0"]


def test_pretrain_step_benchmark_reports_time_memory_and_pairs():
    rows = run_benchmark("cpu-small", batch=1, steps=1, engines=["torch"], overrides=TINY)
    (row,) = rows
    assert row["engine"] == "torch" and row["batch"] == 1 and len(row["times_s"]) == 1
    assert row["step_s"] > 0 and row["sequences_per_s"] > 0 and 0 < row["data_share"] < 1
    assert row["voxels_3d"] > 1000 and row["pairs_3d"] > 0 and row["pairs_3d4d"] > 0 and row["pairs_4d"] > 0
    assert row["peak_mib"] > 0 and row["base_mib"] > 0 and row["switches"] == "none"
    report = format_report(rows)
    assert "| cpu-small | torch | none | cpu | 1 |" in report and "largest batch in 24 GiB" in report


def test_pretrain_step_benchmark_runs_the_memory_switches_at_several_batches():
    rows = run_benchmark("cpu-small", batch=[1, 2], steps=0, engines=["torch"], overrides=TINY,
                         switches=["none", "recompute+compact+ckpt-all-but-dec4"])
    assert [(r["switches"], r["batch"]) for r in rows] == [
        ("none", 1), ("none", 2), ("recompute+compact+ckpt-all-but-dec4", 1),
        ("recompute+compact+ckpt-all-but-dec4", 2)]
    # the switches change memory and time, not the computation: same loss on the same batch
    assert abs(rows[0]["loss"] - rows[2]["loss"]) < 1e-5 and abs(rows[1]["loss"] - rows[3]["loss"]) < 1e-5
    report = format_report(rows)
    assert "| recompute+compact+ckpt-all-but-dec4 | cpu | 2 |" in report
    assert "fit over batches 1-2" in report
    assert set(SWITCHES) >= {"none", "recompute", "compact", "ckpt-all"}


def test_interleaved_timing_takes_every_setting_each_round():
    from fourdcontrast.train.benchmark import format_interleaved, run_interleaved

    result = run_interleaved("cpu-small", 1, ["none", "ckpt-all"], rounds=2, overrides=TINY)
    assert set(result["times_s"]) == {"none", "ckpt-all"}
    assert all(len(ts) == 2 and min(ts) > 0 for ts in result["times_s"].values())
    table = format_interleaved(result)
    assert "| none |" in table and "| ckpt-all |" in table and "2 rounds" in table


def test_the_fused_loss_setting_switches_the_losses_and_keeps_the_loss():
    """``fused-loss`` sets ``model.fused_pair_losses`` (every other setting turns it off); on the paper's
    SimSiam losses the step's loss is the unswitched one."""
    assert "model.fused_pair_losses=true" in SWITCHES["fused-loss"]
    assert "model.fused_pair_losses=false" in SWITCHES["recompute"]
    rows = run_benchmark("cpu-small", batch=1, steps=0, engines=["torch"],
                         overrides=[*TINY, "method=4dcontrast"], switches=["none", "fused-loss"])
    assert [r["switches"] for r in rows] == ["none", "fused-loss"]
    assert abs(rows[0]["loss"] - rows[1]["loss"]) < 1e-5


def test_backbone_mode_measures_each_engine_and_compares_with_minkowski_in_the_same_run():
    """``--backbone``: our engine with each switch, MinkowskiEngine unswitched (where it imports); the table
    compares with ME measured in the same run, else with its recorded peak."""
    import pytest

    from fourdcontrast.sparse.backend import minkowski_engine
    from fourdcontrast.train.benchmark import format_backbone, measure_backbone, run_backbone

    rows = run_backbone("MinkUNet14-4D-25cm", ["none", "recompute+compact+ckpt-all"], repeats=0)
    assert [(r["engine"], r["switches"]) for r in rows] == [("torch", "none"),
                                                            ("torch", "recompute+compact+ckpt-all")]
    assert all(r["voxels"] > 100 and r["peak_mib"] > 0 for r in rows)
    table = format_backbone(rows)
    assert "| MinkUNet14-4D-25cm | torch | recompute+compact+ckpt-all |" in table and "n/a" in table
    fake_me = {**rows[0], "engine": "minkowski", "peak_mib": 2 * rows[0]["peak_mib"], "step_s": 1.0}
    assert "0.50x (same run" in format_backbone([rows[0], fake_me])
    with pytest.raises(ValueError, match="need our engine"):
        measure_backbone("MinkUNet14-4D-25cm", "recompute", engine="minkowski")
    if minkowski_engine() is not None:
        me = run_backbone("MinkUNet14-4D-25cm", ["none", "recompute"], repeats=0, engines=["minkowski"])
        assert [(r["engine"], r["switches"]) for r in me] == [("minkowski", "none")]
