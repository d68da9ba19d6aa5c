import csv
import dataclasses
import json
import os
from dataclasses import replace

import pytest
import torch

from fourdcontrast.cli import main
from fourdcontrast.downstream import benchmark as bm
from fourdcontrast.downstream.data import load_dataset
from fourdcontrast.downstream.report import (
    PRIMARY_COMPARISONS,
    Comparison,
    compare,
    markdown_report,
    primary_sentence,
    sanity_checks,
    summarise,
)
from fourdcontrast.downstream.stats import paired_t_interval

TINY = bm.PRESETS["tiny"]


def _rows(cells):
    """CSV-like rows from {(mode, protocol, level, method): [value per seed]} (values in fractions)."""
    return [dict(split="test", mode=mode, protocol=p, level=f"{lv:g}", seed=s, method=m, miou=v,
                 miou_objects=v / 2)
            for (mode, p, lv, m), values in cells.items() for s, v in enumerate(values)]


def test_scratch_backbones_differ_by_seed_and_are_cached(tmp_path):
    a = bm.scratch_backbone(0, TINY, tmp_path)
    b = bm.scratch_backbone(1, TINY, tmp_path)
    assert a.path.parent.name.startswith("scratch-seed0-") and b.path.parent.name.startswith("scratch-seed1-")
    assert a.digest != b.digest
    sa, sb = torch.load(a.path, weights_only=True), torch.load(b.path, weights_only=True)
    assert not torch.equal(sa["conv0p1s1.kernel"], sb["conv0p1s1.kernel"])
    mtime = a.path.stat().st_mtime_ns
    again = bm.scratch_backbone(0, TINY, tmp_path)
    assert again.path == a.path and again.digest == a.digest and a.path.stat().st_mtime_ns == mtime
    # the random network of a seed does not depend on (nor change) the global generator
    torch.manual_seed(123)
    x = torch.rand(1)
    torch.manual_seed(123)
    bm.random_backbone_state("MinkUNet14A", 3, 8, 5)
    assert torch.equal(torch.rand(1), x)


