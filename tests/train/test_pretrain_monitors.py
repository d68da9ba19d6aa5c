"""Issue 18 in the loop: the effective-rank monitor in log.csv, the collapse warning (once per onset, again
after a recovery) and stop, the time budget (process clock, kept across --resume), the cosine schedule and
bfloat16 autocast on the CPU.

Mutants tried (issue 30), each killed by the test named:

- ``budget_spent = float(state.get("budget_spent", 0.0))`` → ``budget_spent = 0.0`` (the budget not
  restored on ``--resume``): ``test_time_budget_is_kept_across_resume_and_ends_the_resumed_run``;
- ``BudgetClock`` reading ``time.perf_counter`` for ``"process"``:
  ``test_the_process_budget_clock_ignores_sleep`` and the resume test (sleeping data);
- ``warned = message is not None`` → ``warned = warned or message is not None`` (the warning never
  re-armed): ``test_collapse_warning_rearms_after_a_recovery``;
- ``autocast_context`` returning ``contextlib.nullcontext()`` on the CPU (bf16 silently float32):
  ``test_bf16_autocast_runs_the_convolutions_in_bfloat16``;
- the held-out effective rank of a part of the features (``effective_rank(feats[:, :8], …)`` in
  ``holdout_row``): ``test_log_has_effective_ranks_and_budget`` (the former ``holdout_erank > 1`` held).
"""

import logging
import math
import time

import pytest
import torch
from tiny import tiny_dict

import fourdcontrast.train.pretrain as tp
from fourdcontrast.metrics import COLLAPSE_RANK_FRACTION, effective_rank
from fourdcontrast.models.fourdcontrast import FourDContrast
from fourdcontrast.train.checkpoint import load_checkpoint, save_checkpoint
from fourdcontrast.train.config import config_from_dict
from fourdcontrast.train.pretrain import (
    CHECKPOINT,
    CSV_FIELDS,
    BudgetClock,
    collapse_message,
    cpu_supports_bf16,
    holdout_batch,
    holdout_features,
    learning_rate,
    pretrain,
)


def test_log_has_effective_ranks_and_budget(tmp_path):
    """The held-out effective rank of step 0 is the initial network's, that of the last step the trained
    network's (recomputed here from the checkpoint); the training ranks and the budget are logged."""
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 2}))
    rows = pretrain(config, tmp_path, progress=False)
    for key in ("erank_backbone_3d", "erank_z3d", "erank_backbone_4d", "erank_z4d", "budget_s",
                "holdout_erank", "object_pairs_3d"):
        assert key in CSV_FIELDS
    trained = [r for r in rows if r["loss"] is not None]
    assert all(r[k] is not None for r in trained for k in ("erank_backbone_3d", "erank_z3d",
                                                            "erank_backbone_4d", "erank_z4d"))
    held = holdout_batch(config)

    def holdout_erank(model):
        feats = holdout_features(model, held, "cpu")
        return effective_rank(feats, generator=torch.Generator().manual_seed(0))

    torch.manual_seed(config.run.seed)
    model = FourDContrast(config.method_config())
    assert rows[0]["holdout_erank"] == pytest.approx(holdout_erank(model), rel=1e-5)
    model.load_state_dict(load_checkpoint(tmp_path / CHECKPOINT)["model"])
    assert rows[-1]["holdout_erank"] == pytest.approx(holdout_erank(model), rel=1e-5)
    assert rows[-1]["holdout_erank"] != pytest.approx(rows[0]["holdout_erank"], rel=1e-5)
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


def test_time_budget_ends_the_run(tmp_path):
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


def test_the_process_budget_clock_ignores_sleep():
    process, wall = BudgetClock("process", offset=5.0), BudgetClock("wall")
    process.start()
    wall.start()
    time.sleep(0.3)
    process.stop()
    wall.stop()
    assert 5.0 <= process.offset < 5.1 and wall.offset >= 0.3


