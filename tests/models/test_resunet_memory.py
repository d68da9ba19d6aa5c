"""The activation-memory switches of the U-Nets (MemoryOptions): equal outputs, gradients and batch-norm
statistics to the unswitched path (float64 to 1e-8), and the memory they are meant to free is freed."""

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from fourdcontrast.models.resunet import (
    CHECKPOINT_PRESETS,
    STAGES,
    MemoryOptions,
    MinkUNet14,
    MinkUNet34,
    bn_act,
    checkpoint_stages,
    is_checkpoint_spec,
)
from fourdcontrast.sparse import BatchNorm, SparseTensor
from fourdcontrast.sparse.recompute import BatchNormActivation, Concatenate, Recipe, recomputed_activations


class Tiny34(MinkUNet34):
    PLANES = (4, 6, 8, 8, 8, 6, 5, 5)
    INIT_DIM = 4


class Tiny14(MinkUNet14):
    PLANES = (4, 6, 8, 8, 8, 6, 5, 5)
    INIT_DIM = 4


SETTINGS = [
    MemoryOptions(recompute_activations=True),
    MemoryOptions(compact_maps=True),
    MemoryOptions(checkpoint="all"),
    MemoryOptions(recompute_activations=True, checkpoint="decoder"),
    MemoryOptions(recompute_activations=True, compact_maps=True, checkpoint="stem,enc2,dec4"),
]


def setting_id(options: MemoryOptions) -> str:
    return (f"r{int(options.recompute_activations)}-m{int(options.compact_maps)}-"
            f"{'+'.join(options.checkpoint) or 'none'}")


