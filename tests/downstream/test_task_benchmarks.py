"""The instance-segmentation and detection grids of issue 28 (``--preset cpu-instance`` / ``cpu-detection``):
their presets, CSV columns, rows, report and one tiny end-to-end run each.

Mutants tried (each turned a test here red): ``finetune_cell`` ignoring the preset's task (segmentation
rows); the ``map`` rows missing the cluster-box baseline; the report's ceiling check comparing mAP@0.5
instead of @0.25; ``write_report`` ignoring the spec's task.
"""

import csv
import json
from dataclasses import replace

import pytest

from fourdcontrast.downstream import benchmark as bm
from fourdcontrast.downstream.report import map_markdown_report, map_sanity_checks
from fourdcontrast.sources.classes import CLASS_NAMES


def test_the_task_presets_share_the_semantic_grids_rooms_pretrainings_and_declare_their_comparisons():
    scannet = bm.PRESETS["cpu-scannet"]
    for task in ("instance", "detection"):
        p = bm.PRESETS[f"cpu-{task}"]
        assert p.task == task and p.finetune_config == f"cpu-{task}" and not p.probe_levels
        assert p.rooms == scannet.rooms and p.store_voxel == scannet.store_voxel
        assert bm.grid_spec(p, "test")["pretrain_config_digests"] == \
            bm.grid_spec(scannet, "test")["pretrain_config_digests"]  # the same cached backbones
        assert [lv for _, lv in p.finetune_levels] == [0.1, 0.2, 0.4, 0.8, 1.0]  # Table 7 + all scenes
        assert set(p.finetuned_methods("scenes", 0.1)) == set(p.labels())
        assert p.finetuned_methods("scenes", 0.8) == ("scratch", "4dcontrast")
        assert ("4dcontrast@3600s", "scratch", "finetune", "scenes", 0.1) in p.primary
        assert _cfg(p).model.task == task
    assert bm.PRESETS["cpu-instance"].primary_metric == "map50"
    assert bm.PRESETS["cpu-detection"].primary_metric == "map50"
    with pytest.raises(ValueError, match="not a metric of task"):
        replace(bm.PRESETS["cpu-detection"], primary_metric="miou")
    with pytest.raises(ValueError, match="no linear probe"):
        replace(bm.PRESETS["cpu-instance"], probe_levels=(("scenes", 1.0),))
    with pytest.raises(ValueError, match="task must be one of"):
        replace(bm.PRESETS["cpu"], task="panoptic")


def _cfg(p):
    return bm._finetune_base(p)


def test_task_csv_columns_name_the_map_metrics_and_ap_per_thing_class():
    seg = bm.csv_fields(CLASS_NAMES)
    inst = bm.csv_fields(CLASS_NAMES, "instance")
    det = bm.csv_fields(CLASS_NAMES, "detection")
    assert "miou" in seg and "map50" not in seg
    for fields in (inst, det):
        assert "miou" not in fields and {"map50", "map25", "ap50_chair", "ap25_chair"} <= set(fields)
        assert "ap50_wall" not in fields and "ap50_floor" not in fields  # stuff has no instances
        assert fields[:6] == ("split", "mode", "protocol", "level", "seed", "method")
    assert "cluster_boxes_map50" in inst and "cluster_boxes_map50" not in det


def test_a_map_row_carries_the_metrics_and_the_cluster_box_baseline():
    from fourdcontrast.downstream.instance import MapMetrics
    from fourdcontrast.downstream.training import FinetuneResult

    m = MapMetrics(0.5, 0.75, {"chair": 0.4}, {"chair": 0.8},
                   extra={"cluster_boxes_map50": 0.25, "cluster_boxes_map25": 0.3})
    b = bm.Backbone("4dcontrast", 1, None, "abc", budget_s=300.0)
    row = bm._row(FinetuneResult(m, train_scenes=12), split="test", mode="finetune", protocol="scenes",
                  level=0.1, seed=1, method="4dcontrast", backbone=b, steps=1000, class_names=CLASS_NAMES)
    assert row["map50"] == "0.5000" and row["map25"] == "0.7500" and row["ap50_chair"] == "0.4000"
    assert row["cluster_boxes_map50"] == "0.2500" and row["pretrain_budget_s"] == "300"
    assert set(row) <= set(bm.csv_fields(CLASS_NAMES, "instance"))


