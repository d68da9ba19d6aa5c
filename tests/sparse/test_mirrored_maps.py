"""Compact (mirrored) kernel maps of submanifold convolutions: half the pairs stored, the same convolution."""

import numpy as np
import pytest
import torch

from fourdcontrast.sparse import CoordinateManager, SparseTensor, conv, native
from fourdcontrast.sparse.kernel_map import KernelMap


@pytest.fixture(autouse=True, params=["native", "pytorch"])
def kernels(request, monkeypatch):
    """Every test runs with the compiled CPU kernels and with the PyTorch path."""
    if request.param == "native":
        monkeypatch.delenv(native.ENV_VAR, raising=False)
        if native.load() is None:
            pytest.skip("native sparse kernels not built here")
    else:
        monkeypatch.setenv(native.ENV_VAR, "0")
    return request.param


def surface(dimension: int, n: int = 400, seed: int = 0):
    """Coordinates (batch first) of voxels on two planes, unsorted, and float64 features."""
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 14, size=(n, dimension))
    pts[: n // 2, 2] = 3
    pts[n // 2:, 0] = 5
    coords = np.unique(np.concatenate([rng.integers(0, 2, (n, 1)), pts], axis=1), axis=0)
    coords = coords[rng.permutation(len(coords))]
    feats = torch.as_tensor(rng.standard_normal((len(coords), 4)))
    return torch.as_tensor(coords), feats


def both_maps(coords, kernel_size, dilation=1):
    dim = coords.shape[1] - 1
    ks, dil = (kernel_size,) * dim if isinstance(kernel_size, int) else kernel_size, (dilation,) * dim
    maps = []
    for mirrored in (False, True):
        manager = CoordinateManager(mirrored_maps=mirrored)
        key = manager.insert(coords, (1,) * dim)
        maps.append(manager.kernel_map(key, key, ks, dil))
    return maps


@pytest.mark.parametrize("dimension,kernel_size,dilation",
                         [(3, 3, 1), (3, 5, 1), (3, 3, 2), (4, 3, 1), (4, (3, 3, 3, 1), 1)])
def test_mirrored_map_has_the_full_maps_pairs_in_half_the_memory(dimension, kernel_size, dilation):
    coords, _ = surface(dimension)
    full, half = both_maps(coords, kernel_size, dilation)
    assert half.mirrored and not full.mirrored
    assert half.counts == full.counts and half.identity == full.identity and half.num_pairs == full.num_pairs
    for k, (a_in, a_out, b_in, b_out) in enumerate(
            zip(full.in_indices, full.out_indices, half.in_indices, half.out_indices, strict=True)):
        pairs_full = sorted(zip(a_in.tolist(), a_out.tolist(), strict=True))
        pairs_half = sorted(zip(b_in.tolist(), b_out.tolist(), strict=True))
        assert pairs_full == pairs_half, k
    stored = half.in_rows.numel() + half.out_rows.numel()
    assert stored * 2 == full.in_rows.numel() + full.out_rows.numel()
    groups = half.groups()  # the PyTorch path's groups cover every offset once
    covered = sorted(k for g in groups for k in g.offsets.tolist())
    assert set(covered) == {k for k, c in enumerate(full.counts) if c}


@pytest.mark.parametrize("dimension,kernel_size,dilation", [(3, 3, 1), (3, 5, 1), (3, 3, 2), (4, 3, 1)])
def test_convolution_on_mirrored_maps_equals_the_full_maps(dimension, kernel_size, dilation):
    coords, feats = surface(dimension)
    volume = kernel_size**dimension
    weight0 = torch.randn(volume, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    results = []
    for mirrored in (False, True):
        x = feats.clone().requires_grad_(True)
        w = weight0.clone().requires_grad_(True)
        sparse = SparseTensor(x, coords, manager=CoordinateManager(mirrored_maps=mirrored))
        y = conv(sparse, w, kernel_size, 1, dilation)
        weights = torch.linspace(-1, 1, y.features.numel(), dtype=torch.float64)
        y.features.backward(weights.view_as(y.features))
        maps = list(sparse.manager._maps.values())
        assert all(m.mirrored == mirrored for m in maps)
        results.append((y.features.detach(), x.grad, w.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)


def test_gradcheck_on_a_mirrored_map():
    coords, feats = surface(3, n=60)
    weight = torch.randn(27, 4, 2, dtype=torch.float64, requires_grad=True)
    x = feats.clone().requires_grad_(True)

    def f(features, kernel):
        manager = CoordinateManager(mirrored_maps=True)
        return conv(SparseTensor(features, coords, manager=manager), kernel, 3).F

    assert torch.autograd.gradcheck(f, (x, weight))


def test_only_odd_submanifold_hypercubes_are_mirrored():
    coords, _ = surface(3)
    manager = CoordinateManager(mirrored_maps=True)
    key = manager.insert(coords, (1, 1, 1))
    assert manager.kernel_map(key, key, (3, 3, 3), (1, 1, 1)).mirrored
    assert not manager.kernel_map(key, key, (3, 3, 3), (1, 1, 1), "hypercross").mirrored
    assert not manager.kernel_map(key, key, (2, 2, 2), (1, 1, 1)).mirrored  # no centre
    down = manager.downsample(key, (2, 2, 2))
    assert not manager.kernel_map(key, down, (2, 2, 2), (1, 1, 1)).mirrored  # strided


def test_a_mirrored_map_needs_symmetric_counts():
    rows = torch.zeros(3, dtype=torch.int32)
    with pytest.raises(ValueError, match="mirrored"):
        KernelMap(rows, rows, [3, 0, 2], 10, 10, 1, mirrored=True)
