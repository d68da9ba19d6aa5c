"""GPU readiness of the engine: autocast, device-safe sparse tensors, the sync-free (GPU) map builder.

Tests named ``*_cuda*`` or parametrized with ``"cuda"`` run only where torch sees a CUDA device
(``scripts/gpu_check.sh`` runs this module there); everything else runs on the CPU, including the GPU
strategy of the map builder (``CoordinateManager(sync_free=True)``), which is the code CUDA runs.
"""

import warnings

import numpy as np
import pytest
import torch

import fourdcontrast.sparse.kernel_map as km
from fourdcontrast.models.benchmark import room_coordinates
from fourdcontrast.models.resunet import MinkUNet14
from fourdcontrast.sparse import (
    BatchNorm,
    Conv,
    ConvTranspose,
    CoordinateManager,
    SparseTensor,
    conv,
    conv_transpose,
    native,
)
from fourdcontrast.sparse.functional import autocast_dtype

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
# (device, autocast dtype): bf16 on the CPU everywhere; bf16 and fp16 on CUDA where present
AUTOCAST_CASES = [("cpu", torch.bfloat16)] + (
    [("cuda", torch.bfloat16), ("cuda", torch.float16)] if CUDA else [])


def random_coordinates(rng, n, dimension, extent=6, batch=2):
    """(M, 1+D) unique random int64 coordinates (batch index first), in random row order."""
    coords = rng.integers(-extent, extent, size=(n, dimension))
    b = rng.integers(0, batch, size=(n, 1))
    full = np.unique(np.concatenate([b, coords], axis=1), axis=0)
    return torch.as_tensor(full[rng.permutation(len(full))])


def network_weights(dimension, c_in, dtype, seed=0):
    """Kernels of :func:`network` (a 5^D stem, strided, transposed, dilated hyper-cross, 3^D stride 2)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"stem": (5**dimension, c_in, 6), "down": (2**dimension, 6, 7), "up": (2**dimension, 7, 4),
              "cross": (1 + 2 * dimension, 4, 3), "down3": (3**dimension, 3, 5)}
    return {k: (0.3 * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype) for k, s in shapes.items()}


def network(coords, feats, weights, manager=None):
    """Every kind of kernel map the engine builds; returns (N, 6+5) features on the input's rows."""
    x = SparseTensor(feats, coords, manager=manager)
    y = conv(x, weights["stem"], 5, 1)  # reach 2: the packing margin, no bounds checks
    z = conv(y, weights["down"], 2, 2)  # partition map
    u = conv_transpose(z, weights["up"], 2, 2)  # transposed partition map
    v = conv(u, weights["cross"], 3, 1, 2, "hypercross")  # dilated: queries leave the packed box
    w = conv(v, weights["down3"], 3, 2)  # strided 3^D: general map onto the coarse coordinates
    back = conv_transpose(w, weights["down3"].transpose(1, 2).contiguous(), 3, 2)
    return torch.cat([y.F, back.F], dim=1)


def run_network(coords, feats, weights, device, manager=None):
    """Output, feature gradient and kernel gradients of :func:`network` on ``device`` (results on CPU)."""
    f = feats.to(device).requires_grad_(True)
    ws = {k: w.to(device).requires_grad_(True) for k, w in weights.items()}
    out = network(coords.to(device), f, ws, manager)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=device).view_as(out)
    (out * probe).sum().backward()
    return out.detach().cpu(), f.grad.cpu(), {k: w.grad.cpu() for k, w in ws.items()}


def assert_close_scaled(a, b, tol):
    """Largest difference within ``tol`` of the largest magnitude of ``b``."""
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    worst = float((a - b).abs().max())
    assert worst <= tol * float(b.abs().max()), worst / float(b.abs().max())


def relative(a, b):
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture
def ieee_float32():
    """float32 products in full precision on the GPU (no TF32), whatever this torch's default."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def count_syncs(fn):
    """(result of fn(), number of host-device synchronisations it made), by CUDA's sync debug mode."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchronizing" in str(w.message) for w in caught)


