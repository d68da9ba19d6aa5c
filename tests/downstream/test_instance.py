import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.downstream.config import FinetuneConfig
from fourdcontrast.downstream.instance import (
    InstanceNet,
    InstanceOutput,
    cluster_instances,
    evaluate_instances,
    ground_truth_instances,
    instance_loss,
    instance_targets,
    stuff_ids,
    thing_ids,
)
from fourdcontrast.records import Scene
from fourdcontrast.sparse.quantize import quantize
from fourdcontrast.sparse.tensor import sparse_collate

VOXEL = 0.1
NAMES = ("wall", "floor", "chair", "table")


def toy_scene(rng, name="toy") -> Scene:
    """A floor (class 1, instance 0) with four boxes: chairs (2) and tables (3), instances 1-4, 1 m apart."""
    g = np.stack(np.meshgrid(np.arange(0, 4, 0.05), np.arange(0, 4, 0.05)), -1).reshape(-1, 2)
    parts, labels, inst = [np.c_[g, np.zeros(len(g))]], [np.full(len(g), 1)], [np.zeros(len(g), int)]
    for i, (cx, cy, c) in enumerate([(0.8, 0.8, 2), (3.0, 0.9, 3), (0.9, 3.0, 3), (3.0, 3.0, 2)], start=1):
        p = rng.uniform([-0.3, -0.3, 0.05], [0.3, 0.3, 0.3 * c], (600, 3)) + [cx, cy, 0]
        parts.append(p)
        labels.append(np.full(600, c))
        inst.append(np.full(600, i))
    return Scene(np.concatenate(parts).astype(np.float32), labels=np.concatenate(labels),
                 instances=np.concatenate(inst), name=name, class_names=NAMES)


def test_class_split_names_wall_and_floor_stuff():
    assert stuff_ids(NAMES) == (0, 1)
    assert thing_ids(NAMES) == (2, 3)


def test_instance_targets_point_every_thing_voxel_to_its_instance_centre():
    # Two 2-voxel instances on a line and a stuff voxel; voxel 1 holds 2 points of instance 7, 1 of 8.
    centres = np.array([[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [0.25, 0.05, 0.05], [0.35, 0.05, 0.05],
                        [0.05, 0.55, 0.05]])
    inverse = np.array([0, 1, 1, 1, 2, 3, 4, 4])
    labels = np.array([2, 2, 2, 3, 3, 3, 1, -1])
    instances = np.array([7, 7, 7, 8, 8, 8, 0, 0])
    sem, off, vox_inst = instance_targets(centres, inverse, labels, instances, 4, stuff=(0, 1))
    np.testing.assert_array_equal(sem, [2, 2, 3, 3, 1])
    np.testing.assert_array_equal(vox_inst, [7, 7, 8, 8, -1])
    np.testing.assert_allclose(off[0], [0.05, 0, 0], atol=1e-6)   # centre of 7 = x 0.10
    np.testing.assert_allclose(off[1], [-0.05, 0, 0], atol=1e-6)
    np.testing.assert_allclose(off[2], [0.05, 0, 0], atol=1e-6)   # centre of 8 = x 0.30
    np.testing.assert_allclose(off[3], [-0.05, 0, 0], atol=1e-6)
    assert np.isnan(off[4]).all()                                 # floor: stuff, no offset


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_shifted_targets_collapse_each_instance_onto_one_point(seed):
    scene = toy_scene(np.random.default_rng(seed))
    q = quantize(scene.points, VOXEL)
    centres = (q.coordinates + 0.5) * VOXEL
    sem, off, vox_inst = instance_targets(centres, q.inverse, scene.labels, scene.instances, 4, (0, 1))
    shifted = centres + off
    for i in (1, 2, 3, 4):
        v = vox_inst == i
        assert v.sum() > 10
        np.testing.assert_allclose(shifted[v], np.broadcast_to(shifted[v][0], shifted[v].shape), atol=1e-5)
    assert np.isnan(off[vox_inst == -1]).all() and (sem[vox_inst == -1] == 1).all()


def test_cluster_instances_splits_by_distance_and_class_and_drops_stuff_and_specks():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0, 0], 0.01, (20, 3))
    b = rng.normal([1, 0, 0], 0.01, (30, 3))
    c = rng.normal([0, 0, 0], 0.01, (10, 3))    # same place as a, other class
    d = rng.normal([3, 0, 0], 0.01, (4, 3))     # a speck below min_voxels
    e = rng.normal([5, 0, 0], 0.01, (40, 3))    # stuff
    f = rng.normal([7, 0, 0], 0.01, (5, 3))     # exactly min_voxels: kept
    shifted = np.concatenate([a, b, c, d, e, f])
    sem = np.repeat([2, 2, 3, 2, 1, 3], [20, 30, 10, 4, 40, 5])
    probs = np.full((len(sem), 4), 0.1)
    probs[np.arange(len(sem)), sem] = 0.7
    probs[:20, 2] = 0.9
    clusters = cluster_instances(shifted, sem, probs, radius=0.1, min_voxels=5, stuff=(0, 1))
    got = sorted((c["class"], len(c["voxels"]), round(c["score"], 6)) for c in clusters)
    assert got == [(2, 20, 0.9), (2, 30, 0.7), (3, 5, 0.7), (3, 10, 0.7)]
    members = {len(c["voxels"]): set(c["voxels"].tolist()) for c in clusters}
    assert members[20] == set(range(20)) and members[30] == set(range(20, 50))


