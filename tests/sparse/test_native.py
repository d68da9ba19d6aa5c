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