def test_pretraining_configs_are_seeded_budgeted_and_keyed(tmp_path, monkeypatch):
    budgeted = replace(bm.PRESETS["cpu"], methods=("scratch", "pointcontrast", "4dcontrast"))
    c0 = bm.pretraining_config("pointcontrast", 0, budgeted)
    c1 = bm.pretraining_config("pointcontrast", 1, budgeted)
    assert (c0.run.seed, c1.run.seed, c0.method) == (0, 1, "pointcontrast")
    assert c0.run.time_budget_s == budgeted.pretrain_budget_s and c0.run.budget_clock == "process"
    assert c0.optim.steps == budgeted.pretrain_steps and c0.data.workers == 0
    own = bm.pretraining_config("4dcontrast", 0, budgeted)  # the recommended preset's own method
    assert own.method == "simclr-infonce" and own.model["background_pairs_per_group"] == 256
    assert bm.pretraining_config("4dcontrast-paper-literal", 0, budgeted).method == "4dcontrast"
    with pytest.raises(ValueError, match="no pre-training"):
        bm.pretraining_config("scratch", 0, budgeted)

    # the cache: one folder per (method, seed, config digest), pre-trained once, frames counted
    import fourdcontrast.train.pretrain as tp

    calls = []

    def fake_pretrain(config, out, resume=False, progress=True, **kwargs):
        calls.append((config.method, config.run.seed, resume))
        out.mkdir(parents=True, exist_ok=True)
        (out / tp.CHECKPOINT).write_bytes(b"x")
        (out / "log.csv").write_text("step,loss,budget_s\n5,1.0,3.0\n7,0.9,4.5\n")

    def fake_export(checkpoint, path, half=False):
        torch.save({"w": torch.full((2,), float(len(calls)))}, path)

    monkeypatch.setattr(tp, "pretrain", fake_pretrain)
    monkeypatch.setattr(tp, "export_backbone", fake_export)
    b0 = bm.pretrained_backbone("4dcontrast", 0, TINY, tmp_path)
    b1 = bm.pretrained_backbone("4dcontrast", 1, TINY, tmp_path)
    pc = bm.pretrained_backbone("pointcontrast", 0, TINY, tmp_path)
    assert [c[:2] for c in calls] == [(own.method, 0), (own.method, 1), ("pointcontrast", 0)]
    assert b0.path.parent != b1.path.parent and b0.digest != b1.digest != pc.digest
    assert b0.path.parent.name.startswith("4dcontrast-seed0-")
    tiny_cfg = bm.pretraining_config("4dcontrast", 0, TINY)
    assert b0.path.parent.name.endswith(bm.pretraining_digest(tiny_cfg))
    # the key ignores result-neutral switches added after the first caches, not anything else
    fused = dataclasses.replace(tiny_cfg, model={**tiny_cfg.model, "fused_pair_losses": True})
    other = dataclasses.replace(tiny_cfg, model={**tiny_cfg.model, "feature_dim": 16})
    assert bm.pretraining_digest(fused) == bm.pretraining_digest(tiny_cfg) != bm.pretraining_digest(other)
    # a field added later is left out only while at its default (data.crop_size: None)
    cropped = dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, crop_size=3.0))
    assert bm.pretraining_digest(cropped) != bm.pretraining_digest(tiny_cfg)
    assert b0.cost["steps"] == 7 and b0.cost["budget_used_s"] == 4.5
    batch = tiny_cfg.data.batch_size
    assert b0.cost["sequences"] == 7 * batch and b0.cost["frames"] == 7 * batch * tiny_cfg.data.length
    assert pc.cost["frames"] == 7 * batch * 2  # static pairs: two views
    assert bm.pretrained_backbone("4dcontrast", 0, TINY, tmp_path).digest == b0.digest
    assert len(calls) == 3  # cached: not pre-trained again
    other = replace(TINY, pretrain_steps=2)  # another config: another folder
    assert bm.pretrained_backbone("4dcontrast", 0, other, tmp_path).path.parent != b0.path.parent


def test_probe_features_are_keyed_by_backbone(tmp_path):
    preset = replace(TINY, rooms={"train": 1, "val": 1, "test": 1},
                     finetune_overrides=("optim.probe_steps=5", "model.backbone=MinkUNet14A"))
    rooms = load_dataset("embedded", "train", rooms={"train": 1}, cache_dir=None)
    datasets = (rooms, rooms)
    cache: dict = {}
    a, b = bm.scratch_backbone(0, preset, tmp_path), bm.scratch_backbone(1, preset, tmp_path)
    ra = bm.probe_cells(a, [("points", 20)], 0, preset, "test", datasets, feature_cache=cache)
    fa = cache[a.digest][rooms.scenes[0].name][0]
    rb = bm.probe_cells(b, [("points", 20)], 0, preset, "test", datasets, feature_cache=cache)
    assert list(cache) == [b.digest]  # one backbone's features at a time, never another's
    fb = cache[b.digest][rooms.scenes[0].name][0]
    assert not torch.allclose(fa, fb)
    assert ra[0]["backbone"] == a.digest and rb[0]["backbone"] == b.digest
    assert ra[0]["loaded"] == rb[0]["loaded"] > 0 and ra[0]["skipped"] == 0
    assert {"iou_wall", "iou_floor", "miou_objects"} <= set(ra[0])
    assert ra[0]["split"] == "test" and ra[0]["mode"] == "linear"


def test_grid_refuses_foreign_results(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "downstream.csv").write_text("mode,protocol,level,seed,method,miou\n"
                                        "linear,scenes,0.01,0,scratch,0.1\n")
    with pytest.raises(ValueError, match="earlier format"):
        bm.run_benchmark(TINY, out, tmp_path / "cache", room_cache="", progress=False)
    with pytest.raises(ValueError, match="split must be"):
        bm.run_benchmark(TINY, out, tmp_path / "cache", split="train")
    with pytest.raises(ValueError, match="include 'scratch'"):
        replace(TINY, methods=("pointcontrast",))


