"""The meta-architecture (Sec. 3.2, 3.3.1): forward+backward on real batches, gradient flow term by term,
every baseline / ablation switch, and parity with MinkowskiEngine where it imports.

Mutants tried (issue 30), each killed by the test named:

- the object-pair weight put on the background pairs (``is_object`` → ``~is_object`` in ``_select_pairs``):
  ``test_object_pair_weight_is_the_weighted_mean_within_groups`` (the former test only checked that the
  weighted loss differs, which this mutant also does);
- the backbone's effective rank taken of the projector output (``features.F`` → ``h.F`` in ``_branch``):
  ``test_forward_reports_effective_ranks_and_object_pairs`` (the former ``1 <= erank <= d`` held).
"""

import math

import pytest
import torch
from batches import sequence_batch, static_batch

from fourdcontrast.models.fourdcontrast import (
    METHODS,
    SEQUENCE_LENGTH_BATCH,
    FourDContrast,
    MethodConfig,
    collapse_std,
    method_config,
    sample_pairs_per_group,
)
from fourdcontrast.sparse import minkowski_engine

SMALL = dict(backbone_3d="MinkUNet14A", feature_dim=16)  # coarse voxels + a small U-Net: fast tests


def small_config(name: str = "4dcontrast", **overrides) -> MethodConfig:
    if METHODS[name].get("backbone_4d", "MinkUNet14") is not None and "backbone_4d" not in overrides:
        overrides.setdefault("backbone_4d", "MinkUNet14A")
    return method_config(name, **{**SMALL, **overrides})


def model_for(config: MethodConfig, seed: int = 0) -> FourDContrast:
    torch.manual_seed(seed)
    return FourDContrast(config)


def grads(module) -> bool:
    """True when any parameter of ``module`` received a non-zero gradient."""
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_default_config_is_the_papers():
    c = MethodConfig()
    assert (c.framework, c.backbone_3d, c.backbone_4d, c.second_dimension) == ("simsiam", "MinkUNet34",
                                                                                 "MinkUNet14", 4)
    assert (c.w3d, c.w3d4d, c.w4d, c.stop_gradient, c.in_channels) == (1.0, 1.0, 1.0, True, 3)
    model = FourDContrast(MethodConfig(feature_dim=32))
    assert model.encoder_3d.dimension == 3 and model.encoder_4d.dimension == 4
    assert len(model.encoder_3d.block4) == 6 and len(model.encoder_4d.block4) == 1  # MinkUNet34 / 14
    # projector: one 1×1 layer (+ BN without affine); predictor: d → d/4 → d, no BN on the output
    assert model.projector_3d.conv.kernel.shape == (32, 32)
    assert model.projector_3d.norm.bn.affine is False
    assert model.predictor_4d.conv1.kernel.shape == (32, 8)
    assert model.predictor_4d.conv2.kernel.shape == (8, 32)
    assert model.predictor_4d.conv2.bias is not None


def test_forward_returns_terms_and_diagnostics():
    batch = sequence_batch()
    out = model_for(small_config())(batch)
    for key in ("loss", "loss_3d", "loss_3d4d", "loss_4d"):
        assert out[key].ndim == 0 and torch.isfinite(out[key])
        assert -1.0 <= float(out[key].detach()) <= 1.0 or key == "loss"
    assert out["pairs_3d"] == len(batch.pairs_3d) > 0
    assert out["pairs_3d4d"] == len(batch.pairs_3d4d) > 0 and out["pairs_4d"] == len(batch.pairs_4d) > 0
    total = (out["loss_3d"] + out["loss_3d4d"] + out["loss_4d"]).detach()
    assert float(out["loss"].detach()) == pytest.approx(float(total), rel=1e-5)
    assert out["std_healthy"] == pytest.approx(1 / math.sqrt(16))
    assert 0.02 < float(out["std_z3d"]) <= 1.0 and 0.02 < float(out["std_z4d"]) <= 1.0
    out["loss"].backward()