# ---- autocast ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device,dtype", AUTOCAST_CASES)
@pytest.mark.parametrize("input_dtype", [torch.float32, "autocast"])
@pytest.mark.parametrize("kind", ["submanifold", "strided", "transposed", "one-by-one"])
def test_convolutions_compute_in_the_autocast_dtype(device, dtype, input_dtype, kind):
    """fp32 or low-precision features in, autocast dtype out; fp32 weights get fp32 gradients; values
    within 1 % (relative norm) of the float32 result — bf16's rounding is 0.4 %, one rounding per output."""
    rng = np.random.default_rng(0)
    coords = random_coordinates(rng, 400, 3, extent=5).to(device)
    feats = torch.as_tensor(rng.standard_normal((len(coords), 8)), dtype=torch.float32, device=device)
    torch.manual_seed(0)
    layer = {"submanifold": Conv(8, 16, 3, bias=True, dimension=3),
             "strided": Conv(8, 16, 3, 2, dimension=3),
             "transposed": ConvTranspose(8, 16, 2, 2, bias=True, dimension=3),
             "one-by-one": Conv(8, 16, 1, bias=True, dimension=3)}[kind].to(device)
    probe_gen = torch.Generator().manual_seed(1)

    def run(f, enabled):
        layer.zero_grad()
        f = f.clone().requires_grad_(True)
        x = SparseTensor(f, coords)
        if kind == "transposed":
            x = conv(x, torch.ones(8, 8, 8, device=device, dtype=f.dtype), 2, 2)  # something to upsample
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            assert (autocast_dtype(torch.device(device)) == dtype) == enabled
            out = layer(x).F
        probe = torch.randn(out.shape, generator=probe_gen).to(device)
        (out.float() * probe).sum().backward()
        return out, f.grad, {n: p.grad for n, p in layer.named_parameters()}

    ref, ref_gf, ref_gw = run(feats, False)
    probe_gen.manual_seed(1)
    low_in = feats if input_dtype == torch.float32 else feats.to(dtype)
    out, gf, gw = run(low_in, True)
    assert ref.dtype == torch.float32 and out.dtype == dtype
    assert gf.dtype == low_in.dtype  # the gradient of an input arrives in that input's dtype
    assert all(g.dtype == torch.float32 for g in gw.values())  # parameters stay float32
    tol = 0.01 if input_dtype == torch.float32 else 0.015  # low-precision inputs: one more rounding
    assert relative(out, ref) < tol
    assert relative(gf, ref_gf) < tol
    for name in ref_gw:
        assert relative(gw[name], ref_gw[name]) < tol, name


