"""Package a cpu-small pre-training run as the shipped checkpoint (fourdcontrast/assets/pretrained).

Writes ``cpu-small-backbone.pth`` (the 3D backbone in half precision), ``training_curves.png`` (loss per
term, SimSiam's std monitor, effective ranks, feature-match recall) and ``PROVENANCE.md`` (the command
that reproduces the run — derived from the run's own resolved config, so the two always agree — config,
seed, machine, measured recall and effective rank of the random and the shipped backbone on 4 held-out
sequences). Usage::

    fourdcontrast pretrain --config cpu-small --set run.time_budget_s=300 --set run.threads=1 \
        --set data.workers=0 --set optim.steps=1000000 --out outputs/pretrain/shipped
    python scripts/make_shipped_checkpoint.py outputs/pretrain/shipped [--study-row benchmarks/results/...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fourdcontrast.demo import SHIPPED_BACKBONE, load_backbone  # noqa: E402
from fourdcontrast.machine import cpu_model  # noqa: E402
from fourdcontrast.metrics import batch_feature_match_recall, effective_rank  # noqa: E402
from fourdcontrast.sparse import SparseTensor  # noqa: E402
from fourdcontrast.train.checkpoint import load_checkpoint  # noqa: E402
from fourdcontrast.train.config import config_from_dict, dump_config, load_config  # noqa: E402
from fourdcontrast.train.pretrain import CHECKPOINT, export_backbone, holdout_batch, read_log  # noqa: E402

HELD_OUT = 4
SAMPLES = 3000
THRESHOLDS = (0.05, 0.10, 0.20)


def recalls(batch, path) -> dict:
    model = load_backbone(path, seed=1)
    with torch.no_grad():
        feats = model(SparseTensor(batch.feats_3d, batch.coords_3d.long())).F
    out = {f"{t:.2f}": batch_feature_match_recall(feats, batch, threshold=t, num_samples=SAMPLES,
                                                  generator=torch.Generator().manual_seed(0))
           for t in THRESHOLDS}
    out["erank"] = effective_rank(feats, generator=torch.Generator().manual_seed(0))
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "rooms":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def reproducing_command(config, run: Path) -> str:
    """``fourdcontrast pretrain --config cpu-small`` with a ``--set`` for every field where the run's
    resolved config differs from the shipped preset's: the command and the config cannot disagree."""
    base = _flatten(load_config("cpu-small").to_dict())
    mine = _flatten(config.to_dict())
    sets = [f"--set {k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}"
            for k, v in mine.items() if base.get(k) != v and not k.startswith("model.")]
    sets += [f"--set {k}={v}" for k, v in mine.items()
             if k.startswith("model.") and base.get(k) != v]
    return " \\\n    ".join(["fourdcontrast pretrain --config cpu-small", *sets, f"--out {run}"])


