"""Tests of the sparse engine against a brute-force reference (dictionary of coordinates)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.sparse import (
    BatchNorm,
    Conv,
    ConvTranspose,
    CoordinateManager,
    GlobalAvgPooling,
    GlobalMaxPooling,
    Linear,
    ReLU,
    SparseTensor,
    batched_coordinates,
    cat,
    conv,
    conv_transpose,
    kernel_offsets,
    kernel_volume,
    native,
    sparse_collate,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True, params=["native", "pytorch"])
def kernels(request, monkeypatch):
    """Every test of this module runs with the compiled CPU kernels and with the PyTorch path."""
    if request.param == "native":
        monkeypatch.delenv(native.ENV_VAR, raising=False)
        if native.load() is None:
            pytest.skip("native sparse kernels not built here")
    else:
        monkeypatch.setenv(native.ENV_VAR, "0")
    return request.param


def random_sparse(rng, n, dimension, channels=3, extent=6, batch=2, dtype=torch.float64, device="cpu"):
    """Unique random coordinates (batch first) in a small box, with random features."""
    coords = rng.integers(-extent, extent, size=(n, dimension))
    b = rng.integers(0, batch, size=(n, 1))
    full = np.unique(np.concatenate([b, coords], axis=1), axis=0)
    full = full[rng.permutation(len(full))]  # unsorted, as real data is
    feats = torch.as_tensor(rng.standard_normal((len(full), channels)), dtype=dtype, device=device)
    return SparseTensor(feats, torch.as_tensor(full, device=device))


def reference_conv(coords_in, feats_in, coords_out, weight, offsets, in_stride, dilation):
    """out[o] = Σ_k W[k] · in[o + offset_k · stride_in · dilation] by dictionary lookup."""
    table = {tuple(c): i for i, c in enumerate(coords_in.tolist())}
    w = weight if weight.ndim == 3 else weight.unsqueeze(0)
    out = torch.zeros((len(coords_out), w.shape[2]), dtype=feats_in.dtype)
    step = np.asarray(in_stride) * np.asarray(dilation)
    for o, c in enumerate(coords_out.tolist()):
        for k, off in enumerate(offsets.tolist()):
            q = (c[0], *(np.asarray(c[1:]) + np.asarray(off) * step).tolist())
            if q in table:
                out[o] += feats_in[table[q]] @ w[k]
    return out


def test_kernel_offsets_follow_minkowski_order():
    off = kernel_offsets(3, 3)
    assert off.shape == (27, 3)
    np.testing.assert_array_equal(off[0], [-1, -1, -1])
    np.testing.assert_array_equal(off[1], [0, -1, -1])  # axis 0 varies fastest
    np.testing.assert_array_equal(off[3], [-1, 0, -1])
    np.testing.assert_array_equal(off[13], [0, 0, 0])
    even = kernel_offsets(2, 4)
    assert even.shape == (16, 4) and even.min() == 0 and even.max() == 1
    np.testing.assert_array_equal(even[1], [1, 0, 0, 0])
    cross = kernel_offsets(3, 4, "hypercross")
    np.testing.assert_array_equal(cross[:3], [[0, 0, 0, 0], [-1, 0, 0, 0], [1, 0, 0, 0]])
    assert len(cross) == kernel_volume(3, 4, "hypercross") == 9
    assert kernel_volume((3, 3, 3, 1), 4) == 27
    with pytest.raises(ValueError, match="odd"):
        kernel_offsets(2, 3, "hypercross")


@pytest.mark.parametrize("dimension", [3, 4])
@pytest.mark.parametrize(
    "kernel_size,stride,dilation,region",
    [(3, 1, 1, "hypercube"), (2, 2, 1, "hypercube"), (3, 2, 1, "hypercube"), (3, 1, 2, "hypercube"),
     (1, 2, 1, "hypercube"), (3, 1, 1, "hypercross"), ("spatial", 1, 1, "hypercube"),
     # reach 2 (= the packing margin: no bounds checks) and reach 4 (queries leave the packed box)
     (5, 1, 1, "hypercube"), (5, 1, 2, "hypercube")],
)
def test_conv_matches_reference(dimension, kernel_size, stride, dilation, region):
    rng = np.random.default_rng(dimension)
    x = random_sparse(rng, 120, dimension)
    if kernel_size == "spatial":
        kernel_size = (3,) * 3 + (1,) * (dimension - 3)
    offsets = kernel_offsets(kernel_size, dimension, region)
    weight = torch.randn(len(offsets), 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = conv(x, weight, kernel_size, stride, dilation, region)
    assert y.tensor_stride == (stride,) * dimension
    # output coordinates: floor(c / s) * s, unique
    expected_coords = x.C.clone()
    expected_coords[:, 1:] = torch.div(expected_coords[:, 1:], stride, rounding_mode="floor") * stride
    np.testing.assert_array_equal(np.unique(expected_coords.numpy(), axis=0), np.unique(y.C.numpy(), axis=0))
    ref = reference_conv(x.C, x.F, y.C, weight, offsets, x.tensor_stride, (dilation,) * dimension)
    torch.testing.assert_close(y.F, ref)


@pytest.mark.parametrize("dimension", [3, 4])
def test_conv_transpose_is_adjoint_of_strided_conv(dimension):
    """<conv(x), y> == <x, conv_transpose(y)> with the same kernel, and outputs land on x's coordinates."""
    rng = np.random.default_rng(3)
    x = random_sparse(rng, 100, dimension, channels=4)
    w = torch.randn(2**dimension, 4, 6, dtype=torch.float64)
    y = conv(x, w, 2, 2)
    g = torch.randn(len(y), 6, dtype=torch.float64)
    back = conv_transpose(y.replace_features(g), w.transpose(1, 2).contiguous(), 2, 2)
    assert back.coordinate_key == x.coordinate_key and back.tensor_stride == (1,) * dimension
    torch.testing.assert_close((y.F * g).sum(), (x.F * back.F).sum())
    # a 3^D transposed conv after a 3^D strided conv, compared with the reference in reverse
    w3 = torch.randn(3**dimension, 6, 2, dtype=torch.float64)
    y3 = conv(x.replace_features(x.F), torch.randn(3**dimension, 4, 6, dtype=torch.float64), 3, 2)
    up = conv_transpose(y3, w3, 3, 2)
    offsets = kernel_offsets(3, dimension)
    expected = torch.zeros(len(x), 2, dtype=torch.float64)
    table = {tuple(c): i for i, c in enumerate(x.C.tolist())}
    for o, c in enumerate(y3.C.tolist()):
        for k, off in enumerate(offsets.tolist()):
            q = (c[0], *(np.asarray(c[1:]) + np.asarray(off)).tolist())
            if q in table:
                expected[table[q]] += y3.F[o] @ w3[k]
    torch.testing.assert_close(up.F, expected)


