import csv

import pytest

from fourdcontrast.cli import main
from fourdcontrast.downstream.benchmark import PRESETS, markdown_table, summarise


def test_summary_pairs_differences_by_seed():
    rows = [dict(mode="linear", protocol="scenes", level="0.01", seed=s, method=m, miou=v)
            for s, (a, b) in enumerate([(0.10, 0.15), (0.20, 0.22), (0.30, 0.37)])
            for m, v in (("scratch", a), ("4dcontrast", b))]
    s = summarise(rows)
    e = s[("linear", "scenes", 0.01, "4dcontrast")]
    assert e["mean"] == pytest.approx(24.6666, abs=1e-3) and e["n"] == 3
    assert e["delta"] == pytest.approx(4.6666, abs=1e-3)
    assert e["delta_std"] == pytest.approx(2.5166, abs=1e-3)
    table = markdown_table(rows)
    assert "Δ +4.7 ± 2.5" in table and "1 % scenes" in table


@pytest.mark.slow
def test_downstream_benchmark_end_to_end_tiny(tmp_path, capsys):
    out, cache = tmp_path / "results", tmp_path / "cache"
    argv = ["benchmark", "downstream", "--preset", "tiny", "--out", str(out), "--cache", str(cache),
            "--room-cache", str(tmp_path / "rooms"), "--no-progress", "--threads", "2"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "downstream.csv")))
    p = PRESETS["tiny"]
    n_probe = len(p.methods) * len(p.seeds) * (len(p.scene_fractions) + len(p.point_levels))
    n_ft = len(p.methods) * len(p.seeds) * (len(p.finetune_scene_fractions) + len(p.finetune_point_levels))
    assert len(rows) == n_probe + n_ft
    assert {r["method"] for r in rows} == set(p.methods)
    assert all(0 <= float(r["miou"]) <= 1 for r in rows)
    assert (out / "downstream_figure4.png").stat().st_size > 1000
    assert "Fine-tuning" in (out / "downstream.md").read_text()
    assert (cache / "pretrain" / "4dcontrast-1steps" / "backbone.pth").is_file()
    # resuming does nothing more and keeps the rows
    assert main(argv) == 0
    assert len(list(csv.DictReader(open(out / "downstream.csv")))) == len(rows)
    assert "runs in" in capsys.readouterr().out