def surface(dimension: int, n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(coordinates, float64 features) of voxels on a floor and a wall (and 3 times in 4D)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 24, size=(n, 3))
    pts[: n // 2, 2] = 0
    pts[n // 2:, 0] = 0
    vox = np.floor(pts).astype(np.int64)
    if dimension == 4:
        vox = np.concatenate([vox, rng.integers(0, 3, (n, 1))], axis=1)
    batch = rng.integers(0, 2, (n, 1))
    coords = np.unique(np.concatenate([batch, vox], axis=1), axis=0)
    feats = torch.as_tensor(rng.standard_normal((len(coords), 3)))
    return torch.as_tensor(coords), feats


def forward_backward(model, coords, feats, input_grad: bool = True):
    """Output, input gradient, parameter gradients and buffers after one forward+backward."""
    x = feats.clone().requires_grad_(input_grad)
    out = model(SparseTensor(x, coords)).features
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    ((out * weights).sum() + (out**2).sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}  # (None would fail: every one gets one)
    model.zero_grad(set_to_none=True)
    return (out.detach(), x.grad, grads,
            {n: b.clone() for n, b in model.named_buffers()})


def assert_close(a, b, tol=1e-8):
    scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
    difference = float((a.detach().double() - b.detach().double()).abs().max()) if b.numel() else 0.0
    assert difference <= tol * scale, difference


@pytest.mark.parametrize("cls,dimension", [(Tiny34, 3), (Tiny14, 4)])
@pytest.mark.parametrize("options", SETTINGS, ids=setting_id)
def test_switches_give_the_unswitched_outputs_gradients_and_statistics(cls, dimension, options):
    coords, feats = surface(dimension)
    torch.manual_seed(0)
    ref_model = cls(3, 5, dimension=dimension).double()
    torch.manual_seed(0)
    model = cls(3, 5, dimension=dimension, memory=options).double()
    ref = forward_backward(ref_model, coords, feats)
    got = forward_backward(model, coords, feats)
    for _ in range(2):  # and steps with the updated running statistics, the input without gradient
        ref2 = forward_backward(ref_model, coords, feats, input_grad=False)
        got2 = forward_backward(model, coords, feats, input_grad=False)
    assert_close(got[0], ref[0])
    assert_close(got[1], ref[1])
    for name in ref2[2]:  # every parameter gets its gradient when the input needs none (a checkpointed stem)
        assert_close(got2[2][name], ref2[2][name])
    assert ref[2].keys() == got[2].keys()
    for name in ref[2]:
        assert_close(got[2][name], ref[2][name])
    for name in ref2[3]:  # running mean / var / num_batches_tracked, updated once per forward
        assert_close(got2[3][name], ref2[3][name])
    assert_close(got2[0], ref2[0])


def test_switched_model_in_eval_and_without_grad_equals_the_unswitched():
    coords, feats = surface(3)
    torch.manual_seed(0)
    ref = Tiny34(3, 5).double()
    torch.manual_seed(0)
    model = Tiny34(3, 5, memory=MemoryOptions(recompute_activations=True, checkpoint="all")).double()
    forward_backward(ref, coords, feats)
    forward_backward(model, coords, feats)
    ref.eval()
    model.eval()
    with torch.no_grad():
        a = model(SparseTensor(feats, coords)).features
        b = ref(SparseTensor(feats, coords)).features
    assert_close(a, b)


def test_batch_norm_activation_equals_batchnorm_plus_residual_plus_relu():
    torch.manual_seed(0)
    z0 = torch.randn(300, 6, dtype=torch.float64)
    r0 = torch.randn(300, 6, dtype=torch.float64)
    ref_bn = nn.BatchNorm1d(6).double()
    with torch.no_grad():
        ref_bn.weight.uniform_(0.5, 1.5)
        ref_bn.bias.uniform_(-0.5, 0.5)
    bn = nn.BatchNorm1d(6).double()
    bn.load_state_dict(ref_bn.state_dict())
    grad = torch.randn(300, 6, dtype=torch.float64)
    results = []
    for fused, module in ((False, ref_bn), (True, bn)):
        z, r = z0.clone().requires_grad_(True), r0.clone().requires_grad_(True)
        if fused:
            y = BatchNormActivation.apply(z, module.weight, module.bias, r, module.running_mean,
                                          module.running_var, module.momentum, module.eps, True)
        else:
            y = torch.relu(module(z) + r)
        y.backward(grad)
        results.append((y.detach(), z.grad, r.grad, module.weight.grad, module.bias.grad,
                        module.running_mean.clone(), module.running_var.clone()))
    for a, b in zip(*results, strict=True):
        assert_close(a, b, 1e-12)
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()  # the ReLU clips some rows


def test_batch_norm_activation_without_affine_or_running_statistics():
    torch.manual_seed(1)
    z0 = torch.randn(50, 4, dtype=torch.float64)
    ref_bn = nn.BatchNorm1d(4, affine=False, track_running_stats=False).double()
    z = z0.clone().requires_grad_(True)
    y = BatchNormActivation.apply(z, None, None, None, None, None, 0.1, ref_bn.eps, False)
    z_ref = z0.clone().requires_grad_(True)
    y_ref = ref_bn(z_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    assert_close(y.detach(), y_ref.detach(), 1e-12)
    assert_close(z.grad, z_ref.grad, 1e-12)


def test_recompute_rebuilds_the_forward_output_bitwise():
    torch.manual_seed(0)
    z = torch.randn(200, 5, requires_grad=True)
    r = torch.randn(200, 5)
    bn = nn.BatchNorm1d(5)
    y = BatchNormActivation.apply(z, bn.weight, bn.bias, r, bn.running_mean, bn.running_var, 0.1, 1e-5, True)
    assert torch.equal(BatchNormActivation.recompute(y.grad_fn), y)
    c = Concatenate.apply(y, z)
    assert torch.equal(Concatenate.recompute(c.grad_fn), c)


def test_saved_outputs_become_recipes_and_are_freed():
    """Inside recomputed_activations the consumer keeps a recipe, so the output itself is freed."""
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    z0 = torch.randn(100, 4)

    def run(enabled: bool):
        bn = nn.BatchNorm1d(4)
        z = z0.clone().requires_grad_(True)
        with recomputed_activations(enabled):
            y = BatchNormActivation.apply(z, bn.weight, bn.bias, None, bn.running_mean, bn.running_var, 0.1,
                                          1e-5, True)
            out = y @ w  # mm saves y
        ref = weakref.ref(y)
        del y
        gc.collect()
        alive = ref() is not None
        out.sum().backward()
        return alive, w.grad.clone(), z.grad.clone()

    alive_plain, gw_plain, gz_plain = run(False)
    w.grad = None
    alive_recipe, gw_recipe, gz_recipe = run(True)
    assert alive_plain and not alive_recipe
    assert torch.equal(gw_plain, gw_recipe) and torch.equal(gz_plain, gz_recipe)


def test_modified_outputs_are_kept_not_recomputed():
    bn = nn.BatchNorm1d(3)
    z = torch.randn(20, 3, requires_grad=True)
    y = BatchNormActivation.apply(z, bn.weight, bn.bias, None, None, None, 0.1, 1e-5, True)
    from fourdcontrast.sparse.recompute import _pack

    assert isinstance(_pack(y), Recipe)
    assert not isinstance(_pack(y[:5]), Recipe)  # a view
    with torch.no_grad():
        y.mul_(2)
    assert _pack(y) is y  # modified in place since: the tensor itself


def test_bn_act_falls_back_to_the_module_where_it_cannot_fuse():
    norm = BatchNorm(3).double()
    coords, feats = surface(3, n=100)
    x = SparseTensor(feats, coords)
    norm.eval()
    out = bn_act(norm, x)
    assert out.features.grad_fn is None or "BatchNormActivation" not in type(out.features.grad_fn).__name__
    assert_close(out.features, torch.relu(norm(x).features))


def test_checkpointed_forward_releases_lookups_and_keeps_maps():
    coords, feats = surface(3)
    model = Tiny34(3, 5, memory=MemoryOptions(checkpoint="dec4")).double()
    out = model(SparseTensor(feats, coords))
    manager = out.manager
    assert all(s.lookup is None for s in manager._sets)
    maps = manager.num_kernel_maps
    out.features.sum().backward()
    assert manager.num_kernel_maps == maps  # the recomputed stage found its maps in the cache


def test_options_parse_presets_stage_lists_and_reject_unknown_names():
    assert MemoryOptions(checkpoint="decoder").checkpoint == ("dec1", "dec2", "dec3", "dec4")
    assert MemoryOptions(checkpoint="dec4, stem").checkpoint == ("stem", "dec4")  # in network order
    assert MemoryOptions(checkpoint=["enc1"]).checkpoint == ("enc1",)
    assert checkpoint_stages("all") == STAGES and checkpoint_stages("none") == ()
    assert set(CHECKPOINT_PRESETS) >= {"none", "decoder", "full-resolution", "all"}
    assert not MemoryOptions().active and MemoryOptions(recompute_activations=True).active
    with pytest.raises(ValueError, match="unknown checkpoint stage"):
        MemoryOptions(checkpoint="dec5")
    assert is_checkpoint_spec("dec3,dec4") and not is_checkpoint_spec("everything")


def test_switches_need_our_engine():
    with pytest.raises(ValueError, match="backend='torch'"):
        Tiny14(3, 5, dimension=4, backend="minkowski", memory={"recompute_activations": True})


def test_memory_can_be_switched_on_an_existing_model():
    coords, feats = surface(4, n=300)
    torch.manual_seed(0)
    model = Tiny14(3, 5, dimension=4).double()
    ref = forward_backward(model, coords, feats)
    torch.manual_seed(0)
    model = Tiny14(3, 5, dimension=4).double()
    model.memory = {"recompute_activations": True, "checkpoint": "full-resolution"}
    got = forward_backward(model, coords, feats)
    assert_close(got[0], ref[0])
    for name in ref[2]:
        assert_close(got[2][name], ref[2][name])


def test_recomputed_unet_keeps_no_normalised_output_or_concatenation_alive(monkeypatch):
    """After the forward, with the graph alive, every batch-norm/ReLU output and every concatenation of
    the switched U-Net has been freed (the backward rebuilds them); the unswitched path keeps its own."""
    from fourdcontrast.sparse import functional, recompute

    outputs, convolutions = [], []
    for cls in (recompute.BatchNormActivation, recompute.Concatenate, recompute.Linear,
                functional.SparseConvolutionFunction):
        original = cls.apply

        def recording(*args, _original=original):
            out = _original(*args)
            if getattr(out.grad_fn, "recomputable", True):
                outputs.append(weakref.ref(out))
            else:
                convolutions.append(weakref.ref(out))
            return out

        monkeypatch.setattr(cls, "apply", recording)
    coords, feats = surface(3)
    model = Tiny34(3, 5, memory=MemoryOptions(recompute_activations=True)).double()
    out = model(SparseTensor(feats, coords))
    gc.collect()
    # BN/ReLU outputs, concatenations, projections and the strided / transposed convolutions' outputs
    assert len(outputs) > 50
    assert all(ref() is None for ref in outputs)
    # the 3^D convolutions' outputs (batch norm's inputs) are what stays
    assert convolutions and all(ref() is not None for ref in convolutions)
    out.features.sum().backward()  # and the backward can rebuild them


def test_checkpointed_stages_keep_only_their_inputs():
    """Bytes saved for the backward (seen by an outer hook: no recompute hooks inside) with every stage
    checkpointed: only the stage inputs, a fraction of the unswitched forward's."""
    coords, feats = surface(3)

    def saved_bytes(options):
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        model = Tiny34(3, 5, memory=options).double()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(SparseTensor(feats.clone().requires_grad_(True), coords))
        out.features.sum().backward()
        return sum(n for ptr, n in storages.items() if ptr not in params)

    plain, checkpointed = saved_bytes(MemoryOptions()), saved_bytes(MemoryOptions(checkpoint="all"))
    assert checkpointed < plain / 3


def test_meta_architecture_with_switches_gives_the_unswitched_loss_and_gradients(monkeypatch):
    """The pre-training model (both U-Nets, heads, losses) with every switch on (the fused pair losses
    too): the same loss, the same gradient for every parameter (float64), and the switches reach both
    U-Nets from MethodConfig."""
    import dataclasses

    from batches import sequence_batch

    import fourdcontrast.losses.simsiam as simsiam
    from fourdcontrast.models.fourdcontrast import FourDContrast, method_config

    fused_calls = []
    pair_dot = simsiam.pair_dot
    monkeypatch.setattr(simsiam, "pair_dot", lambda *a, **k: fused_calls.append(1) or pair_dot(*a, **k))
    batch = sequence_batch(2)
    batch = dataclasses.replace(batch, feats_3d=batch.feats_3d.double(), feats_4d=batch.feats_4d.double())
    small = dict(backbone_3d="MinkUNet14A", backbone_4d="MinkUNet14A", feature_dim=16)
    results = []
    every = {"recompute_activations": True, "compact_maps": True, "checkpoint_3d": "all-but-dec4",
             "checkpoint_4d": "all", "fused_pair_losses": True}
    for switches in ({}, every):
        torch.manual_seed(0)
        model = FourDContrast(method_config(**small, **switches)).double()
        if switches:
            assert model.encoder_3d.memory.checkpoint == STAGES[:-1]
            assert model.encoder_4d.memory.recompute_activations and model.encoder_4d.memory.compact_maps
        out = model(batch, generator=torch.Generator().manual_seed(0))
        out["loss"].backward()
        results.append((out["loss"].detach(), {n: p.grad for n, p in model.named_parameters()}))
        assert len(fused_calls) == (6 if switches else 0)  # two per SimSiam term when fused
    (loss_ref, grads_ref), (loss, grads) = results
    assert_close(loss, loss_ref)
    for name, g in grads_ref.items():
        assert grads[name] is not None, name
        assert_close(grads[name], g)


def test_method_config_rejects_unknown_checkpoint_stages():
    from fourdcontrast.models.fourdcontrast import method_config

    with pytest.raises(ValueError, match="checkpoint_3d"):
        method_config(checkpoint_3d="dec9")
    assert method_config(checkpoint_4d="dec3,dec4").memory_options(4)["checkpoint"] == "dec3,dec4"
