import numpy as np
import pytest
import torch

from fourdcontrast.models.resunet import (
    KERNEL_SHAPES,
    BasicBlock,
    MinkUNet14,
    MinkUNet14A,
    MinkUNet18,
    MinkUNet34,
    MinkUNet34C,
    count_parameters,
    kernel_spec,
)
from fourdcontrast.sparse import Conv, ConvTranspose, SparseTensor


class TinyUNet14(MinkUNet14):
    PLANES = (4, 6, 8, 8, 8, 6, 4, 4)
    INIT_DIM = 4


class TinyUNet34(MinkUNet34):
    PLANES = (4, 4, 4, 4, 4, 4, 4, 4)
    INIT_DIM = 4


def surface_voxels(rng, dimension, n=400):
    pts = rng.uniform(0, 30, size=(n, 3))
    pts[: n // 2, 2] = 0  # a floor
    pts[n // 2 :, 0] = 0  # a wall
    vox = np.floor(pts).astype(np.int64)
    if dimension == 4:
        vox = np.concatenate([vox, rng.integers(0, 4, (n, 1))], axis=1)
    coords = np.unique(np.concatenate([np.zeros((n, 1), np.int64), vox], axis=1), axis=0)
    return SparseTensor(torch.as_tensor(rng.standard_normal((len(coords), 3)), dtype=torch.float32),
                        torch.as_tensor(coords))


@pytest.mark.parametrize(
    "cls,dimension,kernel_shape,millions",
    [(MinkUNet34, 3, "hypercube", 37.86), (MinkUNet14, 4, "hypercube", 33.23),
     (MinkUNet14, 3, "hypercube", 11.58), (MinkUNet14, 4, "spatial", 12.72),
     (MinkUNet14, 4, "hypercross", 5.89), (MinkUNet18, 3, "hypercube", 21.70)],
    # (MinkUNet14S, ours, is checked in test_small_unet_fits_the_shipped_checkpoint)
)
def test_parameter_counts_match_minkowski(cls, dimension, kernel_shape, millions):
    model = cls(3, 20, dimension=dimension, kernel_shape=kernel_shape)
    assert count_parameters(model) / 1e6 == pytest.approx(millions, abs=0.01)


def test_topology_and_initialisation():
    model = MinkUNet34C(3, 20, dimension=3)
    assert [len(getattr(model, f"block{i}")) for i in range(1, 9)] == [2, 3, 4, 6, 2, 2, 2, 2]
    assert model.conv0p1s1.kernel.shape == (125, 3, 32)
    assert model.conv1p1s2.kernel.shape == (8, 32, 32) and model.conv1p1s2.stride == (2, 2, 2)
    assert model.convtr4p16s2.kernel.shape == (8, 256, 256)
    assert model.block5[0].conv1.kernel.shape == (27, 256 + 128, 256)
    assert model.final.kernel.shape == (96, 20) and model.final.bias.shape == (1, 20)
    assert model.block1[0].conv1.bias is None
    assert model.block1[0].norm1.bn.momentum == 0.1
    # kaiming normal, fan_out = C_out * K, relu gain
    k = model.block4[0].conv2.kernel
    assert float(k.detach().std()) == pytest.approx(np.sqrt(2 / (256 * 27)), rel=0.05)
    assert torch.all(model.bn0.bn.weight == 1) and torch.all(model.bn0.bn.bias == 0)
    # transposed convolutions keep ME's uniform reset: |w| <= 1/sqrt(C_out*K)
    assert float(model.convtr7p2s2.kernel.detach().abs().max()) <= 1 / np.sqrt(96 * 8) + 1e-7
    assert isinstance(model.block1[0], BasicBlock)


def test_kernel_spec_options():
    assert kernel_spec(3, 4, "spatial") == ((3, 3, 3, 1), "hypercube")
    assert kernel_spec(5, 3, "hypercross") == ((5, 5, 5), "hypercross")
    assert set(KERNEL_SHAPES) == {"hypercube", "spatial", "hypercross"}
    with pytest.raises(ValueError, match="time axis"):
        kernel_spec(3, 3, "spatial")
    with pytest.raises(ValueError, match="kernel_shape"):
        MinkUNet14(3, 4, dimension=4, kernel_shape="sphere")


@pytest.mark.parametrize("dimension,kernel_shape", [(3, "hypercube"), (4, "hypercube"), (4, "spatial"),
                                                    (4, "hypercross")])
def test_forward_backward_computes_each_kernel_map_once(dimension, kernel_shape):
    rng = np.random.default_rng(dimension)
    x = surface_voxels(rng, dimension)
    model = TinyUNet14(3, 5, dimension=dimension, kernel_shape=kernel_shape)
    builds = []
    build = x.manager._build
    x.manager._build = lambda *a: builds.append(a) or build(*a)
    y = model(x)
    assert y.F.shape == (len(x), 5) and y.coordinate_key == x.coordinate_key
    # stride 1: stem + block maps; strides 2..16: the downsampling map + the block map; the four
    # transposed convolutions reuse the downsampling maps (no new builds)
    assert len(builds) == 10 == x.manager.num_kernel_maps
    assert len({a[:2] + a[2:] for a in builds}) == 10
    y.F.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_state_dict_moves_between_models_and_outputs_match():
    rng = np.random.default_rng(0)
    x = surface_voxels(rng, 3)
    a, b = TinyUNet34(3, 2, dimension=3), TinyUNet34(3, 2, dimension=3)
    b.load_state_dict(a.state_dict())
    a.eval()
    b.eval()
    torch.testing.assert_close(a(x).F, b(SparseTensor(x.F, x.C)).F)
    assert any(isinstance(m, ConvTranspose) for m in a.modules())
    assert any(isinstance(m, Conv) for m in a.modules())


def test_width_variants():
    assert MinkUNet14A.PLANES == (32, 64, 128, 256, 128, 128, 96, 96)
    assert MinkUNet34C.PLANES == MinkUNet34.PLANES == (32, 64, 128, 256, 256, 128, 96, 96)
    assert MinkUNet34.LAYERS == (2, 3, 4, 6, 2, 2, 2, 2) and MinkUNet14.LAYERS == (1,) * 8
    with pytest.raises(ValueError, match="backend"):
        MinkUNet14(3, 2, backend="jax")


def test_small_unet_fits_the_shipped_checkpoint():
    from fourdcontrast.models.resunet import BACKBONES, MinkUNet14S

    assert BACKBONES["MinkUNet14S"] is MinkUNet14S
    model = MinkUNet14S(3, 32, dimension=3)
    assert count_parameters(model) / 1e6 == pytest.approx(2.01, abs=0.01)
    assert count_parameters(model) * 2 < 10e6  # half precision under 10 MB
