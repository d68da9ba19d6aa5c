"""Real batches from the embedded rooms and furniture, cached per session (shared by the model tests)."""

from __future__ import annotations

import functools

from fourdcontrast.data.dataset import GeneratedSequenceDataset, collate_sequences
from fourdcontrast.data.static import StaticPairDataset
from fourdcontrast.sources.furniture import default_objects
from fourdcontrast.sources.rooms import default_scene

# Coarse voxels keep the tests fast; the code path is the paper's (2 cm / 5 cm in production).
VOXEL_3D = 0.15
VOXEL_4D = 0.30


def _first_samples(dataset, count: int) -> list:
    samples, i = [], 0
    while len(samples) < count:
        try:
            samples.append(dataset[i])
        except ValueError:  # a room's floor could not hold that trajectory: take the next item
            pass
        i += 1
    return samples


@functools.cache
def sequence_samples(count: int = 2, length: int = 4, voxel_3d: float = VOXEL_3D, voxel_4d: float = VOXEL_4D):
    scenes = [default_scene(k) for k in range(2)]
    dataset = GeneratedSequenceDataset(scenes, default_objects(0), trajectories_per_scene=4, length=length,
                                       seed=0, voxel_size_3d=voxel_3d, voxel_size_4d=voxel_4d)
    return tuple(_first_samples(dataset, count))


def sequence_batch(count: int = 2, length: int = 4, voxel_3d: float = VOXEL_3D, voxel_4d: float = VOXEL_4D):
    """``count`` sequences of ``length`` frames from the embedded rooms, collated."""
    return collate_sequences(list(sequence_samples(count, length, voxel_3d, voxel_4d)))


@functools.cache
def static_samples(count: int = 2, voxel_3d: float = VOXEL_3D):
    dataset = StaticPairDataset([default_scene(0)], pairs_per_scene=count, voxel_size_3d=voxel_3d,
                                voxel_size_4d=VOXEL_4D)
    return tuple(dataset[i] for i in range(count))


def static_batch(count: int = 2, voxel_3d: float = VOXEL_3D):
    """``count`` static pairs (two views of one embedded room), collated."""
    return collate_sequences(list(static_samples(count, voxel_3d)))
