"""The ScanNet-sized grid of issue 27: its levels, the pre-training budget column, the long budget resumed
from the short one, the per-level recipe overrides, and the report's budget curve and declared primaries.

Mutants tried (each turned a test here red): the long-budget run starting afresh instead of from the short
run's checkpoint; ``_row`` writing the preset's budget for every backbone; ``primary_comparisons`` ignoring
the spec's ``primary``; the new preset fields kept in the grid spec at their defaults (the committed grid
then no longer resumes); the cached long stage's cells run after, not with, the short stage's; no
barrier before a long pre-training that computes; the joined queue unsorted (not paired by seed).
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fourdcontrast.downstream.benchmark import (
    PRESETS,
    Backbone,
    _finetune_base,
    _row,
    _same_grid,
    grid_spec,
    pretrained_backbone,
    split_label,
)
from fourdcontrast.downstream.report import budget_curve, markdown_report, primary_comparisons
from fourdcontrast.downstream.splits import scene_count

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_the_scannet_sized_preset_has_the_papers_levels_and_both_budgets():
    p = PRESETS["cpu-scannet"]
    assert p.rooms["train"] >= 1200 and p.rooms["val"] >= 50 and p.rooms["test"] >= 50
    assert [scene_count(p.rooms["train"], f) for f in (0.01, 0.05, 0.10, 0.20)] == [12, 60, 120, 240]
    assert {("scenes", f) for f in (0.01, 0.05, 0.10, 0.20)} | {("points", 20), ("points", 200)} <= set(
        p.finetune_levels)
    assert set(p.probe_levels) >= set(p.finetune_levels) - {("scenes", 1.0)}
    assert p.labels()[-2:] == ("pointcontrast@3600s", "4dcontrast@3600s")
    assert p.finetuned_methods("scenes", 1.0) == ("scratch",)
    assert "4dcontrast@3600s" in p.finetuned_methods("scenes", 0.10)
    assert split_label("4dcontrast@3600s") == ("4dcontrast", 3600.0) and split_label("scratch") == ("scratch",
                                                                                                    None)
    assert _finetune_base(p).data.store_voxel == p.store_voxel == 0.05


def test_new_preset_fields_leave_the_committed_grid_resumable():
    committed = json.loads((RESULTS / "downstream_grid.json").read_text())
    assert _same_grid(committed, {**grid_spec(PRESETS["cpu"], "test"), "preset_name": "cpu"})
    assert "long_budget_s" in grid_spec(PRESETS["cpu-scannet"], "val")["preset"]


def test_per_level_overrides_reach_that_level_only():
    p = replace(PRESETS["tiny"], finetune_overrides_at=(("points", 20, ("optim.recipe=lp-ft",)),))
    assert p.overrides_at("points", 20) == ("optim.recipe=lp-ft",)
    assert _finetune_base(p, 3, p.overrides_at("points", 20)).optim.recipe == "lp-ft"
    assert _finetune_base(p, 3, p.overrides_at("scenes", 0.25)).optim.recipe == "paper"


class _Metrics:
    miou, macc, overall_accuracy, iou = 0.5, 0.5, 0.5, [0.5] * 12

    def miou_without(self):
        return 0.5


class _Result:
    metrics, load_report, train_scenes, seconds, cpu_seconds = _Metrics(), None, 1, 1.0, 1.0


@pytest.mark.parametrize(("label", "budget", "expected"), [("4dcontrast@3600s", 3600.0, "3600"),
                                                           ("4dcontrast", 300.0, "300"),
                                                           ("scratch", 300.0, "")])
def test_every_row_records_its_backbones_pretraining_budget(label, budget, expected):
    from fourdcontrast.sources.classes import CLASS_NAMES

    b = Backbone(label, 0, Path("x"), "d", {}, budget)
    row = _row(_Result(), split="val", mode="finetune", protocol="points", level=20, seed=0, method=label,
               backbone=b, steps=3, class_names=CLASS_NAMES)
    assert row["pretrain_budget_s"] == expected and row["method"] == label


def _rows(deltas: dict[str, list[float]], level=0.1):
    rows = []
    base = [30.0, 32.0, 31.0]
    for method, d in {"scratch": [0, 0, 0], **deltas}.items():
        for seed, (b, x) in enumerate(zip(base, d, strict=True)):
            rows.append({"split": "test", "mode": "finetune", "protocol": "scenes", "level": f"{level:g}",
                         "seed": str(seed), "method": method, "miou": f"{(b + x) / 100:.4f}",
                         "miou_objects": "0.3", "format": 2})
    return rows


def test_the_report_uses_the_grids_declared_primaries_and_draws_the_budget_curve():
    rows = _rows({"4dcontrast": [1.0, 2.0, 3.0], "4dcontrast@3600s": [4.0, 5.0, 6.0],
                  "pointcontrast@3600s": [1.0, 1.0, 1.0]})
    spec = {"preset": {**grid_spec(PRESETS["cpu-scannet"], "test")["preset"]}, "preset_name": "cpu-scannet"}
    primary = primary_comparisons(spec)
    assert primary[0].a == "4dcontrast@3600s" and primary[0].level == 0.10 and primary[0].mode == "finetune"
    assert primary_comparisons(None)[0].a == "4dcontrast" and primary_comparisons(None)[0].level == 0.01
    curve = budget_curve(rows, 300.0)
    (budgets, deltas) = zip(*[(b, d.mean) for b, d in curve[("finetune", "scenes", 0.1, "4dcontrast")]],
                            strict=True)
    assert budgets == (300.0, 3600.0) and deltas == pytest.approx((2.0, 5.0))
    text = markdown_report(rows, None, spec)
    assert "4dcontrast@3600s − scratch, fine-tuned, 10 % of scenes: +5.0 mIoU points" in text
    assert "57.9 vs 49.3" in text  # the paper's Table 6 figure at 10 %
    assert "4dcontrast@3600s − pointcontrast@3600s, fine-tuned, 10 % of scenes: +4.0" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| fine-tuned | 10 % | 4dcontrast |"))
    assert "+2.0 [" in line and "+5.0 [" in line
    # the ceiling (scratch at 100 %) of one seed: no "± nan"; only 100 % is called the ceiling in the budgets
    ceiling = {**rows[0], "level": "1", "miou": "0.874"}
    text = markdown_report([*rows, ceiling], None, spec)
    assert "scratch fine-tuned on 100 % of the scenes: 87.4 (n=1)" in text and "nan" not in text
    budgets = next(ln for ln in text.splitlines() if ln.startswith("- Fine-tuning: every method"))
    assert budgets.count("the full-data ceiling") == 1
    assert "at 100 % only scratch (the full-data ceiling" in budgets
    assert "(`benchmarks/results/scannet-size/steps_check.md`)" in budgets  # the check that picked 8000


def test_every_grid_cites_an_existing_file_for_its_step_counts_and_a_spec_without_it_still_resumes():
    from fourdcontrast.downstream.report import map_markdown_report

    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    for name, preset in PRESETS.items():
        if name != "tiny":
            assert (results / preset.steps_source).is_file(), name
    assert PRESETS["cpu-instance"].steps_source == "instance/steps_check_instance.md"
    spec = json.loads(json.dumps(grid_spec(PRESETS["cpu-detection"], "test")))
    assert "`benchmarks/results/detection/steps_check_detection.md`" in map_markdown_report([], "detection",
                                                                                            None, spec)
    # a spec written before the field existed: the same grid (it resumes), and the report asks the preset
    old = json.loads(json.dumps(grid_spec(PRESETS["cpu-scannet"], "test")))
    del old["preset"]["steps_source"]
    assert _same_grid(old, grid_spec(PRESETS["cpu-scannet"], "test"))
    text = markdown_report([], None, old, PRESETS["cpu-scannet"])
    assert "scannet-size/steps_check.md" in text


def test_the_budget_curve_is_drawn_once_a_method_has_two_budgets(tmp_path):
    from fourdcontrast.downstream.report import plot_budget_curve

    one_budget = _rows({"4dcontrast": [1.0, 2.0, 3.0], "pointcontrast@3600s": [1.0, 1.0, 1.0]})
    assert not plot_budget_curve(one_budget, tmp_path / "none.png", 300.0)
    assert not (tmp_path / "none.png").exists()
    two = _rows({"4dcontrast": [1.0, 2.0, 3.0], "4dcontrast@3600s": [4.0, 5.0, 6.0]})
    assert plot_budget_curve(two, tmp_path / "curve.png", 300.0)
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_long_budget_continues_the_short_runs_checkpoint(tmp_path):
    from fourdcontrast.train.pretrain import read_log

    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), pretrain_budget_s=0.5,
                pretrain_steps=1000, long_budget_s=1.5, long_budget_methods=("4dcontrast",))
    short = pretrained_backbone("4dcontrast", 0, p, tmp_path)
    long = pretrained_backbone("4dcontrast", 0, p, tmp_path, budget_s=1.5)
    assert short.method == "4dcontrast" and long.method == "4dcontrast@1.5s"
    assert long.cost["resumed"] and long.cost["budget_s"] == 1.5 and short.cost["budget_s"] == 0.5
    assert long.cost["steps"] > short.cost["steps"] >= 1
    short_log = read_log(short.path.parent / "log.csv")
    long_log = read_log(long.path.parent / "log.csv")
    first = [r["loss"] for r in short_log if r.get("loss") is not None]
    assert [r["loss"] for r in long_log if r.get("loss") is not None][: len(first)] == first
    assert not np.isclose(short.cost["budget_used_s"], long.cost["budget_used_s"])


def test_the_estimate_counts_only_the_extra_seconds_of_the_long_budget():
    from fourdcontrast.downstream.benchmark import RunCosts, estimate_grid

    p = PRESETS["cpu-scannet"]
    est = estimate_grid(p, RunCosts(finetune_per_step=0.0, finetune_fixed=1.0, probe_per_backbone=1.0,
                                    pretrain_overhead=0.0))
    assert est["pretrain_cpu_s"] == 3 * 3 * 300 + 2 * 3 * (3600 - 300)
    assert est["pretrain_runs"] == 5 * 3 and est["probe_cpu_s"] == 6 * 3
    # 6 initialisations x 3 seeds at 4 limited levels, scratch and the 2 long labels at 1 and 5 %, scratch
    # alone at 100 %
    assert est["finetune_runs"] == 6 * 3 * 4 + 3 * 3 * 2 + 3


def test_the_scannet_grid_fine_tunes_with_the_recipes_the_validation_rule_picked():
    p = PRESETS["cpu-scannet"]
    at_points = _finetune_base(p, 500, p.overrides_at("points", 20)).optim
    assert (at_points.recipe, at_points.backbone_lr_scale, at_points.batch_size) == ("lp-ft", 0.1, 8)
    for level in (0.01, 0.05, 0.10, 0.20, 1.0):
        o = _finetune_base(p, 1000, p.overrides_at("scenes", level)).optim
        assert (o.recipe, o.backbone_lr_scale, o.batch_size) == ("lp-ft", 1.0, 2)


def test_the_grid_finishes_the_short_budget_before_it_starts_the_long_pre_trainings(tmp_path, monkeypatch):
    """Stages: an interrupted cpu-scannet grid must hold complete short-budget rows before the 6 CPU-h of
    long pre-trainings (and every long run finds the short checkpoint it continues)."""
    from fourdcontrast.downstream import benchmark as bm

    calls = []

    order = []

    def pretrain(label, seed, preset, cache, restore_from=None):
        calls.append(("pretrain", label))
        order.append((label, seed))
        return Backbone(label, seed, tmp_path / "b.pth", f"{label}-{seed}")

    def cell(kind):
        def run(backbone, *args, **kwargs):
            calls.append((kind, backbone.method))
            level = args[0][0][1] if kind == "probe" else args[1]
            mode = "linear" if kind == "probe" else "finetune"
            return [{"split": "val", "mode": mode, "protocol": "scenes", "level": f"{float(level):g}",
                     "seed": backbone.seed, "method": backbone.method, "miou": "0.1", "miou_objects": "0.1"}]
        return run

    monkeypatch.setattr(bm, "_pretrain_task", pretrain)
    monkeypatch.setattr(bm, "_probe_task", cell("probe"))
    monkeypatch.setattr(bm, "_finetune_task", lambda b, *a: cell("finetune")(b, *a))
    monkeypatch.setattr(bm, "load_rooms", lambda *a, **k: (None, None))
    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), seeds=(0,), pretrain_budget_s=1.0,
                long_budget_s=2.0, long_budget_methods=("4dcontrast",),
                probe_levels=(("scenes", 1.0),), finetune_levels=(("scenes", 0.25),), finetune_steps_at=())
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", split="val", progress=False)
    first_long = calls.index(("pretrain", "4dcontrast@2s"))
    assert {c for c in calls[:first_long]} == {("pretrain", "scratch"), ("pretrain", "4dcontrast"),
                                               ("probe", "scratch"), ("probe", "4dcontrast"),
                                               ("finetune", "scratch"), ("finetune", "4dcontrast")}
    assert set(calls[first_long:]) == {("pretrain", "4dcontrast@2s"), ("probe", "4dcontrast@2s"),
                                      ("finetune", "4dcontrast@2s")}
    calls.clear()  # --first-stage-only: the short budget's cells, no long pre-training (the rows above stay)
    bm.run_benchmark(p, tmp_path / "out2", tmp_path / "cache", split="val", progress=False,
                     first_stage_only=True)
    assert ("pretrain", "4dcontrast") in calls and ("finetune", "4dcontrast") in calls
    assert not any(label.endswith("@2s") for _, label in calls)
    calls.clear()  # --pretrain-only: every stage's backbones, no cell and no row
    rows = bm.run_benchmark(p, tmp_path / "out3", tmp_path / "cache", split="val", progress=False,
                            pretrain_only=True)
    assert {kind for kind, _ in calls} == {"pretrain"} and ("pretrain", "4dcontrast@2s") in calls
    assert rows == []
    order.clear()  # seed by seed: an interrupted stage holds every method of its first seeds
    two = replace(p, methods=("scratch", "pointcontrast", "4dcontrast"), seeds=(0, 1),
                  long_budget_methods=("pointcontrast", "4dcontrast"))
    bm.run_benchmark(two, tmp_path / "out4", tmp_path / "cache", split="val", progress=False,
                     pretrain_only=True)
    assert [o for o in order if o[0].endswith("@2s")] == [("pointcontrast@2s", 0), ("4dcontrast@2s", 0),
                                                          ("pointcontrast@2s", 1), ("4dcontrast@2s", 1)]


def _record_grid_tasks(monkeypatch, tmp_path) -> list[tuple]:
    """Replace the grid's pre-training, probe and fine-tuning tasks by recorders: returns the list they append
    ``(kind, label, seed, levels)`` to (each fine-tuning yields one row, a probe none)."""
    from fourdcontrast.downstream import benchmark as bm

    calls = []

    def pretrain(label, seed, preset, cache, restore_from=None):
        calls.append(("pretrain" if restore_from is None else ("restore", restore_from), label, seed, None))
        return Backbone(label, seed, tmp_path / "b.pth", f"{label}-{seed}", {"method": label, "steps": 1})

    def finetune(backbone, protocol, level, *args):
        calls.append(("finetune", backbone.method, backbone.seed, (protocol, float(level))))
        return [{"split": "val", "mode": "finetune", "protocol": protocol, "level": f"{float(level):g}",
                 "seed": backbone.seed, "method": backbone.method, "miou": "0.1", "miou_objects": "0.1",
                 "backbone": backbone.digest}]

    def probe(backbone, levels, *args):
        calls.append(("probe", backbone.method, backbone.seed, tuple(levels)))
        return []

    monkeypatch.setattr(bm, "_pretrain_task", pretrain)
    monkeypatch.setattr(bm, "_probe_task", probe)
    monkeypatch.setattr(bm, "_finetune_task", finetune)
    monkeypatch.setattr(bm, "load_rooms", lambda *a, **k: (None, None))
    return calls


def test_primary_only_runs_the_cells_of_the_primary_comparisons_and_nothing_else(tmp_path, monkeypatch):
    """--primary-only: both arms of every pre-declared comparison, every seed, and only the pre-trainings
    they need (here not the short-budget 4DContrast, whose cells no primary comparison reads)."""
    from fourdcontrast.downstream import benchmark as bm

    calls = _record_grid_tasks(monkeypatch, tmp_path)
    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), seeds=(0, 1), pretrain_budget_s=1.0,
                long_budget_s=2.0, long_budget_methods=("4dcontrast",),
                probe_levels=(("scenes", 1.0),), finetune_levels=(("scenes", 0.25), ("scenes", 0.5)),
                finetune_steps_at=(),
                primary=(("4dcontrast@2s", "scratch", "finetune", "scenes", 0.5),))
    assert p.primary_cells() == {("4dcontrast@2s", "finetune", "scenes", 0.5),
                                 ("scratch", "finetune", "scenes", 0.5)}
    rows = bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", split="val", progress=False,
                            primary_only=True)
    assert sorted(c for c in calls if c[0] == "finetune") == [
        ("finetune", "4dcontrast@2s", s, ("scenes", 0.5)) for s in (0, 1)] + [
        ("finetune", "scratch", s, ("scenes", 0.5)) for s in (0, 1)]
    assert {c[1] for c in calls if c[0] == "pretrain"} == {"scratch", "4dcontrast@2s"}
    assert not any(c[0] == "probe" for c in calls) and len(rows) == 4
    costs = tmp_path / "out" / "downstream_val_pretrain_cost.json"
    assert set(json.loads(costs.read_text())) == {f"{m}/seed{s}" for m in ("scratch", "4dcontrast@2s")
                                                  for s in (0, 1)}
    calls.clear()  # a run of one seed keeps the cost rows of the others
    bm.run_benchmark(replace(p, seeds=(0,)), tmp_path / "out", tmp_path / "cache", split="val",
                     progress=False)
    assert "4dcontrast@2s/seed1" in json.loads(costs.read_text())
    assert "4dcontrast/seed0" in json.loads(costs.read_text())
    calls.clear()  # the full run afterwards adds the rest and re-runs none of them
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", split="val", progress=False)
    assert ("finetune", "scratch", 0, ("scenes", 0.5)) not in calls
    assert ("finetune", "4dcontrast", 1, ("scenes", 0.25)) in calls
    calls.clear()  # --levels: only the cells at those levels (with --primary-only: their intersection)
    bm.run_benchmark(p, tmp_path / "o3", tmp_path / "cache", split="val", progress=False,
                     levels=(("scenes", 0.25),))
    assert {c[3] for c in calls if c[0] == "finetune"} == {("scenes", 0.25)}
    assert not any(c[0] == "probe" for c in calls)  # the probe level (100 %) is not among them
    calls.clear()
    bm.run_benchmark(p, tmp_path / "o4", tmp_path / "cache", split="val", progress=False, primary_only=True,
                     levels=(("scenes", 0.25),))
    assert not any(c[0] == "finetune" for c in calls)
    with pytest.raises(ValueError, match="not all levels"):
        bm.run_benchmark(p, tmp_path / "o5", tmp_path / "cache", split="val", progress=False,
                         levels=(("scenes", 0.3),))
    assert bm._parse_levels("scenes:0.1, points:20") == (("scenes", 0.1), ("points", 20.0))
    with pytest.raises(argparse.ArgumentTypeError):
        bm._parse_levels("scene:0.1")
    with pytest.raises(ValueError, match="no primary comparisons"):
        bm.run_benchmark(replace(p, primary=()), tmp_path / "o2", tmp_path / "cache", split="val",
                         progress=False, primary_only=True)


def test_a_third_budget_continues_the_long_run_not_the_short_one(tmp_path):
    """The budget curve's further point (``4dcontrast@10800s`` after ``@3600s``): its pre-training goes on
    from the longest cached run of the method and seed, so it costs only the extra seconds."""
    from fourdcontrast.downstream.benchmark import _longest_shorter_run
    from fourdcontrast.train.pretrain import read_log

    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), pretrain_budget_s=0.5,
                pretrain_steps=1000, long_budget_s=1.0, long_budget_methods=("4dcontrast",))
    assert _longest_shorter_run("4dcontrast", 0, p, tmp_path, 2.0) is None  # nothing cached yet
    short = pretrained_backbone("4dcontrast", 0, p, tmp_path)
    assert _longest_shorter_run("4dcontrast", 0, p, tmp_path, 2.0)[1] == 0.5
    long = pretrained_backbone("4dcontrast", 0, p, tmp_path, budget_s=1.0)
    folder, budget = _longest_shorter_run("4dcontrast", 0, p, tmp_path, 2.0)
    assert budget == 1.0 and folder == long.path.parent
    assert _longest_shorter_run("4dcontrast", 0, p, tmp_path, 1.0)[1] == 0.5  # the long run itself: short
    third = pretrained_backbone("4dcontrast", 0, p, tmp_path, budget_s=2.0)
    assert third.method == "4dcontrast@2s" and third.cost["resumed"]
    long_losses = [r["loss"] for r in read_log(long.path.parent / "log.csv") if r.get("loss") is not None]
    third_losses = [r["loss"] for r in read_log(third.path.parent / "log.csv") if r.get("loss") is not None]
    assert third_losses[: len(long_losses)] == long_losses  # the long run's log, continued
    assert third.cost["steps"] > long.cost["steps"] > short.cost["steps"]


def test_an_extra_label_runs_only_its_own_pretraining_and_cells(tmp_path, monkeypatch):
    """--extra-label 4dcontrast@<budget>s: only that label — pre-trained, probed, and fine-tuned at the levels
    where the method's long label is — into the grid's CSV; nothing of the other stages runs."""
    from fourdcontrast.downstream import benchmark as bm

    calls = _record_grid_tasks(monkeypatch, tmp_path)
    p = replace(PRESETS["tiny"], methods=("scratch", "pointcontrast", "4dcontrast"), seeds=(0, 1),
                pretrain_budget_s=1.0, long_budget_s=2.0, long_budget_methods=("pointcontrast", "4dcontrast"),
                probe_levels=(("scenes", 1.0),), finetune_levels=(("scenes", 0.25), ("scenes", 0.5)),
                finetune_steps_at=(), finetune_methods_at=(("scenes", 0.25, ("scratch",)),))
    bm.run_benchmark(replace(p, seeds=(0,)), tmp_path / "out", tmp_path / "cache", split="val",
                     progress=False, extra_labels=("4dcontrast@6s",))
    assert calls == [("pretrain", "4dcontrast@6s", 0, None),
                     ("probe", "4dcontrast@6s", 0, (("scenes", 1.0),)),
                     ("finetune", "4dcontrast@6s", 0, ("scenes", 0.5))]  # 25 %: the long label is not there
    for bad in ("4dcontrast@2s", "4dcontrast@1.5s", "scratch@6s", "4dcontrast", "4dcontrast@xs"):
        with pytest.raises(ValueError, match="extra label"):
            bm.run_benchmark(p, tmp_path / "o2", tmp_path / "cache", split="val", progress=False,
                             extra_labels=(bad,))
    with pytest.raises(ValueError, match="primary"):
        bm.run_benchmark(replace(p, primary=(("4dcontrast@2s", "scratch", "finetune", "scenes", 0.5),)),
                         tmp_path / "o3", tmp_path / "cache", split="val", progress=False, primary_only=True,
                         extra_labels=("4dcontrast@6s",))


def test_labels_run_only_those_initialisations(tmp_path, monkeypatch):
    """--labels scratch,4dcontrast@2s: those two initialisations' pre-trainings and cells, nobody else's (not
    the short-budget 4DContrast the long one would otherwise follow); an unknown label is refused."""
    from fourdcontrast.downstream import benchmark as bm

    calls = _record_grid_tasks(monkeypatch, tmp_path)
    p = replace(PRESETS["tiny"], methods=("scratch", "pointcontrast", "4dcontrast"), seeds=(0,),
                pretrain_budget_s=1.0, long_budget_s=2.0, long_budget_methods=("pointcontrast", "4dcontrast"),
                probe_levels=(("scenes", 1.0),), finetune_levels=(("scenes", 0.5),), finetune_steps_at=(),
                finetune_methods_at=())
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", split="val", progress=False,
                     labels=("scratch", "4dcontrast@2s"))
    assert {c[1] for c in calls} == {"scratch", "4dcontrast@2s"}
    assert [c[0] for c in calls if c[1] == "4dcontrast@2s"] == ["pretrain", "probe", "finetune"]
    with pytest.raises(ValueError, match="not initialisations"):
        bm.run_benchmark(p, tmp_path / "o2", tmp_path / "cache", split="val", progress=False,
                         labels=("scratch", "4dcontrast@9s"))


def test_restore_hands_each_pretraining_its_record_and_the_rows_digest(tmp_path, monkeypatch):
    """--restore on a grid that has rows: every pre-trained label of the rows with a cell left to do gets its
    cost record and the backbone digest its rows name (scratch none); one with nothing left to do is not
    re-made (it would cost its whole pre-training); without --restore, nobody is restored."""
    from fourdcontrast.downstream import benchmark as bm

    calls = _record_grid_tasks(monkeypatch, tmp_path)
    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), seeds=(0, 1), pretrain_budget_s=1.0,
                long_budget_s=None, long_budget_methods=(), probe_levels=(("scenes", 1.0),),
                finetune_levels=(("scenes", 0.5), ("scenes", 0.25)), finetune_steps_at=(),
                finetune_methods_at=())
    run = dict(split="val", progress=False)
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", levels=(("scenes", 1.0), ("scenes", 0.5)),
                     **run)
    assert all(c[0] in ("pretrain", "probe", "finetune") for c in calls)
    calls.clear()
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", levels=(("scenes", 0.5),), restore=True, **run)
    assert [c[:3] for c in calls] == [("pretrain", "scratch", 0), ("pretrain", "scratch", 1)]  # all done
    calls.clear()
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", restore=True, **run)
    pretrains = {(c[1], c[2]): c[0] for c in calls if c[0] not in ("probe", "finetune")}
    assert pretrains[("scratch", 0)] == "pretrain" and pretrains[("scratch", 1)] == "pretrain"
    for seed in (0, 1):
        kind, (record, digest) = pretrains[("4dcontrast", seed)]
        assert kind == "restore" and digest == f"4dcontrast-{seed}" and record["steps"] == 1
    assert {c[3] for c in calls if c[0] == "finetune"} == {("scenes", 0.25)}


def test_restorable_needs_a_record_and_one_digest():
    from fourdcontrast.downstream.benchmark import _restorable

    rows = [dict(split="test", method="4dcontrast", seed="0", backbone="a"),
            dict(split="test", method="4dcontrast", seed="0", backbone="a"),
            dict(split="test", method="pointcontrast", seed="0", backbone="b"),
            dict(split="test", method="pointcontrast", seed="0", backbone="c"),  # two networks: ambiguous
            dict(split="test", method="4dcontrast", seed="1", backbone="d"),  # no record
            dict(split="val", method="4dcontrast@3600s", seed="0", backbone="e"),  # another split
            dict(split="test", method="scratch", seed="0", backbone="f")]
    costs = {f"{m}/seed0": {"steps": 5} for m in ("4dcontrast", "pointcontrast", "4dcontrast@3600s",
                                                   "scratch")}
    assert _restorable(rows, costs, "test") == {("4dcontrast", 0): ({"steps": 5}, "a")}


@pytest.mark.slow
def test_a_restored_pretraining_is_the_recorded_network_bit_for_bit(tmp_path):
    """A budgeted run stops at a step count the machine decides; pre-training the same config with no budget
    to that step gives the same backbone file (its digest), in the folder the grid looks in. A wrong
    expected digest installs nothing; a record of another config is refused."""
    import shutil

    from fourdcontrast.downstream.benchmark import cached_backbone, restore_pretraining

    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), pretrain_budget_s=0.5,
                pretrain_steps=1000, long_budget_s=1.5, long_budget_methods=("4dcontrast",))
    pretrained_backbone("4dcontrast", 0, p, tmp_path / "a")  # 0.5 s, then resumed to 1.5 s as the grid does
    long = pretrained_backbone("4dcontrast", 0, p, tmp_path / "a", budget_s=1.5)
    assert long.cost["resumed"] and long.cost["steps"] >= 2
    record, digest = dict(long.cost), long.digest
    restored = restore_pretraining("4dcontrast@1.5s", 0, p, tmp_path / "b", record, digest)
    assert restored.digest == digest and restored.path.parent.name == long.path.parent.name
    assert restored.cost["restored"]["steps"] == record["steps"] and restored.cost["steps"] == record["steps"]
    assert cached_backbone("4dcontrast@1.5s", 0, p, tmp_path / "b").digest == digest  # where the grid looks
    with pytest.raises(ValueError, match="not the recorded"):
        restore_pretraining("4dcontrast@1.5s", 0, p, tmp_path / "c", record, "0" * 16)
    folder = tmp_path / "c" / "pretrain" / long.path.parent.name
    assert (folder / "backbone.mismatch.pth").is_file() and not (folder / "backbone.pth").exists()
    assert not (folder / "cost.json").exists()
    shutil.rmtree(tmp_path / "c")
    with pytest.raises(ValueError, match="not the same pre-training"):
        restore_pretraining("4dcontrast@1.5s", 1, p, tmp_path / "c", record, digest)  # seed 1's config


def test_cells_of_stages_with_cached_backbones_run_in_one_pool_paired_by_seed(tmp_path, monkeypatch):
    """With every backbone of the long stage cached, its cells join the short stage's in one ``_run_tasks``
    call (two jobs keep two cores busy when each stage has one cell left), seed-paired: scratch and
    4dcontrast@2s of seed 0 before seed 1. A long backbone to compute keeps the barrier (the earlier stage's
    cells run first, then the pre-training)."""
    from fourdcontrast.downstream import benchmark as bm

    calls = _record_grid_tasks(monkeypatch, tmp_path)
    pools = []
    real = bm._run_tasks

    def run_tasks(tasks, jobs, on_done, progress, desc):
        pools.append((desc, [(fn.__name__, *(args[:2] if desc == "pre-training" else
                                              (args[0].method, args[0].seed))) for fn, args in tasks]))
        return real(tasks, 1, on_done, progress, desc)

    monkeypatch.setattr(bm, "_run_tasks", run_tasks)
    p = replace(PRESETS["tiny"], methods=("scratch", "4dcontrast"), seeds=(0, 1), pretrain_budget_s=1.0,
                long_budget_s=2.0, long_budget_methods=("4dcontrast",), probe_levels=(),
                finetune_levels=(("scenes", 0.5),), finetune_steps_at=(), finetune_methods_at=())
    run = dict(split="val", progress=False, labels=("scratch", "4dcontrast@2s"), jobs=2)
    bm.run_benchmark(p, tmp_path / "out", tmp_path / "cache", **run)  # nothing cached: the barrier holds
    assert [d for d, _ in pools] == ["pre-training", "downstream", "pre-training", "downstream"]
    assert calls.index(("pretrain", "4dcontrast@2s", 0, None)) > calls.index(
        ("finetune", "scratch", 1, ("scenes", 0.5)))
    for seed in (0, 1):  # now the long backbones are in the cache
        folder, _ = bm._pretrain_folder("4dcontrast", seed, p, tmp_path / "cache", 2.0)
        folder.mkdir(parents=True)
        (folder / "backbone.pth").write_bytes(b"x")
        (folder / "cost.json").write_text("{}")
    assert bm.backbone_is_cached("4dcontrast@2s", 1, p, tmp_path / "cache")
    assert not bm.backbone_is_cached("4dcontrast", 1, p, tmp_path / "cache")
    assert bm.backbone_is_cached("scratch", 1, p, tmp_path / "cache")
    pools.clear()
    bm.run_benchmark(p, tmp_path / "out2", tmp_path / "cache", **run)
    assert [d for d, _ in pools] == ["pre-training", "pre-training", "downstream"]
    assert [(m, s) for _, m, s in pools[-1][1]] == [("scratch", 0), ("4dcontrast@2s", 0), ("scratch", 1),
                                                    ("4dcontrast@2s", 1)]
