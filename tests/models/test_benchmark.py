"""The engine benchmark's pieces: the generated room, the report table, the memory measurement."""

import json
import subprocess
import sys

import numpy as np
import pytest

import fourdcontrast.models.benchmark as bench


def test_benchmark_room_is_a_deterministic_surface():
    a, b = bench.room_coordinates(0.1, rng=3), bench.room_coordinates(0.1, rng=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == 4 and (a[:, 0] == 0).all()
    assert (a[:, 3] == 0).sum() > 0.3 * len(a)  # the floor is one voxel layer, not a volume
    four = bench.room_coordinates(0.1, frames=4, rng=3)
    assert four.shape[1] == 5 and set(four[:, 4].tolist()) == {0, 1, 2, 3}
    rows = [bench.Measurement("cfg", e, 10, [2.0, t], t, 10 / t, 5.0, 2, (1.0, 1.0, 1.0), "cpu", k)
            for e, t, k in (("torch", 1.0, "native"), ("minkowski", 3.0, "minkowski"))]
    table = bench.format_table(rows, {"cfg": 1e-6})
    assert "3.00x (median)" in table and "native" in table.splitlines()[1]


def test_benchmark_memory_is_what_a_forward_backward_adds():
    if not bench._reset_peak_rss():
        pytest.skip("/proc/self/clear_refs is not writable here")
    # in a fresh process, as the benchmark does: here, pages freed by earlier tests would be reused
    code = ("import json, fourdcontrast.models.benchmark as b; "
            "b.CONFIGS['tiny'] = ('MinkUNet14', 3, 0.1, 0); "
            "print(json.dumps(b.measure_memory('tiny', 'torch')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak = json.loads(proc.stdout.strip().splitlines()[-1])
    voxels = len(bench.room_coordinates(0.1))
    # at least the stem's 32-channel activations (float32) are alive at once; far below a GiB
    assert voxels * 32 * 4 / 2**20 < peak < 1024


def test_benchmark_table_reports_bf16_speed_map_share_and_strict_json():
    rows = [bench.Measurement("cfg", "torch", 10, [2.0, 2.0], 2.0, 5.0, 100.0, 2, (1.0, 1.0, 1.0), "cuda",
                              "pytorch", "fp32", 1.0, 0.8, 0.1),
            bench.Measurement("cfg", "torch", 10, [0.5, 0.5], 0.5, 20.0, 60.0, 2, (1.0, 1.0, 1.0), "cuda",
                              "pytorch", "bf16", difference_vs_fp32=0.02)]
    table = bench.format_table(rows, {})
    assert "bf16 autocast 4.00x the speed of fp32" in table and "peak memory 0.60x" in table
    assert "2.0e-02" in table and "  10.0 " in table.splitlines()[1]  # the fp32 row's map share, %
    record = bench._finite(bench.asdict(rows[1]))
    assert record["map_share"] is None and record["difference_vs_fp32"] == 0.02
    json.dumps(record, allow_nan=False)
    assert bench.kernels_of("torch", "cpu", "bf16") == "pytorch"  # no compiled kernels for bf16


def test_quick_configs_are_separate_and_small():
    assert not set(bench.QUICK_CONFIGS) & set(bench.CONFIGS)
    for name, (_, dimension, voxel, frames) in bench.QUICK_CONFIGS.items():
        coords = bench.room_coordinates(voxel, frames, rng=0)
        assert coords.shape[1] == 1 + dimension and 1000 < len(coords) < 10_000, name
