"""The pre-training step benchmark runs end to end (tiny sizes), applies each setting of the memory switches
(the settings the committed memory figures were measured with) and reports what the issues ask for.

Mutants tried (issue 30), each killed by the tests named:

- ``measure`` no longer applies the switch settings (``*SWITCHES[switches]`` dropped from its
  ``load_config``): ``test_measure_runs_each_setting_with_its_switches_and_saves_less_for_the_backward``
  (recorded switches and saved bytes) and
  ``test_pretrain_step_benchmark_runs_the_memory_switches_at_several_batches`` (recorded switches);
- ``measure_interleaved`` runs every step with the first setting's switches (``_unet_options(name)`` →
  ``_unet_options(switches[0])``): ``test_interleaved_timing_charges_each_step_to_its_own_setting``;
- ``switch_overrides`` sets ``model.checkpoint_4d`` to ``none``:
  ``test_measure_runs_each_setting_with_its_switches_and_saves_less_for_the_backward``;
- ``_fits`` fits through the first two batches instead of the first and last, or divides by the
  intercept instead of the slope: ``test_fits_gives_the_largest_batch_of_known_lines``.
"""

import pytest
import torch

from fourdcontrast.models.resunet import memory_options
from fourdcontrast.train import benchmark
from fourdcontrast.train.benchmark import (
    BACKBONE_SWITCHES,
    MEMORY_LIMIT_GIB,
    SWITCHES,
    _fits,
    _unet_options,
    format_report,
    run_benchmark,
)

TINY = ["data.voxel_size_3d=0.2", "data.voxel_size_4d=0.4", "data.workers=0"]


def expected_switches(name: str) -> dict:
    """What a row of the setting ``name`` must record (both U-Nets switched alike)."""
    m = memory_options(_unet_options(name))
    unet = {"recompute_activations": m.recompute_activations, "compact_maps": m.compact_maps,
            "checkpoint": list(m.checkpoint)}
    return {"fused_pair_losses": BACKBONE_SWITCHES[name].get("fused_pair_losses", False),
            "encoder_3d": unet, "encoder_4d": unet}


def test_pretrain_step_benchmark_reports_time_memory_and_pairs():
    rows = run_benchmark("cpu-small", batch=1, steps=1, engines=["torch"], overrides=TINY)
    (row,) = rows
    assert row["engine"] == "torch" and row["batch"] == 1 and len(row["times_s"]) == 1
    assert row["step_s"] == row["times_s"][0] and row["sequences_per_s"] == pytest.approx(1 / row["step_s"])
    assert row["data_share"] == pytest.approx(row["data_s"] / (row["data_s"] + row["step_s"]))
    assert row["voxels_3d"] > 1000 and row["pairs_3d"] > 0 and row["pairs_3d4d"] > 0 and row["pairs_4d"] > 0
    assert row["peak_mib"] > 0 and row["base_mib"] > 0 and row["switches"] == "none"
    assert row["resolved_switches"] == expected_switches("none")
    report = format_report(rows)
    assert "| cpu-small | torch | none | cpu | 1 |" in report and "largest batch in 24 GiB" in report


def test_pretrain_step_benchmark_runs_the_memory_switches_at_several_batches():
    name = "recompute+compact+ckpt-all-but-dec4"
    rows = run_benchmark("cpu-small", batch=[1, 2], steps=0, engines=["torch"], overrides=TINY,
                         switches=["none", name])
    assert [(r["switches"], r["batch"]) for r in rows] == [("none", 1), ("none", 2), (name, 1), (name, 2)]
    # each worker ran the model with the switches of its setting (both U-Nets)
    for r in rows:
        assert r["resolved_switches"] == expected_switches(r["switches"]), r["switches"]
    assert expected_switches(name)["encoder_3d"]["checkpoint"] == ["stem", "enc1", "enc2", "enc3", "enc4",
                                                                   "dec1", "dec2", "dec3"]
    # the switches change memory and time, not the computation: same loss on the same batch
    assert abs(rows[0]["loss"] - rows[2]["loss"]) < 1e-5 and abs(rows[1]["loss"] - rows[3]["loss"]) < 1e-5
    report = format_report(rows)
    assert "| recompute+compact+ckpt-all-but-dec4 | cpu | 2 |" in report
    assert "fit over batches 1-2" in report


