import json

import pytest
import torch

from fourdcontrast.cli import COMMANDS, build_parser, main


def test_parser_knows_every_command():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    expected = {"generate", "pretrain", "export-backbone", "benchmark", "demo", "view", "native", "finetune"}
    assert set(sub.choices) == set(COMMANDS) == expected
    assert parser.parse_args(["benchmark", "sparse", "--repeats", "2"]).repeats == 2
    assert parser.parse_args(["demo", "--scenes", "1"]).scenes == 1


def test_generation_benchmark_command_prints_the_report(capsys):
    assert main(["benchmark", "generation", "--repeats", "2", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "median ms / sequence" in out and "target <= 20" in out and "projected 1201 x 20" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_sparse_benchmark_on_cuda_without_a_gpu_is_one_clear_error(caplog):
    assert main(["benchmark", "sparse", "--device", "cuda", "--config", "MinkUNet34-3D-2cm"]) == 1
    assert "device 'cuda'" in caplog.text and "is_available() is False" in caplog.text


def test_native_command_reports_whether_the_kernels_load(capsys, monkeypatch):
    from fourdcontrast.sparse import native

    code = main(["native"])
    out = capsys.readouterr().out
    assert code == (0 if native.load() is not None else 1)
    assert ("built" in out) == (code == 0)
    if code == 0:
        monkeypatch.setenv(native.ENV_VAR, "0")
        assert main(["native"]) == 0 and "disabled by FOURDCONTRAST_NATIVE=0" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--scenes", "1", "--trajectories", "2", "--workers", "1",
            "--pretrain-steps", "2", "--finetune-steps", "2"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["generation"]["sequences"] == 2
    p = summary["pretrain"]
    assert p["steps"] == 2 and p["loss_last"] is not None and p["recall_first"] is not None
    assert all((tmp_path / "pretrain" / name).exists() for name in ("checkpoint.pt", "backbone.pth"))
    backbones = summary["features"]["backbones"]
    assert {"random", "trained"} <= set(backbones) and all(0 <= b["recall"] <= 1 for b in backbones.values())
    for path in summary["features"]["figures"].values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert 0 <= summary["finetune"]["miou"] <= 1 and summary["finetune"]["train_scenes"] >= 1
    screen = capsys.readouterr().out
    assert "feature-match recall" in screen and "summary.json" in screen
    # a second run resumes every stage instead of redoing it
    mtime = (tmp_path / "finetune" / "metrics.json").stat().st_mtime
    assert main(args) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["generation"]["sequences"] == 2
    assert (tmp_path / "finetune" / "metrics.json").stat().st_mtime == mtime
