"""The compiled CPU kernels (fourdcontrast.sparse.native) against the PyTorch path of the same engine."""

import importlib.util
import os
import shutil

import numpy as np
import pytest
import torch

from fourdcontrast.sparse import SparseTensor, conv, conv_transpose, native

needs_native = pytest.mark.skipif(
    not (native.allowed() and native.load() is not None),
    reason="native sparse kernels not built here (no C++ compiler/ninja, or FOURDCONTRAST_NATIVE=0)",
)


def random_input(rng, n, dimension, channels, dtype, extent=8):
    batch, xyz = rng.integers(0, 2, (n, 1)), rng.integers(-extent, extent, (n, dimension))
    coords = np.unique(np.concatenate([batch, xyz], axis=1), axis=0)
    coords = coords[rng.permutation(len(coords))]
    feats = torch.as_tensor(rng.standard_normal((len(coords), channels)), dtype=dtype)
    return torch.as_tensor(coords), feats


def network(coords, feats, weights):
    """Submanifold, strided, transposed and dilated hyper-cross convolutions; returns the output tensor."""
    x = SparseTensor(feats, coords)
    y = conv(x, weights["sub"], 3, 1)
    z = conv(y, weights["down"], 2, 2)
    u = conv_transpose(z, weights["up"], 2, 2)
    v = conv(u, weights["cross"], 3, 1, 2, "hypercross")
    return torch.cat([y.F, v.F], dim=1)


def make_weights(dimension, c, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"sub": (3**dimension, c, 5), "down": (2**dimension, 5, 7), "up": (2**dimension, 7, 4),
              "cross": (1 + 2 * dimension, 4, 3)}
    return {k: torch.randn(s, generator=g, dtype=dtype).requires_grad_(True) for k, s in shapes.items()}


def assert_close_scaled(a, b, tol):
    """Largest difference within ``tol`` of the largest magnitude (float sums differ in rounding only)."""
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= tol * float(b.abs().max()), float((a - b).abs().max())