def plot_curves(rows: list[dict], path: Path, feature_dim: int) -> None:
    from fourdviz.pretraining import plot_pretrain_log

    fig = plot_pretrain_log(rows, healthy_std=feature_dim ** -0.5, feature_dim=feature_dim,
                            title="the shipped backbone's pre-training")
    fig.set_dpi(80)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the pre-training output folder (checkpoint.pt, log.csv)")
    parser.add_argument("--study-row", default=None,
                        help="benchmarks/results/pretrain_study.csv: quote this run's linear probe")
    parser.add_argument("--ship-check", default=None,
                        help="benchmarks/results/scannet-size/ship_check.md: quote the validation probes "
                             "that chose this run (benchmarks/ship_check.py)")
    args = parser.parse_args()
    run = Path(args.run)
    state = load_checkpoint(run / CHECKPOINT)
    config = config_from_dict(state["config"])
    out = SHIPPED_BACKBONE.parent
    out.mkdir(parents=True, exist_ok=True)
    export_backbone(run / CHECKPOINT, SHIPPED_BACKBONE, half=True)
    rows = read_log(run / "log.csv")
    plot_curves(rows, out / "training_curves.png", config.method_config().feature_dim)
    config.data.holdout_sequences = HELD_OUT
    batch = holdout_batch(config)
    measured = {"random": recalls(batch, None), "shipped": recalls(batch, SHIPPED_BACKBONE)}
    losses = [r for r in rows if r["loss"] is not None]
    study = {}
    if args.study_row:
        import csv

        with open(args.study_row, newline="") as fh:
            study = next((r for r in csv.DictReader(fh)
                          if r["arm"] == "recommended" and int(r["seed"]) == config.run.seed
                          and float(r["budget_s"]) == float(config.run.time_budget_s or -1)), {})
    facts = {"backbone": state["config"]["model"]["backbone_3d"],
             "method": config.method, "budget_s": config.run.time_budget_s,
             "budget_clock": config.run.budget_clock,
             "budget_spent_s": float(state.get("budget_spent", 0.0)),
             "out_channels": config.method_config().feature_dim,
             "steps": state["step"], "seed": config.run.seed, "loss_first": losses[0]["loss"],
             "loss_last": losses[-1]["loss"], "std_z3d_last": losses[-1]["std_z3d"],
             "erank_backbone_3d_last": losses[-1].get("erank_backbone_3d"),
             "probe_miou_val": float(study["probe_miou"]) if study else None,
             "seconds_per_step": sum(r["data_s"] + r["compute_s"] for r in losses) / len(losses),
             "recall_held_out": measured, "held_out_sequences": HELD_OUT,
             "recall_samples_per_sequence": SAMPLES,
             "cpu": cpu_model(), "torch": torch.__version__, "size_bytes": SHIPPED_BACKBONE.stat().st_size}
    table = "\n".join(f"| recall @ {t} m | {measured['random'][t]:.4f} | {measured['shipped'][t]:.4f} |"
                      for t in measured["random"] if t != "erank")
    table += (f"\n| effective rank of the output (of {facts['out_channels']}) | "
              f"{measured['random']['erank']:.2f} | {measured['shipped']['erank']:.2f} |")
    probe = ("" if not study else
             f"\n\nLinear probe (200 labelled points per room, 100 training rooms, 20 validation rooms; "
             f"`benchmarks/pretrain_study.py`, the same run): {float(study['probe_miou']):.2f} mIoU.")
    if args.ship_check:
        check = Path(args.ship_check).read_text().split("\n", 1)[1].strip()
        probe += (f"\n\n## Why this run\n\nChosen by the pre-declared rule of `benchmarks/ship_check.py` "
                  f"(`{args.ship_check}`; the backbone called `shipped` there is the one this run "
                  f"replaced; the run is the grid's `4dcontrast@3600s` seed 0: pre-trained to the grid's "
                  f"300 CPU-s, then continued from that checkpoint — the same run, since the schedule "
                  f"depends on the step and the budget only stops it):\n\n"
                  f"{check.replace('## Verdict', '**Verdict**')}")
    text = f"""# Shipped pre-trained 3D backbone

`cpu-small-backbone.pth`: the 3D backbone (Φ3D's U-Net, `{facts['backbone']}`, 3 → {facts['out_channels']}
channels) of a 4DContrast pre-training (the recommended CPU preset `cpu-small`: method `{facts['method']}`) on
the embedded rooms and CC-0 furniture, stored in half precision
({facts['size_bytes'] / 1e6:.1f} MB). Load it with

```python
state = torch.load(path, weights_only=True)
model = build_backbone("{facts['backbone']}", 3, {facts['out_channels']})
model.load_state_dict({{k: v.float() for k, v in state.items()}})
```

## How it was made

```
{reproducing_command(config, run)}
python scripts/make_shipped_checkpoint.py {run}
```

(the `--set` items are exactly where the run's resolved config, below, differs from `configs/pretrain/
cpu-small.yaml`.) Seed {facts['seed']}; {facts['steps']} steps of 2 sequences × 4 frames (10 cm 3D / 20 cm 4D
voxels) until its budget of {facts['budget_s']} s of {facts['budget_clock']} time was spent, on one
thread of a 2-core {facts['cpu']} (torch {facts['torch']}): {facts['budget_spent_s'] / facts['steps']:.2f} s
of CPU per step ({facts['seconds_per_step']:.1f} s wall-clock while other jobs shared the cores).
Loss {facts['loss_first']:.3f} → {facts['loss_last']:.3f}; std(z3D) at the end {facts['std_z3d_last']:.3f},
effective rank of the backbone output in training {facts['erank_backbone_3d_last'] or float('nan'):.2f} of
32.
Curves: `training_curves.png`.

## Measured feature-match recall

On {HELD_OUT} held-out sequences (generated with the run's seed + 1000003), frames 0 → 1,
{SAMPLES} sampled correspondences per sequence; a hit when the nearest feature lands within the threshold of
the true correspondence (random network: same architecture, torch seed 1):

| measure | random | shipped |
|---|---|---|
""" + table + probe + f"""

The resolved config:

```yaml
{dump_config(config).strip()}
```

Facts (read by the tests):

```json
{json.dumps(facts, indent=1)}
```
"""
    (out / "PROVENANCE.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
