"""Small hand-made records for the visualizer tests (independent of the data pipeline).

A module with a unique name (not ``conftest``) so tests and subprocesses can import the builders."""

from __future__ import annotations

import numpy as np

from fourdcontrast.geometry import random_rotation, rotation_z, similarity
from fourdcontrast.records import (
    SOURCE_OBJECT,
    SOURCE_SCENE,
    Frame,
    HeightMap,
    Scene,
    Sequence,
    ShapeObject,
    Trajectory,
)

CELL = 0.10


def make_scene(rng: np.random.Generator, n: int = 1500) -> Scene:
    """A 4 m × 3 m room: floor (label 0), two walls (label 1) and a 1 m table block (label 2)."""
    n_floor, n_wall, n_table = n // 2, n // 4, n - n // 2 - n // 4
    floor = np.c_[rng.uniform(0, 4, n_floor), rng.uniform(0, 3, n_floor), np.zeros(n_floor)]
    w = rng.uniform(0, 1, n_wall)
    wall = np.where(
        (w < 0.5)[:, None],
        np.c_[rng.uniform(0, 4, n_wall), np.full(n_wall, 3.0), rng.uniform(0, 2, n_wall)],
        np.c_[np.zeros(n_wall), rng.uniform(0, 3, n_wall), rng.uniform(0, 2, n_wall)],
    )
    table = np.c_[
        rng.uniform(2.8, 3.8, n_table), rng.uniform(0.2, 1.2, n_table), rng.uniform(0, 0.8, n_table)
    ]
    points = np.concatenate([floor, wall, table])
    labels = np.repeat([0, 1, 2], [n_floor, n_wall, n_table])
    return Scene(points=points, labels=labels, name="test_room", class_names=("floor", "wall", "table"))


def make_object(rng: np.random.Generator, m: int = 300) -> ShapeObject:
    """A 0.4 × 0.3 × 0.5 m box surface, canonical pose (xy-centred, bottom at z = 0)."""
    pts = rng.uniform(-0.5, 0.5, (m, 3))
    axis = rng.integers(0, 3, m)
    pts[np.arange(m), axis] = np.sign(pts[np.arange(m), axis]) * 0.5
    pts = pts * np.array([0.4, 0.3, 0.5]) + np.array([0, 0, 0.25])
    return ShapeObject(points=pts, category="box", name="test_box")


def make_height_map(scene: Scene) -> HeightMap:
    shape = (40, 30)
    origin = np.zeros(2)
    cells = np.floor(scene.points[:, :2] / CELL).astype(int).clip([0, 0], [shape[0] - 1, shape[1] - 1])
    acc = np.zeros(shape, np.int32)
    np.add.at(acc, (cells[:, 0], cells[:, 1]), 1)
    max_h = np.full(shape, np.nan, np.float32)
    np.fmax.at(max_h, (cells[:, 0], cells[:, 1]), scene.points[:, 2])
    floor = np.nan_to_num(max_h, nan=9) < 0.2
    valid = floor.copy()
    valid[:2], valid[:, -2:], valid[:, :2] = False, False, False
    cand = valid.copy()
    cand[:5], cand[:, :5], cand[-3:], cand[:, -5:] = False, False, False, False
    return HeightMap(
        origin=origin,
        cell_size=CELL,
        accumulation=acc,
        max_height=max_h,
        floor_height=0.0,
        floor=floor,
        valid=valid,
        candidates=cand,
    )


def make_sequence(seed: int = 0, n_scene: int = 1500, n_object: int = 300, frames: int = 4) -> Sequence:
    """A box moving along an arc through the room; each frame drops 10 % of the scene points and 20 %
    of the object points (like resampling), and carries a random 3D-view similarity transform."""
    rng = np.random.default_rng(seed)
    scene, obj = make_scene(rng, n_scene), make_object(rng, n_object)
    positions = np.c_[
        np.linspace(0.8, 2.2, frames), 0.8 + 0.4 * np.sin(np.linspace(0, 2, frames)), np.zeros(frames)
    ]
    yaws = np.linspace(0.0, 1.5, frames)
    traj = Trajectory(
        positions=positions, yaws=yaws, height_map=make_height_map(scene), object_radius=obj.radius
    )
    out = []
    for t, pose in enumerate(traj.poses()):
        s_idx = np.sort(rng.choice(len(scene), int(0.9 * len(scene)), replace=False))
        o_idx = np.sort(rng.choice(len(obj), int(0.8 * len(obj)), replace=False))
        o_pts = obj.points[o_idx] @ pose[:3, :3].T + pose[:3, 3]
        view = similarity(
            random_rotation(rng) if t else rotation_z(0.3), rng.normal(0, 0.5, 3), 0.9 + 0.05 * t
        )
        out.append(
            Frame(
                points=np.concatenate([scene.points[s_idx], o_pts]),
                source=np.r_[np.full(len(s_idx), SOURCE_SCENE), np.full(len(o_idx), SOURCE_OBJECT)],
                index=np.r_[s_idx, o_idx],
                object_pose=pose,
                view_transform=view,
            )
        )
    return Sequence(frames=out, scene=scene, obj=obj, trajectory=traj, seed=seed)


def make_features(sequence: Sequence, channels: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Features that encode provenance (same point → same feature in every frame) plus height."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(2 * max(len(sequence.scene), len(sequence.obj)) + 2, channels))
    return [table[f.keys] + f.points[:, 2:3] for f in sequence.frames]
