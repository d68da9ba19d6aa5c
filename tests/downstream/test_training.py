"""The shared fine-tuning loop: the recipes (LP-FT, backbone learning-rate scale), batch-norm handling, the
ScanNet-sized split and its compact rooms.

Mutants tried (each turned a test here red): LP-FT fitting the head on a fresh random backbone instead
of the loaded one; LP-FT probing without re-estimating the batch-norm statistics first;
``optimizer_groups`` ignoring ``backbone_lr_scale``; ``set_train_mode`` ignoring ``bn_mode``;
``compact_scene`` keeping the last point of a cell instead of the first.
"""

import numpy as np
import pytest
import torch

from fourdcontrast.downstream.benchmark import random_backbone_state
from fourdcontrast.downstream.config import load_finetune_config
from fourdcontrast.downstream.data import compact_scene, embedded_rooms, load_dataset
from fourdcontrast.downstream.segmentation import SEGMENTATION, finetune, linear_probe
from fourdcontrast.downstream.splits import limited_scenes
from fourdcontrast.downstream.training import optimizer_groups
from fourdcontrast.records import Scene

BACKBONE = "MinkUNet14A"


@pytest.fixture(scope="module")
def one_room():
    return load_dataset("embedded", "train", rooms={"train": 1}, cache_dir=None)


@pytest.fixture(scope="module")
def pretrained_state():
    """A stand-in for an exported pre-trained backbone: every tensor, 32-d outputs."""
    return random_backbone_state(BACKBONE, 3, 32, seed=7)


def _config(*overrides):
    return load_finetune_config("cpu", [f"model.backbone={BACKBONE}", "data.limited_points=200",
                                        "optim.probe_steps=30", "optim.bn_recalibration=0", "run.threads=1",
                                        "optim.batch_size=1", "data.crop=2.0", *overrides])


def test_lp_ft_starts_fine_tuning_from_the_linear_probes_head(one_room, pretrained_state):
    cfg = _config("optim.recipe=lp-ft", "optim.steps=0")
    lpft = finetune(cfg, one_room, one_room, pretrained_state, progress=False)
    probe = linear_probe(cfg.replace(model={"mode": "linear"}), one_room, one_room, pretrained_state,
                         progress=False)
    # the head LP-FT starts from is the probe's, on the same (loaded) backbone: the same predictions
    for (name, a), (_, b) in zip(lpft.model.final.state_dict().items(), probe.head.state_dict().items(),
                                 strict=True):
        torch.testing.assert_close(a, b, msg=name)
    np.testing.assert_array_equal(lpft.metrics.confusion, probe.metrics.confusion)
    assert lpft.metrics.miou > 0


def test_lp_ft_probes_a_scratch_backbone_with_statistics_of_the_training_rooms(one_room):
    from fourdcontrast.downstream.segmentation import _training_sample, extract_features
    from fourdcontrast.downstream.training import forward

    state = random_backbone_state(BACKBONE, 3, 32, seed=3)  # running statistics still 0 / 1
    cfg = _config("optim.recipe=lp-ft", "optim.steps=0", "optim.bn_recalibration=2")
    net = finetune(cfg, one_room, one_room, state, progress=False).model.net
    means = [v for k, v in net.state_dict().items() if k.endswith("running_mean")]
    assert all(m.abs().sum() > 0 for m in means)
    # the features the probe read (eval mode) are on the scale fine-tuning starts from (train mode)
    f_eval = extract_features(net, one_room.scenes, cfg)[0][0]
    coords, feats, _ = _training_sample(one_room.scenes[0], cfg.replace(data={"crop": None}), 12,
                                        np.random.default_rng(0))
    net.train()
    with torch.no_grad():
        f_train = forward(net, [coords], [feats], "cpu").features
    ratio = (f_train.std(0).mean() / f_eval.std(0).mean()).item()
    assert 0.5 < ratio < 2.0


def test_lp_ft_fine_tunes_everything_after_the_probe(one_room, pretrained_state):
    cfg = _config("optim.recipe=lp-ft", "optim.steps=2", "optim.lr=0.05")
    result = finetune(cfg, one_room, one_room, pretrained_state, progress=False)
    net = result.model.net.state_dict()
    assert any(not torch.equal(net[k], pretrained_state[k]) for k in pretrained_state if k.endswith("kernel"))
    assert [r["stage"] for r in result.rows] == ["ft", "ft"]


def test_the_backbone_learning_rate_scale_reaches_the_optimizer_groups():
    from fourdcontrast.models.resunet import build_backbone

    net = build_backbone(BACKBONE, 3, 5)
    groups = optimizer_groups(net, ("final.",), lr=0.1, backbone_lr_scale=0.25)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 0.1 and by_name["backbone"]["lr"] == pytest.approx(0.025)
    head_ids = {id(p) for p in by_name["head"]["params"]}
    assert head_ids == {id(p) for n, p in net.named_parameters() if n.startswith("final.")}
    assert len(by_name["backbone"]["params"]) == len(list(net.parameters())) - len(head_ids)


