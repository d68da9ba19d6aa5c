"""Config values checked against their dataclass field's annotation (fourdcontrast.config_fields), and the
pre-training / fine-tuning configs that use it: types, lists, booleans, null, ranges, and which file or
--set item an error names."""

from dataclasses import dataclass, field

import pytest

from fourdcontrast.config_fields import check_range, check_section, describe_type
from fourdcontrast.downstream.config import load_finetune_config
from fourdcontrast.errors import ConfigError
from fourdcontrast.train.config import load_config


@dataclass
class Section:
    rate: float = 0.1
    count: int = 1
    flag: bool = False
    name: str = "a"
    path: str | None = None
    clip: float | None = None
    pair: tuple[float, float] = (0.9, 1.1)
    items: list | None = None
    table: dict = field(default_factory=dict)
    later: int = field(default=3, metadata={"range": ">= 2"})


def check(values, ranges=None, overridden=None):
    return check_section(Section, values, "s", "file.yaml", ranges, overridden)


def test_values_that_fit_are_converted_to_the_field_type():
    out = check({"rate": 1, "count": 5e4, "flag": True, "name": "x", "path": None, "clip": "1e-4",
                 "pair": [1, 2], "items": [[0.2, 0.4]], "table": {"train": 4}, "later": 2})
    assert out == {"rate": 1.0, "count": 50000, "flag": True, "name": "x", "path": None, "clip": 1e-4,
                   "pair": (1.0, 2.0), "items": [[0.2, 0.4]], "table": {"train": 4}, "later": 2}
    assert isinstance(out["rate"], float) and isinstance(out["count"], int) and isinstance(out["pair"], tuple)
    assert check({"count": "12"}) == {"count": 12}


@pytest.mark.parametrize("values,expected", [
    ({"rate": "abc"}, "s.rate must be a number, got 'abc'"),
    ({"rate": True}, "s.rate must be a number, got True"),
    ({"count": 2.5}, "s.count must be an integer, got 2.5"),
    ({"flag": 1}, "s.flag must be true or false, got 1"),
    ({"flag": "yes please"}, "s.flag must be true or false"),
    ({"name": 3}, "s.name must be a string, got 3"),
    ({"name": None}, "s.name must be a string, got None"),
    ({"path": 5}, "s.path must be a string or null, got 5"),
    ({"pair": [1]}, "s.pair must be a list of 2 values"),
    ({"pair": 1.0}, "s.pair must be a list of 2 values"),
    ({"items": "x"}, "s.items must be a list or null"),
    ({"table": [1]}, "s.table must be a mapping"),
    ({"later": 1}, "s.later must be >= 2, got 1"),
])
def test_values_that_do_not_fit_name_file_field_value_and_expectation(values, expected):
    with pytest.raises(ConfigError) as info:
        check(values)
    assert str(info.value).startswith("file.yaml: ") and expected in str(info.value)


def test_ranges_from_a_table_and_the_set_item_at_fault():
    ranges = {"s.rate": "(0, 1]", "s.count": ">= 1"}
    assert check({"rate": 1.0, "count": 1}, ranges) == {"rate": 1.0, "count": 1}
    with pytest.raises(ConfigError, match=r"file.yaml \(--set s.rate=0\): s.rate must be in \(0, 1\], got 0"):
        check({"rate": 0}, ranges, {"s.rate": "s.rate=0"})
    with pytest.raises(ConfigError, match=r"^file.yaml: s.count must be >= 1, got 0$"):
        check({"count": 0}, ranges, {"s.rate": "s.rate=0"})  # the file's value, not the --set item
    assert check({"clip": None}, {"s.clip": "> 0"}) == {"clip": None}  # null is never out of range


def test_unknown_fields_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['rat'\] in section 's'; its fields are "
                                          r"rate, count, flag"):
        check({"rat": 1})


def test_range_specs():
    assert check_range(0.5, "[0, 1)") and not check_range(1, "[0, 1)") and check_range(1, "(0, 1]")
    assert check_range(0, ">= 0") and not check_range(0, "> 0") and check_range(-1, "< 0")
    assert not check_range(float("nan"), "> 0")
    with pytest.raises(ValueError, match="range spec"):
        check_range(1, "positive")
    assert describe_type(float | None) == "a number or null"


@pytest.mark.parametrize("override,expected", [
    ("optim.lr=abc", "optim.lr must be a number, got 'abc'"),
    ("optim.lr=-0.1", "optim.lr must be > 0, got -0.1"),
    ("optim.steps=0", "optim.steps must be >= 1, got 0"),
    ("optim.momentum=1.5", "optim.momentum must be in [0, 1), got 1.5"),
    ("run.amp=1", "run.amp must be true or false, got 1"),
    ("data.shards=[1, 2]", "data.shards must be a string or null, got [1, 2]"),
    ("model.feature_dim=wide", "model.feature_dim must be an integer, got 'wide'"),
    ("optim.lrr=0.1", "unknown field(s) ['lrr'] in section 'optim'"),
])
def test_pretraining_set_values_are_checked_when_the_config_is_read(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config("cpu-small", [override])
    message = str(info.value)
    assert "cpu-small.yaml" in message and f"(--set {override})" in message and expected in message


def test_pretraining_set_values_of_every_kind_are_parsed():
    c = load_config("cpu-small", ["optim.grad_clip=null", "optim.grad_clip=2", "run.amp=true",
                                  "optim.lr=1e-3", "optim.steps=1e3", "data.shards=null"])
    assert c.optim.grad_clip == 2.0 and c.run.amp is True and c.optim.lr == 1e-3 and c.optim.steps == 1000
    assert load_config("cpu-small", ["optim.grad_clip=null"]).optim.grad_clip is None


def test_finetuning_set_values_are_checked_when_the_config_is_read():
    c = load_finetune_config("cpu", ["augment.scale=[0.8, 1.2]", "augment.elastic=null",
                                     "data.rooms={train: 2, test: 1}", "data.limited_points=null"])
    assert c.augment.scale == (0.8, 1.2) and c.augment.elastic is None
    assert c.data.rooms == {"train": 2, "test": 1}
    for override, expected in [("augment.scale=[1]", "augment.scale must be a list of 2 values"),
                               ("data.limited_scenes=2", "data.limited_scenes must be in (0, 1], got 2"),
                               ("augment.rotate_z=maybe", "augment.rotate_z must be true or false"),
                               ("model.mode=both", "model.mode must be one of finetune, linear, got 'both'")]:
        with pytest.raises(ConfigError) as info:
            load_finetune_config("cpu", [override])
        assert "cpu.yaml" in str(info.value) and expected in str(info.value)
