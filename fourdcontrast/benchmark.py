"""``fourdcontrast benchmark``: the speed benchmarks, also runnable as scripts under ``benchmarks/``.

* ``sparse`` — MinkUNet34 3D / MinkUNet14 4D forward+backward on a room, our engine vs MinkowskiEngine
  (when it imports): times, voxels/s, peak memory, ratios (issue target: ≥ 2× faster than ME's CPU build).
* ``generation`` — one augmented, validated 4-frame sequence with correspondences from a ~150k-point
  scene on one core (issue target: ≤ 20 ms).
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "sparse": ("fourdcontrast.models.benchmark", "sparse engine and backbones (ours vs MinkowskiEngine)"),
    "generation": ("fourdcontrast.data.benchmark", "4D sequence generation with correspondences"),
    "pretrain": ("fourdcontrast.train.benchmark", "one pre-training step (ours vs MinkowskiEngine)"),
    "downstream": ("fourdcontrast.downstream.benchmark", "segmentation from each pre-training"),
}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_benchmark_module=module)
        importlib.import_module(module).add_cli_arguments(p)


def run_cli(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._benchmark_module).run_cli(args) or 0)