def test_mixed_dtypes_outside_autocast_and_devices_are_clear_errors():
    coords = random_coordinates(np.random.default_rng(1), 50, 3)
    x = SparseTensor(torch.randn(len(coords), 4, dtype=torch.bfloat16), coords)
    with pytest.raises(ValueError, match=r"bfloat16 but the kernel is torch.float32.*autocast"):
        Conv(4, 4, 3, dimension=3)(x)
    with pytest.raises(ValueError, match=r"kernel is on meta.*features are on cpu"):
        conv(x, torch.zeros(27, 4, 4, dtype=torch.bfloat16, device="meta"), 3)
    # float64 stays float64 under autocast, as for dense layers
    x64 = x.to(torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert Conv(4, 4, 3, dimension=3).double()(x64).F.dtype == torch.float64


@pytest.mark.parametrize("device,dtype", AUTOCAST_CASES)
def test_minkunet_forward_backward_under_autocast_matches_float32(device, dtype):
    """MinkUNet14 3D on a 10 cm room (4.6k voxels), forward+backward.

    Tolerances (relative norms), with what this CPU measured for bf16: eval mode (batch norm a fixed
    affine map: the error is the convolutions') output 2 % (0.5 %), all parameter gradients together
    15 % (6.8 %: a 14-convolution-deep backward in 8-bit mantissas); train mode output 8 % (2.6 %: batch
    statistics of the coarse levels, a few hundred voxels, amplify the rounding, as in dense networks).
    """
    coords = torch.as_tensor(room_coordinates(0.1), device=device)
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(len(coords), 3, generator=gen).to(device)
    probe = torch.randn(len(coords), 8, generator=gen).to(device)
    torch.manual_seed(0)
    net = MinkUNet14(3, 8, dimension=3).to(device)
    for mode, out_tol, grad_tol in (("eval", 0.02, 0.15), ("train", 0.08, None)):
        getattr(net, mode)()
        results = []
        for enabled in (False, True):
            net.zero_grad()
            state = {k: v.clone() for k, v in net.state_dict().items()}  # batch norm's running stats
            with torch.autocast(device, dtype=dtype, enabled=enabled):
                out = net(SparseTensor(feats, coords)).F
            (out.float() * probe).sum().backward()
            net.load_state_dict(state)
            grads = [p.grad for p in net.parameters()]
            assert out.dtype == (dtype if enabled else torch.float32)
            assert all(g.dtype == torch.float32 and bool(torch.isfinite(g).all()) for g in grads)
            results.append((out, torch.cat([g.flatten() for g in grads])))
        (ref, ref_g), (low, low_g) = results
        assert relative(low, ref) < out_tol, (mode, relative(low, ref))
        if grad_tol is not None:
            assert relative(low_g, ref_g) < grad_tol, relative(low_g, ref_g)


# ---- one device per sparse tensor ----------------------------------------------------------------------

def test_replace_features_and_constructors_keep_one_device():
    coords = random_coordinates(np.random.default_rng(2), 60, 3)
    x = SparseTensor(torch.randn(len(coords), 3), coords)
    assert x.manager.device == torch.device("cpu")
    with pytest.raises(ValueError, match=r"features on meta.*\.to\('meta'\)"):
        x.replace_features(torch.zeros(len(x), 3, device="meta"))
    with pytest.raises(ValueError, match=r"features on meta but the coordinate manager.*cpu"):
        SparseTensor(torch.zeros(len(x), 3, device="meta"), coords, manager=x.manager)
    with pytest.raises(ValueError, match="cannot join a coordinate manager"):
        x.manager.insert(coords.to("meta"), (1, 1, 1))
    with pytest.raises(ValueError, match=r"has \d+ coordinates, the features 2 rows"):
        SparseTensor(torch.zeros(2, 3), coords[:2], manager=x.manager, coordinate_key=x.coordinate_key)
    # another dtype on the same device keeps the manager; another device gets a fresh manager there
    x64 = x.replace_features(x.F.double())
    assert x64.manager is x.manager and x64.dtype == torch.float64
    assert x.to(torch.float64).manager is x.manager
    moved = x.to("meta")
    assert moved.manager is not x.manager and moved.manager.device == torch.device("meta")
    assert moved.C.device.type == "meta" and moved.coordinate_key == 0
    assert moved.tensor_stride == x.tensor_stride
    assert moved.manager.sync_free and not x.manager.sync_free  # the GPU strategy off the CPU


@needs_cuda
def test_sparse_tensors_move_between_cpu_and_cuda():
    coords = random_coordinates(np.random.default_rng(3), 300, 3)
    x = SparseTensor(torch.randn(len(coords), 4), coords)
    layer = Conv(4, 5, 3, dimension=3)
    ref = layer(x).F
    with pytest.raises(ValueError, match=r"features on cuda:0.*\.to\('cuda:0'\)"):
        x.replace_features(x.F.cuda())
    g = x.to("cuda", non_blocking=True)
    assert g.C.is_cuda and g.manager.device.type == "cuda" and g.manager.sync_free
    with pytest.raises(ValueError, match="kernel is on cpu"):
        layer(g)
    out = layer.cuda()(g)
    assert out.F.is_cuda and out.manager is g.manager
    assert all(m.in_rows is None or m.in_rows.is_cuda for m in g.manager._maps.values())
    assert_close_scaled(out.F.cpu(), ref, 1e-5)
    assert_close_scaled(out.cpu().F, ref, 1e-5)


# ---- the GPU strategy of the map builder, checked on the CPU ------------------------------------------

@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if CUDA else []))
@pytest.mark.parametrize("dimension", [3, 4])
def test_sync_free_maps_equal_the_cpu_maps_pair_for_pair(monkeypatch, dimension, device):
    """The GPU strategy (on the CPU, and on CUDA where present) finds the CPU builder's pairs in its order."""
    rng = np.random.default_rng(dimension)
    coords = random_coordinates(rng, 500, dimension, extent=5)
    # small query chunks: several chunks per map, as the 4D stems have on a GPU
    monkeypatch.setattr(km, "GPU_QUERY_CHUNK", 3 * len(coords))
    managers = {}
    for sync_free in (False, True):
        m = CoordinateManager(sync_free=sync_free)
        key = m.insert(coords.to(device) if sync_free else coords, (1,) * dimension)
        down = m.downsample(key, (2,) * dimension)
        for ks, dil, region, out in ((5, 1, "hypercube", key), (3, 2, "hypercross", key),
                                     (2, 1, "hypercube", down), (3, 1, "hypercube", down)):
            m.kernel_map(key, out, (ks,) * dimension, (dil,) * dimension, region)
        managers[sync_free] = m
    assert managers[True].sync_free and not managers[False].sync_free
    assert managers[True].device.type == device
    assert torch.equal(managers[True].coordinates(1).cpu(), managers[False].coordinates(1))
    for cache_key, ours in managers[True]._maps.items():
        theirs = managers[False]._maps[cache_key]
        assert ours.sync_free and not theirs.sync_free and ours.in_rows.device.type == device
        assert ours.counts == theirs.counts and ours.identity == theirs.identity
        assert ours.in_rows.dtype == theirs.in_rows.dtype
        assert torch.equal(ours.in_rows.cpu(), theirs.in_rows)
        assert torch.equal(ours.out_rows.cpu(), theirs.out_rows)
        assert sum(ours.counts) > 0


