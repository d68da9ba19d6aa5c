"""ModelNet reader: ``<root>/<category>/<split>/<category>_<id>.off`` → 1000-point objects (Sec. 4).

ModelNet meshes are z up but have no real scale: each is scaled to its category's real size
(:data:`~fourdcontrast.sources.furniture.CATEGORY_SIZES`, configurable), put in the canonical pose and
sampled area-weighted (paper: 1000 points from shapes of eight furniture categories).
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm.auto import tqdm

from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import ShapeObject
from fourdcontrast.sources.classes import OBJECT_CATEGORIES
from fourdcontrast.sources.furniture import OBJECT_POINTS, read_object


def modelnet_category(path: str | os.PathLike) -> str:
    """Category of a ModelNet file: the folder above ``train``/``test``, else the name before the
    last ``_`` (``night_stand_0001.off`` → ``night_stand``). ``night_stand`` is returned as
    ``nightstand``."""
    path = Path(path)
    if path.parent.name in ("train", "test"):
        name = path.parent.parent.name
    else:
        name = path.stem.rsplit("_", 1)[0]
    return "nightstand" if name == "night_stand" else name


def read_modelnet(path: str | os.PathLike, category: str | None = None, n: int = OBJECT_POINTS,
                  rng: RngLike = None, sizes: dict[str, tuple[str, float]] | None = None) -> ShapeObject:
    """One ModelNet ``.off`` file as an ``n``-point object (z up, scaled to a real size per category).

    Args:
        path: the ``.off`` file (the ``OFF<V> <F> 0`` header quirk is accepted).
        category: its category (default: from the path, :func:`modelnet_category`).
        n: points to sample (paper: 1000).
        rng: generator or seed.
        sizes: per-category real sizes overriding ``CATEGORY_SIZES``.
    """
    return read_object(path, category or modelnet_category(path), n, rng, up_axis="z", sizes=sizes)


def list_modelnet(root: str | os.PathLike, categories: tuple[str, ...] = OBJECT_CATEGORIES,
                  split: str = "train") -> list[Path]:
    """The ``.off`` files of ``categories`` and ``split`` under a ModelNet10/40 ``root``, sorted.

    Raises:
        FileNotFoundError: when ``root`` is not a folder or holds no file of those categories.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such ModelNet folder")
    files = []
    for category in categories:
        folder = "night_stand" if category == "nightstand" and (root / "night_stand").is_dir() else category
        files += sorted((root / folder / split).glob("*.off"))
    if not files:
        raise FileNotFoundError(f"{root}: no .off files for {', '.join(categories)} in split {split!r}")
    return files


def load_modelnet(root: str | os.PathLike, categories: tuple[str, ...] = OBJECT_CATEGORIES,
                  split: str = "train", n: int = OBJECT_POINTS, seed: RngLike = 0,
                  limit: int | None = None) -> list[ShapeObject]:
    """Read (up to ``limit`` per category of) the ModelNet objects of ``categories``; deterministic
    per seed. Files that fail to read are skipped with a warning naming them."""
    import logging

    log = logging.getLogger(__name__)
    rng = as_rng(seed)
    files = list_modelnet(root, categories, split)
    if limit is not None:
        by_category: dict[str, list[Path]] = {}
        for f in files:
            by_category.setdefault(modelnet_category(f), []).append(f)
        files = [f for group in by_category.values() for f in group[:limit]]
    objects = []
    for f in tqdm(files, desc="ModelNet", leave=False):
        try:
            objects.append(read_modelnet(f, n=n, rng=rng))
        except ValueError as exc:
            log.warning("skipped %s", exc)
    if not objects:
        raise ValueError(f"{root}: no ModelNet file could be read")
    return objects


__all__ = ["list_modelnet", "load_modelnet", "modelnet_category", "read_modelnet"]