def run(monkeypatch, use_native, coords, feats, weights):
    if use_native:
        monkeypatch.delenv(native.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(native.ENV_VAR, "0")
    f = feats.clone().requires_grad_(True)
    out = network(coords, f, weights)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = {k: w.grad.clone() for k, w in weights.items()}
    for w in weights.values():
        w.grad = None
    return out.detach(), f.grad, grads


@needs_native
@pytest.mark.parametrize("dimension", [3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_chunk", [3, 4096])
def test_native_matches_the_pytorch_path(monkeypatch, dimension, dtype, max_chunk):
    monkeypatch.setattr(native, "MIN_CHUNK", 1)
    monkeypatch.setattr(native, "MAX_CHUNK", max_chunk)  # 3: many chunks per offset, every thread busy
    rng = np.random.default_rng(dimension)
    coords, feats = random_input(rng, 600 if dimension == 3 else 900, dimension, 6, dtype)
    weights = make_weights(dimension, 6, dtype)
    out_n, gf_n, gw_n = run(monkeypatch, True, coords, feats, weights)
    out_t, gf_t, gw_t = run(monkeypatch, False, coords, feats, weights)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert_close_scaled(out_n, out_t, tol)
    assert_close_scaled(gf_n, gf_t, tol)
    for k in weights:
        assert_close_scaled(gw_n[k], gw_t[k], tol)
    assert gw_n["sub"].abs().sum() > 0 and gf_n.abs().sum() > 0


@needs_native
def test_native_results_are_deterministic_and_thread_count_independent(monkeypatch):
    monkeypatch.setattr(native, "MIN_CHUNK", 1)
    monkeypatch.setattr(native, "MAX_CHUNK", 5)
    rng = np.random.default_rng(4)
    coords, feats = random_input(rng, 800, 3, 8, torch.float32)
    weights = make_weights(3, 8, torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = run(monkeypatch, True, coords, feats, weights)
        second = run(monkeypatch, True, coords, feats, weights)
        torch.set_num_threads(1)
        single = run(monkeypatch, True, coords, feats, weights)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for k in weights:
        assert torch.equal(first[2][k], second[2][k]), k  # bitwise: no timing-dependent summation order
        assert_close_scaled(first[2][k], single[2][k], 1e-6)
    assert_close_scaled(first[0], single[0], 1e-6)


@needs_native
def test_native_kernels_take_int32_and_int64_rows_and_check_their_arguments():
    ext = native.load()
    rng = np.random.default_rng(5)
    feats = torch.randn(50, 4)
    weight = torch.randn(3, 4, 6)
    counts = [10, 0, 7]
    in_rows = torch.as_tensor(np.concatenate([rng.permutation(50)[:10], rng.permutation(50)[:7]]))
    out_rows = torch.as_tensor(np.concatenate([rng.permutation(20)[:10], rng.permutation(20)[:7]]))
    scratch = torch.empty(native.scratch_shape(4, 6))
    expected = torch.zeros(20, 6)
    for k, (i, o) in enumerate(zip(torch.split(in_rows, counts), torch.split(out_rows, counts), strict=True)):
        expected.index_add_(0, o, feats[i] @ weight[k])
    for dtype in (torch.int32, torch.int64):
        out = torch.zeros(20, 6)
        ext.conv_forward(feats, weight, in_rows.to(dtype), out_rows.to(dtype), counts, out, scratch, 4)
        torch.testing.assert_close(out, expected)
    with pytest.raises(RuntimeError, match="counts do not add up"):
        ext.conv_forward(feats, weight, in_rows.int(), out_rows.int(), [10, 0, 6], out, scratch, 4)
    with pytest.raises(RuntimeError, match="differ in dtype"):
        ext.conv_forward(feats.double(), weight, in_rows.int(), out_rows.int(), counts, out, scratch, 4)


def test_environment_variable_disables_the_native_kernels(monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, "0")
    assert not native.allowed() and not native.usable(torch.zeros(2, 2))
    monkeypatch.setenv(native.ENV_VAR, "1")
    assert native.allowed()
    assert not native.usable(torch.zeros(2, 2, dtype=torch.float16))  # half: the PyTorch path


def test_a_failed_build_warns_once_and_leaves_the_pytorch_path(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "SOURCE", tmp_path / "missing.cpp")
    monkeypatch.setattr(native, "EXTENSION_NAME", "fourdcontrast_test_missing")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    with pytest.warns(RuntimeWarning, match="could not be built.*missing.cpp"):
        assert native.load.__wrapped__() is None


def test_native_kernels_build_where_a_compiler_exists():
    if os.environ.get(native.ENV_VAR, "1").strip() == "0":
        pytest.skip("FOURDCONTRAST_NATIVE=0")
    if not (shutil.which(os.environ.get("CXX", "c++")) and importlib.util.find_spec("ninja")):
        pytest.skip("no C++ compiler or ninja here: the engine uses the PyTorch path")
    assert native.load() is not None, "a compiler and ninja exist, but the native kernels did not build"


@needs_native
@pytest.mark.parametrize("dimension", [3, 4])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_native_kernel_maps_equal_the_pytorch_builder_pair_for_pair(monkeypatch, dimension, kernel_size):
    from fourdcontrast.sparse.kernel_map import CoordinateManager

    rng = np.random.default_rng(7)
    coords, _ = random_input(rng, 700, dimension, 1, torch.float32, extent=6)
    ext, calls = native.load(), []

    class Spy:  # counts the native builder's calls, to show the native case really used it
        def __getattr__(self, name):
            if name == "kernel_map_dense":
                calls.append(name)
            return getattr(ext, name)

    monkeypatch.setattr(native, "load", Spy)

    def build(use_native, in_stride=1):
        monkeypatch.setenv(native.ENV_VAR, "1" if use_native else "0")
        manager = CoordinateManager()
        key = manager.insert(coords, (1,) * dimension)
        assert manager._lookup(key)[5] is not None  # the dense table, where the native builder applies
        maps = [manager.kernel_map(key, key, (kernel_size,) * dimension, (1,) * dimension)]
        down = manager.downsample(key, (2,) * dimension)  # strided output, 3^D kernel (not the partition)
        maps.append(manager.kernel_map(key, down, (3,) * dimension, (1,) * dimension))
        return maps

    native_maps = build(True)
    assert len(calls) == 2
    for ours, theirs in zip(native_maps, build(False), strict=True):
        assert ours.counts == theirs.counts and ours.identity == theirs.identity
        assert ours.in_rows.dtype == theirs.in_rows.dtype
        assert torch.equal(ours.in_rows, theirs.in_rows) and torch.equal(ours.out_rows, theirs.out_rows)
    assert len(calls) == 2 and sum(native_maps[0].counts) > len(coords)


@needs_native
def test_native_kernel_map_builder_writes_int64_rows_and_skips_out_of_table_keys():
    ext = native.load()
    table = torch.tensor([-1, 0, -1, 1, 2, -1], dtype=torch.int32)
    base = torch.tensor([1, 3, 4])  # output keys, ascending
    out_order = torch.tensor([2, 0, 1])
    deltas = torch.tensor([-1, 0, 1, 3])
    for wide in (False, True):
        in_rows, out_rows, counts = ext.kernel_map_dense(base, out_order, deltas, table, 1, wide)
        assert in_rows.dtype == (torch.int64 if wide else torch.int32)
        # offset -1: keys 0, 2, 3 -> row 1 (output 4); offset 0: the identity, left out;
        # offset +1: keys 2, 4, 5 -> row 2 (output 3); offset +3: keys 4, 6 (outside), 7 (outside) -> row 2
        assert counts.tolist() == [1, 0, 1, 1]
        assert in_rows.tolist() == [1, 2, 2] and out_rows.tolist() == [1, 0, 2]