@pytest.fixture
def keep_threads():
    """Restore torch's thread count after a run that sets ``run.threads``."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_time_budget_is_kept_across_resume_and_ends_the_resumed_run(tmp_path, monkeypatch, keep_threads):
    """A resumed run continues the budget of its checkpoint (the process CPU seconds spent before): the
    logged budget, the cosine schedule and the end of the run follow it; time spent sleeping (here: in
    the data stream) is not charged to the process clock."""
    run = {"time_budget_s": 1000.0, "budget_clock": "process", "log_every": 1, "recall_every": 0,
           "checkpoint_every": 1, "threads": 1, "device": "cpu"}
    optim = {"lr": 0.05, "schedule": "cosine", "warmup_fraction": 0.0}
    first = config_from_dict(tiny_dict(optim={**optim, "steps": 2}, run=run))
    rows = pretrain(first, tmp_path, progress=False)
    ckpt = tmp_path / CHECKPOINT
    state = load_checkpoint(ckpt)
    spent = state["budget_spent"]
    assert state["step"] == 2 and 0 < spent < 100 and rows[-1]["budget_s"] == pytest.approx(spent)
    # pretend the first part of the run spent 990 of the 1000 CPU seconds
    state["budget_spent"] = 990.0
    save_checkpoint(state, ckpt)
    getitem = tp.ReplacingDataset.__getitem__

    def sleepy(self, i):
        time.sleep(0.3)
        return getitem(self, i)

    monkeypatch.setattr(tp.ReplacingDataset, "__getitem__", sleepy)
    longer = config_from_dict(tiny_dict(optim={**optim, "steps": 4}, run=run))
    rows = pretrain(longer, tmp_path, resume=True, progress=False)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["budget_s"] == pytest.approx(spent)  # the first part's log is kept
    assert 990.0 < rows[2]["budget_s"] < rows[3]["budget_s"] < 1000.0
    assert rows[2]["lr"] == pytest.approx(learning_rate(longer, 2, budget_spent=990.0))
    assert rows[2]["lr"] < 0.01 * optim["lr"]  # 99 % of the budget spent: the end of the cosine
    assert load_checkpoint(ckpt)["budget_spent"] == pytest.approx(rows[3]["budget_s"])
    for before, r in zip([{"budget_s": 990.0}, rows[2]], rows[2:], strict=True):
        # the 0.3 s of sleep per step are wall time, not process time (one thread)
        assert r["data_s"] >= 0.3 and r["budget_s"] - before["budget_s"] < r["data_s"] + r["compute_s"] - 0.2
    # with 0.001 s of the budget left, a resumed run does one more step and stops (of 6)
    state = load_checkpoint(ckpt)
    state["budget_spent"] = 1000.0 - 1e-3
    save_checkpoint(state, ckpt)
    monkeypatch.setattr(tp.ReplacingDataset, "__getitem__", getitem)
    rows = pretrain(config_from_dict(tiny_dict(optim={**optim, "steps": 6}, run=run)), tmp_path,
                    resume=True, progress=False)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert load_checkpoint(ckpt)["step"] == 5


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


def _conv_output_dtypes(monkeypatch) -> set:
    """Make ``pretrain`` build models whose sparse convolutions record the dtype of their outputs."""
    dtypes: set = set()
    build = tp.FourDContrast

    def recording(config):
        model = build(config)
        for module in model.modules():
            if isinstance(getattr(module, "kernel", None), torch.nn.Parameter):
                module.register_forward_hook(
                    lambda m, args, out: dtypes.add(getattr(out, "features", getattr(out, "F", out)).dtype))
        return model

    monkeypatch.setattr(tp, "FourDContrast", recording)
    return dtypes


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_autocast_runs_the_convolutions_in_bfloat16(tmp_path, monkeypatch):
    """``run.amp`` on a CPU with native bfloat16 (AMX / AVX-512 BF16): the U-Nets' convolutions compute in
    bfloat16 (their outputs are bfloat16; without amp float32), the weights stay float32."""
    dtypes = _conv_output_dtypes(monkeypatch)
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 1},
                                        run={"amp": True, "recall_every": 0, "device": "cpu"}))
    rows = pretrain(config, tmp_path / "bf16", progress=False)
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"])
    assert dtypes == {torch.bfloat16}
    state = load_checkpoint(tmp_path / "bf16" / CHECKPOINT)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    dtypes.clear()
    float32 = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 1},
                                         run={"recall_every": 0, "device": "cpu"}))
    pretrain(float32, tmp_path / "fp32", progress=False)
    assert dtypes == {torch.float32}


def test_amp_without_native_bfloat16_warns_and_runs_float32(monkeypatch, caplog):
    monkeypatch.setattr(tp, "cpu_supports_bf16", lambda: False)
    config = config_from_dict(tiny_dict(run={"amp": True, "device": "cpu"}))
    with caplog.at_level(logging.WARNING):
        with tp.autocast_context(config, "cpu"):
            assert not torch.is_autocast_enabled("cpu")
    assert any("no native bfloat16" in r.message for r in caplog.records)


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


def test_collapse_warning_rearms_after_a_recovery(tmp_path, caplog, monkeypatch):
    """Collapsed at steps 1-2, recovered at 3, collapsed again at 4-5: two warnings, at steps 1 and 4."""
    collapsed_at = {1, 2, 4, 5}
    monkeypatch.setattr(tp, "collapse_message", lambda row, config: (
        f"step {int(row['step'])}: dimensional collapse" if int(row["step"]) in collapsed_at else None))
    config = config_from_dict(tiny_dict(optim={"lr": 0.05, "steps": 5},
                                        run={"log_every": 1, "recall_every": 0, "checkpoint_every": 5,
                                             "device": "cpu"}))
    with caplog.at_level(logging.WARNING):
        rows = pretrain(config, tmp_path, progress=False)
    assert len(rows) == 5
    warnings = [r.message for r in caplog.records if "dimensional collapse" in r.message]
    assert [w.split(":")[0] for w in warnings] == ["step 1", "step 4"]
    assert all("warning again only after a recovery" in w for w in warnings)
