"""Benchmark one pre-training step (meta-architecture forward + backward + SGD) per engine.

    PYTHONPATH=$PWD .venv-minkowski/bin/python benchmarks/pretrain_step.py [--preset paper|cpu-small]
        [--batch 4] [--steps 3] [--device cpu|cuda] [--engines torch,minkowski] [--json FILE]
"""

import argparse
import logging
import sys

from fourdcontrast.train.benchmark import add_cli_arguments, run_cli

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))
