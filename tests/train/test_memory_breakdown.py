"""The saved-tensor accounting of a pre-training forward (what the activation-memory switches act on)."""

import torch
from tiny import TINY

from fourdcontrast.data.dataset import collate_sequences
from fourdcontrast.models.fourdcontrast import FourDContrast
from fourdcontrast.train.config import config_from_dict
from fourdcontrast.train.memory import MemoryBreakdown, _kind, _stage, saved_memory
from fourdcontrast.train.pretrain import ReplacingDataset, make_dataset


def tiny_batch_and_model():
    config = config_from_dict(TINY, "tiny")
    data = ReplacingDataset(make_dataset(config))
    batch = collate_sequences([data[0][0]])
    torch.manual_seed(0)
    return batch, FourDContrast(config.method_config())


def test_breakdown_attributes_saved_tensors_to_stages_and_kinds():
    batch, model = tiny_batch_and_model()
    breakdown, out = saved_memory(model, batch)
    stages = breakdown.by_stage()
    kinds = breakdown.by_kind()
    # every U-Net stage of both branches keeps something, as do the heads and the losses
    for branch in ("3d", "4d"):
        for stage in ("stem", "enc1", "enc4", "dec1", "dec4", "heads"):
            assert stages.get(f"{branch}.{stage}", 0) > 0, f"{branch}.{stage}"
    assert stages["losses"] > 0
    assert kinds["conv"] > 0 and kinds["relu"] > 0 and kinds["cat"] > 0 and kinds["kernel maps"] > 0
    # the full-resolution decoder stage holds more than the coarsest encoder stage
    assert stages["3d.dec4"] > stages["3d.enc4"]
    # the total is the sum of its parts
    assert breakdown.total == sum(breakdown.saved.values()) + sum(breakdown.kernel_maps.values()) + \
        breakdown.workspace
    out["loss"].backward()  # the graph is intact
    assert "| 3d.dec4 |" in breakdown.table() and "**all**" in breakdown.table()


def test_stage_and_kind_names():
    assert _stage("encoder_3d.block8.1.conv2") == "3d.dec4"
    assert _stage("encoder_4d.conv0p1s1") == "4d.stem"
    assert _stage("predictor_3d.conv1") == "3d.heads"
    assert _stage("") == "losses"
    x = torch.randn(4, 3, requires_grad=True)
    assert _kind(torch.relu(x)) == "relu" and _kind(torch.cat([x, x], 1)) == "cat"
    assert _kind(torch.arange(3)) == "index" and _kind(x.detach()) == "no grad_fn"


def test_breakdown_counts_a_known_graph_exactly():
    """One linear layer and a ReLU: the ReLU output (saved by ReLU) is counted once, the input once."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(8, 16)

        def forward(self, batch):
            return {"loss": torch.relu(self.linear(batch)).sum()}

    x = torch.randn(100, 8, requires_grad=True)
    breakdown, _ = saved_memory(Net(), x)
    assert isinstance(breakdown, MemoryBreakdown)
    # saved: x (input of addmm, 100x8 float32) and relu's output (100x16)
    assert sum(breakdown.saved.values()) == 100 * 8 * 4 + 100 * 16 * 4
