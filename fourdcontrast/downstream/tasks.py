"""The downstream tasks by name and the ``fourdcontrast finetune`` command line.

This module sits above the task modules (:mod:`.segmentation`, :mod:`.instance`, :mod:`.detection`), which
share the loop of :mod:`.training`; nothing below imports it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fourdcontrast.downstream.config import FinetuneConfig, load_finetune_config
from fourdcontrast.downstream.training import Task, run_finetune
from fourdcontrast.errors import InputError
from fourdcontrast.train.run_folder import FINETUNE_RUN, add_run_folder_arguments, prepare_run_folder

__all__ = ["TASK_NAMES", "add_cli_arguments", "get_task", "run_cli"]

TASK_NAMES: tuple[str, ...] = ("segmentation", "instance", "detection")
"""Downstream tasks of ``fourdcontrast finetune --task`` (``model.task``)."""


def get_task(name: str) -> Task:
    """The :class:`~.training.Task` called ``name`` (its module imported on demand).

    Raises:
        InputError: an unknown task name.
    """
    if name == "segmentation":
        from fourdcontrast.downstream.segmentation import SEGMENTATION
        return SEGMENTATION
    if name == "instance":
        from fourdcontrast.downstream.instance import INSTANCE
        return INSTANCE
    if name == "detection":
        from fourdcontrast.downstream.detection import DETECTION
        return DETECTION
    raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="a YAML file or a shipped config in configs/finetune/ (paper, cpu, "
                             "cpu-instance, cpu-detection, cpu-detection-views; default: cpu, or "
                             "cpu-TASK for --task instance|detection)")
    parser.add_argument("--task", choices=TASK_NAMES, default=None,
                        help="the downstream task (sets model.task; default: the config's, segmentation)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set model.init=backbone.pth --set model.mode=linear")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/finetune/CONFIG)")
    add_run_folder_arguments(parser, "keep the finished run in OUT and print its metrics (nothing is redone)")


def _print_finished(out: Path) -> None:
    path = out / "metrics.json"
    try:
        payload = json.loads(path.read_text())
        m = payload["metrics"]
        mode, split = payload["config"]["model"]["mode"], payload["config"]["data"]["eval_split"]
        task = payload.get("task", "segmentation")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable fine-tuning result ({type(exc).__name__}: {exc})") from exc

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    if task == "segmentation":
        shown = f"mIoU {pct(m.get('miou'))}, mAcc {pct(m.get('macc'))}, OA {pct(m.get('oa'))}"
    else:
        shown = ", ".join(f"{k} {pct(v)}" for k, v in m.items() if isinstance(v, (int, float)) or v is None)
    print(f"finetune: {out} holds a finished {task} {mode} run ({path.name}); nothing to redo. Evaluated on "
          f"{split}: {shown}")


def _cli_config(args: argparse.Namespace) -> tuple[FinetuneConfig, str]:
    name = args.config or ("cpu" if args.task in (None, "segmentation") else f"cpu-{args.task}")
    overrides = list(args.overrides) + ([f"model.task={args.task}"] if args.task else [])
    return load_finetune_config(name, overrides), name


def run_cli(args: argparse.Namespace) -> int:
    config, name = _cli_config(args)
    out = Path(args.out or Path("outputs") / "finetune" / Path(name).stem)
    if args.resume:
        prepare_run_folder(out, FINETUNE_RUN, resume=True)  # an error naming OUT when it holds no result
        _print_finished(out)
        return 0
    result = run_finetune(config, get_task(config.model.task), out, progress=not args.no_progress,
                          overwrite=args.overwrite)
    if result.load_report is not None:
        print(f"initialisation: {result.load_report.summary()}")
    print(f"{config.model.task} {config.model.mode} on {result.train_scenes} training scenes, "
          f"{result.seconds:.0f} s; evaluated on {config.data.eval_split}:")
    print(result.metrics.table())
    print(f"outputs in {out}")
    return 0
