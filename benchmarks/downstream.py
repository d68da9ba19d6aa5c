"""Semantic segmentation on the embedded rooms from scratch and from PointContrast, CSC, "3D data, 3D-3D
only" and 4DContrast pre-training (same budget), by linear probe and fine-tuning, at the data-efficient
levels, with seeds. Same as ``fourdcontrast benchmark downstream``; writes benchmarks/results/downstream*.
"""

import argparse
import logging
import sys

from fourdcontrast.downstream.benchmark import add_cli_arguments, run_cli

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))
