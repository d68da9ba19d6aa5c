"""Data-efficient protocols (ScanNet data-efficient benchmark, Hou et al. CVPR 2021): limited scene
reconstructions and limited annotations, chosen by a seeded rule that is the same on every machine.

The rules (no random-number generator is involved, so no library version can change them):

- **Limited scenes** (:func:`limited_scenes`): every scene name gets the priority
  ``sha256(f"{seed}:{name}")`` (hex digest, compared as a string); the ``max(1, round(fraction · n))``
  scenes with the smallest priorities are kept, returned in the input order. The subsets are nested
  (the 1 % scenes are among the 5 % ones, and so on) and do not depend on the order of the input list.
- **Limited annotations** (:func:`limited_annotations`): every labelled point ``i`` of a scene gets the
  priority ``splitmix64(key ^ i)`` with ``key`` the first 8 bytes (big-endian) of
  ``sha256(f"{seed}:{scene name}")``; the ``n`` labelled points with the smallest priorities keep their
  labels, all others become the ignore label. Also nested (20 ⊂ 50 ⊂ 100 ⊂ 200).

ScanNet's benchmark ships fixed lists for both protocols; when you have them, pass their scene names /
point indices instead (:func:`read_scene_list`) — the rule above is what we use where no list exists (the
embedded rooms) and is documented so that anyone can reproduce our subsets.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from fourdcontrast.downstream.metrics import IGNORE_LABEL

__all__ = [
    "LIMITED_POINTS",
    "LIMITED_SCENE_FRACTIONS",
    "SPLIT_SEED",
    "annotation_priority",
    "limited_annotations",
    "limited_scenes",
    "read_scene_list",
    "scene_count",
    "splitmix64",
]

LIMITED_SCENE_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20)
"""Fractions of training scenes of the limited-reconstruction protocol (ScanNet data-efficient benchmark;
the paper's Fig. 4 / Table 6)."""

LIMITED_POINTS: tuple[int, ...] = (20, 50, 100, 200)
"""Labelled points per scene of the limited-annotation protocol (ScanNet data-efficient benchmark)."""

SPLIT_SEED: int = 0
"""Default seed of the subset rules (our choice)."""

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def scene_count(n: int, fraction: float) -> int:
    """Scenes kept of ``n`` at ``fraction``: ``max(1, round(fraction · n))`` (Python's round, half to
    even), never more than ``n``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if n < 1:
        raise ValueError("no scenes to choose from")
    return min(n, max(1, round(fraction * n)))


def _priority(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def limited_scenes(names: list[str], fraction: float, seed: int = SPLIT_SEED) -> list[str]:
    """The scenes of the limited-reconstruction protocol (see the module docstring), in input order."""
    if len(set(names)) != len(names):
        raise ValueError("scene names must be unique")
    k = scene_count(len(names), fraction)
    keep = set(sorted(names, key=lambda n: _priority(seed, n))[:k])
    return [n for n in names if n in keep]


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on uint64 arrays (wrapping arithmetic): a fixed, portable bit mixer."""
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


def annotation_priority(n_points: int, scene_name: str, seed: int = SPLIT_SEED) -> np.ndarray:
    """(n_points,) uint64 priorities of a scene's points under the limited-annotation rule."""
    key = np.uint64(int.from_bytes(hashlib.sha256(f"{seed}:{scene_name}".encode()).digest()[:8], "big"))
    return splitmix64(np.arange(n_points, dtype=np.uint64) ^ key)


def limited_annotations(labels: np.ndarray, n_points: int, scene_name: str, seed: int = SPLIT_SEED,
                        ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """``labels`` with only ``n_points`` labelled points kept (all when the scene has fewer), the rest set
    to ``ignore_label``; a new array. See the module docstring for the rule."""
    labels = np.asarray(labels)
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    valid = np.flatnonzero(labels != ignore_label)
    out = np.full_like(labels, ignore_label)
    if len(valid) <= n_points:
        out[valid] = labels[valid]
        return out
    prio = annotation_priority(len(labels), scene_name, seed)[valid]
    chosen = valid[np.argsort(prio, kind="stable")[:n_points]]
    out[chosen] = labels[chosen]
    return out


def read_scene_list(path: str | os.PathLike) -> list[str]:
    """Scene names of a list file, one per line (ScanNet's ``scannetv2_train.txt`` and the data-efficient
    benchmark's lists); blank lines and ``#`` comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scene list {path} does not exist")
    names = [line.strip() for line in path.read_text().splitlines()]
    return [n for n in names if n and not n.startswith("#")]
