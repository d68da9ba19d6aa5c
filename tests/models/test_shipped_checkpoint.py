"""The shipped pre-trained 3D backbone (fourdcontrast/assets/pretrained): it loads, is small, and its
features match correspondences better than a random network's on a fixed held-out batch."""

import json

import pytest
import torch

from fourdcontrast.demo import SHIPPED_BACKBONE, load_backbone
from fourdcontrast.metrics import batch_feature_match_recall
from fourdcontrast.sparse import SparseTensor
from fourdcontrast.train.config import load_config
from fourdcontrast.train.pretrain import holdout_batch

PROVENANCE = SHIPPED_BACKBONE.parent / "PROVENANCE.md"
RECALL_THRESHOLD = 0.20  # metres: two 10 cm voxels (the 5 cm figures are in PROVENANCE.md)


def test_shipped_backbone_is_small_half_precision_and_documented():
    assert SHIPPED_BACKBONE.stat().st_size < 10e6
    state = torch.load(SHIPPED_BACKBONE, weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    text = PROVENANCE.read_text()
    for needle in ("fourdcontrast pretrain --config cpu-small", "seed", "feature-match recall"):
        assert needle in text
    facts = json.loads(text.split("```json")[1].split("```")[0])
    assert facts["backbone"] == "MinkUNet14S" and facts["steps"] > 0


@pytest.mark.slow
def test_shipped_backbone_beats_a_random_network_on_held_out_sequences():
    config = load_config("cpu-small", ["data.holdout_sequences=4"])
    batch = holdout_batch(config)
    recalls = {}
    for name, path in (("random", None), ("shipped", SHIPPED_BACKBONE)):
        model = load_backbone(path, seed=1)
        with torch.no_grad():
            feats = model(SparseTensor(batch.feats_3d, batch.coords_3d.long())).F
        recalls[name] = batch_feature_match_recall(feats, batch, threshold=RECALL_THRESHOLD, num_samples=3000,
                                                   generator=torch.Generator().manual_seed(0))
    assert recalls["shipped"] > 1.5 * recalls["random"], recalls
