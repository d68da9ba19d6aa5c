"""benchmarks/scannet_steps.py: the rule that says whether the cpu-scannet grid's step counts are enough.
(Mutants tried: the verdict on one initialisation's gain instead of the mean; the ladder running on after its
rule decided; the ladder's tolerance at 0.5 → red; the re-screen's rule taking the best arm without the
simpler-within-a-point exception; the re-screen running its arms without their overrides.)"""

import pytest
from script_loader import load_script  # tests/script_loader.py


def _module():
    return load_script("benchmarks/scannet_steps.py")


def test_doubling_the_steps_is_judged_on_the_mean_gain_of_both_initialisations():
    m = _module()
    gain = {("scenes", "scratch"): 0.018, ("scenes", "4dcontrast"): 0.004,  # mean +1.1: short
            ("points", "scratch"): 0.016, ("points", "4dcontrast"): 0.0}  # mean +0.8: enough
    rows = [{"variant": f"steps={n}", "method": init, "protocol": p, "level": str(lv), "cpu_seconds": "10",
             "miou": str(0.3 + (gain[(p, init)] if n != steps[0] else 0.0))}
            for (p, lv), steps in m.CHECKS.items() for n in steps for init in m.INITS]
    text = m.report(rows)
    assert "scenes 0.1: doubling the grid's 1000 steps gains +1.1" in text and "**short**" in text
    assert "points 20: doubling the grid's 500 steps gains +0.8" in text and "**enough**" in text
    assert "runs are not all done yet" in m.report(rows[:1])


def test_the_amended_rule_picks_the_fewest_steps_within_a_point_of_the_best():
    m = _module()
    miou = {1000: (44.1, 50.6), 2000: (63.8, 65.6), 4000: (68.0, 69.0), 8000: (69.0, 69.5)}  # 68.5 vs 69.25

    def rows(counts):
        return [{"variant": f"steps={n}", "method": init, "protocol": "scenes", "level": "0.1",
                 "miou": str(miou[n][k] / 100), "cpu_seconds": "1"}
                for n in counts for k, init in enumerate(m.INITS)]

    assert m.pick_steps(rows(miou)) == 4000
    miou[4000] = (66.0, 68.0)  # mean 67.0: more than a point below 8000's
    assert m.pick_steps(rows(miou)) == 8000
    assert m.pick_steps(rows((1000, 2000))) is None
    assert "picks **8000 steps**" in m.report(rows(miou))


def test_the_grid_fine_tunes_its_scene_levels_for_what_the_amended_rule_picked():
    from fourdcontrast.downstream.benchmark import PRESETS, read_rows

    m = _module()
    picked = m.pick_steps(read_rows(m.OUT / "steps_check.csv"))  # the committed check
    p = PRESETS["cpu-scannet"]
    assert picked is not None
    assert all(p.steps_for("scenes", lv) == picked for lv in (0.01, 0.05, 0.10, 0.20))
    assert p.steps_for("scenes", 1.0) >= picked and p.steps_for("points", 20) == 500


def _ladder_rows(m, task, scores):
    """Rows of a map task's ladder: ``scores`` maps a step count to (scratch, 4DContrast) mAP@0.5 (%)."""
    (protocol, level), _ = m.LADDERS[task]
    return [{"variant": f"steps={n}", "method": init, "protocol": protocol, "level": str(level),
             "map50": str(v[k] / 100), "map25": str(2 * v[k] / 100), "cpu_seconds": "1"}
            for n, v in scores.items() for k, init in enumerate(m.INITS)]