def test_forward_features_align_with_batch_rows():
    batch = sequence_batch()
    out = model_for(small_config())(batch, return_features=True)
    assert out["z3d"].shape == (len(batch.coords_3d), 16) and out["p3d"].shape == out["z3d"].shape
    assert out["z4d"].shape == (len(batch.coords_4d), 16)


@pytest.mark.parametrize(
    "weights,expect",
    [
        # Eq. 3: D(p3D, SG z3D) -> Φ3D and P3D learn, the 4D branch does not
        ((1.0, 0.0, 0.0), {"encoder_3d", "projector_3d", "predictor_3d"}),
        # Eq. 5: D(SG p3D, z4D) + D(SG p4D, z3D) -> the encoders learn, neither predictor does
        ((0.0, 1.0, 0.0), {"encoder_3d", "projector_3d", "encoder_4d", "projector_4d"}),
        # Eq. 7: as Eq. 3 on the 4D branch
        ((0.0, 0.0, 1.0), {"encoder_4d", "projector_4d", "predictor_4d"}),
    ],
    ids=["eq3", "eq5", "eq7"],
)
def test_gradient_flow_term_by_term(weights, expect):
    w3d, w3d4d, w4d = weights
    model = model_for(small_config(w3d=w3d, w3d4d=w3d4d, w4d=w4d))
    model(sequence_batch())["loss"].backward()
    parts = ["encoder_3d", "projector_3d", "predictor_3d", "encoder_4d", "projector_4d", "predictor_4d"]
    got = {name for name in parts if grads(getattr(model, name))}
    assert got == expect


def test_eq5_gradient_sources():
    """Eq. 5 term by term: Φ4D learns from SG(p3D) only through z4D, Φ3D from SG(p4D) only through z3D."""
    model = model_for(small_config())
    batch = sequence_batch()
    out = model(batch, return_features=True)
    z3, p3, z4, p4 = out["z3d"], out["p3d"], out["z4d"], out["p4d"]
    for t in (z3, p3, z4, p4):
        t.retain_grad()
    from fourdcontrast import losses

    pairs, groups = batch.pairs_3d4d, batch.pairs_3d4d_group
    losses.loss_3d4d(p3, z3, p4, z4, pairs, groups, batch.length).backward()
    assert p3.grad is None or p3.grad.abs().sum() == 0
    assert p4.grad is None or p4.grad.abs().sum() == 0
    used3 = torch.zeros(len(z3), dtype=torch.bool)
    used3[pairs[:, 0]] = True
    assert z3.grad[used3].abs().sum(1).gt(0).float().mean() > 0.99  # every paired 3D row gets gradient
    assert z3.grad[~used3].abs().sum() == 0  # and no other row
    used4 = torch.zeros(len(z4), dtype=torch.bool)
    used4[pairs[:, 1]] = True
    assert z4.grad[~used4].abs().sum() == 0 and z4.grad[used4].abs().sum() > 0


def test_no_stop_gradient_lets_predictors_learn_from_eq5():
    model = model_for(small_config("no-stop-gradient", w3d=0.0, w4d=0.0))
    model(sequence_batch())["loss"].backward()
    assert grads(model.predictor_3d) and grads(model.predictor_4d)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_switch_runs_one_step(name):
    config = small_config(name)
    batch = static_batch() if config.data == "static" else sequence_batch()
    model = model_for(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = [p.detach().clone() for p in model.encoder_3d.parameters()]
    out = model(batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    optimizer.step()
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.encoder_3d.parameters(), strict=True))
    if config.w3d or config.w3d4d:
        assert changed > 0  # the 3D backbone — the one kept for fine-tuning — learns from the step
    if config.backbone_4d is None:
        assert model.encoder_4d is None and out["pairs_4d"] == 0
        assert float(torch.as_tensor(out["loss_4d"]).detach()) == 0
    if name == "two-3d-backbones":
        assert model.encoder_4d.dimension == 3 and out["pairs_3d4d"] > 0
    if config.framework != "simsiam":
        assert model.predictor_3d is None


