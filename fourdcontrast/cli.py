"""The ``fourdcontrast`` command line: long jobs (generation, benchmarks, demo, viewer).

Each sub-command lives in the module of its concept, which provides ``add_cli_arguments(parser)`` and
``run_cli(args) -> int``; this file only wires them (imported lazily so ``--help`` stays fast).

Errors a person can fix (:class:`~fourdcontrast.errors.InputError`: a configuration, a ``--set`` value, a
missing or unreadable file, an output folder that holds a run) are printed on one line,
``fourdcontrast: error: …``, and the command exits with status 2 (argparse's own usage errors do the
same); ``--debug`` shows their traceback. Every other exception is an internal error and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fourdcontrast.errors import InputError

EXIT_INPUT_ERROR = 2
"""Exit status of a configuration or input error (argparse's usage errors use 2 as well)."""

COMMANDS = {
    "generate": ("fourdcontrast.data.generate", "generate 4D sequences offline into shards (Sec. 3.3)"),
    "pretrain": ("fourdcontrast.train.pretrain", "pre-train the 3D backbone (4DContrast or a baseline)"),
    "finetune": ("fourdcontrast.downstream.tasks",
                 "fine-tune a downstream task (segmentation, instance, detection) or linear-probe"),
    "export-backbone": ("fourdcontrast.train.pretrain:export",
                        "write a checkpoint's 3D backbone as a plain MinkUNet state dict"),
    "benchmark": ("fourdcontrast.benchmark", "time the sparse engine, the data generation and pre-training"),
    "demo": ("fourdcontrast.demo", "the main job end to end on the embedded data"),
    "view": ("fourdviz.cli", "open or render a generated sequence (polyscope / PNG)"),
    "native": ("fourdcontrast.sparse.native", "build the optional native sparse kernels, check they load"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fourdcontrast", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of configuration and input errors too")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (target, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # also accepted after the command name (``fourdcontrast pretrain ... --debug``)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of configuration and input errors too")
        # "module:variant" names add_<variant>_arguments / run_<variant>_cli of the module
        module, _, variant = target.partition(":")
        p.set_defaults(_module=module, _variant=variant)
        mod = importlib.import_module(module)
        getattr(mod, f"add_{variant}_arguments" if variant else "add_cli_arguments")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    mod = importlib.import_module(args._module)
    run = getattr(mod, f"run_{args._variant}_cli" if args._variant else "run_cli")
    try:
        return int(run(args) or 0)
    except InputError as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"fourdcontrast: error: {message}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