def test_instance_loss_is_zero_at_the_target_and_ignores_unlabelled_and_stuff():
    target_sem = torch.tensor([0, 1, -1, 1])
    target_off = torch.tensor([[np.nan] * 3, [0.1, 0.0, 0.0], [np.nan] * 3, [0.0, -0.2, 0.0]])
    logits = torch.tensor([[20.0, -20], [-20, 20], [5, -5], [-20, 20]])
    good = instance_loss(logits, torch.nan_to_num(target_off, 0.0), target_sem, target_off)
    assert good.semantic.item() < 1e-6 and good.offset.item() < 1e-6
    assert good.direction.item() == pytest.approx(-1.0)
    wrong_offset = torch.tensor([[9.0, 9, 9], [0.1, 0.1, 0.0], [9, 9, 9], [0.0, -0.2, 0.0]])
    bad = instance_loss(logits, wrong_offset, target_sem, target_off)
    assert bad.offset.item() == pytest.approx(0.05)        # |0.1| on voxel 1, mean over the 2 thing voxels
    assert bad.total.item() == pytest.approx(bad.semantic.item() + bad.offset.item() + bad.direction.item())
    flipped = instance_loss(logits[:, [1, 0]], torch.nan_to_num(target_off, 0.0), target_sem, target_off)
    assert flipped.semantic.item() > 10


def test_instance_net_outputs_logits_and_offsets_per_voxel():
    q = quantize(toy_scene(np.random.default_rng(0)).points, VOXEL)
    x = sparse_collate([q.coordinates], [np.ones((len(q.coordinates), 3), np.float32)])
    out = InstanceNet("MinkUNet14S", 3, 4, feature_dim=8)(x)
    assert out.semantic.shape == (len(q.coordinates), 4) and out.offsets.shape == (len(q.coordinates), 3)


class _Oracle(torch.nn.Module):
    """Returns given per-voxel logits and offsets whatever the input (voxels in quantize order)."""

    def __init__(self, logits, offsets):
        super().__init__()
        self.logits, self.offsets = logits, offsets

    def forward(self, x):
        return InstanceOutput(self.logits, self.offsets, self.logits)


def _oracle(scene, config, offset_noise=0.0, flip_class_of=None):
    q = quantize(scene.points, VOXEL)
    centres = (q.coordinates + 0.5) * VOXEL
    sem, off, vox_inst = instance_targets(centres, q.inverse, scene.labels, scene.instances, 4, (0, 1))
    if flip_class_of is not None:
        sem = np.where((vox_inst == flip_class_of) & (sem >= 2), 5 - sem, sem)  # chair <-> table
    scale = np.where(vox_inst == flip_class_of, 20.0, 10.0)  # the flipped instance scores highest
    logits = torch.nn.functional.one_hot(torch.as_tensor(sem), 4).float() * torch.as_tensor(scale)[:, None]
    off = np.nan_to_num(off) + offset_noise
    return _Oracle(logits, torch.as_tensor(off, dtype=torch.float32))