@pytest.mark.parametrize("length", sorted(SEQUENCE_LENGTH_BATCH))
def test_sequence_lengths_of_the_ablation(length):
    batch = sequence_batch(1, length)
    out = model_for(small_config())(batch)
    assert batch.length == length and torch.isfinite(out["loss"])
    assert int(batch.pairs_3d_group.max()) < length * (length - 1) // 2


def test_max_pairs_per_group_samples_within_each_group():
    pairs = torch.arange(20).reshape(10, 2)
    groups = torch.tensor([0, 0, 0, 0, 0, 0, 2, 2, 5, 5])
    kept, kept_groups = sample_pairs_per_group(pairs, groups, 3, torch.Generator().manual_seed(1))
    assert torch.bincount(kept_groups, minlength=6).tolist() == [3, 0, 2, 0, 0, 2]
    assert all((pairs == row).all(1).any() for row in kept)  # rows are rows of the input, intact
    again, _ = sample_pairs_per_group(pairs, groups, 3, torch.Generator().manual_seed(1))
    assert torch.equal(kept, again)
    same, _ = sample_pairs_per_group(pairs, groups, None)
    assert same is pairs


def test_max_pairs_per_group_limits_the_pairs_used():
    out = model_for(small_config(max_pairs_per_group=50))(sequence_batch())
    assert out["pairs_3d"] <= 50 * 6 * 2 and out["pairs_3d4d"] <= 50 * 4 * 2


def test_collapse_std():
    z = torch.randn(4000, 16)
    assert float(collapse_std(z)) == pytest.approx(1 / math.sqrt(16), rel=0.1)
    assert float(collapse_std(torch.ones(100, 16) + 1e-7 * torch.randn(100, 16))) < 1e-5


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"framework": "byol"}, "framework"),
        ({"backbone_3d": "ResNet50"}, "backbone_3d"),
        ({"backbone_4d": None}, "w3d4d and w4d"),
        ({"framework": "csc", "backbone_4d": "MinkUNet14"}, "backbone_4d=None"),
        ({"kernel_shape_4d": "sphere"}, "kernel_shape_4d"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        MethodConfig(**overrides)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        method_config("moco")


def test_batch_needs_two_frames():
    batch = sequence_batch()
    batch.length = 1
    with pytest.raises(ValueError, match="at least 2 frames"):
        FourDContrast(small_config())(batch)


ME = minkowski_engine()


@pytest.mark.minkowski
@pytest.mark.skipif(ME is None, reason="MinkowskiEngine does not import here (scripts/install_minkowski.sh)")
@pytest.mark.parametrize("name", ["4dcontrast", "simclr"])
def test_minkowski_backend_gives_equal_losses(name):
    """The same weights on our engine and on MinkowskiEngine give the same loss terms (1e-4 relative)."""
    batch = sequence_batch()
    ours = model_for(small_config(name))
    theirs = FourDContrast(small_config(name, backend="minkowski"))
    theirs.load_state_dict(ours.state_dict())
    a = ours(batch, generator=torch.Generator().manual_seed(0))
    b = theirs(batch, generator=torch.Generator().manual_seed(0))
    for key in ("loss", "loss_3d", "loss_3d4d", "loss_4d"):
        assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-6), key
    a["loss"].backward()
    b["loss"].backward()
    # gradients of all parameters together agree to float32 accumulation noise (measured 1-2e-3 relative;
    # the U-Nets' final biases have an exactly-zero true gradient, BN follows them, so only noise there)
    ga = torch.cat([p.grad.flatten() for p in ours.parameters() if p.grad is not None])
    gb = torch.cat([p.grad.flatten() for p in theirs.parameters() if p.grad is not None])
    assert float((ga - gb).norm() / ga.norm()) < 1e-2


