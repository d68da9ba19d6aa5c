"""An output folder that holds a run is never overwritten by accident: the rules of
fourdcontrast.train.run_folder, and `fourdcontrast pretrain` refusing, resuming and overwriting a real
(tiny) run. "Unchanged" is checked by content hashes of every file, never by modification times."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from tiny import TINY

from fourdcontrast.cli import main
from fourdcontrast.errors import InputError, RunFolderError
from fourdcontrast.train.checkpoint import load_checkpoint
from fourdcontrast.train.config import config_from_dict
from fourdcontrast.train.pretrain import pretrain, read_log
from fourdcontrast.train.run_folder import FINETUNE_RUN, PRETRAIN_RUN, find_run, prepare_run_folder


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny pre-training (4 steps, checkpoint at step 4) and its config file; copied per test."""
    root = tmp_path_factory.mktemp("pretrain")
    pretrain(config_from_dict(TINY, "tiny"), root / "run", progress=False)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return root


@pytest.fixture
def run(tmp_path, finished_run):
    shutil.copytree(finished_run / "run", tmp_path / "run")
    shutil.copy(finished_run / "tiny.yaml", tmp_path / "tiny.yaml")
    return tmp_path / "run"


def cli(run: Path, *extra: str) -> int:
    return main(["pretrain", "--config", str(run.parent / "tiny.yaml"), "--out", str(run), "--no-progress",
                 *extra])


# --- the rules ------------------------------------------------------------------------------------
def test_an_empty_or_missing_folder_holds_no_run(tmp_path):
    assert find_run(tmp_path / "missing", PRETRAIN_RUN) is None
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "config.yaml").write_text("a config of the user's, not a run")
    assert find_run(tmp_path, PRETRAIN_RUN) is None
    assert prepare_run_folder(tmp_path, PRETRAIN_RUN) is None  # nothing to refuse


def test_a_log_without_checkpoint_is_a_run_that_cannot_be_resumed(tmp_path):
    (tmp_path / "log.csv").write_text("step,loss\n0,\n1,0.5\n2,0.25\n")
    info = find_run(tmp_path, PRETRAIN_RUN)
    assert info.step == 2 and info.files == ["log.csv"] and not info.finished
    with pytest.raises(RunFolderError, match="already holds a pre-training run") as refused:
        prepare_run_folder(tmp_path, PRETRAIN_RUN)
    assert str(tmp_path) in str(refused.value) and "at step 2" in str(refused.value)
    with pytest.raises(RunFolderError, match="nothing to resume: no checkpoint.pt") as no_ckpt:
        prepare_run_folder(tmp_path, PRETRAIN_RUN, resume=True)
    assert "unfinished" in str(no_ckpt.value) and "--overwrite" in str(no_ckpt.value)


def test_overwrite_removes_the_runs_files_only(tmp_path):
    for name in ("checkpoint.pt", "log.csv", "config.yaml", "checkpoint.pt.x1y2.tmp", ".log.csv.abc.csv"):
        (tmp_path / name).write_bytes(b"old run")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    info = prepare_run_folder(tmp_path, PRETRAIN_RUN, overwrite=True)
    assert info.step is None  # "old run" is no checkpoint: its step is unknown, it is still a run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_overwrite_on_another_process_removes_nothing(tmp_path):
    (tmp_path / "log.csv").write_text("step\n0\n")
    prepare_run_folder(tmp_path, PRETRAIN_RUN, overwrite=True, remove=False)
    assert (tmp_path / "log.csv").exists()


def test_resume_and_overwrite_exclude_each_other_and_a_file_is_no_folder(tmp_path):
    with pytest.raises(InputError, match="exclude each other"):
        prepare_run_folder(tmp_path, PRETRAIN_RUN, resume=True, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not an output folder"):
        prepare_run_folder(tmp_path / "file", PRETRAIN_RUN)


def test_a_finished_finetuning_is_resumed_by_keeping_it(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(RunFolderError, match="fine-tuning run .*--resume to keep its results"):
        prepare_run_folder(tmp_path, FINETUNE_RUN)
    assert prepare_run_folder(tmp_path, FINETUNE_RUN, resume=True).finished


# --- `fourdcontrast pretrain` on a real run ---------------------------------------------------------
def test_pretrain_refuses_a_folder_that_holds_a_run_and_changes_nothing(run, capsys):
    before = snapshot(run)
    assert cli(run) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fourdcontrast: error: ")
    assert str(run) in err and "at step 4" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert snapshot(run) == before  # by content, every file
    # the same with a config that differs (another length): still refused, still untouched
    assert cli(run, "--set", "optim.steps=9") == 2
    assert snapshot(run) == before


def test_pretrain_resume_continues_the_run(run, capsys):
    rows = read_log(run / "log.csv")
    assert cli(run, "--resume", "--set", "optim.steps=5") == 0
    resumed = read_log(run / "log.csv")
    assert resumed[: len(rows)] == rows and [r["step"] for r in resumed][-2:] == [4, 5]
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 5


def test_pretrain_overwrite_starts_again_and_keeps_nothing(run):
    (run / "checkpoint.pt.dead.tmp").write_bytes(b"interrupted write of the old run")
    (run / "notes.txt").write_text("the user's")
    assert cli(run, "--overwrite", "--set", "optim.steps=1") == 0
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 1  # a new run, not the old step 4
    assert [r["step"] for r in read_log(run / "log.csv")] == [0, 1]  # none of the old rows
    assert not (run / "checkpoint.pt.dead.tmp").exists()
    assert (run / "notes.txt").read_text() == "the user's"


def test_pretrain_resume_without_checkpoint_names_the_folder(tmp_path, finished_run, capsys):
    shutil.copy(finished_run / "tiny.yaml", tmp_path / "tiny.yaml")
    typo = tmp_path / "rnu"
    assert cli(typo, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(typo) in err and "nothing to resume" in err
    assert not typo.exists()  # no new run started there


def test_pretrain_resume_from_a_truncated_checkpoint_is_one_line(run, capsys):
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    before = snapshot(run)
    assert cli(run, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / "checkpoint.pt") in err and "not a readable" in err
    assert snapshot(run) == before


def test_pretrain_resume_and_overwrite_together_is_a_usage_error(run, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(run, "--resume", "--overwrite")
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
