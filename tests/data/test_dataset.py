import numpy as np
import pytest
import torch

from fourdcontrast.data.dataset import GeneratedSequenceDataset, ShardDataset, collate_sequences
from fourdcontrast.data.generate import GenerationConfig, SceneSpec, load_objects, run_generation
from fourdcontrast.data.synthetic import synthetic_room


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    scene = synthetic_room(0, size=(5.0, 4.0, 2.4), spacing=0.05)
    np.savez(root / "room.npz", points=scene.points)
    specs = [SceneSpec("file", str(root / "room.npz"))]
    objects = load_objects("default")
    run_generation(specs, objects, root / "out", GenerationConfig(trajectories_per_scene=2, length=3, seed=1))
    return root / "out", GeneratedSequenceDataset(specs, objects, trajectories_per_scene=2, length=3, seed=1)


def test_shards_equal_on_the_fly(generated):
    shards, fly = ShardDataset(generated[0]), generated[1]
    assert len(shards) == len(fly) == 2
    for i in range(2):
        a, b = shards[i], fly[i]
        assert a.sequence.seed == b.sequence.seed
        for fa, fb in zip(a.sequence.frames, b.sequence.frames, strict=True):
            np.testing.assert_array_equal(fa.points, fb.points)
            np.testing.assert_array_equal(fa.keys, fb.keys)
            np.testing.assert_array_equal(fa.view_transform, fb.view_transform)
        np.testing.assert_array_equal(a.correspondences.coords_4d, b.correspondences.coords_4d)