# --- issue 18: the collapse monitor, projector variants, motion-aware pair sampling -------------------
def test_forward_reports_effective_ranks_and_object_pairs():
    """The ranks are those of the U-Net output and of the projector output before its batch norm
    (recomputed here from the same modules), per branch."""
    from fourdcontrast.metrics import effective_rank

    batch = sequence_batch()
    model = model_for(small_config())
    out = model(batch)
    for name, encoder, projector, feats, coords in (
            ("3d", model.encoder_3d, model.projector_3d, batch.feats_3d, batch.coords_3d),
            ("4d", model.encoder_4d, model.projector_4d, batch.feats_4d, batch.coords_4d)):
        with torch.no_grad():
            features = encoder(model._ops.SparseTensor(feats, coords))
            _, pre = projector(features, return_pre_norm=True)
        generator = torch.Generator().manual_seed(0)
        assert out[f"erank_backbone_{name}"] == pytest.approx(effective_rank(features.F, generator=generator),
                                                              rel=1e-4), name
        assert out[f"erank_z{name}"] == pytest.approx(effective_rank(pre.F, generator=generator), rel=1e-4)
        assert out[f"erank_backbone_{name}"] != pytest.approx(out[f"erank_z{name}"], rel=1e-3)
    static = model_for(small_config("pointcontrast"))(static_batch())
    assert static["erank_backbone_4d"] == static["erank_z4d"] == 0.0  # no second branch
    assert batch.object_3d.dtype == torch.bool and batch.object_3d.shape == (len(batch.coords_3d),)
    assert 0 < int(batch.object_3d.sum()) < len(batch.coords_3d)
    assert 0 < out["object_pairs_3d"] < out["pairs_3d"]
    assert 0 < out["object_pairs_4d"] < out["pairs_4d"]


def test_object_flags_follow_the_provenance():
    from batches import sequence_samples

    from fourdcontrast.records import SOURCE_OBJECT

    batch = sequence_batch()
    sample = sequence_samples()[0]
    corr = sample.correspondences
    frame0 = sample.sequence.frames[0]
    n0 = len(corr.coords_3d[0])
    expected = frame0.source[corr.voxel_point_3d[0]] == SOURCE_OBJECT
    assert torch.equal(batch.object_3d[:n0], torch.from_numpy(expected))
    # a 3D voxel and the 4D voxel it maps to agree on object-ness for almost every L3D4D pair
    a, w = batch.pairs_3d4d[:, 0], batch.pairs_3d4d[:, 1]
    assert float((batch.object_3d[a] == batch.object_4d[w]).double().mean()) > 0.95


@pytest.mark.parametrize("projector", ["1x1-bn", "1x1-bn-affine", "1x1", "simsiam-3layer"])
def test_projector_variants_train_one_step(projector):
    model = model_for(small_config(projector=projector, eq5_direction="simsiam"))
    batch = sequence_batch()
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert grads(model.projector_3d) and grads(model.encoder_3d) and grads(model.predictor_4d)
    has_norm = projector != "1x1"
    assert (model.projector_3d.norm is not None) == has_norm
    if projector == "1x1-bn-affine":
        assert model.projector_3d.norm.bn.weight is not None
    if projector == "simsiam-3layer":
        assert model.projector_3d.hidden is not None
    with pytest.raises(ValueError):
        small_config(projector="mlp9")


def test_projector_bn_false_still_means_a_plain_1x1():
    model = model_for(small_config(projector_bn=False))
    assert model.projector_3d.kind == "1x1" and model.projector_3d.norm is None


def test_motion_aware_sampling_keeps_object_pairs_and_caps_the_rest():
    batch = sequence_batch()
    full = model_for(small_config())(batch)
    cap = 5
    out = model_for(small_config(background_pairs_per_group=cap, static_4d_pairs_per_group=0))(batch)
    assert out["object_pairs_3d"] == full["object_pairs_3d"]  # every object pair kept
    assert out["object_pairs_4d"] == full["object_pairs_4d"]
    groups_3d = len(torch.unique(batch.pairs_3d_group))
    assert out["pairs_3d"] <= full["object_pairs_3d"] + cap * groups_3d
    assert out["pairs_3d"] < full["pairs_3d"]
    # L4D: static background pairs dropped, so only object pairs and moving background remain
    xyz = batch.coords_4d[:, 1:4]
    static = (xyz[batch.pairs_4d[:, 0]] == xyz[batch.pairs_4d[:, 1]]).all(dim=1)
    obj = batch.object_4d[batch.pairs_4d[:, 0]] | batch.object_4d[batch.pairs_4d[:, 1]]
    assert out["pairs_4d"] <= int((~static | obj).sum())