def test_evaluation_of_perfect_predictions_is_map_one_and_of_a_wrong_class_is_worked_by_hand():
    config = FinetuneConfig().replace(data={"voxel_size": VOXEL})
    scene = toy_scene(np.random.default_rng(1))
    gm, gc, ids = ground_truth_instances(scene, (0, 1))
    np.testing.assert_array_equal(ids, [1, 2, 3, 4])
    np.testing.assert_array_equal(gc, [2, 3, 3, 2])
    m = evaluate_instances(_oracle(scene, config), [scene], config, NAMES)
    assert (m.map50, m.map25, m.predictions, m.instances) == (1.0, 1.0, 4, 4)
    assert set(m.ap50) == {"chair", "table"}
    assert m.extra == {"cluster_boxes_map50": 1.0, "cluster_boxes_map25": 1.0}   # the baseline detector
    # Instance 1 (a chair) predicted as a table, with the highest score: chairs find 1 of 2 (AP 0.5);
    # tables rank the false positive first, then two right: precision 0, 1/2, 2/3 at recall 0, 1/2, 1,
    # made monotone 2/3 everywhere -> AP 2/3.
    m = evaluate_instances(_oracle(scene, config, flip_class_of=1), [scene], config, NAMES)
    assert m.ap50["chair"] == pytest.approx(0.5)
    assert m.ap50["table"] == pytest.approx(2 / 3)
    assert m.map50 == pytest.approx((0.5 + 2 / 3) / 2)
    assert m.extra["cluster_boxes_map50"] == pytest.approx((0.5 + 2 / 3) / 2)
    # Offsets all wrong by 0.5 m in x: the instances still cluster (shifted rigidly) -> masks still right.
    m = evaluate_instances(_oracle(scene, config, offset_noise=0.5), [scene], config, NAMES)
    assert m.map50 == 1.0


TINY = ("data: {rooms: {train: 1, test: 1}, cache_dir: '', voxel_size: 0.2, crop: 3.0}\n"
        "model: {backbone: MinkUNet14S, feature_dim: 8}\n"
        "optim: {steps: 2, bn_recalibration: 1}\nrun: {log_every: 1}\n")


