"""Median time to produce one augmented, validated 4-frame sequence with its correspondences from a
~150k-point scene (the embedded room of seed 16) on one core (target ≤ 20 ms), the discard rate, and the
projected time for the paper's 1201 scans × 20 trajectories. Same as ``fourdcontrast benchmark generation``.
"""

import argparse
import sys

from fourdcontrast.data.benchmark import add_cli_arguments, run_cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    sys.exit(run_cli(parser.parse_args()))
