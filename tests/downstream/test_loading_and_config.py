import numpy as np
import pytest
import torch

from fourdcontrast.downstream.config import load_finetune_config
from fourdcontrast.downstream.data import scannet20_labels, scannet_scenes
from fourdcontrast.downstream.loading import LoadError, load_guarded, load_lenient, read_state_dict
from fourdcontrast.downstream.segmentation import (
    augment_points,
    build_segmentation_model,
    probe_backbone,
    voxel_labels,
)
from fourdcontrast.models.resunet import build_backbone


def test_lenient_loading_skips_the_pretraining_head_and_reports_it(tmp_path):
    torch.manual_seed(0)
    pre = build_backbone("MinkUNet14A", 3, 32)  # an exported backbone: final has feature_dim outputs
    state = pre.state_dict()
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    seg = build_backbone("MinkUNet14A", 3, 12)
    before = seg.final.kernel.detach().clone()
    report = load_lenient(seg, path)
    assert set(report.shape_mismatch) == {"final.kernel", "final.bias"}
    assert report.unexpected == ["extra.weight"]
    assert report.missing == []
    assert set(report.skipped) == {"final.kernel", "final.bias"}
    assert len(report.loaded) == len(state) - 3
    torch.testing.assert_close(seg.state_dict()["conv0p1s1.kernel"], state["conv0p1s1.kernel"])
    torch.testing.assert_close(seg.final.kernel.detach(), before)  # the new head keeps its initialisation
    assert "final.kernel (96, 32)→(96, 12)" in report.summary()
    # a pre-training checkpoint's encoder_3d is found too
    torch.save({"model": {f"encoder_3d.{k}": v for k, v in pre.state_dict().items()}, "step": 1},
               tmp_path / "checkpoint.pt")
    assert set(read_state_dict(tmp_path / "checkpoint.pt")) == set(pre.state_dict())


def test_guarded_loading_allows_only_the_head(tmp_path):
    torch.manual_seed(0)
    state = build_backbone("MinkUNet14A", 3, 32).state_dict()
    seg = build_backbone("MinkUNet14A", 3, 12)
    report = load_guarded(seg, state)  # only final.kernel / final.bias differ: fine
    assert set(report.skipped) == {"final.kernel", "final.bias"} and len(report.loaded) == len(state) - 2
    torch.testing.assert_close(seg.state_dict()["conv0p1s1.kernel"], state["conv0p1s1.kernel"])

    fresh = build_backbone("MinkUNet14A", 3, 12)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    missing = {k: v for k, v in state.items() if k != "conv0p1s1.kernel"}
    with pytest.raises(LoadError, match=r"1 network tensor\(s\) not loaded: conv0p1s1.kernel"):
        load_guarded(fresh, missing, source="backbone.pth")
    extra = {**state, "block9.weight": torch.zeros(3)}
    with pytest.raises(LoadError, match="checkpoint tensor.*block9.weight"):
        load_guarded(fresh, extra)
    other = build_backbone("MinkUNet14S", 3, 32).state_dict()  # another architecture
    with pytest.raises(LoadError, match="does not fit"):
        load_guarded(fresh, other)
    for k, v in fresh.state_dict().items():  # a refused checkpoint leaves the network untouched
        torch.testing.assert_close(v, before[k])
    # the probe may skip nothing; the fine-tuning model only its head
    cfg = load_finetune_config("cpu", ["model.backbone=MinkUNet14A"])
    build_segmentation_model(cfg, 12, state)
    with pytest.raises(LoadError):
        build_segmentation_model(cfg, 12, missing)
    probe, report = probe_backbone(cfg.replace(model={"mode": "linear"}), state)
    assert report.skipped == [] and len(report.loaded) == len(state)
    no_head = {k: v for k, v in state.items() if k != "final.bias"}
    with pytest.raises(LoadError, match="every tensor must match"):
        probe_backbone(cfg.replace(model={"mode": "linear"}), no_head)


def test_shipped_configs_load_and_overrides_apply():
    paper = load_finetune_config("paper")
    o = paper.optim
    assert (o.lr, o.batch_size, o.steps, o.poly_power) == (0.8, 48, 10000, 0.9)
    assert (o.momentum, o.weight_decay) == (0.9, 1e-4)
    assert paper.model.backbone == "MinkUNet34" and paper.data.voxel_size == 0.02
    cpu = load_finetune_config("cpu", ["model.mode=linear", "data.limited_points=20"])
    assert cpu.model.mode == "linear" and cpu.data.limited_points == 20
    with pytest.raises(ValueError, match="unknown field"):
        load_finetune_config("cpu", ["optim.nope=1"])
    with pytest.raises(ValueError, match="model.mode"):
        load_finetune_config("cpu", ["model.mode=other"])


def test_voxel_labels_majority_and_ignore():
    inverse = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array([3, 3, 1, -1, -1, 2])
    np.testing.assert_array_equal(voxel_labels(inverse, labels, 3, 4), [3, -1, 2])


def test_augmentation_is_seeded_and_keeps_the_cloud_size():
    from fourdcontrast.downstream.config import AugmentConfig

    pts = np.random.default_rng(0).uniform(0, 3, (500, 3)).astype(np.float32)
    cfg = AugmentConfig()
    a = augment_points(pts, cfg, np.random.default_rng(1))
    b = augment_points(pts, cfg, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == pts.shape and not np.allclose(a, pts)
    assert abs(np.ptp(a[:, 2]) - np.ptp(pts[:, 2])) < 0.6  # tilt is small: z extent stays about the same


def test_scannet_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scannet_scenes(tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="no scans/ folder"):
        scannet_scenes(tmp_path, "train")
    (tmp_path / "scans").mkdir()
    with pytest.raises(FileNotFoundError, match="scannetv2_train.txt missing"):
        scannet_scenes(tmp_path, "train")
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\n")
    with pytest.raises(FileNotFoundError, match="scans/scene0000_00"):
        scannet_scenes(tmp_path, "train")


def test_scannet20_mapping():
    nyu = np.array([0, 1, 2, 13, 39, 40, 14])
    np.testing.assert_array_equal(scannet20_labels(nyu), [-1, 0, 1, -1, 19, -1, 12])
