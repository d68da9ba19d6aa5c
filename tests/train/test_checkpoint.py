import random

import numpy as np
import pytest
import torch

from fourdcontrast.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def payload(step=3):
    return {"step": step, "model": {"w": torch.arange(4.0)}, "config": {"method": "4dcontrast"},
            "rng": rng_state()}


def test_round_trip_restores_every_generator(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(payload(), path)
    expected = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    state = load_checkpoint(path)
    set_rng_state(state["rng"])
    again = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])
    assert state["step"] == 3 and torch.equal(state["model"]["w"], torch.arange(4.0))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(payload(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a readable checkpoint"):
        load_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a fourdcontrast pre-training checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="missing.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


class NotWeightsOnly:
    pass


def test_a_bad_write_never_replaces_the_good_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(payload(step=1), path)
    # an object that pickles but does not load with weights_only=True: the verification refuses it
    with pytest.raises(CheckpointError):
        save_checkpoint({**payload(step=2), "extra": NotWeightsOnly()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]