def _saved_bytes_of_forwards(monkeypatch) -> list[int]:
    """Wrap FourDContrast.forward so that each call records the bytes its graph saves for the backward
    (distinct storages); returns the list the calls append to."""
    from fourdcontrast.models.fourdcontrast import FourDContrast

    forward = FourDContrast.forward
    saved: list[int] = []

    def counting_forward(self, *args, **kwargs):
        storages: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = forward(self, *args, **kwargs)
        saved.append(sum(storages.values()))
        return out

    monkeypatch.setattr(FourDContrast, "forward", counting_forward)
    return saved


def test_measure_runs_each_setting_with_its_switches_and_saves_less_for_the_backward(monkeypatch):
    """``measure`` (the worker of every memory figure), called here in-process: the setting's switches reach
    the model, and the forward keeps less for its backward with them (checkpointing every stage keeps
    only the stages' inputs: measured 0.14x of the unswitched bytes at these sizes)."""
    saved = _saved_bytes_of_forwards(monkeypatch)
    rows = {name: benchmark.measure("cpu-small", "torch", 1, 0, "cpu", None, TINY, name)
            for name in ("none", "recompute+compact+ckpt-all", "fused-loss")}
    assert len(saved) == 3  # one (warm-up) step each
    for name, row in rows.items():
        assert row["resolved_switches"] == expected_switches(name), name
    none, switched, _ = saved
    assert switched < 0.5 * none, (switched, none)
    assert rows["none"]["loss"] == pytest.approx(rows["recompute+compact+ckpt-all"]["loss"], abs=1e-5)