@pytest.mark.parametrize("budget", [7, 100, None])
def test_sync_free_groups_cover_every_pair_once_with_spread_dump_rows(budget):
    coords = random_coordinates(np.random.default_rng(5), 400, 3)
    m = CoordinateManager(sync_free=True)
    key = m.insert(coords, (1, 1, 1))
    kmap = m.kernel_map(key, key, (3, 3, 3), (1, 1, 1))
    flat = [(i.tolist(), o.tolist()) for i, o in zip(kmap.in_indices, kmap.out_indices, strict=True)]
    groups = kmap.groups(budget=budget)
    assert kmap.dump_rows == km.GPU_DUMP_ROWS
    assert all(g.in_pad.numel() <= (budget or km.GPU_GROUP_ROWS) for g in groups)
    pads = []
    for g in groups:
        real_in, real_out = g.in_pad < kmap.n_in, g.out_pad < kmap.n_out
        assert torch.equal(real_in, real_out)
        assert (g.in_pad < kmap.n_in + kmap.dump_rows).all()
        assert (g.out_pad < kmap.n_out + kmap.dump_rows).all()
        pads.append(g.out_pad[~real_out])
    pads = torch.cat(pads)
    if budget != 7:  # (pieces of at most 7 pairs need no padding) padded pairs go to distinct dump rows
        assert pads.numel() > 10 and pads.unique().numel() == pads.numel()
    # the pairs read back from the groups are the original ones, in the original order
    again = [(i.tolist(), o.tolist()) for i, o in zip(kmap.in_indices, kmap.out_indices, strict=True)]
    assert again == flat
    # the same slots as the CPU strategy's groups
    cpu = CoordinateManager(sync_free=False)
    cpu_map = cpu.kernel_map(cpu.insert(coords, (1, 1, 1)), 0, (3, 3, 3), (1, 1, 1))
    for a, b in zip(groups, cpu_map.groups(budget=budget or km.GPU_GROUP_ROWS), strict=True):
        assert torch.equal(a.offsets, b.offsets) and a.size == b.size
        real = b.in_pad < cpu_map.n_in
        assert torch.equal(a.in_pad[real], b.in_pad[real]) and torch.equal(a.out_pad[real], b.out_pad[real])