def test_grid_estimate_adds_up_the_measured_costs():
    preset = replace(bm.PRESETS["cpu"], methods=("scratch", "pointcontrast", "4dcontrast"), seeds=(0, 1),
                     pretrain_budget_s=100.0, finetune_steps=10, finetune_steps_at=(("points", 20, 4),),
                     finetune_levels=(("scenes", 0.01), ("points", 20), ("scenes", 1.0)),
                     finetune_methods_at=(("scenes", 1.0, ("scratch",)),))
    costs = bm.RunCosts(finetune_per_step=0.5, finetune_fixed=3.0, probe_per_backbone=7.0,
                        pretrain_overhead=20.0)
    est = bm.estimate_grid(preset, costs, jobs=2, efficiency=0.5)
    assert est["pretrain_runs"] == 4 and est["pretrain_cpu_s"] == 4 * 120.0
    # 3 methods x 2 seeds at 1 % (10 steps) and 20 points (4 steps); scratch x 2 seeds at 100 % (10 steps)
    assert preset.finetuned_methods("scenes", 1.0) == ("scratch",)
    assert preset.finetuned_methods("points", 20) == preset.methods
    assert est["finetune_runs"] == 14
    assert est["finetune_cpu_s"] == 6 * (3.0 + 0.5 * 10) + 6 * (3.0 + 0.5 * 4) + 2 * (3.0 + 0.5 * 10)
    assert preset.steps_for("points", 20) == 4 and preset.steps_for("scenes", 0.01) == 10
    assert est["probe_cpu_s"] == 6 * 7.0 and est["probe_runs"] == 6 * len(preset.probe_levels)
    assert est["cpu_s"] == 480 + 94 + 42 and est["wall_s"] == est["cpu_s"]  # 2 jobs at half speed
    with pytest.raises(ValueError, match="not a fine-tuning level"):
        replace(preset, finetune_steps_at=(("scenes", 0.5, 3),))
    with pytest.raises(ValueError, match="methods not in the preset"):
        replace(preset, finetune_methods_at=(("scenes", 1.0, ("csc",)),))
    with pytest.raises(ValueError, match="time budget"):
        bm.estimate_grid(TINY, bm.RunCosts(1, 1, 1, 1))


def test_summary_pairs_differences_by_seed_with_t_intervals():
    rows = _rows({("linear", "scenes", 0.01, "scratch"): [0.10, 0.20, 0.30],
                  ("linear", "scenes", 0.01, "4dcontrast"): [0.15, 0.22, 0.37]})
    e = summarise(rows)[("linear", "scenes", 0.01, "4dcontrast")]
    assert e["mean"] == pytest.approx(24.6666, abs=1e-3) and e["n"] == 3
    assert e["delta"] == pytest.approx(4.6666, abs=1e-3) and e["delta_std"] == pytest.approx(2.5166, abs=1e-3)
    d = paired_t_interval([5.0, 2.0, 7.0])
    assert (e["low"], e["high"]) == (pytest.approx(d.low), pytest.approx(d.high))
    assert summarise(rows, "miou_objects")[("linear", "scenes", 0.01, "4dcontrast")]["mean"] == \
        pytest.approx(12.3333, abs=1e-3)


def test_primary_sentences_say_which_way_and_whether_the_paper_agrees():
    c = Comparison("4dcontrast", "scratch", "finetune", "scenes", 0.01)
    ahead = primary_sentence(c, paired_t_interval([2.0, 3.0, 4.0]))
    assert "4DContrast is ahead" in ahead and "agrees with the paper" in ahead and "+1.4" in ahead
    behind = primary_sentence(c, paired_t_interval([-2.0, -3.0, -4.0]))
    assert "behind" in behind and "contradicts" in behind
    unclear = primary_sentence(c, paired_t_interval([-1.0, 0.5, 2.0]))
    assert "no difference could be detected" in unclear
    assert "no paired runs" in primary_sentence(c, paired_t_interval([]))
    values = {("finetune", "scenes", 0.01, "4dcontrast"): {0: 30.0, 1: 33.0},
              ("finetune", "scenes", 0.01, "scratch"): {1: 31.0, 2: 20.0}}
    assert compare(values, c).n == 1  # only seed 1 is paired