def test_kernel_maps_are_cached_and_reused_transposed():
    rng = np.random.default_rng(0)
    x = random_sparse(rng, 200, 3)
    down, up = Conv(3, 4, 2, 2, dimension=3).double(), ConvTranspose(4, 3, 2, 2, dimension=3).double()
    sub = Conv(3, 3, 3, dimension=3).double()
    calls = []
    build = x.manager._build
    x.manager._build = lambda *a: calls.append(a[:2]) or build(*a)
    y = up(down(x))
    assert len(calls) == 1  # the transposed conv reused the strided conv's map
    sub(y)
    sub(sub(y))
    assert len(calls) == 2 and x.manager.num_kernel_maps == 2


@pytest.mark.parametrize("dimension", [3, 4])
def test_gradcheck(dimension):
    rng = np.random.default_rng(5)
    x = random_sparse(rng, 25, dimension, channels=2, extent=2, batch=1)
    feats = x.F.clone().requires_grad_(True)
    w_sub = torch.randn(3**dimension, 2, 3, dtype=torch.float64, requires_grad=True)
    w_down = torch.randn(2**dimension, 2, 3, dtype=torch.float64, requires_grad=True)
    w_up = torch.randn(2**dimension, 3, 2, dtype=torch.float64, requires_grad=True)

    def sub(f, w):
        return conv(x.replace_features(f), w, 3, 1).F

    def down_up(f, wd, wu):
        y = conv(x.replace_features(f), wd, 2, 2)
        return conv_transpose(y, wu, 2, 2).F

    def dilated_cross(f, w):
        return conv(x.replace_features(f), w, 3, 1, 2, "hypercross").F

    assert torch.autograd.gradcheck(sub, (feats, w_sub))
    assert torch.autograd.gradcheck(down_up, (feats, w_down, w_up))
    w_cross = torch.randn(1 + 2 * dimension, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dilated_cross, (feats, w_cross))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layers_run_on_device_and_dtype(device, dtype):
    rng = np.random.default_rng(1)
    x = random_sparse(rng, 80, 4, channels=3, dtype=dtype, device=device)
    model = torch.nn.Sequential(
        Conv(3, 8, 3, dimension=4), BatchNorm(8), ReLU(), Conv(8, 8, 2, 2, dimension=4)
    )
    model = model.to(device=device, dtype=dtype)
    up = ConvTranspose(8, 3, 2, 2, dimension=4).to(device=device, dtype=dtype)
    out = up(model(x))
    assert out.F.dtype == dtype and out.F.device.type == device and out.coordinate_key == x.coordinate_key
    out.F.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_batchnorm_relu_linear_cat_and_pooling():
    rng = np.random.default_rng(2)
    x = random_sparse(rng, 60, 3, channels=4, dtype=torch.float32)
    bn = BatchNorm(4)
    y = bn(x)
    torch.testing.assert_close(y.F.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    assert bn.bn.momentum == 0.1 and set(bn.state_dict()) >= {"bn.weight", "bn.running_mean"}
    r = ReLU()(y)
    assert (r.F >= 0).all() and torch.equal(r.F, torch.relu(y.F)) and r.coordinate_key == x.coordinate_key
    # in place after batch norm: same values and gradients, no new feature tensor
    w = torch.randn(len(x), 4)
    grads = []
    for inplace in (False, True):
        x.F.requires_grad_(True)
        x.F.grad = None
        z = bn(x)
        out = ReLU(inplace=inplace)(z)
        assert (out.F.data_ptr() == z.F.data_ptr()) == inplace
        (out.F * w).sum().backward()
        grads.append(x.F.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    x.F.requires_grad_(False)
    lin = Linear(4, 2)
    torch.testing.assert_close(lin(x).F, lin.linear(x.F))
    c = cat(x, r)
    assert c.F.shape == (len(x), 8) and torch.equal(c.F[:, 4:], r.F)
    other = random_sparse(rng, 60, 3, channels=4, dtype=torch.float32)
    with pytest.raises(ValueError, match="share"):
        cat(x, other)
    avg, mx = GlobalAvgPooling()(x), GlobalMaxPooling()(x)
    for b in range(x.batch_size):
        rows = x.C[:, 0] == b
        torch.testing.assert_close(avg.F[b], x.F[rows].mean(0))
        torch.testing.assert_close(mx.F[b], x.F[rows].max(0).values)
    assert avg.C[:, 0].tolist() == list(range(x.batch_size))


def test_one_by_one_conv_weight_layout():
    conv1 = Conv(4, 6, kernel_size=1, bias=True, dimension=3)
    assert conv1.kernel.shape == (4, 6) and conv1.bias.shape == (1, 6)
    assert Conv(4, 6, kernel_size=1, stride=2, dimension=3).kernel.shape == (1, 4, 6)
    assert Conv(4, 6, kernel_size=(3, 3, 3, 1), dimension=4).kernel.shape == (27, 4, 6)
    x = random_sparse(np.random.default_rng(0), 30, 3, channels=4, dtype=torch.float32)
    torch.testing.assert_close(conv1(x).F, x.F @ conv1.kernel + conv1.bias)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([3, 4]), st.integers(-3, 3))
def test_submanifold_conv_is_translation_equivariant(seed, dimension, shift):
    rng = np.random.default_rng(seed)
    x = random_sparse(rng, 40, dimension, channels=2)
    w = torch.as_tensor(rng.standard_normal((3**dimension, 2, 2)))
    moved = x.C.clone()
    moved[:, 1:] += 2 * shift  # a multiple of the stride-2 grid keeps the strided map too
    y1 = conv(x, w, 3)
    y2 = conv(SparseTensor(x.F, moved), w, 3)
    torch.testing.assert_close(y1.F, y2.F)
    # identity kernel (centre = I) returns the input
    ident = torch.zeros(3**dimension, 2, 2, dtype=torch.float64)
    ident[(3**dimension) // 2] = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(conv(x, ident, 3).F, x.F)
    d1, d2 = conv(x, w[: 2**dimension], 2, 2), conv(SparseTensor(x.F, moved), w[: 2**dimension], 2, 2)
    order1 = np.lexsort(d1.C.numpy().T[::-1])
    order2 = np.lexsort(d2.C.numpy().T[::-1])
    torch.testing.assert_close(d1.F[order1], d2.F[order2])


def test_sparse_tensor_validation_and_batching():
    with pytest.raises(ValueError, match=r"\(N, 1\+D\)"):
        SparseTensor(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="integers"):
        SparseTensor(torch.zeros(3, 1), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="rows"):
        SparseTensor(torch.zeros(2, 1), torch.zeros(3, 4, dtype=torch.int64))
    coords = batched_coordinates([np.zeros((2, 3), int), np.ones((3, 3), int)])
    assert coords.shape == (5, 4) and coords[:, 0].tolist() == [0, 0, 1, 1, 1]
    st_ = sparse_collate([np.zeros((2, 4), int), np.ones((1, 4), int)], [np.ones((2, 2)), np.zeros((1, 2))])
    assert st_.D == 4 and st_.F.dtype == torch.float32 and st_.batch_size == 2
    assert [len(f) for f in st_.decomposed_features()] == [2, 1]
    assert isinstance(st_.manager, CoordinateManager)


def test_offset_groups_cover_every_pair_once_with_bounded_padding():
    rng = np.random.default_rng(4)
    x = random_sparse(rng, 300, 3)
    kmap = x.manager.kernel_map(x.coordinate_key, x.coordinate_key, (3, 3, 3), (1, 1, 1))
    groups = kmap.groups(waste=0.2)
    expected = {
        (k, int(i), int(o))
        for k, (ii, oo) in enumerate(zip(kmap.in_indices, kmap.out_indices, strict=True))
        for i, o in zip(ii, oo, strict=True)
    }
    got, padded = set(), 0
    for g in groups:
        pairs = g.in_pad.view(len(g.offsets), g.size), g.out_pad.view(len(g.offsets), g.size)
        for row, k in enumerate(g.offsets.tolist()):
            real = pairs[0][row] < kmap.n_in
            assert torch.equal(real, pairs[1][row] < kmap.n_out)
            ins, outs = pairs[0][row][real].tolist(), pairs[1][row][real].tolist()
            got |= {(k, i, o) for i, o in zip(ins, outs, strict=True)}
            padded += int((~real).sum())
        assert (g.in_pad <= kmap.n_in).all() and (g.out_pad <= kmap.n_out).all()
    assert got == expected and kmap.identity == 13 and all(k != 13 for k, _, _ in got)
    assert padded <= 0.25 * len(expected)
    flipped = kmap.transposed().groups()
    assert all(a.in_pad is b.out_pad for a, b in zip(groups, flipped, strict=True))


@pytest.mark.parametrize("budget", [1, 7, 1000])
def test_offsets_cut_into_pieces_cover_every_pair_once(budget):
    rng = np.random.default_rng(8)
    x = random_sparse(rng, 200, 3)
    kmap = x.manager.kernel_map(x.coordinate_key, x.coordinate_key, (3, 3, 3), (1, 1, 1))
    flat = [(i.tolist(), o.tolist()) for i, o in zip(kmap.in_indices, kmap.out_indices, strict=True)]
    groups = kmap.groups(waste=0.2, budget=budget)
    assert kmap.in_rows is None and kmap.out_rows is None  # flat lists released once grouped
    assert all(g.in_pad.numel() <= max(budget, 1) for g in groups)
    pieces = [k for g in groups for k in g.offsets.tolist()]
    expected_pieces = sum(-(-c // budget) for c in kmap.counts)
    assert len(pieces) == expected_pieces
    assert (len(pieces) > len(set(pieces))) == (max(kmap.counts) > budget)
    # the pairs read back from the groups are the original ones, in the original order
    again = [(i.tolist(), o.tolist()) for i, o in zip(kmap.in_indices, kmap.out_indices, strict=True)]
    assert again == flat


@pytest.mark.parametrize("budget", [5, 64])
def test_conv_with_pieces_matches_reference_and_gradcheck(monkeypatch, budget):
    # PyTorch path: offsets cut into pieces of `budget` pairs; native: chunks of `budget` rows
    monkeypatch.setattr(native, "MIN_CHUNK", 1)
    monkeypatch.setattr(native, "MAX_CHUNK", budget)
    rng = np.random.default_rng(9)
    x = random_sparse(rng, 40, 3, channels=2, extent=3, batch=1)
    manager, key = x.manager, x.coordinate_key
    manager.kernel_map(key, key, (3, 3, 3), (1, 1, 1)).groups(budget=budget)
    down = manager.downsample(key, (2, 2, 2))
    manager.kernel_map(key, down, (2, 2, 2), (1, 1, 1)).groups(budget=budget)
    w = torch.randn(27, 2, 3, dtype=torch.float64, requires_grad=True)
    offsets = kernel_offsets(3, 3)
    ref = reference_conv(x.C, x.F, x.C, w.detach(), offsets, (1, 1, 1), (1, 1, 1))
    torch.testing.assert_close(conv(x, w, 3, 1).F, ref)
    feats = x.F.clone().requires_grad_(True)
    w_down = torch.randn(8, 2, 3, dtype=torch.float64, requires_grad=True)
    w_up = torch.randn(8, 3, 2, dtype=torch.float64, requires_grad=True)

    def net(f, ws, wd, wu):
        y = conv(x.replace_features(f), ws, 3, 1)
        z = conv(x.replace_features(f), wd, 2, 2)
        return torch.cat([y.F, conv_transpose(z, wu, 2, 2).F], dim=1)

    assert torch.autograd.gradcheck(net, (feats, w, w_down, w_up))


def test_workspace_reuses_and_grows_its_buffers():
    from fourdcontrast.sparse.kernel_map import Workspace

    ws = Workspace()
    a = ws.get("a", (4, 3), torch.float32, "cpu")
    b = ws.get("a", (2, 5), torch.float32, "cpu")
    assert a.shape == (4, 3) and b.shape == (2, 5) and b.data_ptr() == a.data_ptr()  # reused
    c = ws.get("a", (10, 3), torch.float32, "cpu")  # grows (and may move)
    assert c.shape == (10, 3) and c.is_contiguous() and ws.nbytes == 30 * 4
    d = ws.get("b", (1,), torch.float64, "cpu")
    assert d.data_ptr() != c.data_ptr() and ws.nbytes == 30 * 4 + 8
    ws.clear()
    assert ws.nbytes == 0


def test_convolutions_share_the_manager_workspace_without_changing_results():
    rng = np.random.default_rng(10)
    x = random_sparse(rng, 150, 3, channels=4, dtype=torch.float32)
    w1 = torch.randn(27, 4, 6, requires_grad=True)
    w2 = torch.randn(27, 6, 5, requires_grad=True)
    y = conv(conv(x, w1, 3, 1), w2, 3, 1)
    assert x.manager.workspace.nbytes > 0
    y.F.square().sum().backward()
    g1, g2 = w1.grad.clone(), w2.grad.clone()
    # the same network on a fresh manager, one convolution at a time with private workspaces
    x2 = SparseTensor(x.F, x.C)
    w1.grad = w2.grad = None
    h = conv(x2, w1, 3, 1)
    h.manager.workspace.clear()
    y2 = conv(h, w2, 3, 1)
    torch.testing.assert_close(y2.F, y.F)
    y2.F.square().sum().backward()
    torch.testing.assert_close(w1.grad, g1)
    torch.testing.assert_close(w2.grad, g2)


@pytest.mark.parametrize("dimension", [3, 4])
def test_dense_table_and_binary_search_lookups_agree(monkeypatch, dimension):
    import fourdcontrast.sparse.kernel_map as km

    rng = np.random.default_rng(6)
    coords = random_sparse(rng, 150, dimension, extent=9).C
    feats = torch.randn(len(coords), 2, dtype=torch.float64)
    w3 = torch.randn(3**dimension, 2, 2, dtype=torch.float64)
    w2 = torch.randn(2**dimension, 2, 2, dtype=torch.float64)

    def run():
        x = SparseTensor(feats, coords)
        down = conv(x, w2, 2, 2)
        return conv(x, w3, 3, dilation=2).F, conv(down, w3, 3, 2).F, conv_transpose(down, w2, 2, 2).F

    dense = run()
    monkeypatch.setattr(km, "DENSE_CELLS", 0)
    for a, b in zip(dense, run(), strict=True):
        torch.testing.assert_close(a, b)