def test_interleaved_timing_charges_each_step_to_its_own_setting(monkeypatch):
    """``measure_interleaved`` in-process with a clock that advances by what each step costs under the
    switches the model actually has at that step (none 1 s, checkpointing +2 s, fused losses +0.5 s):
    every setting is timed once per round, with its own switches, and charged its own time."""
    from types import SimpleNamespace

    from fourdcontrast.models.fourdcontrast import FourDContrast

    clock = [0.0]
    applied = []
    forward = FourDContrast.forward

    def costed_forward(self, *args, **kwargs):
        ckpt = bool(self.encoder_3d.memory.checkpoint) and bool(self.encoder_4d.memory.checkpoint)
        fused = self.config.fused_pair_losses
        applied.append((ckpt, fused))
        clock[0] += 1.0 + 2.0 * ckpt + 0.5 * fused
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(FourDContrast, "forward", costed_forward)
    monkeypatch.setattr(benchmark, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    names = ["none", "ckpt-all", "fused-loss"]
    result = benchmark.measure_interleaved("cpu-small", 1, names, 2, None, TINY)
    one_round = [(False, False), (True, False), (False, True)]
    assert applied == one_round * 3  # the untimed step of each setting, then 2 rounds in turn
    assert result["times_s"] == {"none": [1.0, 1.0], "ckpt-all": [3.0, 3.0], "fused-loss": [1.5, 1.5]}
    assert result["median_s"] == {"none": 1.0, "ckpt-all": 3.0, "fused-loss": 1.5}
    table = benchmark.format_interleaved(result)
    assert "| ckpt-all | 3.00 | 3.00 | 3.0, 3.0 |" in table and "| fused-loss | 1.50 | 1.50 |" in table
    assert "2 rounds" in table


def test_interleaved_timing_runs_in_a_worker_with_the_given_settings():
    """The worker plumbing of ``--interleave``: the preset, batch, rounds and settings reach the worker."""
    result = benchmark.run_interleaved("cpu-small", 1, ["none", "ckpt-all"], rounds=2, overrides=TINY)
    assert (result["preset"], result["batch"], result["rounds"]) == ("cpu-small", 1, 2)
    assert list(result["times_s"]) == ["none", "ckpt-all"] and len(result["loadavg"]) == 2
    assert all(len(ts) == 2 for ts in result["times_s"].values())


def test_fits_gives_the_largest_batch_of_known_lines():
    """``_fits``, the "largest batch that fits in 24 GiB" of the memory figures, on known lines."""
    limit = MEMORY_LIMIT_GIB * 1024
    assert limit == 24576

    def row(batch, base, peak):
        return {"batch": batch, "base_mib": base, "peak_mib": peak}

    # 1000 MiB + 2000 MiB per sequence: (24576 − 1000) / 2000 = 11.8 → 11; the middle point is not used
    fits, how = _fits([row(3, 500, 6500), row(1, 500, 2500), row(2, 500, 9999)])
    assert fits == 11 and how == "fit over batches 1-3: 1000 MiB + 2000 MiB per sequence"
    # exactly at the limit: 576 + 2000 · 12 = 24576 fits
    assert _fits([row(1, 76, 2500), row(4, 76, 8500)])[0] == 12
    # one batch: proportional (4096 MiB for 2 sequences: 2048 per sequence → 12)
    fits, how = _fits([row(2, 96, 4000)])
    assert fits == 12 and how == "proportional to batch 2 (4096 MiB in all)"
    assert _fits([row(1, 100, 900), row(2, 100, 800)]) == (0, "no growth with batch size measured")
    report = format_report([{**row(1, 500, 2500), "preset": "p", "engine": "torch", "switches": "none",
                             "device": "cpu", "voxels_3d": 1, "voxels_4d": 1, "pairs_3d": 1, "pairs_3d4d": 1,
                             "pairs_4d": 1, "step_s": 1.0, "sequences_per_s": 1.0, "data_s": 0.1,
                             "data_share": 0.1, "peak_mib_per_sequence": 2500.0}])
    assert "largest batch in 24 GiB: 8 (proportional to batch 1 (3000 MiB in all))" in report


def test_the_fused_loss_setting_switches_the_losses_and_keeps_the_loss():
    """``fused-loss`` sets ``model.fused_pair_losses`` (every other setting turns it off); on the paper's
    SimSiam losses the step's loss is the unswitched one."""
    assert "model.fused_pair_losses=true" in SWITCHES["fused-loss"]
    assert "model.fused_pair_losses=false" in SWITCHES["recompute"]
    rows = run_benchmark("cpu-small", batch=1, steps=0, engines=["torch"],
                         overrides=[*TINY, "method=4dcontrast"], switches=["none", "fused-loss"])
    assert [r["switches"] for r in rows] == ["none", "fused-loss"]
    assert [r["resolved_switches"]["fused_pair_losses"] for r in rows] == [False, True]
    assert abs(rows[0]["loss"] - rows[1]["loss"]) < 1e-5


def test_backbone_mode_measures_each_engine_and_compares_with_minkowski_in_the_same_run():
    """``--backbone``: our engine with each switch, MinkowskiEngine unswitched (where it imports); the table
    compares with ME measured in the same run, else with its recorded peak."""
    from fourdcontrast.sparse.backend import minkowski_engine
    from fourdcontrast.train.benchmark import format_backbone, measure_backbone, run_backbone

    rows = run_backbone("MinkUNet14-4D-25cm", ["none", "recompute+compact+ckpt-all"], repeats=0)
    assert [(r["engine"], r["switches"]) for r in rows] == [("torch", "none"),
                                                            ("torch", "recompute+compact+ckpt-all")]
    assert all(r["voxels"] > 100 and r["peak_mib"] > 0 for r in rows)
    table = format_backbone(rows)
    assert "| MinkUNet14-4D-25cm | torch | recompute+compact+ckpt-all |" in table and "n/a" in table
    fake_me = {**rows[0], "engine": "minkowski", "peak_mib": 2 * rows[0]["peak_mib"], "step_s": 1.0}
    assert "0.50x (same run" in format_backbone([rows[0], fake_me])
    with pytest.raises(ValueError, match="need our engine"):
        measure_backbone("MinkUNet14-4D-25cm", "recompute", engine="minkowski")
    if minkowski_engine() is not None:
        me = run_backbone("MinkUNet14-4D-25cm", ["none", "recompute"], repeats=0, engines=["minkowski"])
        assert [(r["engine"], r["switches"]) for r in me] == [("minkowski", "none")]