@pytest.mark.parametrize("scale", [0.0, 1.0])
def test_a_zero_backbone_learning_rate_leaves_the_pretrained_weights_as_loaded(one_room, pretrained_state,
                                                                               scale):
    cfg = _config("optim.steps=2", "optim.lr=0.05", f"optim.backbone_lr_scale={scale}")
    model = finetune(cfg, one_room, one_room, pretrained_state, progress=False).model
    after = model.state_dict()
    weights = [k for k in pretrained_state if k.endswith(("kernel", "weight")) and not k.startswith("final.")]
    unchanged = [torch.equal(after[k], pretrained_state[k]) for k in weights]
    assert all(unchanged) if scale == 0.0 else not any(unchanged)
    assert not torch.equal(after["final.kernel"], model.final.kernel.detach() * 0)  # the head trains


@pytest.mark.parametrize("bn_mode", ["train", "frozen"])
def test_frozen_batch_norm_keeps_the_pretrained_running_statistics(one_room, pretrained_state, bn_mode):
    cfg = _config("optim.steps=2", f"optim.bn_mode={bn_mode}", "optim.bn_recalibration=2")
    after = finetune(cfg, one_room, one_room, pretrained_state, progress=False).model.state_dict()
    stats = [k for k in pretrained_state if k.endswith("running_mean")]
    kept = [torch.equal(after[k], pretrained_state[k]) for k in stats]
    assert stats and (all(kept) if bn_mode == "frozen" else not any(kept))


def test_the_segmentation_task_skips_a_batch_without_labels():
    out = torch.zeros(3, 4, requires_grad=True)
    assert SEGMENTATION.loss(out, [np.full(3, -1)], None) is None
    loss = SEGMENTATION.loss(out, [np.array([0, -1, 2])], None)
    assert loss.item() == pytest.approx(np.log(4))


def test_scannet_sized_split_levels_are_nested_with_scannets_counts():
    names = [f"train_room_1000_{i:04d}" for i in range(1200)]
    levels = {f: limited_scenes(names, f, seed=0) for f in (0.01, 0.05, 0.10, 0.20)}
    assert [len(v) for v in levels.values()] == [12, 60, 120, 240]  # ScanNet's 1 % is 12 scans
    subsets = [set(v) for v in levels.values()]
    assert all(a < b for a, b in zip(subsets, subsets[1:], strict=False))


def test_compact_scene_keeps_one_point_per_cell_with_the_first_points_labels(rng):
    pts = rng.uniform(0, 1, (2000, 3)).astype(np.float32)
    labels, instances = rng.integers(0, 5, 2000), rng.integers(0, 9, 2000)
    scene = Scene(pts, labels=labels, instances=instances, name="s")
    small = compact_scene(scene, 0.25)
    cells = np.floor(pts / 0.25).astype(int)
    assert len(small) == len(np.unique(cells, axis=0)) == 64
    np.testing.assert_allclose((small.points / 0.25) % 1, 0.5, atol=1e-5)  # cell centres
    for p, lab, ins in zip(small.points, small.labels, small.instances, strict=True):
        first = np.flatnonzero((cells == np.floor(p / 0.25).astype(int)).all(1))[0]
        assert (lab, ins) == (labels[first], instances[first])


def test_compact_rooms_are_cached_and_read_back_equal(tmp_path):
    made = embedded_rooms("val", 2, cache_dir=tmp_path, store_voxel=0.05)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["rooms_val_seed1000_n2_v50mm.npz"]
    again = embedded_rooms("val", 2, cache_dir=tmp_path, store_voxel=0.05)
    for a, b in zip(made, again, strict=True):
        np.testing.assert_allclose(a.points, b.points, atol=1e-6)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.instances, b.instances)
        assert a.name == b.name
    full = embedded_rooms("val", 2, cache_dir=None)
    assert all(len(c) < len(f) / 2 for c, f in zip(made, full, strict=True))


def test_the_optimizer_switch_builds_sgd_or_adamw():
    from fourdcontrast.downstream.training import make_optimizer
    from fourdcontrast.models.resunet import build_backbone

    net = build_backbone(BACKBONE, 3, 5)
    for name, kind in (("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)):
        optim = _config(f"optim.optimizer={name}", "optim.weight_decay=0.01").optim
        opt = make_optimizer(optimizer_groups(net, ("final.",), 0.1, 0.5), optim)
        assert type(opt) is kind
        assert [g["lr"] for g in opt.param_groups] == [0.1, 0.05]
        assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    with pytest.raises(ValueError, match="optim.optimizer must be one of sgd, adamw"):
        _config("optim.optimizer=adam")


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_the_first_steps_update(one_room, pretrained_state, clip):
    """One plain SGD step (no momentum history, no weight decay) moves the weights by lr × the gradient:
    with the global norm clipped to 1e-3 the whole update's norm is at most lr × 1e-3."""
    cfg = _config("optim.steps=1", "optim.lr=0.1", "optim.weight_decay=0", "optim.poly_power=0",
                  *([f"optim.grad_clip={clip}"] if clip else []))
    model = finetune(cfg, one_room, one_room, pretrained_state, progress=False).model
    after = dict(model.named_parameters())
    moved = torch.sqrt(sum(((after[k].detach() - pretrained_state[k]) ** 2).sum()
                           for k in pretrained_state if k in after and not k.startswith("final.")))
    assert (moved <= 0.1 * 1e-3 * 1.001) if clip else (moved > 0.1 * 1e-3 * 10)