@pytest.mark.parametrize("dimension", [3, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sync_free_strategy_gives_the_cpu_results_and_gradients(monkeypatch, dimension, dtype):
    """The whole PyTorch path as CUDA runs it (GPU map builder, groups, dump rows), on the CPU."""
    monkeypatch.setenv(native.ENV_VAR, "0")
    monkeypatch.setattr(km, "GPU_GROUP_ROWS", 96)  # many groups, offsets cut into pieces, padding
    rng = np.random.default_rng(10 + dimension)
    coords = random_coordinates(rng, 300 if dimension == 3 else 500, dimension, extent=4)
    feats = torch.as_tensor(rng.standard_normal((len(coords), 3)), dtype=dtype)
    weights = network_weights(dimension, 3, dtype)
    ref = run_network(coords, feats, weights, "cpu", CoordinateManager(sync_free=False))
    ours = run_network(coords, feats, weights, "cpu", CoordinateManager(sync_free=True))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert_close_scaled(ours[0], ref[0], tol)
    assert_close_scaled(ours[1], ref[1], tol)
    for k in weights:
        assert_close_scaled(ours[2][k], ref[2][k], tol)
    assert ref[0].abs().sum() > 0 and all(g.abs().sum() > 0 for g in ref[2].values())


def test_sync_free_forward_reads_back_once_per_map_and_coordinate_set(monkeypatch):
    """A CPU stand-in for the CUDA synchronisation count: every value read back from tensors to Python
    during a MinkUNet forward with the GPU strategy (tolist/item/bool/int/float/nonzero) is counted."""
    monkeypatch.setenv(native.ENV_VAR, "0")
    monkeypatch.setattr(km, "GPU_QUERY_CHUNK", 1 << 14)  # several query chunks per map
    monkeypatch.setattr(km, "GPU_GROUP_ROWS", 1 << 10)  # dozens of groups per map
    coords = torch.as_tensor(room_coordinates(0.2, frames=4))
    net = MinkUNet14(3, 4, dimension=4)
    reads = []
    for name in ("tolist", "item", "__bool__", "__int__", "__float__", "__index__", "nonzero"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    nonzero = torch.nonzero
    monkeypatch.setattr(torch, "nonzero", lambda *a, **k: reads.append("torch.nonzero") or nonzero(*a, **k))
    manager = CoordinateManager(sync_free=True)
    x = SparseTensor(torch.ones(len(coords), 3), coords, manager=manager)
    out = net(x)
    out.F.sum().backward()
    n_maps, n_sets = manager.num_kernel_maps, len(manager)
    assert n_maps >= 5 and n_sets == 5
    # one read per map (its pair counts) and one for the input's bounds (the downsampled sets' bounds
    # follow on the host); none per query chunk or group (and no nonzero, .item(), bool(), int()...)
    assert reads == ["tolist"] * (n_maps + 1), reads
    groups = sum(len(m._groups or []) for m in manager._maps.values())
    assert groups > 3 * n_maps  # ... although there are many groups


# ---- CUDA: results against the CPU, synchronisations -----------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dimension", [3, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_outputs_and_gradients_match_the_cpu(ieee_float32, dimension, dtype):
    rng = np.random.default_rng(20 + dimension)
    coords = random_coordinates(rng, 2000 if dimension == 3 else 3000, dimension, extent=8)
    feats = torch.as_tensor(rng.standard_normal((len(coords), 3)), dtype=dtype)
    weights = network_weights(dimension, 3, dtype)
    ref = run_network(coords, feats, weights, "cpu")
    ours = run_network(coords, feats, weights, "cuda")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_close_scaled(ours[0], ref[0], tol)
    assert_close_scaled(ours[1], ref[1], tol)
    for k in weights:
        assert_close_scaled(ours[2][k], ref[2][k], tol)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_minkunet_matches_the_cpu(ieee_float32, dtype):
    """MinkUNet14 4D (train mode) on CUDA and on the CPU: outputs elementwise, the parameter gradients as
    one relative norm (the batch-norm backward's sums differ in rounding between the devices)."""
    coords = torch.as_tensor(room_coordinates(0.1, frames=4))
    torch.manual_seed(0)
    net = MinkUNet14(3, 8, dimension=4).to(dtype)
    feats = torch.randn(len(coords), 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    results = []
    for device in ("cpu", "cuda"):
        net.to(device).zero_grad()
        out = net(SparseTensor(feats.to(device), coords.to(device))).F
        out.square().mean().backward()
        results.append((out.detach().cpu(), torch.cat([p.grad.cpu().flatten() for p in net.parameters()])))
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert_close_scaled(results[1][0], results[0][0], tol)
    assert relative(results[1][1], results[0][1]) < tol


@needs_cuda
def test_cuda_forward_synchronises_once_per_map_and_never_with_cached_maps(monkeypatch):
    coords = torch.as_tensor(room_coordinates(0.1, frames=4), device="cuda")
    net = MinkUNet14(3, 8, dimension=4).cuda()
    feats = torch.ones(len(coords), 3, device="cuda")

    def forward_backward(x):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net(x)
        out.F.float().sum().backward()
        return x.manager

    forward_backward(SparseTensor(feats, coords))  # warm up (cuBLAS/cuDNN handles, allocator)
    counts = []
    for group_rows, query_chunk in ((km.GPU_GROUP_ROWS, km.GPU_QUERY_CHUNK), (256, 1 << 14)):
        monkeypatch.setattr(km, "GPU_GROUP_ROWS", group_rows)
        monkeypatch.setattr(km, "GPU_QUERY_CHUNK", query_chunk)
        manager, syncs = count_syncs(lambda: forward_backward(SparseTensor(feats, coords)))
        counts.append(syncs)
        n_maps, n_sets = manager.num_kernel_maps, len(manager)
        # per map its counts, the input's bounds, per downsampling the unique (one or a few in CUDA's
        # unique); the margin leaves room for a synchronisation per map or set inside a torch op
        assert syncs <= 2 * (n_maps + n_sets) + 3 * (n_sets - 1) + 4, (syncs, n_maps, n_sets)
    # many more groups and query chunks, not one synchronisation more
    assert counts[0] == counts[1], counts
    # with the maps cached (the same coordinates again), a forward and backward never wait for the GPU
    warm = SparseTensor(feats, coords)
    forward_backward(warm)
    again = SparseTensor(feats, coords, manager=warm.manager, coordinate_key=warm.coordinate_key)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        forward_backward(again)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@needs_cuda
def test_cuda_layers_and_batch_norm_keep_device_and_dtype():
    coords = random_coordinates(np.random.default_rng(7), 500, 4)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = SparseTensor(torch.randn(len(coords), 3, dtype=dtype, device="cuda"), coords)
        model = torch.nn.Sequential(Conv(3, 8, 3, dimension=4), BatchNorm(8), Conv(8, 8, 2, 2, dimension=4))
        model = model.to(device="cuda", dtype=dtype)
        out = model(x)
        assert out.F.dtype == dtype and out.F.is_cuda
        out.F.float().square().sum().backward()
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
