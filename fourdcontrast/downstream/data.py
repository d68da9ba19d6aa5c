"""Labelled datasets for downstream work: the embedded procedural rooms (fixed train / val / test split,
cached) and ScanNet (the 20 benchmark classes from NYU40, official split files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fourdcontrast.downstream import views as V
from fourdcontrast.downstream.views import Camera, View
from fourdcontrast.io.atomic import atomic_path
from fourdcontrast.records import Scene
from fourdcontrast.sources.classes import CLASS_NAMES

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_ROOM_SEED",
    "EMBEDDED_SPLIT",
    "ROOM_CACHE_DIR",
    "SCANNET20_CLASS_NAMES",
    "SCANNET20_NYU40_IDS",
    "SCANNET_SPLIT_FILES",
    "LabelledDataset",
    "compact_scene",
    "compact_view",
    "embedded_rooms",
    "embedded_views",
    "load_dataset",
    "scannet20_labels",
    "scannet_scenes",
]

EMBEDDED_SPLIT: dict[str, int] = {"train": 100, "val": 20, "test": 20}
"""Rooms per split of the embedded dataset (our choice): 100 training rooms so that 1 % of the training
scenes is literally one room (the rule is ``max(1, round(p · n))`` anyway)."""

EMBEDDED_ROOM_SEED: int = 1000
"""Base seed of the embedded split (our choice; distinct from the pre-training rooms, which use seeds 0…):
split ``s`` uses ``default_rooms(n, seed=EMBEDDED_ROOM_SEED + offset[s])`` with offsets train 0, val 1,
test 2, so room i of a split depends only on the seed and i, not on the split sizes."""

_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}

ROOM_CACHE_DIR: Path = Path(os.environ.get("FOURDCONTRAST_CACHE",
                                           Path.home() / ".cache" / "fourdcontrast")) / "rooms"
"""Where generated labelled rooms are cached (``$FOURDCONTRAST_CACHE/rooms``, default
``~/.cache/fourdcontrast/rooms``); our choice."""

SCANNET20_NYU40_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
"""NYU40 ids of the ScanNet benchmark's 20 classes (ScanNet's ``VALID_CLASS_IDS``); other ids are ignored."""

SCANNET20_CLASS_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub",
    "otherfurniture",
)
"""The ScanNet benchmark's 20 class names, in the order of :data:`SCANNET20_NYU40_IDS`."""

SCANNET_SPLIT_FILES: dict[str, str] = {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt",
                                       "test": "scannetv2_val.txt"}
"""The official split files (ScanNet's ``Tasks/Benchmark``); ``test`` evaluates on ``val`` since the test
labels are hidden (as every paper on ScanNet does)."""


@dataclass
class LabelledDataset:
    """Scenes of one split and the class names their labels index."""

    scenes: list[Scene]
    class_names: tuple[str, ...]
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _cache_file(cache_dir: Path, split: str, n: int, seed: int, store_voxel: float | None = None,
                kind: str = "rooms") -> Path:
    cells = "" if store_voxel is None else f"_v{round(store_voxel * 1000)}mm"
    return cache_dir / f"{kind}_{split}_seed{seed}_n{n}{cells}.npz"


def _cached(path: Path | None, load, make, save, what: str):
    """``load(path)`` when the cache file exists and reads; else ``make()``, saved with ``save(path, made)``
    when ``path`` is given (an unreadable cache is made again, with a warning naming it)."""
    if path is not None and path.is_file():
        try:
            return load(path)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("%s cache %s unreadable (%s); regenerating", what, path, exc)
    made = make()
    if path is not None:
        save(path, made)
    return made


def compact_scene(scene: Scene, cell: float) -> Scene:
    """One point per occupied ``cell`` × ``cell`` × ``cell`` cube (metres) of ``scene``, at the cube's
    centre, with the label and instance of the cube's first point (in the scene's order); colours are
    dropped. A new :class:`Scene` with the same name and class names."""
    keys = np.floor(scene.points / cell).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first)
    centres = ((keys[first] + 0.5) * cell).astype(np.float32)
    return Scene(centres, labels=scene.labels[first], instances=scene.instances[first], name=scene.name,
                 class_names=scene.class_names)


