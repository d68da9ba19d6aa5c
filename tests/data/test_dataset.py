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
