import json

import pytest

from fourdcontrast.cli import main
from fourdcontrast.downstream.config import load_finetune_config
from fourdcontrast.downstream.data import load_dataset
from fourdcontrast.downstream.segmentation import run_segmentation


@pytest.fixture(scope="module")
def one_room():
    return load_dataset("embedded", "train", rooms={"train": 1}, cache_dir=None)


@pytest.mark.slow
def test_finetuning_and_linear_probe_learn_their_training_room(one_room):
    cfg = load_finetune_config("cpu", ["optim.steps=40", "optim.bn_recalibration=4", "run.threads=2"])
    ft = run_segmentation(cfg, None, progress=False, datasets=(one_room, one_room))
    chance = 1 / 12
    assert ft.metrics.overall_accuracy > 0.5 and ft.metrics.miou > 2.5 * chance
    assert ft.rows[0]["loss"] > ft.rows[-1]["loss"]
    probe = run_segmentation(cfg.replace(model={"mode": "linear"}), None, progress=False,
                             datasets=(one_room, one_room))
    assert probe.metrics.overall_accuracy > 0.5 and probe.metrics.miou > 2 * chance
    # predictions cover every original point
    assert probe.metrics.confusion.sum() == (one_room.scenes[0].labels >= 0).sum()


def test_finetune_command_writes_metrics(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("data: {rooms: {train: 1, test: 1}, cache_dir: '', voxel_size: 0.1, crop: 3.0,"
                   " limited_points: 200}\nmodel: {backbone: MinkUNet14A, mode: linear}\n"
                   "optim: {steps: 0, probe_steps: 50}\n")
    assert main(["finetune", "--config", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert out["train_scenes"] == 1 and 0 <= out["metrics"]["oa"] <= 1
    assert "mean" in capsys.readouterr().out
