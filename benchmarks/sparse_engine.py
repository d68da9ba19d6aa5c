"""Benchmark the sparse backbones: our engine vs MinkowskiEngine's CPU build (when it imports).

MinkUNet34 3D forward+backward on a room at 2 cm (~120k voxels) and MinkUNet14 4D on 4 frames at 5 cm
(and at 2 cm, for memory): median/best wall time, voxels/s, peak memory one forward+backward adds (each
engine measured in a fresh process of its own), ratios and output difference.

    PYTHONPATH=$PWD .venv-minkowski/bin/python benchmarks/sparse_engine.py [--config NAME] [--repeats 3]
        [--threads N] [--device cpu|cuda] [--json FILE]
"""

import argparse
import logging
import sys

from fourdcontrast.models.benchmark import add_cli_arguments, run_cli

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))