def test_collate(generated):
    samples = [generated[1][0], generated[1][1]]
    batch = collate_sequences(samples)
    T = 3
    assert batch.batch_size == 2 and batch.length == T
    assert batch.coords_3d.shape[1] == 4 and batch.coords_4d.shape[1] == 5
    assert batch.feats_3d.shape == (len(batch.coords_3d), 3) and torch.all(batch.feats_3d == 1)
    n3 = sum(len(c) for s in samples for c in s.correspondences.coords_3d)
    assert len(batch.coords_3d) == n3
    assert set(batch.coords_3d[:, 0].tolist()) == set(range(2 * T))
    assert set(batch.coords_4d[:, 0].tolist()) == {0, 1}
    # every L3D pair joins frames i < j of the same sequence, named by its group
    pairs = [(i, j) for i in range(T) for j in range(i + 1, T)]
    b3 = batch.coords_3d[:, 0].long()
    for (a, b), g in zip(batch.pairs_3d[::97].tolist(), batch.pairs_3d_group[::97].tolist(), strict=True):
        seq, p = divmod(g, len(pairs))
        assert (b3[a].item(), b3[b].item()) == (seq * T + pairs[p][0], seq * T + pairs[p][1])
    # L3D4D pairs: same sequence and frame time
    a, w = batch.pairs_3d4d[:, 0], batch.pairs_3d4d[:, 1]
    assert torch.equal(b3[a] // T, batch.coords_4d[w, 0].long())
    assert torch.equal(b3[a] % T, batch.coords_4d[w, 4].long())
    assert torch.equal(batch.pairs_3d4d_group, b3[a])
    # L4D pairs: same sequence, times i < j
    a, w = batch.pairs_4d[:, 0], batch.pairs_4d[:, 1]
    assert torch.equal(batch.coords_4d[a, 0], batch.coords_4d[w, 0])
    assert (batch.coords_4d[a, 4] < batch.coords_4d[w, 4]).all()
    # pair indices from the first sample are preserved (offset 0)
    c = samples[0].correspondences
    np.testing.assert_array_equal(
        batch.pairs_3d[: len(c.pairs_3d[(0, 1)])].numpy(), c.pairs_3d[(0, 1)] + [0, len(c.coords_3d[0])]
    )


def test_collate_rejects_mixed_lengths(generated):
    s = generated[1][0]
    short = type(s)(
        type(s.sequence)(s.sequence.frames[:2], s.sequence.scene, s.sequence.obj), s.correspondences
    )
    with pytest.raises(ValueError, match="differ in length"):
        collate_sequences([s, short])
    with pytest.raises(ValueError, match="empty"):
        collate_sequences([])


def test_dataloader(generated):
    loader = torch.utils.data.DataLoader(
        ShardDataset(generated[0]), batch_size=2, collate_fn=collate_sequences
    )
    batches = list(loader)
    assert len(batches) == 1 and batches[0].batch_size == 2
    assert batches[0].pairs_3d.dtype == torch.int64 and batches[0].coords_3d.dtype == torch.int32


def tiny_batch(points: bool = True):
    """A hand-made two-sequence batch (no generation), every tensor field filled."""
    from fourdcontrast.data.dataset import Batch

    g = torch.Generator().manual_seed(0)
    return Batch(
        coords_3d=torch.randint(0, 9, (12, 4), generator=g, dtype=torch.int32),
        feats_3d=torch.ones(12, 3),
        coords_4d=torch.randint(0, 9, (7, 5), generator=g, dtype=torch.int32),
        feats_4d=torch.ones(7, 3),
        pairs_3d=torch.randint(0, 12, (5, 2), generator=g),
        pairs_3d_group=torch.zeros(5, dtype=torch.int64),
        pairs_3d4d=torch.randint(0, 7, (6, 2), generator=g),
        pairs_3d4d_group=torch.zeros(6, dtype=torch.int64),
        pairs_4d=torch.randint(0, 7, (4, 2), generator=g),
        pairs_4d_group=torch.zeros(4, dtype=torch.int64),
        batch_size=2,
        length=3,
        points_3d=torch.rand(12, 3, generator=g) if points else None,
    )


def tensor_fields(batch):
    from dataclasses import fields

    values = {f.name: getattr(batch, f.name) for f in fields(batch)}
    return {name: v for name, v in values.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("points", [True, False])
def test_batch_to_moves_every_tensor_and_keeps_the_rest(points):
    batch = tiny_batch(points)
    moved = batch.to("meta", non_blocking=True)
    assert moved is not batch and moved.batch_size == 2 and moved.length == 3
    before, after = tensor_fields(batch), tensor_fields(moved)
    assert set(after) == set(before) and len(before) == 10 + points
    for name, t in after.items():
        assert t.device.type == "meta" and t.dtype == before[name].dtype and t.shape == before[name].shape
        assert before[name].device.type == "cpu"  # the original batch is left as it was
    assert (moved.points_3d is None) == (not points)
    same = batch.to("cpu")
    assert all(torch.equal(same_t, before[n]) for n, same_t in tensor_fields(same).items())


def test_batch_pin_memory_pins_every_tensor(monkeypatch):
    """The DataLoader's pin-memory step (torch.utils.data's pin_memory) calls Batch.pin_memory; here a
    stand-in records which tensors get pinned (pinning itself needs an accelerator)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned = []

    def fake_pin(self, *args, **kwargs):
        pinned.append(self)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = tiny_batch()
    out = pin_memory(batch)
    assert type(out) is type(batch) and out.batch_size == batch.batch_size
    assert sorted(id(t) for t in pinned) == sorted(id(t) for t in tensor_fields(batch).values())
    for name, t in tensor_fields(out).items():
        assert torch.equal(t, getattr(batch, name)) and t is not getattr(batch, name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory and GPU copies need CUDA")
def test_batch_pinned_by_a_dataloader_and_moved_to_cuda():
    loader = torch.utils.data.DataLoader([tiny_batch()], batch_size=None, pin_memory=True)
    batch = next(iter(loader))
    assert all(t.is_pinned() for t in tensor_fields(batch).values())
    on_gpu = batch.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    for name, t in tensor_fields(on_gpu).items():
        assert t.is_cuda and torch.equal(t.cpu(), getattr(batch, name))


def test_several_moving_objects_per_sequence_keep_exact_correspondences():
    """data.objects_per_sequence = 2 (a deviation from the paper): the second object's points join every
    frame with offset provenance, the composite object holds both, and the pairs still join the same point."""
    from fourdcontrast.data.generate import default_objects
    from fourdcontrast.records import SOURCE_OBJECT
    from fourdcontrast.sources.rooms import default_scene

    kw = dict(trajectories_per_scene=4, length=3, seed=0, voxel_size_3d=0.15, voxel_size_4d=0.3)
    one = GeneratedSequenceDataset([default_scene(0)], default_objects(), **kw)
    two = GeneratedSequenceDataset([default_scene(0)], default_objects(), objects_per_sequence=2, **kw)
    for i in range(4):
        try:
            a, b = one[i], two[i]
        except ValueError:
            continue
        break
    n0 = len(a.sequence.obj)
    assert len(b.sequence.obj) > n0 and "+" in b.sequence.obj.name
    for fa, fb in zip(a.sequence.frames, b.sequence.frames, strict=True):
        assert np.array_equal(fb.points[: len(fa)], fa.points)  # the first object's frame is untouched
        extra = fb.index[len(fa):]
        assert (fb.source[len(fa):] == SOURCE_OBJECT).all() and extra.min() >= n0
    # the added object moves: its points sit at different places in frames 0 and 1
    n_a0, n_a1 = len(a.sequence.frames[0]), len(a.sequence.frames[1])
    f0, f1 = b.sequence.frames[0], b.sequence.frames[1]
    at0 = {int(k): p for k, p in zip(f0.index[n_a0:], f0.points[n_a0:], strict=True)}
    moved = [np.linalg.norm(at0[int(k)] - p) for k, p in zip(f1.index[n_a1:], f1.points[n_a1:], strict=True)
             if int(k) in at0]
    assert moved and np.median(moved) > 0.05
    # the added object's voxels bring pairs of their own
    def n_pairs(sample):
        return sum(len(p) for p in sample.correspondences.pairs_3d.values())

    assert n_pairs(b) > n_pairs(a)
    batch = collate_sequences([b])
    assert int(batch.object_3d.sum()) > int(collate_sequences([a]).object_3d.sum())


def test_crop_size_makes_smaller_sequences_with_exact_correspondences(generated):
    """data.crop_size: the cropped item is the uncropped one cut to the box (same seeds), both from
    shards and generated on the fly, and every pair still joins the same source point."""
    shards_dir, fly = generated
    specs, objects = fly.scenes, fly.objects
    cropped_fly = GeneratedSequenceDataset(specs, objects, trajectories_per_scene=2, length=3, seed=1,
                                           crop_size=2.0)
    cropped_shards = ShardDataset(shards_dir, crop_size=2.0)
    for i in range(2):
        full, a, b = fly[i], cropped_fly[i], cropped_shards[i]
        for ff, fa, fb in zip(full.sequence.frames, a.sequence.frames, b.sequence.frames, strict=True):
            assert 0 < len(fa) < len(ff)
            assert set(fa.keys.tolist()) <= set(ff.keys.tolist())
            np.testing.assert_array_equal(fa.keys, fb.keys)
        corr = a.correspondences
        for (i_, j_), pairs in corr.pairs_3d.items():
            fi, fj = a.sequence.frames[i_], a.sequence.frames[j_]
            ki = fi.keys[corr.voxel_point_3d[i_][pairs[:, 0]]]
            # the representative point of voxel i is in the paired voxel of frame j
            row_of = {int(k): r for r, k in enumerate(fj.keys)}
            rows = np.array([row_of[int(k)] for k in ki])
            np.testing.assert_array_equal(corr.point_to_voxel_3d[j_][rows], pairs[:, 1])
        assert collate_sequences([a]).coords_3d.shape[0] < collate_sequences([full]).coords_3d.shape[0]
