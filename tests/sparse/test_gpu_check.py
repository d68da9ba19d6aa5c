"""scripts/gpu_check.sh end to end on the CPU (--device cpu --quick), so it is known to run before it ever
meets a GPU: every stage leaves its entry in the results file and its figures in the JSON beside it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
STUB = """import json, sys
json.dump(sys.argv[1:], open({args!r}, "w"))
print("pre-training step stub: ok")
sys.exit({status})
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_check(tmp_path, *args, status=0, script=True, env=None):
    """Run the check with a stand-in pre-training script: (process, results text, figures, stub args)."""
    out = tmp_path / "out"
    stub, stub_args = tmp_path / "pretrain_stub.py", tmp_path / "stub_args.json"
    stub.write_text(STUB.format(args=str(stub_args), status=status))
    full_env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable,
                "GPU_CHECK_PRETRAIN_SCRIPT": str(stub if script else tmp_path / "missing.py"), **(env or {})}
    full_env.pop("PYTHONPATH", None)  # the script sets it to the repository itself
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=300)
    text = (out / "gpu_check.txt").read_text()
    figures = json.loads((out / "gpu_check.json").read_text())
    received = json.loads(stub_args.read_text()) if stub_args.exists() else None
    return proc, text, figures, received


@pytest.mark.slow
def test_gpu_check_runs_every_stage_on_the_cpu(tmp_path):
    proc, text, figures, received = run_check(tmp_path, "--device", "cpu", "--quick")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    configs = ["MinkUNet14-3D-10cm", "MinkUNet14-4D-25cm"]
    stages = ["environment", "engine tests (cpu)", *(f"benchmark {c}" for c in configs), "pretraining step"]
    for name in stages:
        assert f"== {name}: ok in " in text, name
    assert "== summary" in text and "SOME STAGES FAILED" not in text
    assert "passed" in text and "cuda_available: " in text and "packages_missing: " in text
    assert [s["stage"] for s in figures["stages"]] == stages
    assert figures["passed"] and figures["device"] == "cpu" and figures["quick"]
    assert figures["environment"]["torch"] == torch.__version__
    assert figures["environment"]["smoke_conv"]["device"] == "cpu"
    for config in configs:
        f = figures["benchmark"][config]
        assert f["voxels"] > 1000
        for p in ("fp32", "bf16"):
            assert f[f"{p}_s_per_forward_backward"] > 0 and f[f"{p}_voxels_per_s"] > 0
            assert 0 <= f[f"{p}_map_share"] < 1
        assert f["bf16_over_fp32_speed"] > 0 and 0 < f["bf16_output_difference_vs_fp32"] < 0.5
    precisions = {(r["name"], r["precision"]) for r in figures["benchmark_rows"]}
    assert precisions == {(c, p) for c in configs for p in ("fp32", "bf16")}
    assert received == ["--device", "cpu", "--preset", "cpu-small", "--batch", "1", "--steps", "1",
                        "--engines", "torch", "--set", "data.voxel_size_3d=0.2",
                        "--set", "data.voxel_size_4d=0.4"]
    assert figures["total_seconds"] < 480


def test_gpu_check_records_a_missing_pretraining_script_as_skipped(tmp_path):
    proc, text, figures, received = run_check(tmp_path, "--device", "cpu", "--stages", "pretrain",
                                              script=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pretraining step: skipped: " in text and "missing.py not present" in text
    assert figures["stages"] == [{"stage": "pretraining step", "status": "skipped", "seconds": 0.0,
                                  "detail": f"{tmp_path / 'missing.py'} not present"}]
    assert received is None


def test_gpu_check_records_failures_and_timeouts_and_goes_on(tmp_path):
    # without CUDA, --device cuda fails the environment stage; the next stage still runs
    proc, text, figures, received = run_check(
        tmp_path, "--device", "cpu" if torch.cuda.is_available() else "cuda", "--stages", "env,pretrain",
        status=3)
    assert proc.returncode == 1
    statuses = {s["stage"]: s["status"] for s in figures["stages"]}
    assert statuses["pretraining step"] == "failed (exit 3)" and received is not None
    if not torch.cuda.is_available():
        assert statuses["environment"] == "failed (exit 1)" and "sees no CUDA device" in text
    assert "SOME STAGES FAILED" in text and not figures["passed"]
    # a stage that runs past its time is stopped and recorded as timed out
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time; time.sleep(60)\n")
    proc, text, figures, _ = run_check(tmp_path, "--device", "cpu", "--stages", "pretrain",
                                       env={"GPU_CHECK_PRETRAIN_SCRIPT": str(sleeper),
                                            "GPU_CHECK_T_PRETRAIN": "2"})
    assert proc.returncode == 1 and figures["stages"][0]["status"] == "timed out"
    assert figures["stages"][0]["seconds"] < 30