def _save_rooms(path: Path, rooms: list[Scene], store_voxel: float | None = None) -> None:
    """One ``.npz`` for a split; compacted rooms store their int16 cell indices (6 bytes a point instead
    of 12), the rest float32 points."""
    sizes = np.array([len(r) for r in rooms], dtype=np.int64)
    pts = np.concatenate([r.points for r in rooms])
    geometry = {"points": pts.astype(np.float32)} if store_voxel is None else {
        "cells": np.floor(pts / store_voxel).astype(np.int16), "cell": np.float64(store_voxel)}
    with atomic_path(path) as tmp:
        np.savez(tmp, sizes=sizes, names=np.array([r.name for r in rooms]), **geometry,
                 labels=np.concatenate([r.labels for r in rooms]).astype(np.int16),
                 instances=np.concatenate([r.instances for r in rooms]).astype(np.int32))


def _load_rooms(path: Path) -> list[Scene]:
    with np.load(path) as z:
        bounds = np.concatenate([[0], np.cumsum(z["sizes"])])
        lab, ins, names = z["labels"], z["instances"], z["names"]
        pts = z["points"] if "points" in z.files else \
            ((z["cells"].astype(np.float64) + 0.5) * float(z["cell"])).astype(np.float32)
    return [Scene(pts[a:b], labels=lab[a:b].astype(np.int64), instances=ins[a:b].astype(np.int64),
                  name=str(n), class_names=CLASS_NAMES)
            for a, b, n in zip(bounds[:-1], bounds[1:], names, strict=True)]


def embedded_rooms(split: str, n: int | None = None, seed: int = EMBEDDED_ROOM_SEED,
                   cache_dir: str | os.PathLike | None = ROOM_CACHE_DIR,
                   store_voxel: float | None = None) -> list[Scene]:
    """The labelled rooms of one split of the embedded dataset (:data:`EMBEDDED_SPLIT` sizes by default).

    Rooms are generated once and cached as one ``.npz`` per (split, n, seed, store_voxel), written
    atomically; pass ``cache_dir=None`` to skip the cache. The first ``k`` rooms of a split are the same for
    every ``n >= k``. ``store_voxel`` (metres) keeps one point per cell (:func:`compact_scene`): ~40 k
    points per room at 5 cm instead of ~140 k, for ScanNet-sized splits.
    """
    from fourdcontrast.sources.rooms import default_rooms

    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be one of {tuple(_SPLIT_OFFSET)}, got {split!r}")
    n = EMBEDDED_SPLIT[split] if n is None else int(n)
    path = None if cache_dir is None else _cache_file(Path(cache_dir), split, n, seed, store_voxel)

    def named(r: Scene) -> Scene:
        room = Scene(r.points, labels=r.labels, instances=r.instances, name=f"{split}_{r.name}",
                     class_names=CLASS_NAMES)
        return room if store_voxel is None else compact_scene(room, store_voxel)

    def make() -> list[Scene]:
        logger.info("generating %d %s rooms (seed %d)", n, split, seed + _SPLIT_OFFSET[split])
        return default_rooms(n, seed=seed + _SPLIT_OFFSET[split], transform=named)

    return _cached(path, _load_rooms, make, lambda p, rooms: _save_rooms(p, rooms, store_voxel), "room")


def compact_view(view: View, cell: float) -> View:
    """:func:`compact_scene` of a view's visible and of its hidden points
    (each on its own: a cell seen and hidden keeps a point in both)."""
    seen = compact_scene(view, cell)
    hidden = compact_scene(Scene(view.hidden_points, labels=view.hidden_labels,
                                 instances=view.hidden_instances), cell) if len(view.hidden_points) else None
    return View(seen.points, labels=seen.labels, instances=seen.instances, name=view.name,
                class_names=view.class_names,
                hidden_points=None if hidden is None else hidden.points,
                hidden_labels=None if hidden is None else hidden.labels,
                hidden_instances=None if hidden is None else hidden.instances, camera=view.camera)


