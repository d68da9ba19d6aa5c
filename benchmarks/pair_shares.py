"""What the correspondences of a pre-training batch are made of: the moving object's share of the 3D voxels
and of the 3D-3D, 3D-4D and 4D-4D pairs, and the share of 4D-4D pairs that join the same (x, y, z) at two
times (the static scene) — what uniform pair sampling spends its pairs on, and why ``cpu-small`` caps the
background and static pairs (``model.background_pairs_per_group``, ``model.static_4d_pairs_per_group``).

Counted on the held-out sequences of a pre-training config (generated, seeded; no network is run)::

    PYTHONPATH=. python benchmarks/pair_shares.py [--config cpu-small] [--sequences 32] [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import sys

import torch

from fourdcontrast.data.dataset import collate_sequences
from fourdcontrast.io.atomic import atomic_write_bytes
from fourdcontrast.train.config import load_config
from fourdcontrast.train.pretrain import holdout_samples


def pair_shares(config_name: str = "cpu-small", sequences: int = 32) -> dict[str, float]:
    """Shares (0-1) over ``sequences`` held-out sequences of ``config_name``, pooled over the batch."""
    config = load_config(config_name, [f"data.holdout_sequences={sequences}", "data.workers=0"])
    batch = collate_sequences(holdout_samples(config))
    o3, o4 = batch.object_3d, batch.object_4d

    def object_share(pairs: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a[pairs[:, 0]] | b[pairs[:, 1]]).float().mean())

    xyz = batch.coords_4d[:, 1:4]
    static = (xyz[batch.pairs_4d[:, 0]] == xyz[batch.pairs_4d[:, 1]]).all(dim=1)
    return {
        "sequences": float(sequences),
        "voxels_3d": float(len(o3)),
        "object_voxels_3d": float(o3.float().mean()),
        "pairs_3d": float(len(batch.pairs_3d)),
        "object_pairs_3d": object_share(batch.pairs_3d, o3, o3),
        "pairs_3d4d": float(len(batch.pairs_3d4d)),
        "object_pairs_3d4d": object_share(batch.pairs_3d4d, o3, o4),
        "pairs_4d": float(len(batch.pairs_4d)),
        "object_pairs_4d": object_share(batch.pairs_4d, o4, o4),
        "static_pairs_4d": float(static.float().mean()),
    }


def markdown(config_name: str, shares: dict[str, float]) -> str:
    pct = {k: f"{100 * v:.1f} %" for k, v in shares.items()}
    return "\n".join([
        "# What the pairs of a pre-training batch are made of",
        "",
        f"`PYTHONPATH=. python benchmarks/pair_shares.py --config {config_name} --sequences "
        f"{int(shares['sequences'])}`: the held-out sequences of `configs/pretrain/{config_name}.yaml` "
        "(generated and seeded, so the same on every machine), all pairs before any sampling.",
        "",
        "| | count | touching the moving object | static (same x, y, z at two times) |",
        "|---|---|---|---|",
        f"| 3D voxels | {int(shares['voxels_3d']):,} | {pct['object_voxels_3d']} | |",
        f"| 3D-3D pairs | {int(shares['pairs_3d']):,} | {pct['object_pairs_3d']} | |",
        f"| 3D-4D pairs | {int(shares['pairs_3d4d']):,} | {pct['object_pairs_3d4d']} | |",
        f"| 4D-4D pairs | {int(shares['pairs_4d']):,} | {pct['object_pairs_4d']} | "
        f"{pct['static_pairs_4d']} |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-small", help="pre-training config (configs/pretrain/)")
    parser.add_argument("--sequences", type=int, default=32, help="held-out sequences to count over")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    text = markdown(args.config, pair_shares(args.config, args.sequences))
    print(text)
    if args.markdown:
        atomic_write_bytes(args.markdown, text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