def _map_rows(cells):
    return [dict(split="test", mode="finetune", protocol="scenes", level=f"{lv:g}", seed=s, method=m,
                 map50=v, map25=min(1.0, v + 0.2))
            for (lv, m), values in cells.items() for s, v in enumerate(values)]


def test_the_map_report_states_primaries_sanity_and_tables():
    # a preset whose primary metric is mAP@0.25: the report compares mAP@0.25 (+10), not mAP@0.5 (+5)
    rows = _map_rows({(0.1, "scratch"): [0.10, 0.12, 0.11], (0.1, "4dcontrast@3600s"): [0.15, 0.16, 0.17],
                      (0.2, "scratch"): [0.20, 0.22, 0.21], (0.2, "4dcontrast@3600s"): [0.20, 0.23, 0.21],
                      (1.0, "scratch"): [0.25, 0.26, 0.24]})
    for r in rows:
        if r["method"] == "4dcontrast@3600s" and r["level"] == "0.1":
            r["map25"] += 0.05  # Δ mAP@0.25 = +10, Δ mAP@0.5 = +5
    preset = replace(bm.PRESETS["cpu-detection"], primary_metric="map25")
    spec = json.loads(json.dumps({**bm.grid_spec(preset, "test"), "preset_name": "x"}))
    text = map_markdown_report(rows, "detection", None, spec)
    assert text.index("Pre-declared primary comparisons") < text.index("+10.0")
    assert "4dcontrast@3600s − scratch, fine-tuned, 10 % of scenes: +10.0 mAP@0.25 points" in text
    assert "20.0 vs 15.5" in text  # the paper's Table 7 at 10 %
    assert "| 4dcontrast@3600s |" in text and "mAP@0.25 (%)" in text
    checks = {c.name: c for c in map_sanity_checks(rows)}
    ceiling = checks["scratch on 100 % of the scenes: mAP@0.25 ≥ 50"]
    assert ceiling.passed is False and ceiling.detail.startswith("45.0")  # 0.25 + 0.2: @0.25, not @0.5
    more = checks["scratch fine-tuned: more scenes ≥ fewer (mAP@0.5)"]
    assert more.passed is True
    drop = _map_rows({(0.1, "scratch"): [0.3], (0.2, "scratch"): [0.1]})
    assert {c.name: c for c in map_sanity_checks(drop)}[
        "scratch fine-tuned: more scenes ≥ fewer (mAP@0.5)"].passed is False


@pytest.mark.slow
@pytest.mark.parametrize("task", ["instance", "detection"])
def test_task_grid_end_to_end_tiny(tmp_path, task):
    p = replace(bm.PRESETS["tiny"], task=task, methods=("scratch", "pointcontrast"), probe_levels=(),
                finetune_levels=(("scenes", 0.5), ("scenes", 1.0)), finetune_steps_at=(), finetune_steps=2,
                finetune_config=f"cpu-{task}", finetune_overrides=("optim.bn_recalibration=1",))
    out = tmp_path / "results"
    bm.run_benchmark(p, out, tmp_path / "cache", room_cache=str(tmp_path / "rooms"), progress=False,
                     preset_name=f"tiny-{task}")
    rows = list(csv.DictReader(open(out / "downstream.csv")))
    assert len(rows) == 2 * 2 * 2 and {r["mode"] for r in rows} == {"finetune"}
    assert all(0 <= float(r["map50"]) <= float(r["map25"]) <= 1 for r in rows)
    assert list(rows[0]) == list(bm.csv_fields(CLASS_NAMES, task))
    assert {r["skipped"] for r in rows if r["method"] == "pointcontrast"} == {"0"}  # the whole U-Net loads
    text = (out / "downstream.md").read_text()
    assert text.startswith(f"# Downstream benchmark: {task if task == 'instance' else '3D object'}")
    assert "mAP@0.25 ≥ 50" in text and (out / "downstream_figure4.png").stat().st_size > 1000