def _save_views(path: Path, views: list[View]) -> None:
    cams = np.array([[*v.camera.position, v.camera.yaw, v.camera.pitch] for v in views])
    with atomic_path(path) as tmp:
        np.savez(tmp, names=np.array([v.name for v in views]), cameras=cams,
                 sizes=np.array([len(v) for v in views]),
                 points=np.concatenate([v.points for v in views]).astype(np.float32),
                 labels=np.concatenate([v.labels for v in views]).astype(np.int16),
                 instances=np.concatenate([v.instances for v in views]).astype(np.int32),
                 hidden_sizes=np.array([len(v.hidden_points) for v in views]),
                 hidden_points=np.concatenate([v.hidden_points for v in views]).astype(np.float32),
                 hidden_labels=np.concatenate([v.hidden_labels for v in views]).astype(np.int16),
                 hidden_instances=np.concatenate([v.hidden_instances for v in views]).astype(np.int32))


def _load_views(path: Path) -> list[View]:
    def split(z, prefix: str, sizes: str):
        b = np.concatenate([[0], np.cumsum(z[sizes])])
        arrays = [z[f"{prefix}{k}"] for k in ("points", "labels", "instances")]
        return [[a[i:j] for a in arrays] for i, j in zip(b[:-1], b[1:], strict=True)]

    with np.load(path) as z:
        seen, hidden = split(z, "", "sizes"), split(z, "hidden_", "hidden_sizes")
        names, cams = z["names"], z["cameras"]
    return [View(p, labels=lab.astype(np.int64), instances=ins.astype(np.int64), name=str(name),
                 class_names=CLASS_NAMES, hidden_points=hp, hidden_labels=hl.astype(np.int64),
                 hidden_instances=hi.astype(np.int64),
                 camera=Camera(cam[:3].astype(np.float64), float(cam[3]), float(cam[4])))
            for (p, lab, ins), (hp, hl, hi), name, cam in zip(seen, hidden, names, cams, strict=True)]


def embedded_views(split: str, n: int, seed: int, cache_dir: str | os.PathLike | None,
                   store_voxel: float | None = None) -> list[View]:
    """One single view of each of the first ``n`` rooms of a split of the embedded dataset (the rooms of
    :func:`embedded_rooms`, held out from pre-training, at full resolution),
    compacted to ``store_voxel`` cells when given. View i depends only on the seed, the split and i: its
    poses are drawn from ``default_rng([seed, split offset, i])``. Cached like the rooms (one ``.npz`` per
    split, n, seed and cell, written atomically; ``cache_dir=None``: no cache)."""
    from fourdcontrast.sources.rooms import default_rooms

    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be one of {tuple(_SPLIT_OFFSET)}, got {split!r}")
    path = None if cache_dir is None else _cache_file(Path(cache_dir), split, n, seed, store_voxel, "views")
    counter = iter(range(n))

    def view_of(room: Scene):
        i = next(counter)
        room = dataclasses.replace(room, name=f"{split}_{room.name}", class_names=CLASS_NAMES)
        view = V.single_view(room, np.random.default_rng([seed, _SPLIT_OFFSET[split], i]))
        return view if store_voxel is None else compact_view(view, store_voxel)

    def make() -> list[View]:
        logger.info("making %d single views of %s rooms (seed %d)", n, split, seed + _SPLIT_OFFSET[split])
        return default_rooms(n, seed=seed + _SPLIT_OFFSET[split], transform=view_of)

    return _cached(path, _load_views, make, _save_views, "view")


def scannet20_labels(nyu40: np.ndarray, ignore_label: int = -1) -> np.ndarray:
    """NYU40 ids → indices into :data:`SCANNET20_CLASS_NAMES` (ids outside the 20 → ``ignore_label``)."""
    lut = np.full(256, ignore_label, dtype=np.int64)
    lut[list(SCANNET20_NYU40_IDS)] = np.arange(len(SCANNET20_NYU40_IDS))
    nyu40 = np.asarray(nyu40, dtype=np.int64)
    return np.where((nyu40 >= 0) & (nyu40 < 256), lut[np.clip(nyu40, 0, 255)], ignore_label)


