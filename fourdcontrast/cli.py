"""The ``fourdcontrast`` command line: long jobs (generation, benchmarks, demo, viewer).

Each sub-command lives in the module of its concept, which provides ``add_cli_arguments(parser)`` and
``run_cli(args) -> int``; this file only wires them (imported lazily so ``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = {
    "generate": ("fourdcontrast.data.generate", "generate 4D sequences offline into shards (Sec. 3.3)"),
    "benchmark": ("fourdcontrast.benchmark", "time the sparse engine and the data generation"),
    "demo": ("fourdcontrast.demo", "the main job end to end on the embedded data"),
    "view": ("fourdviz.cli", "open or render a generated sequence (polyscope / PNG)"),
    "native": ("fourdcontrast.sparse.native", "build the optional native sparse kernels, check they load"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fourdcontrast", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = importlib.import_module(module)
        mod.add_cli_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    return int(importlib.import_module(args._module).run_cli(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
