"""Static pairs: two augmented 3D views of one scan, for the 3D-only baselines (paper, Table 2).

PointContrast and Contrastive Scene Contexts pre-train on pairs of views of a *static* scene. Their
pairs come from overlapping ScanNet frames matched by a KD-tree; ours use the same provenance idea as
the 4D sequences: each view keeps a random subset of the scan's points (resampling) and gets its own
random rotation, scale and translation, and a point corresponds to itself. A static pair is a
:class:`~fourdcontrast.records.Sequence` of ``views`` frames with no object (an empty
:class:`~fourdcontrast.records.ShapeObject`), so ``compute_correspondences`` and
``collate_sequences`` work on it unchanged: ``pairs_3d`` are the view-to-view voxel pairs; the 4D part
is a degenerate "sequence" of a static scene, unused by the baselines.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from fourdcontrast.data.augment import (
    DEFAULT_RESAMPLE_FRACTION,
    DEFAULT_VIEW_ROTATION,
    DEFAULT_VIEW_SCALE,
    DEFAULT_VIEW_TRANSLATION,
    random_view_transform,
    resample_mask,
)
from fourdcontrast.data.compose import compose_frame
from fourdcontrast.data.correspondence import (
    DEFAULT_VOXEL_SIZE_3D,
    DEFAULT_VOXEL_SIZE_4D,
    SceneCache,
    compute_correspondences,
    prepare_scene_cache,
)
from fourdcontrast.data.dataset import Sample
from fourdcontrast.data.generate import SceneSpec, unit_seed
from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import Frame, Scene, Sequence, ShapeObject

DEFAULT_VIEWS = 2
"""Views per static sample (PointContrast: a pair)."""
DEFAULT_PAIRS_PER_SCENE = 20
"""Static pairs per scan (our choice: as many as the 4D sequences per scan, paper Sec. 4: 20)."""


def no_object() -> ShapeObject:
    """The empty object of a static pair (no points)."""
    return ShapeObject(points=np.zeros((0, 3), np.float32), category="none", name="none")


def static_pair(
    scene: Scene,
    rng: RngLike = None,
    views: int = DEFAULT_VIEWS,
    resample_fraction: tuple[float, float] = DEFAULT_RESAMPLE_FRACTION,
    rotation: str = DEFAULT_VIEW_ROTATION,
    scale_range: tuple[float, float] = DEFAULT_VIEW_SCALE,
    max_translation: float = DEFAULT_VIEW_TRANSLATION,
    seed: int | None = None,
) -> Sequence:
    """``views`` augmented views of one static scan, as a :class:`Sequence` without object.

    Each view keeps each point with a probability drawn uniformly in ``resample_fraction`` and gets an
    independent random similarity (rotation ``"z"`` or ``"so3"``, uniform scale in ``scale_range``,
    translation within ±``max_translation`` metres per axis) as its ``view_transform``: the same
    augmentation the 3D views of the 4D sequences get (Sec. 3.3), so the baselines differ from
    4DContrast by the data's dynamics only.

    Args:
        scene: the scan.
        rng: generator or seed.
        views: number of views (≥ 2).
        seed: recorded on the sequence.
    """
    if views < 2:
        raise ValueError(f"a static pair needs at least 2 views, got {views}")
    if len(scene) == 0:
        raise ValueError(f"scene {scene.name!r} has no points")
    rng = as_rng(rng)
    obj = no_object()
    frames = []
    for _ in range(views):
        keep = np.flatnonzero(resample_mask(len(scene), rng.uniform(*resample_fraction), rng))
        f = compose_frame(scene, obj, np.eye(4), scene_index=keep)
        view = random_view_transform(rng, rotation, scale_range, max_translation)
        frames.append(Frame(points=f.points, source=f.source, index=f.index, object_pose=f.object_pose,
                            view_transform=view))
    return Sequence(frames=frames, scene=scene, obj=obj, seed=seed)


class StaticPairDataset(Dataset):
    """Static pairs generated on the fly: item ``i`` is pair ``i % K`` of scene ``i // K`` with
    ``K = pairs_per_scene``, seeded by :func:`~fourdcontrast.data.generate.unit_seed` (deterministic).

    Args:
        scenes: scans, or :class:`~fourdcontrast.data.generate.SceneSpec` loaded on first use.
        pairs_per_scene: samples per scene.
        views: views per sample (2: a pair).
        seed: global seed.
        voxel_size_3d, voxel_size_4d: voxel sizes of the correspondences, metres.
    """

    def __init__(self, scenes: list[Scene | SceneSpec], pairs_per_scene: int = DEFAULT_PAIRS_PER_SCENE,
                 views: int = DEFAULT_VIEWS, seed: int = 0, voxel_size_3d: float = DEFAULT_VOXEL_SIZE_3D,
                 voxel_size_4d: float = DEFAULT_VOXEL_SIZE_4D):
        if not scenes:
            raise ValueError("StaticPairDataset needs at least one scene")
        self.scenes, self.pairs_per_scene, self.views, self.seed = list(scenes), pairs_per_scene, views, seed
        self.voxel_size_3d, self.voxel_size_4d = voxel_size_3d, voxel_size_4d
        self._cache: tuple[int, Scene, SceneCache] | None = None

    def __len__(self) -> int:
        return len(self.scenes) * self.pairs_per_scene

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range ({len(self)} items)")
        s, k = divmod(i, self.pairs_per_scene)
        if self._cache is None or self._cache[0] != s:
            scene = self.scenes[s]
            scene = scene.load() if isinstance(scene, SceneSpec) else scene
            self._cache = (s, scene, prepare_scene_cache(scene, self.voxel_size_4d))
        _, scene, cache = self._cache
        seed = unit_seed(self.seed, s, k)
        seq = static_pair(scene, seed, self.views, seed=seed)
        return Sample(seq, compute_correspondences(seq, self.voxel_size_3d, self.voxel_size_4d, cache))


__all__ = ["DEFAULT_PAIRS_PER_SCENE", "DEFAULT_VIEWS", "StaticPairDataset", "no_object", "static_pair"]