def _weighted_group_mean_by_hand(p, z, pairs, groups, is_object, weight):
    """½ D(p_a, z_b) + ½ D(p_b, z_a) per pair, the mean within each group weighted ``weight`` for pairs
    touching the object (1 otherwise), then the mean over the groups; float64 numpy."""
    import numpy as np

    p = p.detach().double().numpy()
    z = z.detach().double().numpy()
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    a, b = pairs[:, 0].numpy(), pairs[:, 1].numpy()
    values = -0.5 * (p[a] * z[b]).sum(1) - 0.5 * (p[b] * z[a]).sum(1)
    obj = (is_object[a] | is_object[b]).numpy()
    w = np.where(obj, weight, 1.0)
    g = groups.numpy()
    return float(np.mean([(w[g == k] * values[g == k]).sum() / w[g == k].sum() for k in np.unique(g)]))


def test_object_pair_weight_is_the_weighted_mean_within_groups():
    """L3D and L4D with ``object_pair_weight`` 8 equal the group means weighted by hand (pairs touching
    the moving object count 8 times), and weight 1 is the plain mean."""
    batch = sequence_batch()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    base = model_for(small_config())(batch, generator=gen(), return_features=True)
    same = model_for(small_config(object_pair_weight=1.0))(batch, generator=gen())
    heavy = model_for(small_config(object_pair_weight=8.0))(batch, generator=gen(), return_features=True)
    assert torch.isclose(base["loss"], same["loss"])
    assert model_for(small_config()).config.reduction == "mean"
    assert 0 < heavy["object_pairs_3d"] < heavy["pairs_3d"] == len(batch.pairs_3d)
    for key, p, z, pairs, groups, flags in (
            ("loss_3d", "p3d", "z3d", batch.pairs_3d, batch.pairs_3d_group, batch.object_3d),
            ("loss_4d", "p4d", "z4d", batch.pairs_4d, batch.pairs_4d_group, batch.object_4d)):
        for out, weight in ((heavy, 8.0), (base, 1.0)):
            expected = _weighted_group_mean_by_hand(out[p], out[z], pairs, groups, flags, weight)
            assert float(out[key].detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6), (key, weight)
        plain = _weighted_group_mean_by_hand(heavy[p], heavy[z], pairs, groups, flags, 1.0)
        assert abs(float(heavy[key].detach()) - plain) > 1e-4, key  # the weighting changes this batch's value
    with pytest.raises(ValueError):
        small_config(object_pair_weight=0.0)


def test_eq5_direction_switch_moves_the_l3d4d_gradient_into_the_predictors():
    batch = sequence_batch()
    for direction, predictor_gets_grad in (("paper", False), ("simsiam", True)):
        model = model_for(small_config(eq5_direction=direction, w3d=0.0, w4d=0.0))
        model(batch)["loss"].backward()
        assert grads(model.predictor_3d) == predictor_gets_grad, direction
        assert grads(model.encoder_3d)


@pytest.mark.parametrize("name", ["simclr", "simclr-infonce"])
def test_motion_aware_sampling_in_the_simclr_variant(name):
    batch = sequence_batch()
    full = model_for(small_config(name))(batch, generator=torch.Generator().manual_seed(0))
    model = model_for(small_config(name, background_pairs_per_group=4, static_4d_pairs_per_group=0))
    out = model(batch, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and grads(model.encoder_3d) and grads(model.encoder_4d)
    assert out["object_pairs_3d"] == full["object_pairs_3d"] > 0
    assert out["pairs_3d"] < full["pairs_3d"] and out["pairs_4d"] < full["pairs_4d"]