def test_the_ladder_stops_at_the_first_doubling_that_gains_less_than_a_point_of_the_mean():
    m = _module()
    rising = {1000: (10.0, 14.0), 2000: (20.0, 21.0), 4000: (21.0, 21.5)}  # +8.5, then +0.75
    assert m.ladder_pick(_ladder_rows(m, "instance", rising), "instance") == (2000, True)
    assert m.ladder_pick(_ladder_rows(m, "instance", {1000: (10.0, 14.0), 2000: (20.0, 21.0)}),
                         "instance") is None  # 4000 not run yet: undecided
    # one initialisation gains 1.6, the other 0.2: the mean gain 0.9 decides (not either alone)
    assert m.ladder_pick(_ladder_rows(m, "detection", {1000: (10.0, 14.0), 2000: (11.6, 14.2)}),
                         "detection") == (1000, True)
    still = {n: (n / 100, n / 100) for n in (1000, 2000, 4000, 8000)}
    assert m.ladder_pick(_ladder_rows(m, "instance", still), "instance") == (8000, False)
    text = m.ladder_report(_ladder_rows(m, "instance", still), "instance")
    assert "**still rising at 8000 steps**" in text and "| 8000 | 80.0 | 80.0 | 80.0 | +0.0 | 160.0 |" in text
    views = m.ladder_report(_ladder_rows(m, "views", {3000: (12.0, 11.0), 6000: (12.5, 11.2)}), "views")
    assert "picks **3000 steps**" in views and "not re-run" in views


def _fake_finetuning(monkeypatch, map50=None) -> list[tuple]:
    """Replace the grid's fine-tuning by a recorder: returns the list that gets (backbone, steps, the level's
    overrides) of every cell run; a cell scores mIoU 0.5 and mAP@0.5 ``map50[steps]`` (0.5 without it)."""
    from fourdcontrast.downstream import benchmark as bm

    ran = []

    def cell(backbone, protocol, level, seed, preset, split, datasets):
        n = preset.steps_for(protocol, level)
        ran.append((backbone, n, preset.overrides_at(protocol, level)))
        return {"split": split, "mode": "finetune", "protocol": protocol, "level": f"{level:g}", "seed": seed,
                "method": backbone, "miou": "0.5", "map50": str((map50 or {}).get(n, 0.5)), "map25": "0.5",
                "cpu_seconds": "1"}

    class Val:
        class_names = ("wall", "floor", "chair")

    monkeypatch.setattr(bm, "load_rooms", lambda *a, **k: (None, Val()))
    monkeypatch.setattr(bm, "cached_backbone", lambda label, *a: label)
    monkeypatch.setattr(bm, "finetune_cell", cell)
    return ran


def test_the_ladder_runs_no_count_after_the_rule_has_decided(monkeypatch, tmp_path):
    """``run`` fine-tunes the ladder in order and stops once :func:`ladder_pick` decides (a 4000-step
    detection cell costs ~1 CPU-h)."""
    m = _module()
    ran = _fake_finetuning(monkeypatch, map50={1000: 0.100, 2000: 0.105, 4000: 0.30})
    rows = m.run(tmp_path, tmp_path, "detection")
    assert [n for _, n, _ in ran] == [1000, 1000, 2000, 2000]  # +0.5 after one doubling: 4000 never runs
    assert m.ladder_pick(rows, "detection") == (1000, True)
    assert (tmp_path / "steps_check_detection.csv").is_file()


def _diag_rows(m, scratch, long, paper=None):
    """Validation rows of the 10 % diagnosis: ``scratch`` / ``long`` map a step count to mIoU (%); ``paper``
    is (scratch, long) with the paper's recipe at 8000 steps."""
    def row(variant, label, v):
        return {"variant": variant, "method": label, "protocol": "scenes", "level": "0.1",
                "miou": str(v / 100), "cpu_seconds": "1"}

    rows = [row(f"steps={n}", "scratch", v) for n, v in scratch.items()]
    rows += [row(f"steps={n}", m.LONG, v) for n, v in long.items()]
    if paper:
        rows += [row("recipe=paper,steps=8000", label, v) for label, v in zip(("scratch", m.LONG), paper,
                                                                               strict=True)]
    return rows


