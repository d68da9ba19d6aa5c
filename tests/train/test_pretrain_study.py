"""benchmarks/pretrain_study.py: the committed CSV restores the runs' results on a fresh clone, so new
seeds add to the measured ones; the report rebuilds the same rows from them."""

import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _study():
    spec = importlib.util.spec_from_file_location("pretrain_study", ROOT / "benchmarks" / "pretrain_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restore_writes_typed_results_and_keeps_existing_ones(tmp_path):
    study = _study()
    fields = study.FIELDS
    rows = [{**{f: "" for f in fields}, "arm": "motion", "seed": "1", "budget_s": "90.0", "steps": "33",
             "erank": "7.5", "probe_miou": "16.25"},
            {**{f: "" for f in fields}, "arm": "random", "seed": "0", "budget_s": "0.0", "steps": "0",
             "erank": "13.0", "probe_miou": "15.5"}]
    path = tmp_path / "study.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    existing = out / "runs" / "random-s0-b0" / "result.json"
    existing.parent.mkdir(parents=True)
    existing.write_text(json.dumps({"arm": "random", "seed": 0, "budget_s": 0.0, "erank": 99.0}))
    written = study.restore_results(path, out)
    assert written == [out / "runs" / "motion-s1-b90" / "result.json"]
    restored = json.loads(written[0].read_text())
    assert restored["seed"] == 1 and restored["steps"] == 33 and restored["budget_s"] == 90.0
    assert restored["erank"] == 7.5 and restored["recall_10cm"] is None
    assert json.loads(existing.read_text())["erank"] == 99.0  # a run's own result is never replaced
    assert study.restore_results(path, out) == []  # idempotent
    assert {r["arm"] for r in study.read_results(out)} == {"motion", "random"}


def test_the_committed_study_csv_restores_every_row(tmp_path):
    study = _study()
    committed = ROOT / "benchmarks" / "results" / "pretrain_study.csv"
    with open(committed, newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    assert len(study.restore_results(committed, tmp_path)) == n > 0
