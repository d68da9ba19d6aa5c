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
             "miou": str(0.3 + (gain[(p, init)] if n == steps[1] else 0.0))}
            for (p, lv), steps in m.CHECKS.items() for n in steps for init in m.INITS]
    text = m.report(rows)
    assert "scenes 0.1: doubling the grid's 1000 steps gains +1.1" in text and "**short**" in text
    assert "points 20: doubling the grid's 500 steps gains +0.8" in text and "**enough**" in text
    assert "not all runs done yet" in m.report(rows[:1])
