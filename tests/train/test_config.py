import pytest
import yaml
from tiny import TINY

from fourdcontrast.train.config import (
    CONFIG_DIR,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
)


def test_paper_config_holds_the_papers_numbers():
    c = load_config("paper")
    m = c.method_config()
    assert (m.backbone_3d, m.backbone_4d, m.framework) == ("MinkUNet34", "MinkUNet14", "simsiam")
    d = c.data
    assert (d.voxel_size_3d, d.voxel_size_4d, d.length, d.batch_size) == (0.02, 0.05, 4, 12)
    assert (c.optim.lr, c.optim.lr_decay, c.optim.lr_decay_every, c.optim.steps) == (0.25, 0.99, 1000, 50_000)


def test_paper_4d_2cm_is_the_paper_with_the_4d_unet_at_2cm_and_every_memory_switch():
    paper, full = load_config("paper").to_dict(), load_config("paper-4d-2cm").to_dict()
    switches = {"recompute_activations": True, "compact_maps": True, "checkpoint_3d": "all",
                "checkpoint_4d": "all", "fused_pair_losses": True}
    assert full["data"] == {**paper["data"], "voxel_size_4d": 0.02}
    assert full["model"] == {**paper["model"], **switches}
    assert all(full[k] == paper[k] for k in ("method", "optim", "run"))


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.method_config() is not None
    assert config_from_dict(config.to_dict()).to_dict() == config.to_dict()  # checkpoint round trip


def test_overrides_apply_to_any_field():
    c = load_config("cpu-small", ["optim.steps=7", "model.feature_dim=8", "method=pointcontrast",
                                  "data.voxel_size_3d=0.2"])
    assert c.optim.steps == 7 and c.data.voxel_size_3d == 0.2
    m = c.method_config()
    assert m.feature_dim == 8 and m.framework == "pointinfonce" and m.backbone_4d is None
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"optim": {"learning_rate": 0.1}}, r"unknown field\(s\) \['learning_rate'\] in section 'optim'"),
        ({"optimizer": {}}, r"unknown section"),
        ({"method": "moco"}, "unknown method"),
        ({"model": {"backbone_3d": "ResNet"}}, "backbone_3d"),
        ({"model": {"width": 3}}, "unknown model field"),
        ({"data": {"batch_size": 0}}, "data.batch_size must be >= 1"),
        ({"data": {"source": "shards"}}, "needs data.shards"),
        ({"data": {"crop_size": -1.0}}, "data.crop_size must be None or > 0"),
        ({"method": "pointcontrast", "data": {"crop_size": 3.0}}, "crops 4D sequences"),
    ],
)
def test_bad_configs_name_the_file_and_the_problem(tmp_path, raw, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, **raw}))
    with pytest.raises(ValueError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unreadable_configs(tmp_path):
    with pytest.raises(ValueError, match="no such config"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML") as info:
        load_config(broken)
    assert str(broken) in str(info.value)
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["optim.lr"])


def test_dump_is_the_resolved_config():
    text = dump_config(config_from_dict(TINY))
    data = yaml.safe_load(text)
    assert data["model"]["backbone_3d"] == "MinkUNet14A"
    assert data["model"]["w3d4d"] == 1.0  # resolved: every MethodConfig field is written out
