"""The rules of a command's output folder: a folder that already holds a run is never overwritten by
accident.

- A folder **holds a run** when one of its layout's marker files is there (pre-training: ``checkpoint.pt``
  or ``log.csv``; fine-tuning: ``metrics.json``, ``model.pt`` or ``log.csv``).
- Without a flag such a folder is **refused** before anything is read, built or written, with one line that
  names the folder, the run's step and the two ways on: ``--resume`` (continue it) and ``--overwrite``
  (start again: the old run's files are deleted first, nothing of it is kept).
- ``--resume`` needs the file a run resumes from (pre-training: ``checkpoint.pt``); without it the command
  stops with an error naming the folder (a typo in ``--out`` does not silently start a new run).
- Files of the folder that are not the run's (a config file, notes) are never touched.

Commands that resume by design (``generate`` from its manifest, ``demo`` stage by stage) decide
themselves and pass ``resume`` or ``overwrite`` accordingly.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fourdcontrast.errors import InputError, RunFolderError

logger = logging.getLogger(__name__)

__all__ = [
    "FINETUNE_RUN",
    "PRETRAIN_RUN",
    "RunInfo",
    "RunLayout",
    "add_run_folder_arguments",
    "find_run",
    "prepare_run_folder",
]


@dataclass(frozen=True)
class RunLayout:
    """What a command writes into its output folder.

    Attributes:
        kind: the run's name in messages (``"pre-training"``).
        markers: files whose presence means the folder holds a run.
        outputs: every file or folder a run writes (``--overwrite`` deletes exactly these, plus the
            temporary files of interrupted atomic writes of them).
        resume_from: the file ``--resume`` needs.
        resume_means: what ``--resume`` does, for the refusal message.
    """

    kind: str
    markers: tuple[str, ...]
    outputs: tuple[str, ...]
    resume_from: str
    resume_means: str = "continue it"


PRETRAIN_RUN = RunLayout(
    kind="pre-training",
    markers=("checkpoint.pt", "log.csv"),
    outputs=("checkpoint.pt", "log.csv", "config.yaml", "tensorboard"),
    resume_from="checkpoint.pt",
)
"""``fourdcontrast pretrain``'s folder (:mod:`fourdcontrast.train.pretrain`)."""

FINETUNE_RUN = RunLayout(
    kind="fine-tuning",
    markers=("metrics.json", "model.pt", "log.csv"),
    outputs=("metrics.json", "model.pt", "log.csv"),
    resume_from="metrics.json",
    resume_means="keep its results (a fine-tuning run is written whole at its end: nothing is redone)",
)
"""``fourdcontrast finetune``'s folder (:mod:`fourdcontrast.downstream.segmentation`)."""


@dataclass
class RunInfo:
    """A run found in a folder.

    Attributes:
        folder: the folder.
        files: the layout's outputs present there (names).
        step: its last step (checkpoint or last ``log.csv`` row), None when unknown.
        finished: the layout's ``resume_from`` file is there.
    """

    folder: Path
    files: list[str]
    step: int | None
    finished: bool

    def describe(self) -> str:
        step = f"at step {self.step}" if self.step is not None else "step unknown"
        return f"{step}: {', '.join(self.files)}"


def _checkpoint_step(path: Path) -> int | None:
    """The ``step`` entry of a pre-training checkpoint, read memory-mapped (cheap even for large files);
    None when the file is not a readable checkpoint."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(data["step"])
    except Exception:  # truncated, foreign, not a torch file: the caller says "step unknown"
        return None


def _log_step(path: Path) -> int | None:
    """The ``step`` of the last row of a ``log.csv`` (None when it has none)."""
    try:
        with open(path, newline="") as fh:
            steps = [row.get("step") for row in csv.DictReader(fh)]
        steps = [s for s in steps if s not in (None, "")]
        return int(float(steps[-1])) if steps else None
    except (OSError, ValueError, csv.Error):
        return None


def find_run(folder: str | os.PathLike, layout: RunLayout) -> RunInfo | None:
    """The run ``folder`` holds under ``layout``, or None (also when the folder does not exist)."""
    folder = Path(folder)
    if not folder.is_dir() or not any((folder / m).exists() for m in layout.markers):
        return None
    files = [name for name in layout.outputs if (folder / name).exists()]
    step = None
    if (folder / "checkpoint.pt").is_file() and "checkpoint.pt" in layout.outputs:
        step = _checkpoint_step(folder / "checkpoint.pt")
    if step is None and (folder / "log.csv").is_file():
        step = _log_step(folder / "log.csv")
    return RunInfo(folder, files, step, (folder / layout.resume_from).is_file())


def _remove_outputs(folder: Path, layout: RunLayout) -> list[str]:
    removed = []
    for name in layout.outputs:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(name + "/")
        elif path.exists() or path.is_symlink():
            path.unlink()
            removed.append(name)
        for tmp in [*folder.glob(f"{name}.*.tmp"), *folder.glob(f".{name}.*")]:  # interrupted atomic writes
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def prepare_run_folder(folder: str | os.PathLike, layout: RunLayout, resume: bool = False,
                       overwrite: bool = False, remove: bool = True) -> RunInfo | None:
    """Apply the rules of the module docstring to ``folder`` before a run starts.

    Args:
        folder: the output folder (need not exist).
        layout: what the command writes (:data:`PRETRAIN_RUN`, :data:`FINETUNE_RUN`).
        resume: the caller continues the run (``--resume``).
        overwrite: the caller starts again (``--overwrite``).
        remove: delete the old run's files on ``overwrite`` (False on the non-main processes of a
            distributed run, which must not race the main one).

    Returns:
        The run found (its files are gone when ``overwrite``), or None.

    Raises:
        RunFolderError: the folder holds a run and neither flag is given, or ``resume`` finds no
            ``layout.resume_from``; the message is one line naming the folder.
        InputError: ``resume`` and ``overwrite`` together, or ``folder`` is an existing file.
    """
    folder = Path(folder)
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: --resume continues the run in "
                         f"{folder}, --overwrite deletes it")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, not an output folder")
    info = find_run(folder, layout)
    if resume:
        if info is None or not info.finished:
            found = ("holds no run" if info is None
                     else f"holds an unfinished {layout.kind} run ({info.describe()})")
            raise RunFolderError(
                f"{folder}: nothing to resume: no {layout.resume_from} there (the folder {found}); check "
                f"--out, or start a run without --resume" + ("" if info is None else " and with --overwrite"))
        return info
    if info is None:
        return None
    if not overwrite:
        raise RunFolderError(
            f"{folder} already holds a {layout.kind} run ({info.describe()}): pass --resume to "
            f"{layout.resume_means}, or --overwrite to start again (deletes that run's files)")
    if remove:
        removed = _remove_outputs(folder, layout)
        logger.info("--overwrite: removed the %s run in %s (%s): %s", layout.kind, folder,
                    f"step {info.step}" if info.step is not None else "step unknown", ", ".join(removed))
    return info


def add_run_folder_arguments(parser, resume_help: str) -> None:
    """The run-folder options every long command shares: ``--resume`` (``resume_help`` says what it does
    for that command) or ``--overwrite`` (one of them), and ``--no-progress``."""
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help=resume_help)
    runs.add_argument("--overwrite", action="store_true",
                      help="start again in an OUT that holds a run, deleting that run's files first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
