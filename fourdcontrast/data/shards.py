"""Shards: generated sequences on disk, compact and exact.

One shard (``.npz``) holds one scan and all sequences generated in it. A sequence is stored as its
provenance, not its points: per frame a packed bit mask over the scene and object points that the
frame keeps, the object pose and the 3D-view transform. Reading rebuilds every frame with
:func:`~fourdcontrast.data.compose.compose_frame`, so the points are bit-identical to the generated ones
(a 150k-point scan costs ~19 kB per frame instead of ~2.4 MB).
"""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from fourdcontrast.data.compose import compose_frame
from fourdcontrast.io.atomic import atomic_write_bytes
from fourdcontrast.records import HeightMap, Scene, Sequence, ShapeObject, Trajectory

SHARD_VERSION = 1
"""Format version written into every shard."""


def _frame_masks(sequence: Sequence) -> np.ndarray:
    n, m = len(sequence.scene), len(sequence.obj)
    masks = []
    for t, f in enumerate(sequence.frames):
        keep = np.zeros(n + m, bool)
        key = np.where(f.source == 0, f.index, f.index + n)
        keep[key] = True
        if np.count_nonzero(keep) != len(f):
            raise ValueError(f"frame {t} holds the same source point more than once")
        order = np.flatnonzero(keep)
        if not np.array_equal(order, key):
            raise ValueError(f"frame {t} is not in composed order (scene then object, by index)")
        masks.append(np.packbits(keep))
    return np.stack(masks)


def save_shard(
    path: str | os.PathLike, scene: Scene, sequences: list[Sequence], meta: dict | None = None
) -> None:
    """Write the sequences of one scene to ``path`` (``.npz``) atomically.

    Args:
        path: output file.
        scene: the scan all sequences share.
        sequences: sequences generated in ``scene`` (frames in composed order, as produced by
            :func:`~fourdcontrast.data.make_sequence`).
        meta: extra scalar fields stored as ``meta_<key>``.
    """
    arrays: dict[str, np.ndarray] = {
        "version": np.array(SHARD_VERSION),
        "scene_points": scene.points,
        "scene_name": np.array(scene.name),
        "count": np.array(len(sequences)),
    }
    if sequences and sequences[0].trajectory is not None:
        hm = sequences[0].trajectory.height_map
        arrays.update(
            hm_origin=hm.origin,
            hm_cell_size=np.array(hm.cell_size),
            hm_accumulation=hm.accumulation,
            hm_max_height=hm.max_height,
            hm_floor_height=np.array(hm.floor_height),
            hm_floor=hm.floor,
            hm_valid=hm.valid,
        )
    for key, value in (meta or {}).items():
        arrays[f"meta_{key}"] = np.array(value)
    for k, seq in enumerate(sequences):
        if seq.scene is not scene and len(seq.scene) != len(scene):
            raise ValueError(f"sequence {k} was not generated in scene {scene.name!r}")
        p = f"s{k}_"
        arrays[p + "obj_points"] = seq.obj.points
        arrays[p + "obj_name"] = np.array(seq.obj.name)
        arrays[p + "obj_category"] = np.array(seq.obj.category)
        arrays[p + "seed"] = np.array(-1 if seq.seed is None else seq.seed, dtype=np.int64)
        arrays[p + "masks"] = _frame_masks(seq)
        arrays[p + "object_poses"] = np.stack([f.object_pose for f in seq.frames])
        arrays[p + "view_transforms"] = np.stack([f.view_transform for f in seq.frames])
        arrays[p + "chunks"] = np.zeros((0, 2, 3)) if seq.chunks is None else seq.chunks
        if seq.trajectory is not None:
            arrays[p + "positions"] = seq.trajectory.positions
            arrays[p + "yaws"] = seq.trajectory.yaws
            arrays[p + "radius"] = np.array(seq.trajectory.object_radius)
            if seq.trajectory.height_map.candidates is not None:
                arrays[p + "candidates"] = np.packbits(seq.trajectory.height_map.candidates)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


class Shard:
    """A shard opened for reading: ``len(shard)`` sequences, ``shard[k]`` rebuilds sequence ``k``.

    Raises:
        ValueError: when the file is not a readable shard (names the file).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._data = dict(np.load(self.path, allow_pickle=False))
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear error
            raise ValueError(f"{self.path}: not a readable shard ({exc})") from exc
        if int(self._data.get("version", -1)) != SHARD_VERSION:
            raise ValueError(f"{self.path}: unsupported shard version {self._data.get('version')}")
        d = self._data
        self.scene = Scene(points=d["scene_points"], name=str(d["scene_name"]))
        self.height_map = None
        if "hm_origin" in d:
            self.height_map = HeightMap(
                origin=d["hm_origin"],
                cell_size=float(d["hm_cell_size"]),
                accumulation=d["hm_accumulation"],
                max_height=d["hm_max_height"],
                floor_height=float(d["hm_floor_height"]),
                floor=d["hm_floor"],
                valid=d["hm_valid"],
            )

    def __len__(self) -> int:
        return int(self._data["count"])

    @property
    def meta(self) -> dict:
        """The ``meta`` fields the shard was written with."""
        return {k[5:]: self._data[k].item() for k in self._data if k.startswith("meta_")}

    def __getitem__(self, k: int) -> Sequence:
        if not 0 <= k < len(self):
            raise IndexError(f"{self.path}: sequence {k} out of range ({len(self)} sequences)")
        d, p = self._data, f"s{k}_"
        obj = ShapeObject(
            points=d[p + "obj_points"], name=str(d[p + "obj_name"]), category=str(d[p + "obj_category"])
        )
        n, m = len(self.scene), len(obj)
        frames = []
        for packed, pose, view in zip(
            d[p + "masks"], d[p + "object_poses"], d[p + "view_transforms"], strict=True
        ):
            keep = np.unpackbits(packed, count=n + m).astype(bool)
            frame = compose_frame(self.scene, obj, pose, np.flatnonzero(keep[:n]), np.flatnonzero(keep[n:]))
            frame.view_transform = view
            frames.append(frame)
        trajectory = None
        if p + "positions" in d and self.height_map is not None:
            hm = self.height_map
            if p + "candidates" in d:
                cand = (
                    np.unpackbits(d[p + "candidates"], count=hm.valid.size)
                    .astype(bool)
                    .reshape(hm.valid.shape)
                )
                hm = replace(hm, candidates=cand)
            trajectory = Trajectory(
                positions=d[p + "positions"],
                yaws=d[p + "yaws"],
                height_map=hm,
                object_radius=float(d[p + "radius"]),
            )
        seed = int(d[p + "seed"])
        chunks = d[p + "chunks"]
        return Sequence(
            frames=frames,
            scene=self.scene,
            obj=obj,
            trajectory=trajectory,
            seed=None if seed < 0 else seed,
            chunks=chunks if len(chunks) else None,
        )
