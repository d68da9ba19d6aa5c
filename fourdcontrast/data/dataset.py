"""Torch datasets of 4D sequences and the collate function that batches them for the sparse networks.

Two sources with the same items: :class:`GeneratedSequenceDataset` generates on the fly (same seeds as
``fourdcontrast generate``, so item ``(scene, k)`` is the same sequence either way) and
:class:`ShardDataset` reads shards written by ``fourdcontrast generate``. Items are :class:`Sample`
(sequence + correspondences); :func:`collate_sequences` makes a :class:`Batch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fourdcontrast.data.augment import crop_sequence
from fourdcontrast.data.compose import add_moving_objects
from fourdcontrast.data.correspondence import (
    DEFAULT_VOXEL_SIZE_3D,
    DEFAULT_VOXEL_SIZE_4D,
    Correspondences,
    SceneCache,
    compute_correspondences,
    prepare_scene_cache,
)
from fourdcontrast.data.generate import MANIFEST, GenerationConfig, SceneSpec, generate_scene_sequences
from fourdcontrast.data.shards import Shard
from fourdcontrast.records import SOURCE_OBJECT, Scene, Sequence, ShapeObject

EXTRA_OBJECT_SEED_STRIDE = 1_000_033
"""Seed offset of the ``j``-th extra moving object of a sequence (``objects_per_sequence > 1``): a prime far
from the held-out offset, so extra objects follow trajectories of their own."""
DEFAULT_FEATURE_CHANNELS = 3
"""Input feature channels: occupancy repeated to 3 channels (supplement, Sec. B)."""


@dataclass
class Sample:
    """One dataset item: a sequence and its correspondences."""

    sequence: Sequence
    correspondences: Correspondences


class GeneratedSequenceDataset(Dataset):
    """Sequences generated on the fly: item ``i`` is trajectory ``i % T`` of scene ``i // T`` with
    ``T = trajectories_per_scene``, seeded exactly as ``fourdcontrast generate`` seeds it.

    Per-scene work (height map, candidates, 4D voxel cache) is kept in the dataset instance (one copy
    per DataLoader worker). A trajectory that cannot be generated raises ``ValueError``.

    Args:
        scenes: scans, or :class:`~fourdcontrast.data.generate.SceneSpec` loaded on first use.
        objects: objects each trajectory picks from.
        trajectories_per_scene: sequences per scene (paper: 20).
        length: frames per sequence (paper: 4).
        seed: global seed.
        voxel_size_3d, voxel_size_4d: voxel sizes of the correspondences, metres.
        objects_per_sequence: moving objects per sequence (default 1, the paper). More is a deviation:
            object ``j > 0`` comes from the same item generated with seed
            ``seed + j·EXTRA_OBJECT_SEED_STRIDE`` and is added by
            :func:`~fourdcontrast.data.compose.add_moving_objects`; an extra object whose trajectory
            cannot be generated is left out (the item then has fewer objects).
        crop_size: side in metres of the square crop around the moving object applied to every
            sequence before its correspondences (:func:`~fourdcontrast.data.augment.crop_sequence`;
            default ``None``: whole rooms, the paper).
    """

    def __init__(
        self,
        scenes: list[Scene | SceneSpec],
        objects: list[ShapeObject],
        trajectories_per_scene: int = 20,
        length: int = 4,
        seed: int = 0,
        voxel_size_3d: float = DEFAULT_VOXEL_SIZE_3D,
        voxel_size_4d: float = DEFAULT_VOXEL_SIZE_4D,
        objects_per_sequence: int = 1,
        crop_size: float | None = None,
    ):
        if not scenes or not objects:
            raise ValueError("GeneratedSequenceDataset needs at least one scene and one object")
        if objects_per_sequence < 1:
            raise ValueError(f"objects_per_sequence must be >= 1, got {objects_per_sequence}")
        self.objects_per_sequence = objects_per_sequence
        self.crop_size = crop_size
        self.scenes = list(scenes)
        self.objects = list(objects)
        self.config = GenerationConfig(trajectories_per_scene, length, seed)
        self.voxel_size_3d, self.voxel_size_4d = voxel_size_3d, voxel_size_4d
        self._caches: dict[int, tuple[Scene, SceneCache, dict]] = {}

    def __len__(self) -> int:
        return len(self.scenes) * self.config.trajectories_per_scene

    def _scene(self, s: int) -> tuple[Scene, SceneCache, dict]:
        if s not in self._caches:
            scene = self.scenes[s]
            scene = scene.load() if isinstance(scene, SceneSpec) else scene
            self._caches = {s: (scene, prepare_scene_cache(scene, self.voxel_size_4d), {})}  # keep one scene
        return self._caches[s]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range ({len(self)} items)")
        s, k = divmod(i, self.config.trajectories_per_scene)
        scene, cache, maps = self._scene(s)
        one = GenerationConfig(1, self.config.length, self.config.seed)
        sequences, counts = generate_scene_sequences(
            scene, self.objects, s, one, first_trajectory=k, maps=maps
        )
        if not sequences:
            raise ValueError(f"scene {scene.name!r} trajectory {k}: {'; '.join(counts['failures'])}")
        seq = sequences[0]
        others = []
        for j in range(1, self.objects_per_sequence):
            extra = GenerationConfig(1, self.config.length, self.config.seed + j * EXTRA_OBJECT_SEED_STRIDE)
            more, _ = generate_scene_sequences(scene, self.objects, s, extra, first_trajectory=k, maps=maps)
            others.extend(more[:1])
        if others:
            seq = add_moving_objects(seq, others)
        if self.crop_size is not None:
            seq = crop_sequence(seq, self.crop_size)
        return Sample(seq, compute_correspondences(seq, self.voxel_size_3d, self.voxel_size_4d, cache))


class ShardDataset(Dataset):
    """Sequences read from the shards of a ``fourdcontrast generate`` output folder.

    Args:
        directory: the ``--out`` folder (with ``manifest.json``).
        voxel_size_3d, voxel_size_4d: voxel sizes of the correspondences, metres.
        crop_size: as for :class:`GeneratedSequenceDataset` (default ``None``: no crop).

    Raises:
        ValueError: when the folder has no manifest or a listed shard is missing.
    """

    def __init__(
        self,
        directory: str | Path,
        voxel_size_3d: float = DEFAULT_VOXEL_SIZE_3D,
        voxel_size_4d: float = DEFAULT_VOXEL_SIZE_4D,
        crop_size: float | None = None,
    ):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.exists():
            raise ValueError(f"{path}: no manifest; is {self.directory} a 'fourdcontrast generate' output?")
        manifest = json.loads(path.read_text())
        self.index: list[tuple[str, int]] = []
        for key in sorted(manifest["units"], key=int):
            unit = manifest["units"][key]
            if not (self.directory / unit["shard"]).exists():
                raise ValueError(f"{self.directory / unit['shard']}: shard listed in the manifest is missing")
            self.index.extend((unit["shard"], k) for k in range(unit["sequences"]))
        self.voxel_size_3d, self.voxel_size_4d = voxel_size_3d, voxel_size_4d
        self.crop_size = crop_size
        self._open: tuple[str, Shard, SceneCache] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Sample:
        name, k = self.index[i]
        if self._open is None or self._open[0] != name:
            shard = Shard(self.directory / name)
            self._open = (name, shard, prepare_scene_cache(shard.scene, self.voxel_size_4d))
        _, shard, cache = self._open
        seq = shard[k] if self.crop_size is None else crop_sequence(shard[k], self.crop_size)
        return Sample(seq, compute_correspondences(seq, self.voxel_size_3d, self.voxel_size_4d, cache))


@dataclass
class Batch:
    """Batched sparse inputs and loss indices for ``B`` sequences of ``T`` frames.

    3D inputs are the ``B·T`` frames as separate samples (MinkowskiEngine convention, batch index
    first): sample ``b·T + t`` is frame ``t`` of sequence ``b``. 4D inputs are the ``B`` sequences.

    Attributes:
        coords_3d: (N3, 4) int32 ``[b·T + t, x, y, z]`` 3D voxel coordinates (2 cm voxels).
        feats_3d: (N3, C) float32 input features (ones: occupancy, C = 3 by default).
        coords_4d: (N4, 5) int32 ``[b, x, y, z, t]`` 4D voxel coordinates (5 cm × 1 frame).
        feats_4d: (N4, C) float32 input features (ones).
        pairs_3d: (K1, 2) int64 rows of ``coords_3d`` (frame i, frame j), i < j — L3D (Eq. 3–4).
        pairs_3d_group: (K1,) int64 the (sequence, i, j) group of each pair: ``b·P + p`` with ``p`` the
            index of (i, j) among the ``P = T(T-1)/2`` frame pairs in ``itertools.combinations`` order.
        pairs_3d4d: (K2, 2) int64 (row of ``coords_3d``, row of ``coords_4d``) — L3D4D (Eq. 5–6).
        pairs_3d4d_group: (K2,) int64 the (sequence, frame) group ``b·T + t``.
        pairs_4d: (K3, 2) int64 rows of ``coords_4d`` (time i, time j), i < j — L4D (Eq. 7–8).
        pairs_4d_group: (K3,) int64 as ``pairs_3d_group``.
        batch_size: B.
        length: T.
        points_3d: (N3, 3) float32 position in metres of every 3D voxel's representative point in its
            frame's scene (4D) coordinates — unscaled and unrotated, so distances within a frame are true
            distances (feature-match recall, CSC's shape-context partitions).
        object_3d: (N3,) bool, the 3D voxel's representative point belongs to the moving object
            (provenance ``source``): what motion-aware pair sampling keeps and weights.
        object_4d: (N4,) bool, the same for the 4D voxels.
    """

    coords_3d: torch.Tensor
    feats_3d: torch.Tensor
    coords_4d: torch.Tensor
    feats_4d: torch.Tensor
    pairs_3d: torch.Tensor
    pairs_3d_group: torch.Tensor
    pairs_3d4d: torch.Tensor
    pairs_3d4d_group: torch.Tensor
    pairs_4d: torch.Tensor
    pairs_4d_group: torch.Tensor
    batch_size: int
    length: int
    points_3d: torch.Tensor | None = None
    object_3d: torch.Tensor | None = None
    object_4d: torch.Tensor | None = None

    def _map(self, fn) -> Batch:
        changes = {f.name: fn(getattr(self, f.name)) for f in fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **changes)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A batch with every tensor on ``device`` (``non_blocking`` for copies from pinned memory)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """A batch with every tensor in page-locked memory (DataLoader with ``pin_memory=True`` calls it)."""
        return self._map(lambda t: t.pin_memory())


def _with_batch(coords: np.ndarray, b: int) -> np.ndarray:
    out = np.empty((len(coords), coords.shape[1] + 1), dtype=np.int32)
    out[:, 0] = b
    out[:, 1:] = coords
    return out


def collate_sequences(samples: list[Sample], feature_channels: int = DEFAULT_FEATURE_CHANNELS) -> Batch:
    """Collate samples of equal length into a :class:`Batch` (see its attributes for shapes).

    Raises:
        ValueError: when the batch is empty or the sequences differ in length.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    length = len(samples[0].sequence)
    if any(len(s.sequence) != length for s in samples):
        raise ValueError(f"sequences differ in length: {[len(s.sequence) for s in samples]}")
    frame_pairs = [(i, j) for i in range(length) for j in range(i + 1, length)]
    c3, x3, c4, p3, g3, p34, g34, p4, g4 = [], [], [], [], [], [], [], [], []
    o3, o4 = [], []
    base3 = base4 = 0
    for b, sample in enumerate(samples):
        corr = sample.correspondences
        starts3 = np.cumsum([0] + [len(c) for c in corr.coords_3d]) + base3
        for t, coords in enumerate(corr.coords_3d):
            c3.append(_with_batch(coords, b * length + t))
            x3.append(sample.sequence.frames[t].points[corr.voxel_point_3d[t]])
            o3.append(sample.sequence.frames[t].source[corr.voxel_point_3d[t]] == SOURCE_OBJECT)
        c4.append(_with_batch(corr.coords_4d, b))
        obj4 = np.zeros(len(corr.coords_4d), dtype=bool)
        for t, frame in enumerate(sample.sequence.frames):
            rows = np.flatnonzero(corr.coords_4d[:, 3] == t)
            obj4[rows] = frame.source[corr.voxel_point_4d[rows]] == SOURCE_OBJECT
        o4.append(obj4)
        for p, (i, j) in enumerate(frame_pairs):
            pairs = corr.pairs_3d[(i, j)]
            p3.append(np.column_stack([pairs[:, 0] + starts3[i], pairs[:, 1] + starts3[j]]))
            g3.append(np.full(len(pairs), b * len(frame_pairs) + p))
            pairs = corr.pairs_4d[(i, j)]
            p4.append(pairs + np.int64(base4))  # int32 pairs: offset in int64
            g4.append(np.full(len(pairs), b * len(frame_pairs) + p))
        for t, pairs in enumerate(corr.pairs_3d4d):
            p34.append(np.column_stack([pairs[:, 0] + starts3[t], pairs[:, 1] + np.int64(base4)]))
            g34.append(np.full(len(pairs), b * length + t))
        base3 = int(starts3[-1])
        base4 += len(corr.coords_4d)

    def cat(parts: list[np.ndarray], width: int, dtype) -> torch.Tensor:
        if not parts:
            return torch.zeros((0, width) if width else (0,), dtype=dtype)
        return torch.from_numpy(np.concatenate(parts)).to(dtype)

    coords_3d = cat(c3, 4, torch.int32)
    coords_4d = cat(c4, 5, torch.int32)
    return Batch(
        coords_3d=coords_3d,
        feats_3d=torch.ones((len(coords_3d), feature_channels)),
        coords_4d=coords_4d,
        feats_4d=torch.ones((len(coords_4d), feature_channels)),
        pairs_3d=cat(p3, 2, torch.int64),
        pairs_3d_group=cat(g3, 0, torch.int64),
        pairs_3d4d=cat(p34, 2, torch.int64),
        pairs_3d4d_group=cat(g34, 0, torch.int64),
        pairs_4d=cat(p4, 2, torch.int64),
        pairs_4d_group=cat(g4, 0, torch.int64),
        batch_size=len(samples),
        length=length,
        points_3d=cat(x3, 3, torch.float32),
        object_3d=cat(o3, 0, torch.bool),
        object_4d=cat(o4, 0, torch.bool),
    )
