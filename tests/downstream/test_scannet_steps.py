"""benchmarks/scannet_steps.py: the rule that says whether the cpu-scannet grid's step counts are enough.
(Mutant tried: the verdict on one initialisation's gain instead of the mean → red.)"""

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
