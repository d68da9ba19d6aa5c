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


# --- errors for people: one line, exit status 2, no traceback (--debug shows it) --------------------
def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fourdcontrast: error: "), err
    assert "Traceback" not in err
    return err


def content(folder) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args,expected", [
    (["pretrain", "--config", "nosuch"], ["nosuch: no such config file", "cpu-small", "paper"]),
    (["finetune", "--config", "nosuch"], ["nosuch: no such config file", "cpu"]),
    (["pretrain", "--set", "optim.lrr=0.1"],
     ["cpu-small.yaml (--set optim.lrr=0.1)", "unknown field(s) ['lrr']", "section 'optim'"]),
    (["pretrain", "--set", "optim.lr=abc"], ["(--set optim.lr=abc)", "optim.lr must be a number, got 'abc'"]),
    (["pretrain", "--set", "run.amp=1"], ["run.amp must be true or false, got 1"]),
    (["pretrain", "--set", "optim.lr=-1"], ["optim.lr must be > 0, got -1"]),
    (["pretrain", "--set", "data.length=1"], ["data.length must be >= 2, got 1"]),
    (["finetune", "--set", "augment.scale=[1]"],
     ["(--set augment.scale=[1])", "augment.scale must be a list of 2"]),
    (["finetune", "--set", "data.limited_scenes=0"], ["data.limited_scenes must be in (0, 1], got 0"]),
    (["pretrain", "--set", "optim.lr"], ["--set expects key=value"]),
])
def test_config_errors_are_one_line_with_status_2(tmp_path, capsys, args, expected):
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = error_line(capsys)
    assert all(e in err for e in expected), err
    assert not (tmp_path / "out").exists()  # nothing started


def test_debug_shows_the_traceback_and_internal_errors_keep_theirs(tmp_path, monkeypatch):
    from fourdcontrast.errors import ConfigError
    from fourdcontrast.train import pretrain

    with pytest.raises(ConfigError, match="optim.lr must be a number"):
        main(["pretrain", "--set", "optim.lr=abc", "--out", str(tmp_path / "a"), "--debug"])
    with pytest.raises(ConfigError):
        main(["--debug", "pretrain", "--set", "optim.lr=abc", "--out", str(tmp_path / "a")])

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user's mistake")

    monkeypatch.setattr(pretrain, "pretrain", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["pretrain", "--set", "optim.steps=1", "--out", str(tmp_path / "b")])


def test_pretrain_checks_the_shards_folder_before_starting(tmp_path, capsys):
    missing = tmp_path / "no-shards"
    args = ["pretrain", "--set", "data.source=shards", "--set", f"data.shards={missing}",
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = error_line(capsys)
    assert f"data.shards = '{missing}'" in err and "no such folder" in err and "fourdcontrast generate" in err
    missing.mkdir()
    assert main(args) == 2
    assert "no manifest.json" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_export_backbone_of_a_missing_or_truncated_checkpoint(tmp_path, capsys):
    assert main(["export-backbone", str(tmp_path / "none.pt"), str(tmp_path / "b.pth")]) == 2
    assert f"{tmp_path / 'none.pt'}: no such checkpoint" in error_line(capsys)
    checkpoint = {"format": "fourdcontrast-pretrain-1", "step": 1, "model": {}, "config": {}}
    torch.save(checkpoint, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    assert main(["export-backbone", str(tmp_path / "c.pt"), str(tmp_path / "b.pth")]) == 2
    assert f"{tmp_path / 'c.pt'}: not a readable checkpoint" in error_line(capsys)
    assert not (tmp_path / "b.pth").exists()


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if a fine-tuning command starts making or reading rooms."""
    from fourdcontrast.downstream import training

    def forbidden(*args, **kwargs):
        raise AssertionError("the data were loaded before the inputs were checked")

    monkeypatch.setattr(training, "datasets", forbidden)


def test_finetune_checks_the_init_file_before_making_any_room(tmp_path, capsys, no_data):
    out = tmp_path / "out"
    assert main(["finetune", "--set", "model.init=/missing.pth", "--out", str(out)]) == 2
    err = error_line(capsys)
    assert "model.init = '/missing.pth': no such file" in err and "export-backbone" in err
    truncated = tmp_path / "backbone.pth"
    torch.save({"conv.kernel": torch.zeros(27, 3, 8)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert main(["finetune", "--set", f"model.init={truncated}", "--out", str(out)]) == 2
    err = error_line(capsys)
    assert f"model.init = '{truncated}': not a readable state dict" in err
    assert not out.exists()


def test_finetune_checks_the_data_folder_before_starting(tmp_path, capsys, no_data):
    root = tmp_path / "scannet"
    args = ["finetune", "--set", "data.dataset=scannet", "--set", f"data.scannet_root={root}",
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert f"data.scannet_root = '{root}': no such folder" in error_line(capsys)
    (root / "scans").mkdir(parents=True)
    assert main(args) == 2
    assert "split file scannetv2_train.txt missing" in error_line(capsys)


FINISHED_FINETUNING = {"config": {"model": {"mode": "linear"}, "data": {"eval_split": "test"}},
                       "metrics": {"miou": 0.25, "macc": 0.5, "oa": 0.75}}


def test_finetune_refuses_a_folder_that_holds_a_run(tmp_path, capsys, no_data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps(FINISHED_FINETUNING))
    (out / "model.pt").write_bytes(b"weights")
    before = content(out)
    assert main(["finetune", "--out", str(out)]) == 2
    err = error_line(capsys)
    assert str(out) in err and "fine-tuning run" in err and "--resume" in err and "--overwrite" in err
    assert content(out) == before
    # --resume keeps it: prints its metrics, runs nothing, changes nothing
    assert main(["finetune", "--out", str(out), "--resume"]) == 0
    assert "mIoU 25.0, mAcc 50.0, OA 75.0" in capsys.readouterr().out
    assert content(out) == before
    assert main(["finetune", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume: no metrics.json" in error_line(capsys)


def test_finetune_overwrite_replaces_the_old_run(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("data: {rooms: {train: 1, test: 1}, cache_dir: '', voxel_size: 0.2, crop: 3.0,"
                   " limited_points: 50}\nmodel: {backbone: MinkUNet14A, mode: linear}\n"
                   "optim: {steps: 0, probe_steps: 5}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps(FINISHED_FINETUNING))
    (out / "log.csv").write_text("step,loss,lr\n0,1.0,0.1\n")  # the old run's; a probe writes no log
    assert main(["finetune", "--config", str(cfg), "--out", str(out), "--overwrite", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_scenes"] == 1 and metrics["metrics"] != FINISHED_FINETUNING["metrics"]
    assert not (out / "log.csv").exists()  # nothing of the old run is kept