def test_markdown_declares_the_primary_comparisons_before_any_number_and_checks_sanity():
    cells = {}
    for m, shift in (("scratch", 0.0), ("pointcontrast", 0.01), ("4dcontrast", 0.03)):
        for mode, base in (("finetune", 0.30), ("linear", 0.20)):
            for p, lv, extra in (("scenes", 0.01, 0.0), ("scenes", 1.0, 0.2), ("points", 20, 0.05)):
                cells[(mode, p, lv, m)] = [base + extra + shift + 0.01 * s for s in range(3)]
    cells[("finetune", "points", 20, "pointcontrast")] = [0.10, 0.11, 0.12]  # below its probe
    text = markdown_report(_rows(cells))
    declared = text.index("## Pre-declared primary comparisons")
    first_number = text.index("## Primary comparisons: results")
    assert declared < first_number
    for c in PRIMARY_COMPARISONS:
        assert text.index(c.name()) < first_number
    assert "4dcontrast − scratch, fine-tuned, 1 % of scenes: +3.0 mIoU points" in text
    checks = {c.name: c for c in sanity_checks(_rows(cells))}
    ft = checks["fine-tuning ≥ linear probe"]
    assert ft.passed is False and "pointcontrast at 20 pts" in ft.detail
    assert checks["scratch fine-tuned: more scenes ≥ fewer"].passed is True
    ceiling = checks["full-data ceiling reported"]
    assert ceiling.passed and "51.0 ± 1.0" in ceiling.detail
    cells[("finetune", "scenes", 1.0, "scratch")] = [0.2, 0.2, 0.2]  # less than at 1 %
    checks = {c.name: c for c in sanity_checks(_rows(cells))}
    assert not checks["scratch fine-tuned: more scenes ≥ fewer"].passed
    points = checks["scratch fine-tuned: more labelled points ≥ fewer"]  # 20 pts (36 %) vs all points (20 %)
    assert points.passed is False and "20 pts 36.0 → all points 20.0" in points.detail
    assert "Holm" in text


