"""Issue 18 in the loop: the effective-rank monitor in log.csv, the collapse warning and stop, the time
budget, the cosine schedule and bfloat16 autocast on the CPU."""

import logging
import math

import pytest
import torch
from tiny import tiny_dict

from fourdcontrast.metrics import COLLAPSE_RANK_FRACTION
from fourdcontrast.train.checkpoint import load_checkpoint
from fourdcontrast.train.config import config_from_dict
from fourdcontrast.train.pretrain import (
    CHECKPOINT,
    CSV_FIELDS,
    collapse_message,
    cpu_supports_bf16,
    learning_rate,
    pretrain,
)


def test_log_has_effective_ranks_and_budget(tmp_path):
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 2}))
    rows = pretrain(config, tmp_path, progress=False)
    for key in ("erank_backbone_3d", "erank_z3d", "erank_backbone_4d", "erank_z4d", "budget_s",
                "holdout_erank", "object_pairs_3d"):
        assert key in CSV_FIELDS
    trained = [r for r in rows if r["loss"] is not None]
    d = config.method_config().feature_dim
    assert all(1.0 <= r["erank_backbone_3d"] <= d and 1.0 <= r["erank_z3d"] <= d for r in trained)
    assert all(r["erank_backbone_4d"] >= 1.0 for r in trained)
    assert rows[0]["holdout_erank"] is not None and rows[0]["holdout_erank"] > 1.0
    budgets = [r["budget_s"] for r in trained]
    assert all(b > 0 for b in budgets) and budgets == sorted(budgets)


def test_collapse_message_names_the_ranks_below_the_fraction():
    config = config_from_dict(tiny_dict())  # feature_dim 16: limit 1.6
    assert COLLAPSE_RANK_FRACTION == 0.1
    healthy = {"step": 5, "erank_backbone_3d": 6.0, "erank_z3d": 4.0, "std_z3d": 0.2}
    assert collapse_message(healthy, config) is None
    low = {"step": 5, "erank_backbone_3d": 1.2, "erank_z3d": 4.0, "std_z3d": 0.24}
    message = collapse_message(low, config)
    assert "erank_backbone_3d 1.20" in message and "erank_z3d" not in message and "1.6" in message


def test_stop_on_collapse_stops_and_checkpoints(tmp_path, caplog):
    # a fraction of 1: any rank below d counts as collapse, so the run stops at its first logged step
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 4},
                                        run={"collapse_rank_fraction": 1.0, "stop_on_collapse": True,
                                             "log_every": 1, "recall_every": 0, "device": "cpu"}))
    with caplog.at_level(logging.WARNING):
        rows = pretrain(config, tmp_path, progress=False)
    assert [r["step"] for r in rows] == [1]
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 1
    assert any("dimensional collapse" in r.message and "stopping" in r.message for r in caplog.records)
    # without the flag the same run warns and goes on
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 2},
                                        run={"collapse_rank_fraction": 1.0, "log_every": 1, "recall_every": 0,
                                             "device": "cpu"}))
    rows = pretrain(config, tmp_path / "go-on", progress=False)
    assert [r["step"] for r in rows] == [1, 2]


def test_time_budget_ends_the_run_and_is_kept_across_resume(tmp_path):
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 1000},
                                        run={"time_budget_s": 1e-6, "budget_clock": "wall", "log_every": 1,
                                             "recall_every": 0, "device": "cpu"}))
    rows = pretrain(config, tmp_path, progress=False)
    assert [r["step"] for r in rows] == [1]  # the first step spends the whole budget
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["step"] == 1 and state["budget_spent"] >= 1e-6
    with pytest.raises(ValueError):
        config_from_dict(tiny_dict(run={"budget_clock": "sundial"}))
    with pytest.raises(ValueError):
        config_from_dict(tiny_dict(run={"time_budget_s": 0}))


def test_cosine_schedule_warms_up_and_follows_the_budget():
    config = config_from_dict(tiny_dict(optim={"lr": 0.1, "steps": 100, "schedule": "cosine",
                                               "warmup_fraction": 0.1}))
    assert learning_rate(config, 5) == pytest.approx(0.05)  # half-way through the warm-up
    assert learning_rate(config, 10) == pytest.approx(0.1)
    assert learning_rate(config, 55) == pytest.approx(0.05)  # half-way through the cosine
    assert learning_rate(config, 100) == pytest.approx(0.0, abs=1e-12)
    budgeted = config_from_dict(tiny_dict(optim={"lr": 0.1, "steps": 10**6, "schedule": "cosine"},
                                          run={"time_budget_s": 60.0}))
    assert learning_rate(budgeted, 3, budget_spent=30.0) == pytest.approx(0.05)
    assert learning_rate(budgeted, 3, budget_spent=60.0) == pytest.approx(0.0, abs=1e-12)
    step = config_from_dict(tiny_dict(optim={"lr": 0.1}))
    assert learning_rate(step, 5, budget_spent=1e9) == pytest.approx(0.1)  # the paper's schedule ignores it
    with pytest.raises(ValueError):
        config_from_dict(tiny_dict(optim={"schedule": "linear"}))


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_autocast_on_the_cpu_trains_one_step(tmp_path):
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 1},
                                        run={"amp": True, "recall_every": 0, "device": "cpu"}))
    rows = pretrain(config, tmp_path, progress=False)
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"])
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_collapse_warning_is_logged_once_per_onset(tmp_path, caplog):
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 3},
                                        run={"collapse_rank_fraction": 1.0, "log_every": 1, "recall_every": 0,
                                             "device": "cpu"}))
    with caplog.at_level(logging.WARNING):
        rows = pretrain(config, tmp_path, progress=False)
    assert len(rows) == 3
    assert sum("dimensional collapse" in r.message for r in caplog.records) == 1


def test_crop_size_trains_one_step_on_smaller_sequences(tmp_path):
    """data.crop_size (batch variety): a step over cropped sequences runs, and holds fewer 3D voxels per
    sequence than the same step over whole rooms."""
    from fourdcontrast.data.dataset import collate_sequences
    from fourdcontrast.train.pretrain import make_dataset

    config = config_from_dict(tiny_dict(data={"crop_size": 1.5}, optim={"lr": 0.05, "steps": 1},
                                        run={"recall_every": 0, "device": "cpu"}))
    rows = pretrain(config, tmp_path, progress=False)
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"])
    whole = config_from_dict(tiny_dict())
    cropped, full = make_dataset(config)[0], make_dataset(whole)[0]
    assert len(collate_sequences([cropped]).coords_3d) < len(collate_sequences([full]).coords_3d)