def test_the_diagnosis_reads_an_early_lead_that_scratch_catches_up_as_overtaken():
    m = _module()
    scratch = {1000: 44.1, 2000: 63.8, 4000: 78.7, 8000: 86.2}
    _, v = m.diagnosis_verdicts(_diag_rows(m, scratch, {1000: 52.0, 2000: 65.0, 4000: 79.0, 8000: 86.0},
                                           paper=(80.0, 79.5)))
    assert "**overtaken**" in v[0] and "+7.9 at 1000" in v[0]
    assert "**not** the cause" in v[1] and "-0.5 with the paper" in v[1]
    _, v = m.diagnosis_verdicts(_diag_rows(m, scratch, {n: x + 0.5 for n, x in scratch.items()},
                                           paper=(80.0, 82.0)))
    assert "**no lead at any step count**" in v[0] and "**named part of the cause**" in v[1]
    _, v = m.diagnosis_verdicts(_diag_rows(m, scratch, {n: x + 2 for n, x in scratch.items()}))
    assert "**keeps its lead**" in v[0] and "not all done" in v[1]
    # the paper recipe's +2.5 is within a point of LP-FT's +2.0: the recipe is not the cause
    _, v = m.diagnosis_verdicts(_diag_rows(m, scratch, {n: x + 2 for n, x in scratch.items()},
                                           paper=(80.0, 82.5)))
    assert "**not** the cause" in v[1]
    _, v = m.diagnosis_verdicts(_diag_rows(m, scratch, {1000: 52.0}))
    assert "not all done" in v[0]
    text = m.report(_diag_rows(m, scratch, {1000: 52.0}))
    assert "## The 10 % diagnosis" in text and "| 1000 | LP-FT (the grid's) | 44.1 | 52.0 | +7.9 |" in text
    assert "## The 10 % diagnosis" not in m.report(_diag_rows(m, scratch, {}))


def test_the_diagnosis_runs_the_paper_recipe_where_declared_and_resumes(monkeypatch, tmp_path):
    from fourdcontrast.downstream import benchmark as bm

    m = _module()
    ran = _fake_finetuning(monkeypatch)
    m.run_diagnosis(tmp_path, tmp_path)
    grid = bm.PRESETS["cpu-scannet"].overrides_at("scenes", 0.1)
    assert ran == [(m.LONG, 1000, grid), (m.LONG, 2000, grid), (m.LONG, 4000, grid), (m.LONG, 8000, grid),
                   (m.LONG, 8000, m.PAPER_RECIPE), ("scratch", 8000, m.PAPER_RECIPE)]
    assert grid != m.PAPER_RECIPE
    ran.clear()
    rows = m.run_diagnosis(tmp_path, tmp_path)  # every run is in the CSV: nothing runs again
    assert ran == [] and len(rows) == len(m.DIAGNOSIS)


@pytest.mark.parametrize("task", ["instance", "detection"])
def test_the_map_grids_fine_tune_for_what_their_committed_ladders_picked(task):
    from fourdcontrast.downstream.benchmark import PRESETS, read_rows

    m = _module()
    picked = m.ladder_pick(read_rows(m.csv_path(task)), task)  # the committed check
    assert picked is not None
    p = PRESETS[f"cpu-{task}"]
    assert all(p.steps_for(protocol, lv) == picked[0] for protocol, lv in p.finetune_levels)


def _rescreen_rows(m, values):
    """Validation rows of the re-screen: ``values`` maps arm → mIoU (%) of (scratch, PointContrast,
    4DContrast)."""
    return [{"variant": m.RESCREEN_ARMS[arm][0], "method": init, "protocol": "scenes", "level": "0.1",
             "miou": str(v / 100), "cpu_seconds": "1"}
            for arm, vals in values.items() for init, v in zip(m.RESCREEN_INITS, vals, strict=True)]


