"""4D sequence generation (paper, Sec. 3.3): trajectory → composition → augmentation → correspondences.

Modules, in data-flow order:

- ``trajectory``: height map, floor, valid cells, candidates, ``sample_trajectory``.
- ``compose``: ``compose_sequence`` — the object composited into the scan, with provenance.
- ``augment``: chunk removal, per-frame resampling, the discard rule, random 3D views.
- ``correspondence``: exact point pairs and the 3D / 4D voxel maps and pairs of Eqs. 3–8.
- ``shards`` / ``generate``: offline generation (``fourdcontrast generate``) with resume.
- ``dataset``: torch datasets (on the fly or from shards) and ``collate_sequences``.
- ``synthetic``: small box rooms and objects for tests and the built-in default.
- ``benchmark``: the generation speed benchmark (``benchmarks/generation.py``).

``make_sequence`` is the one-call convenience: sample a trajectory, compose, augment, with retries.
"""

from __future__ import annotations

import numpy as np

from fourdcontrast.data.augment import AugmentationError, AugmentOptions, augment_composed
from fourdcontrast.data.trajectory import DEFAULT_LENGTH, sample_trajectory
from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import HeightMap, Scene, Sequence, ShapeObject

DEFAULT_SEQUENCE_TRIES = 5
"""Trajectories tried (each with its own augmentation retries) before ``make_sequence`` gives up."""


def make_sequence(
    scene: Scene,
    obj: ShapeObject,
    rng: RngLike = None,
    length: int = DEFAULT_LENGTH,
    height_map: HeightMap | None = None,
    lookup: np.ndarray | None = None,
    max_sequence_tries: int = DEFAULT_SEQUENCE_TRIES,
    trajectory_options: dict | None = None,
    augment_options: AugmentOptions | None = None,
    stats: dict | None = None,
    seed: int | None = None,
) -> Sequence:
    """Sample a trajectory, compose and augment a validated 4D sequence (Sec. 3.3).

    Equal to ``augment_sequence(compose_sequence(scene, obj, sample_trajectory(...)), rng)`` with the
    same generator, computed without materializing the un-augmented frames.

    Args:
        scene: the scan.
        obj: the object in canonical pose.
        rng: generator or seed.
        length: frames t (paper: 4).
        height_map: a cached :func:`~fourdcontrast.data.trajectory.compute_height_map` of ``scene``
            (with candidates for ``obj``'s radius to skip that step as well).
        lookup: cached :func:`~fourdcontrast.data.trajectory.nearest_candidate_lookup` of that map.
        max_sequence_tries: new trajectories tried when augmentation keeps failing.
        trajectory_options: extra keyword arguments of ``sample_trajectory``.
        augment_options: parameters of the augmentation (default: the paper's, ``AugmentOptions()``).
        stats: optional dict collecting ``tries`` / ``discarded`` counts.
        seed: recorded on the sequence.

    Raises:
        ValueError: no floor / object too large / NaN (from the trajectory), or
            :class:`~fourdcontrast.data.augment.AugmentationError` after all tries.
    """
    rng = as_rng(rng)
    error: AugmentationError | None = None
    for _ in range(max_sequence_tries):
        trajectory = sample_trajectory(
            scene, obj, length, rng, height_map=height_map, lookup=lookup, **(trajectory_options or {})
        )
        try:
            return augment_composed(
                scene, obj, trajectory, rng, augment_options, stats=stats, seed=seed
            )
        except AugmentationError as exc:
            error = exc
    raise AugmentationError(f"{max_sequence_tries} trajectories all failed augmentation; last: {error}")


__all__ = ["DEFAULT_SEQUENCE_TRIES", "make_sequence"]
