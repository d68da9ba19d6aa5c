"""Parity with MinkowskiEngine on identical coordinates and weights (runs where ME imports).

Run with the ME venv:
``PYTHONPATH=$PWD .venv-minkowski/bin/python -m pytest tests/sparse/test_minkowski_parity.py``.
"""

import numpy as np
import pytest
import torch

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


def room_like(rng, n_points, dimension, batch=2, extent=24):
    """Unique voxels on a floor, two walls and a box per batch item (a surface, not a random cloud)."""
    parts = []
    for b in range(batch):
        pts = rng.uniform(0, extent, size=(n_points, 3))
        kind = rng.integers(0, 4, n_points)
        pts[kind == 0, 2] = 0  # floor
        pts[kind == 1, 0] = 0  # wall
        pts[kind == 2, 1] = extent - 1  # wall
        box = kind == 3
        pts[box] = pts[box] * 0.3 + extent * 0.4
        pts[box, rng.integers(0, 3)] = extent * 0.4
        vox = np.floor(pts).astype(np.int64)
        if dimension == 4:
            vox = np.concatenate([vox, rng.integers(0, 4, (n_points, 1))], axis=1)
        parts.append(np.concatenate([np.full((n_points, 1), b), vox], axis=1))
    return np.unique(np.concatenate(parts), axis=0)


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
    coords = room_like(rng, 600, dimension)
    if kernel_size == "spatial":
        kernel_size = [3, 3, 3] + [1] * (dimension - 3)
    pair = layer_pair("Conv", 4, 5, kernel_size=kernel_size, stride=stride, dimension=dimension,
                      region=region, bias=True)
    run_pair([pair[0]], [pair[1]], coords, 4)


@pytest.mark.parametrize("dimension", [3, 4])
def test_strided_then_transposed_parity(dimension):
    rng = np.random.default_rng(7)
    coords = room_like(rng, 600, dimension)
    down = layer_pair("Conv", 4, 6, kernel_size=2, stride=2, dimension=dimension)
    sub = layer_pair("Conv", 6, 6, kernel_size=3, dimension=dimension)
    up = layer_pair("ConvTranspose", 6, 3, kernel_size=2, stride=2, dimension=dimension)
    run_pair([down[0], sub[0], up[0]], [down[1], sub[1], up[1]], coords, 4)


@pytest.mark.parametrize("model_cls,dimension,n_points", [(MinkUNet14, 4, 1500), (MinkUNet34, 3, 2500)])
def test_whole_network_parity_and_state_dict_round_trip(model_cls, dimension, n_points):
    torch.manual_seed(0)
    me_net = model_cls(3, 20, dimension=dimension, backend="minkowski")
    ours = model_cls(3, 20, dimension=dimension, backend="torch")
    ours.load_state_dict(me_net.state_dict())  # strict: identical keys and shapes
    rng = np.random.default_rng(1)
    coords = room_like(rng, n_points, dimension)
    me_x, our_x = pair_inputs(coords, 3)
    me_y, our_y = me_net(me_x), ours(our_x)
    p = align(our_y.C, me_y.C.long())
    assert_close(our_y.F, me_y.F[p])
    g = torch.randn(our_y.F.shape, generator=torch.Generator().manual_seed(2))
    (our_y.F * g).sum().backward()
    (me_y.F[p] * g).sum().backward()
    assert_close(our_x.F.grad, me_x.F.grad, rtol=1e-3)
    me_params = dict(me_net.named_parameters())
    worst = max(
        float((po.grad - me_params[n].grad).abs().max()) / max(float(me_params[n].grad.abs().max()), 1e-12)
        for n, po in ours.named_parameters()
    )
    assert worst < 1e-3, worst
    # running statistics updated identically; state dicts move back unchanged
    for key, value in ours.state_dict().items():
        if "running" in key:
            assert_close(value, me_net.state_dict()[key])
    back = model_cls(3, 20, dimension=dimension, backend="minkowski")
    back.load_state_dict(ours.state_dict())
    for key, value in back.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
