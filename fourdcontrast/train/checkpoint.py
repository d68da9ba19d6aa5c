"""Checkpoints that survive interruption: written atomically and verified, loaded with
``torch.load(weights_only=True)``, with the random states a run needs to resume exactly.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts:
``{"format": FORMAT, "step", "model", "optimizer", "config", "rng", "data_position", "history_rows"}``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from fourdcontrast.errors import InputError

FORMAT = "fourdcontrast-pretrain-1"
"""The ``format`` entry of every pre-training checkpoint (foreign files lack it)."""


class CheckpointError(InputError):
    """A checkpoint file that cannot be used (missing, truncated, foreign); the message names the file.
    An :class:`~fourdcontrast.errors.InputError` (a ``ValueError``): the command line prints it on one
    line."""


def rng_state() -> dict:
    """The states of python's, numpy's and torch's global generators (and CUDA's), checkpoint-safe."""
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the legacy global one)
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s generators."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder is written, read back
    with ``weights_only=True`` to verify it, then renamed over ``path``. A crash at any point leaves the
    previous checkpoint intact; an unreadable new one is never renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        load_checkpoint(tmp)  # verify before it replaces anything
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: naming ``path``, when it is missing, truncated or not a pre-training checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with foreign globals, not a torch file at all
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fourdcontrast pre-training checkpoint (no format {FORMAT!r})")
    missing = {"step", "model", "config"} - set(data)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {sorted(missing)}")
    return data


__all__ = ["FORMAT", "CheckpointError", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]
