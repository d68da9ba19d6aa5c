"""4D sequence composition (paper, Sec. 3.3, "4D Sequence Generation").

The object is composited into the static scene at every trajectory point (rotation by the yaw, then
translation onto the floor). Every point keeps its provenance (source, index) so that correspondences
between frames are exact.
"""

from __future__ import annotations

import numpy as np
import torch

from fourdcontrast.records import SOURCE_OBJECT, SOURCE_SCENE, Frame, Scene, Sequence, ShapeObject, Trajectory


def object_points_at(obj: ShapeObject, pose: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """(m, 3) float32 object points (all, or ``index`` into ``obj.points``) moved by the (4, 4) pose."""
    pts = obj.points if index is None else obj.points[index]
    r = pose[:3, :3].astype(np.float32)
    return (pts @ r.T + pose[:3, 3].astype(np.float32)).astype(np.float32)


def compose_frame(
    scene: Scene,
    obj: ShapeObject,
    pose: np.ndarray,
    scene_index: np.ndarray | None = None,
    object_index: np.ndarray | None = None,
) -> Frame:
    """One frame: the scene points ``scene_index`` (default all) followed by the object points
    ``object_index`` (default all) placed by ``pose``, with provenance and an identity view.

    Points are ordered scene first, then object, each by increasing index (the order the
    correspondence code relies on for fast lookups).
    """
    n, m = len(scene), len(obj)
    s_idx = np.arange(n, dtype=np.int64) if scene_index is None else np.asarray(scene_index, np.int64)
    o_idx = np.arange(m, dtype=np.int64) if object_index is None else np.asarray(object_index, np.int64)
    points = np.empty((len(s_idx) + len(o_idx), 3), dtype=np.float32)
    torch.index_select(
        torch.from_numpy(scene.points), 0, torch.from_numpy(s_idx), out=torch.from_numpy(points[: len(s_idx)])
    )
    points[len(s_idx) :] = object_points_at(obj, pose, o_idx)
    source = np.concatenate(
        [np.full(len(s_idx), SOURCE_SCENE, np.int8), np.full(len(o_idx), SOURCE_OBJECT, np.int8)]
    )
    return Frame(
        points=points,
        source=source,
        index=np.concatenate([s_idx, o_idx]),
        object_pose=np.array(pose, dtype=np.float64),
        view_transform=np.eye(4),
    )


def compose_sequence(
    scene: Scene, obj: ShapeObject, trajectory: Trajectory, seed: int | None = None
) -> Sequence:
    """Composite ``obj`` into ``scene`` at every trajectory point: a :class:`Sequence` of
    ``len(trajectory)`` frames, each holding all scene points and all object points (object moved by
    ``trajectory.poses()[t]``), with provenance and identity 3D views.

    Args:
        scene: the static scan.
        obj: the object in canonical pose (bottom at z = 0, so it stands on the floor at the trajectory
            height).
        trajectory: the object's trajectory.
        seed: recorded on the sequence.
    """
    if not np.isfinite(obj.points).all():
        raise ValueError(f"object {obj.name!r} has NaN or infinite point coordinates")
    frames = [compose_frame(scene, obj, pose) for pose in trajectory.poses()]
    return Sequence(frames=frames, scene=scene, obj=obj, trajectory=trajectory, seed=seed)


def add_moving_objects(sequence: Sequence, others: list[Sequence]) -> Sequence:
    """``sequence`` with the moving objects of ``others`` added: several objects moving through one scene.

    A **deviation from the paper** (Sec. 3.3 moves one object per trajectory), behind the switch
    ``data.objects_per_sequence`` (default 1): more moving voxels per sequence give the motion more of the
    pairs. Each sequence of ``others`` is a sequence of the same scan and length with its own object and
    trajectory (generated and validated independently); its object points at every frame are appended to
    the frame of ``sequence`` (scan points, chunks, resampling and view transforms stay those of
    ``sequence``). The result's ``obj`` is a composite :class:`ShapeObject` whose points are the objects'
    canonical points one after the other, so object point ``k`` of the ``j``-th added object has provenance
    index ``k + len(obj_0) + … + len(obj_{j-1})`` and correspondences stay exact by provenance. Objects may
    overlap one another (they are validated against the scan only).

    Args:
        sequence: the first object's sequence.
        others: sequences of the same scan (same point count) and frame count.

    Returns:
        A new :class:`Sequence`; ``sequence`` and ``others`` are not modified.

    Raises:
        ValueError: when a sequence of ``others`` has another scan or length.
    """
    objects = [sequence.obj]
    frames = [list(f for f in sequence.frames)]
    offset = len(sequence.obj)
    parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in sequence.frames]
    for other in others:
        if len(other) != len(sequence) or len(other.scene) != len(sequence.scene):
            raise ValueError(f"add_moving_objects: a sequence of {len(other)} frames over a scan of "
                             f"{len(other.scene)} points cannot join one of {len(sequence)} frames over "
                             f"{len(sequence.scene)} points")
        for t, frame in enumerate(other.frames):
            keep = frame.source == SOURCE_OBJECT
            parts[t].append((frame.points[keep], frame.index[keep] + offset))
        objects.append(other.obj)
        offset += len(other.obj)
    new_frames = []
    for frame, extra in zip(frames[0], parts, strict=True):
        points = np.concatenate([frame.points, *(p for p, _ in extra)])
        source = np.concatenate([frame.source, *(np.full(len(i), SOURCE_OBJECT, np.int8) for _, i in extra)])
        index = np.concatenate([frame.index, *(i for _, i in extra)])
        new_frames.append(Frame(points, source, index, object_pose=frame.object_pose.copy(),
                                view_transform=frame.view_transform.copy()))
    composite = ShapeObject(np.concatenate([o.points for o in objects]), category=sequence.obj.category,
                            name="+".join(o.name for o in objects),
                            normals=None if any(o.normals is None for o in objects)
                            else np.concatenate([o.normals for o in objects]))
    return Sequence(new_frames, sequence.scene, composite, trajectory=sequence.trajectory, seed=sequence.seed,
                    chunks=sequence.chunks)