@pytest.mark.slow
def test_downstream_benchmark_end_to_end_tiny(tmp_path, capsys):
    out, cache = tmp_path / "results", tmp_path / "cache"
    argv = ["benchmark", "downstream", "--preset", "tiny", "--out", str(out), "--cache", str(cache),
            "--room-cache", str(tmp_path / "rooms"), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "downstream.csv")))
    p = TINY
    n_probe = len(p.methods) * len(p.seeds) * len(p.probe_levels)
    n_ft = len(p.methods) * len(p.seeds) * len(p.finetune_levels)
    assert len(rows) == n_probe + n_ft
    assert {r["method"] for r in rows} == set(p.methods) and {r["split"] for r in rows} == {"test"}
    assert all(0 <= float(r["miou"]) <= 1 and 0 <= float(r["miou_objects"]) <= 1 for r in rows)
    # every (method, seed) has its own backbone; fine-tuning skipped exactly the head, the probe nothing
    backbones = {(r["method"], r["seed"], r["backbone"]) for r in rows}
    assert len(backbones) == len({r["backbone"] for r in rows}) == len(p.methods) * len(p.seeds)
    assert {(r["loaded"], r["skipped"]) for r in rows if r["mode"] == "finetune"} == {("192", "2")}
    assert {(r["protocol"], r["finetune_steps"]) for r in rows if r["mode"] == "finetune"} == {
        ("scenes", "2"), ("points", "3")}  # a level's own step count
    assert {r["skipped"] for r in rows if r["mode"] == "linear"} == {"0"}
    for m in ("4dcontrast", "pointcontrast", "scratch"):
        for s in p.seeds:
            assert len(list((cache / "pretrain").glob(f"{m}-seed{s}-*/backbone.pth"))) == 1
    costs = json.loads((out / "downstream_pretrain_cost.json").read_text())
    assert costs["4dcontrast/seed1"]["steps"] == 1 and costs["4dcontrast/seed1"]["frames"] > 0
    text = (out / "downstream.md").read_text()
    assert "Pre-declared primary comparisons" in text and "Sanity checks" in text and "frames" in text
    assert (out / "downstream_figure4.png").stat().st_size > 1000
    assert (out / "downstream_figure4_objects.png").stat().st_size > 1000
    # resuming (with other threads) does nothing more and keeps the rows; the report rebuilds from the CSV
    assert main([*argv[:-1], "2"]) == 0
    assert len(list(csv.DictReader(open(out / "downstream.csv")))) == len(rows)
    (out / "downstream.md").unlink()
    assert main([*argv, "--report-only"]) == 0 and (out / "downstream.md").read_text() == text
    assert "runs in" in capsys.readouterr().out
    # another preset must not append to this CSV
    with pytest.raises(ValueError, match="another grid"):
        bm.run_benchmark(replace(TINY, finetune_steps=3), out, cache, progress=False)
    # --jobs 2 (how the committed grid ran): every task in a worker process, pre-training included (a
    # cache of its own), gives the same rows as --jobs 1 in this process, timings aside
    out2, cache2 = tmp_path / "results-jobs2", tmp_path / "cache-jobs2"
    argv2 = ["benchmark", "downstream", "--preset", "tiny", "--out", str(out2), "--cache", str(cache2),
             "--room-cache", str(tmp_path / "rooms"), "--no-progress", "--threads", "1", "--jobs", "2"]
    assert main(argv2) == 0
    timing = {"seconds", "cpu_seconds"}

    def by_key(path):
        return {bm._key(r): {k: v for k, v in r.items() if k not in timing}
                for r in csv.DictReader(open(path))}

    one, two = by_key(out / "downstream.csv"), by_key(out2 / "downstream.csv")
    assert len(one) == len(two) == len(rows)  # (the order of the rows may differ: keys decide)
    assert two == one


def test_the_committed_grid_is_still_the_grid_the_cpu_preset_makes():
    """Fields added to the configs since the committed grid ran must not change its pre-training digests:
    otherwise a resumed grid or cache would be refused (or silently re-run) for nothing."""
    from pathlib import Path

    committed = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "results"
                            / "downstream_grid.json").read_text())
    spec = bm.grid_spec(bm.PRESETS[committed["preset_name"]], committed["split"])
    assert spec["pretrain_config_digests"] == committed["pretrain_config_digests"]
    assert bm._same_grid(committed, spec)


def test_a_pretraining_folder_is_claimed_so_two_grids_never_pretrain_it_at_once(tmp_path):
    """A live process's lock refuses (naming the process); a dead process's lock is taken over; the lock is
    gone once the claim ends, even after an error. (Mutant tried: no check of the holder → red.)"""
    import subprocess
    import sys

    from fourdcontrast.downstream.benchmark import claim_folder

    folder = tmp_path / "pretrain" / "4dcontrast-seed0-x"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder.mkdir(parents=True)
        (folder / "pretraining.lock").write_text(str(sleeper.pid))
        with pytest.raises(RuntimeError, match=rf"being pre-trained by process {sleeper.pid}"):
            with claim_folder(folder):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with claim_folder(folder):  # the holder is gone: its lock is stale
        assert (folder / "pretraining.lock").read_text() == str(os.getpid())
    assert not (folder / "pretraining.lock").exists()
    with pytest.raises(ValueError), claim_folder(folder):
        raise ValueError("pre-training failed")
    assert not (folder / "pretraining.lock").exists()
