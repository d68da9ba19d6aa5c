"""Parity with MinkowskiEngine on identical coordinates and weights (runs where ME imports).

Run with the ME venv:
``PYTHONPATH=$PWD .venv-minkowski/bin/python -m pytest tests/sparse/test_minkowski_parity.py``.
"""

import numpy as np
import pytest
import torch

from fourdcontrast.models.benchmark import room_like_voxels
from fourdcontrast.models.resunet import MinkUNet14, MinkUNet34
from fourdcontrast.sparse import SparseTensor, get_backend, minkowski_engine

ME = minkowski_engine()
pytestmark = [
    pytest.mark.minkowski,
    pytest.mark.skipif(
        ME is None, reason="MinkowskiEngine does not import here (install: scripts/install_minkowski.sh)"
    ),
]
RTOL = 1e-4
# Measured with ME 0.5.4 CPU: a HYPER_CROSS KernelGenerator yields an empty kernel map (the output is the
# bias alone) and RegionType.CUSTOM offsets fail in KernelGenerator.__init__, so there is no reference.
ME_CROSS_DEFECT = "MinkowskiEngine 0.5.4 (CPU) builds empty HYPER_CROSS kernel maps; no reference to compare"


def pair_inputs(coords, channels, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(coords), channels, generator=g, dtype=dtype)
    me_x = ME.SparseTensor(feats.clone().requires_grad_(True), torch.as_tensor(coords).int())
    me_x.F.retain_grad()  # ME indexes the leaf; compare gradients on the rows it uses
    ours = SparseTensor(me_x.F.detach().clone().requires_grad_(True), me_x.C.long())
    return me_x, ours