def _missing(root: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"ScanNet not usable at {root}: {what}. Expected the official layout: {root}/scans/<scene>/ with "
        f"<scene>_vh_clean_2.ply and <scene>_vh_clean_2.labels.ply (NYU40 labels; plus .aggregation.json "
        f"and _vh_clean_2.0.010000.segs.json for instances), and the split files "
        f"{root}/{SCANNET_SPLIT_FILES['train']} / {SCANNET_SPLIT_FILES['val']} (from ScanNet's "
        "Tasks/Benchmark). ScanNet must be requested from its authors; nothing is downloaded here.")


def scannet_scenes(root: str | os.PathLike, split: str, limit: int | None = None) -> LabelledDataset:
    """ScanNet scenes of the official ``split`` with the 20 benchmark classes (from the NYU40 labels PLY).

    Raises:
        FileNotFoundError: naming what is missing (root, ``scans/``, the split file, a scene's files).
    """
    from fourdcontrast.downstream.splits import read_scene_list
    from fourdcontrast.io.ply import read_ply
    from fourdcontrast.sources.scannet import read_scannet_scene, scannet_files

    root = Path(root)
    if split not in SCANNET_SPLIT_FILES:
        raise ValueError(f"split must be one of {tuple(SCANNET_SPLIT_FILES)}, got {split!r}")
    if not root.is_dir():
        raise _missing(root, "the folder does not exist")
    if not (root / "scans").is_dir():
        raise _missing(root, "no scans/ folder")
    split_file = root / SCANNET_SPLIT_FILES[split]
    if not split_file.is_file():
        raise _missing(root, f"split file {split_file.name} missing")
    names = read_scene_list(split_file)[:limit]
    scenes = []
    for name in names:
        folder = root / "scans" / name
        if not folder.is_dir():
            raise _missing(root, f"scene folder scans/{name} (listed in {split_file.name}) missing")
        files = scannet_files(folder)
        if files.labels is None:
            raise _missing(root, f"scans/{name}/{name}_vh_clean_2.labels.ply missing")
        scene = read_scannet_scene(folder)
        nyu = read_ply(files.labels).elements["vertex"]["label"]
        scenes.append(Scene(scene.points, labels=scannet20_labels(nyu), instances=scene.instances, name=name,
                            class_names=SCANNET20_CLASS_NAMES))
    return LabelledDataset(scenes, SCANNET20_CLASS_NAMES, f"scannet-{split}")


def load_dataset(kind: str, split: str, *, rooms: dict[str, int] | None = None,
                 room_seed: int = EMBEDDED_ROOM_SEED, scannet_root: str | None = None,
                 cache_dir: str | os.PathLike | None = ROOM_CACHE_DIR,
                 store_voxel: float | None = None) -> LabelledDataset:
    """``kind`` ``"embedded"`` (rooms, sizes from ``rooms`` or :data:`EMBEDDED_SPLIT`, compacted to
    ``store_voxel`` cells when given), ``"embedded-views"`` (one single-view partial scan of each of those
    rooms, :func:`embedded_views`) or ``"scannet"``."""
    if kind in ("embedded", "embedded-views"):
        n = (rooms or EMBEDDED_SPLIT).get(split, EMBEDDED_SPLIT[split])
        if kind == "embedded-views":
            scenes = embedded_views(split, n, room_seed, cache_dir, store_voxel)
        else:
            scenes = embedded_rooms(split, n, room_seed, cache_dir, store_voxel)
        return LabelledDataset(scenes, CLASS_NAMES, f"{kind}-{split}")
    if kind == "scannet":
        if not scannet_root:
            raise ValueError("dataset 'scannet' needs scannet_root (holding scans/ and the split files)")
        return scannet_scenes(scannet_root, split)
    raise ValueError(f"unknown dataset {kind!r}; choose 'embedded', 'embedded-views' or 'scannet'")


def dataset_digest(scenes: list[Scene]) -> str:
    """A short content hash of scenes (names and sizes), for cache keys and logs."""
    h = hashlib.sha256()
    for s in scenes:
        h.update(f"{s.name}:{len(s)};".encode())
    return h.hexdigest()[:12]
