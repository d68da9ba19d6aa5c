"""The pre-training step benchmark runs end to end (tiny sizes) and reports what the issue asks for."""

from fourdcontrast.train.benchmark import format_report, run_benchmark


def test_pretrain_step_benchmark_reports_time_memory_and_pairs():
    rows = run_benchmark("cpu-small", batch=1, steps=1, engines=["torch"],
                         overrides=["data.voxel_size_3d=0.2", "data.voxel_size_4d=0.4", "data.workers=0"])
    (row,) = rows
    assert row["engine"] == "torch" and row["batch"] == 1 and len(row["times_s"]) == 1
    assert row["step_s"] > 0 and row["sequences_per_s"] > 0 and 0 < row["data_share"] < 1
    assert row["voxels_3d"] > 1000 and row["pairs_3d"] > 0 and row["pairs_3d4d"] > 0 and row["pairs_4d"] > 0
    assert row["peak_mib"] > 0
    report = format_report(rows)
    assert "| cpu-small | torch | cpu | 1 |" in report and "sequences fit in 24 GiB" in report