def run_task_command(task, tmp_path, capsys):
    """``fourdcontrast finetune --task TASK`` on one tiny room: metrics, log, protections, --resume and a
    one-line error (shared by the detection test)."""
    import json

    from fourdcontrast.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    assert main(["finetune", "--task", task, "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["task"] == task and payload["config"]["model"]["task"] == task
    assert 0 <= payload["metrics"]["map50"] <= payload["metrics"]["map25"] <= 1
    assert (out / "log.csv").read_text().splitlines()[0].startswith("step,loss")
    assert "AP@0.5" in printed
    state = torch.load(out / "model.pt", weights_only=True)["model"]
    assert any(k.startswith("head.") for k in state) and any(k.startswith("net.") for k in state)
    # the folder now holds a run: refused without --resume / --overwrite, kept and shown with --resume
    assert main(["finetune", "--task", task, "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err
    assert main(["finetune", "--task", task, "--out", str(out), "--resume"]) == 0
    assert "map50" in capsys.readouterr().out
    # a missing initialisation: one line naming the field, nothing written
    bad = tmp_path / "bad"
    assert main(["finetune", "--task", task, "--config", str(cfg), "--out", str(bad),
                 "--set", f"model.init={tmp_path / 'none.pth'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.init" in err and "Traceback" not in err
    return payload


def test_finetune_command_trains_and_evaluates_instances(tmp_path, capsys):
    run_task_command("instance", tmp_path, capsys)


def two_rooms():
    """Training rooms 5 and 6 of the embedded split (a toilet and a cabinet; a toilet and an 'other'):
    small rooms, so that overfitting them takes minutes."""
    from fourdcontrast.downstream.data import LabelledDataset, embedded_rooms
    from fourdcontrast.sources.classes import CLASS_NAMES

    rooms = embedded_rooms("train", 7, cache_dir=None)
    return LabelledDataset([rooms[5], rooms[6]], CLASS_NAMES, "two-rooms")


def overfit_config(steps, lr, batch):
    """Whole rooms at 10 cm, no augmentation: what the heads can learn, not how well they generalise."""
    from fourdcontrast.downstream.config import load_finetune_config

    return load_finetune_config("cpu", [
        f"optim.steps={steps}", f"optim.lr={lr}", f"optim.batch_size={batch}", "optim.bn_recalibration=0",
        "data.crop=null", "augment.rotate_z=false", "augment.tilt_deg=0", "augment.scale=[1,1]",
        "augment.translation=0", "run.threads=1", "run.log_every=20"])


@pytest.mark.slow
def test_instance_heads_overfit_two_rooms():
    """The heads learn two rooms (issue 28: mAP@0.5 >= 0.9): 600 steps gave mAP@0.5 = mAP@0.25 = 1.0 (475 s on
    the 2-core Xeon under heavy load); 300 steps gave 1.0 / 0.667 (the 'other' piece half mislabelled)."""
    from fourdcontrast.downstream.instance import INSTANCE
    from fourdcontrast.downstream.training import finetune

    data = two_rooms()
    result = finetune(overfit_config(600, 0.2, 1), data, data, progress=False, task=INSTANCE)
    assert result.metrics.map50 >= 0.9, result.metrics.table()
    assert result.rows[-1]["loss"] < result.rows[0]["loss"]


@pytest.mark.parametrize("complete", [True, False])
def test_a_crops_offsets_point_at_the_whole_instances_centre_when_complete(complete):
    """No augmentation (the sample's frame is the scene's): with ``data.complete_instances`` every object
    voxel's offset target points at the mean voxel centre of its *whole* instance, as evaluation on whole
    rooms sees it; without, at the mean of its voxels inside the crop (off centre for a cut object)."""
    from fourdcontrast.downstream.instance import instance_training_sample, voxel_centre_means

    scene = toy_scene(np.random.default_rng(0))
    whole = voxel_centre_means(scene.points, scene.instances, VOXEL)
    config = FinetuneConfig().replace(
        data={"voxel_size": VOXEL, "crop": 1.2, "complete_instances": complete},
        augment={"rotate_z": False, "elastic": None, "tilt_deg": 0.0, "scale": [1.0, 1.0],
                 "translation": 0.0})
    off_centre = 0
    for seed in range(8):
        coords, _, (sem, off) = instance_training_sample(scene, config, 4, np.random.default_rng(seed))
        ok = ~np.isnan(off).any(1)
        if not ok.any():  # a crop of floor only
            continue
        target = (coords[ok] + 0.5) * VOXEL + off[ok]
        d = np.linalg.norm(target[:, None] - np.stack(list(whole.values()))[None], axis=2).min(1)
        if complete:
            assert d.max() < 1e-4
        off_centre += int((d > 0.05).any())
    assert (off_centre == 0) if complete else (off_centre > 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 6))
def test_voxel_centre_means_is_the_mean_of_the_voxels_holding_each_instances_points(seed, n_instances):
    """Against the plain definition, instance by instance (voxels shared by two instances count for both;
    points without an instance, -1, for none); a quantization passed in gives the same centres."""
    from fourdcontrast.downstream.instance import voxel_centre_means

    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (200, 3)).astype(np.float32)
    instances = rng.integers(-1, n_instances, 200) if n_instances else np.full(200, -1)
    q = quantize(points, 0.2)
    centres = (q.coordinates + 0.5) * 0.2
    expected = {int(i): centres[np.unique(q.inverse[instances == i])].astype(np.float64).mean(0)
                for i in np.unique(instances) if i >= 0}
    for got in (voxel_centre_means(points, instances, 0.2), voxel_centre_means(points, instances, 0.2, q)):
        assert got.keys() == expected.keys()
        for i, c in expected.items():
            np.testing.assert_allclose(got[i], c, rtol=0, atol=1e-12)
