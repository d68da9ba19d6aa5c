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


def test_linear_probe_fits_on_at_most_probe_max_voxels():
    import numpy as np
    import torch

    from fourdcontrast.downstream.segmentation import train_probe
    from fourdcontrast.records import Scene

    rng = np.random.default_rng(0)
    feats = torch.as_tensor(rng.normal(size=(1000, 4)), dtype=torch.float32)
    scene = Scene(rng.uniform(0, 1, (1000, 3)).astype(np.float32), labels=rng.integers(0, 3, 1000))
    data = [(feats, np.arange(1000))]
    cfg = load_finetune_config("cpu", ["optim.probe_steps=5"])
    full = train_probe(data, [scene], 3, cfg)
    torch.testing.assert_close(full[0].mean, feats.mean(0))
    capped = train_probe(data, [scene], 3, cfg.replace(optim={"probe_max_voxels": 10}))
    keep = torch.randperm(1000, generator=torch.Generator().manual_seed(cfg.run.seed))[:10]
    torch.testing.assert_close(capped[0].mean, feats[keep].mean(0))