def align(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Row permutation p with other[p] == reference (coordinates, any order)."""
    table = {tuple(c): i for i, c in enumerate(other.tolist())}
    assert len(table) == len(other) == len(reference)
    return torch.tensor([table[tuple(c)] for c in reference.tolist()])


def assert_close(a, b, rtol=RTOL):
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), 1e-12)
    err = float((a - b).abs().max()) / scale
    assert err < rtol, f"relative error {err:.2e}"


def run_pair(me_layers, our_layers, coords, channels):
    me_x, ours = pair_inputs(coords, channels)
    me_y, our_y = me_x, ours
    for m, o in zip(me_layers, our_layers, strict=True):
        me_y, our_y = m(me_y), o(our_y)
    p = align(our_y.C, me_y.C.long())
    assert_close(our_y.F, me_y.F[p])
    g = torch.randn(our_y.F.shape, generator=torch.Generator().manual_seed(9))
    (our_y.F * g).sum().backward()
    (me_y.F[p] * g).sum().backward()
    assert_close(ours.F.grad, me_x.F.grad)
    for m, o in zip(me_layers, our_layers, strict=True):
        for (name, pm), po in zip(m.named_parameters(), o.parameters(), strict=True):
            assert_close(po.grad, pm.grad), name


def layer_pair(kind, *args, **kwargs):
    me_layer = getattr(get_backend("minkowski"), kind)(*args, **kwargs)
    our_layer = getattr(get_backend("torch"), kind)(*args, **kwargs)
    our_layer.load_state_dict(me_layer.state_dict())  # same names, same shapes, no permutation
    return me_layer, our_layer


@pytest.mark.parametrize("dimension", [3, 4])
@pytest.mark.parametrize(
    "kernel_size,stride,region",
    [(3, 1, "hypercube"), (5, 1, "hypercube"), (2, 2, "hypercube"), (3, 2, "hypercube"), (1, 1, "hypercube"),
     pytest.param(3, 1, "hypercross", marks=pytest.mark.skip(reason=ME_CROSS_DEFECT)),
     ("spatial", 1, "hypercube")],
)
def test_conv_parity(dimension, kernel_size, stride, region):
    rng = np.random.default_rng(dimension)
    coords = room_like_voxels(rng, 600, dimension)
    if kernel_size == "spatial":
        kernel_size = [3, 3, 3] + [1] * (dimension - 3)
    pair = layer_pair("Conv", 4, 5, kernel_size=kernel_size, stride=stride, dimension=dimension,
                      region=region, bias=True)
    run_pair([pair[0]], [pair[1]], coords, 4)


@pytest.mark.parametrize("dimension", [3, 4])
def test_strided_then_transposed_parity(dimension):
    rng = np.random.default_rng(7)
    coords = room_like_voxels(rng, 600, dimension)
    down = layer_pair("Conv", 4, 6, kernel_size=2, stride=2, dimension=dimension)
    sub = layer_pair("Conv", 6, 6, kernel_size=3, dimension=dimension)
    up = layer_pair("ConvTranspose", 6, 3, kernel_size=2, stride=2, dimension=dimension)
    run_pair([down[0], sub[0], up[0]], [down[1], sub[1], up[1]], coords, 4)


NETWORKS = [(MinkUNet14, 4, 1500), (MinkUNet34, 3, 2500)]


@pytest.mark.parametrize("memory", [None, {"recompute_activations": True, "compact_maps": True,
                                             "checkpoint": "all"}], ids=["unswitched", "all-memory-switches"])
@pytest.mark.parametrize("model_cls,dimension,n_points", NETWORKS)
def test_whole_network_parity_and_state_dict_round_trip(model_cls, dimension, n_points, memory):
    """In float64 the whole U-Net's output, input and weight gradients and running statistics equal ME's to
    1e-10, unswitched and with every memory switch of issue 21 on (float32 gradients of a deep network with
    batch norm differ by rounding alone; see the next test); state dicts move both ways unchanged."""
    from fourdcontrast.models.resunet import memory_options

    torch.manual_seed(0)
    me_net = model_cls(3, 20, dimension=dimension, backend="minkowski").double()
    ours = model_cls(3, 20, dimension=dimension, backend="torch").double()
    ours.load_state_dict(me_net.state_dict())  # strict: identical keys and shapes
    ours.memory = memory_options(memory)
    rng = np.random.default_rng(1)
    coords = room_like_voxels(rng, n_points, dimension)
    me_x, our_x = pair_inputs(coords, 3, dtype=torch.float64)
    me_y, our_y = me_net(me_x), ours(our_x)
    p = align(our_y.C, me_y.C.long())
    assert_close(our_y.F, me_y.F[p], rtol=1e-10)
    g = torch.randn(our_y.F.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (our_y.F * g).sum().backward()
    (me_y.F[p] * g).sum().backward()
    assert_close(our_x.F.grad, me_x.F.grad, rtol=1e-10)
    me_params = dict(me_net.named_parameters())
    worst = max(
        float((po.grad - me_params[n].grad).abs().max()) / max(float(me_params[n].grad.abs().max()), 1e-12)
        for n, po in ours.named_parameters()
    )
    assert worst < 1e-10, worst
    # running statistics updated identically; state dicts move back unchanged
    for key, value in ours.state_dict().items():
        if "running" in key:
            assert_close(value, me_net.state_dict()[key], rtol=1e-10)
    back = model_cls(3, 20, dimension=dimension, backend="minkowski").double()
    back.load_state_dict(ours.state_dict())
    for key, value in back.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key


def _rows(coords: torch.Tensor) -> torch.Tensor:
    """Row permutation that sorts (N, 1+D) coordinates."""
    return torch.as_tensor(np.lexsort(coords.long().numpy().T[::-1]))


def _sorted_pass(model_cls, dimension, coords, state, dtype, backend):
    """Output, input gradient, weight gradients and every ReLU's input of one forward+backward, float64,
    rows in coordinate order (a ReLU called twice per block: keys ``name`` and ``name#2``)."""
    net = model_cls(3, 20, dimension=dimension, backend=backend)
    net.load_state_dict(state)
    net = net.to(dtype)
    relu_inputs = {}

    def keep(name):
        def hook(module, inputs):
            x = inputs[0]
            if hasattr(x, "C"):  # not the plain torch ReLU inside MinkowskiReLU
                calls = sum(1 for key in relu_inputs if key.split("#")[0] == name)
                relu_inputs[name if calls == 0 else f"{name}#{calls + 1}"] = x.F.detach().double()[_rows(x.C)]
        return hook

    for name, module in net.named_modules():
        if type(module).__name__ in ("ReLU", "MinkowskiReLU"):
            module.register_forward_pre_hook(keep(name))
    feats = torch.randn(len(coords), 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if backend == "minkowski":
        x = ME.SparseTensor(feats.to(dtype).requires_grad_(True), torch.as_tensor(coords).int())
        x.F.retain_grad()
    else:
        x = SparseTensor(feats.to(dtype).requires_grad_(True), torch.as_tensor(coords).long())
    y = net(x)
    out_rows, in_rows = _rows(y.C), _rows(x.C)
    g = torch.randn(y.F.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (y.F[out_rows] * g.to(dtype)).sum().backward()
    return (y.F[out_rows].detach().double(), x.F.grad[in_rows].double(),
            {k: w.grad.double() for k, w in net.named_parameters()}, relu_inputs)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


ROUNDING = 1e-4
"""float32 vs float64 relative error of a whole U-Net pass in which no ReLU mask flipped (measured: at most
3.6e-6, ``benchmarks/results/minkowski_float32_threads.md``)."""
NEAR_ZERO = 1e-5
"""A ReLU input "within rounding of 0": its float64 value at most this times the largest of that input."""


@pytest.mark.parametrize("model_cls,dimension,n_points", NETWORKS)
def test_float32_whole_networks_differ_from_float64_only_where_rounding_flips_a_relu(model_cls, dimension,
                                                                                     n_points):
    """Both engines' float32 output, input gradient and weight gradients equal the float64 result to rounding
    (< 1e-4 relative to the largest entry) unless a ReLU mask flipped — and a mask may flip only where its
    float64 input is within rounding of 0 (< 1e-5 of that input's largest value). This holds at any thread
    count; a kernel bug breaks it (a wrong gradient with no flip, or a flip far from 0).

    Why not "ours at least as accurate as ME's": a ReLU input within float32 rounding of 0 (measured: 4e-9
    at a channel scale of 0.1) lands on either side of 0 depending on the order of every sum, and that one
    row moves a layer's weight gradient by ~1e-2 — far above rounding (≤ 3.6e-6 without a flip). Which
    rows flip depends on the engine, the thread count (batch norm's statistics, GEMM blocking) and the BLAS
    build, so which engine comes out ahead is a coin flip: on MinkUNet34, one thread, our compiled kernels
    8.4e-5 / 7.8e-4 (input / weight gradient) and ME 1.3e-3 / 1.8e-2 on a 2-vCPU Intel Xeon, ME 4.2e-3 /
    2.5e-2 on a 2-vCPU AMD EPYC; with two threads ours flips the same row as ME (1.37e-3 / 1.75e-2).
    Every configuration with its flipped masks: ``benchmarks/results/minkowski_float32_threads.md``
    (``benchmarks/minkowski_float32_threads.py``). This is also why float32 parity with ME cannot be held
    to 1e-3 on a whole network; the float64 test above compares the engines to 1e-10."""
    torch.manual_seed(0)
    state = model_cls(3, 20, dimension=dimension, backend="torch").state_dict()
    coords = room_like_voxels(np.random.default_rng(1), n_points, dimension)
    y64, dx64, dw64, relu64 = _sorted_pass(model_cls, dimension, coords, state, torch.float64, "torch")
    for backend in ("torch", "minkowski"):
        y, dx, dw, relu = _sorted_pass(model_cls, dimension, coords, state, torch.float32, backend)
        assert relu.keys() == relu64.keys(), backend
        flips, far_from_zero = {}, {}
        for name, x64 in relu64.items():
            flipped = (relu[name] > 0) != (x64 > 0)
            if flipped.any():
                flips[name] = int(flipped.sum())
                worst = float(x64[flipped].abs().max()) / max(float(x64.abs().max()), 1e-30)
                if worst >= NEAR_ZERO:
                    far_from_zero[name] = worst
        assert far_from_zero == {}, f"{backend}: ReLU masks flipped far from 0: {far_from_zero}"
        errors = {"output": _relative(y, y64), "input gradient": _relative(dx, dx64),
                  "weight gradient": max(_relative(dw[k], dw64[k]) for k in dw64)}
        if not flips:
            assert max(errors.values()) < ROUNDING, f"{backend}: {errors} with no ReLU mask flipped"
        assert errors["output"] < ROUNDING, f"{backend}: {errors} (flipped: {flips})"