def test_the_rescreen_picks_the_best_mean_arm_unless_a_simpler_one_is_within_a_point():
    m = _module()
    rows = _rescreen_rows(m, {"paper": (86.3, 86.0, 87.2), "paper-bb0.1": (70.0, 84.0, 85.0),
                              "lp-ft": (86.2, 83.0, 81.0), "lp-ft-bb0.1": (72.0, 85.0, 86.0)})
    arm, means = m.rescreen_pick(rows)
    assert arm == "paper" and means["paper"] == pytest.approx((86.3 + 86.0 + 87.2) / 3)
    # lp-ft 1.5 points ahead of paper: lp-ft; 0.9 ahead: paper (simpler, within a point)
    ahead = _rescreen_rows(m, {"paper": (80.0, 80.0, 80.0), "paper-bb0.1": (70.0, 70.0, 70.0),
                               "lp-ft": (81.5, 81.5, 81.5), "lp-ft-bb0.1": (70.0, 70.0, 70.0)})
    assert m.rescreen_pick(ahead)[0] == "lp-ft"
    near = _rescreen_rows(m, {"paper": (80.0, 80.0, 80.0), "paper-bb0.1": (70.0, 70.0, 70.0),
                              "lp-ft": (80.9, 80.9, 80.9), "lp-ft-bb0.1": (70.0, 70.0, 70.0)})
    assert m.rescreen_pick(near)[0] == "paper"
    assert m.rescreen_pick(rows[:-1]) is None  # one arm × initialisation missing: no verdict
    text = m.report(rows)
    assert "## The long-budget recipe re-screen" in text and "the rule picks **paper**" in text
    assert "| lp-ft | 86.2 | 83.0 | 81.0 | 83.4 |" in text
    assert "committed grid stands" in m.report(ahead)


def test_the_rescreen_reuses_the_diagnosis_rows_and_runs_only_the_rest_in_its_order(monkeypatch, tmp_path):
    from fourdcontrast.downstream import benchmark as bm

    m = _module()
    ran = _fake_finetuning(monkeypatch)
    m.run_diagnosis(tmp_path, tmp_path)
    m.run(tmp_path, tmp_path)  # the step check: scratch's LP-FT rung at 8000 steps among its rows
    ran.clear()
    rows = m.run_rescreen(tmp_path, tmp_path)
    grid = bm.PRESETS["cpu-scannet"].overrides_at("scenes", 0.1)
    pc = "pointcontrast@3600s"
    assert ran[:2] == [(pc, 8000, m.PAPER_RECIPE), (pc, 8000, grid)]
    assert len(ran) == 8 and all(steps == 8000 for _, steps, _ in ran)
    assert ran[2] == (m.LONG, 8000, ("optim.recipe=paper", "optim.backbone_lr_scale=0.1"))
    assert {b for b, _, o in ran if "optim.recipe=lp-ft" in o and len(o) == 2} == set(m.RESCREEN_INITS)
    assert m.rescreen_pick(rows) is not None  # the diagnosis' four rows completed the paper and lp-ft arms


def test_the_rescreened_grid_fine_tunes_with_what_the_committed_rescreen_picked():
    from fourdcontrast.downstream.benchmark import PRESETS, grid_spec, read_rows

    m = _module()
    picked = m.rescreen_pick(read_rows(m.csv_path("segmentation")))  # the committed re-screen
    assert picked is not None and picked[0] != "lp-ft"  # else the declaration calls for no second grid
    first, second = PRESETS["cpu-scannet"], PRESETS["cpu-scannet-rescreened"]
    assert second.finetune_levels == (("scenes", 0.10), ("scenes", 0.20))
    for level in (0.10, 0.20):
        assert second.overrides_at("scenes", level) == m.RESCREEN_ARMS[picked[0]][1]
        assert second.steps_for("scenes", level) == first.steps_for("scenes", level) == 8000
        assert set(second.finetuned_methods("scenes", level)) == set(m.RESCREEN_INITS)
    assert set(second.primary) <= set(first.primary) and len(second.primary) == 4
    assert second.rooms == first.rooms and second.store_voxel == first.store_voxel
    digests = grid_spec(first, "test")["pretrain_config_digests"]
    assert grid_spec(second, "test")["pretrain_config_digests"] == {  # the same cached backbones
        k: v for k, v in digests.items() if k != "4dcontrast-paper-literal"}
