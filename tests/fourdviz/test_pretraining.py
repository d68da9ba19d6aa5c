"""Pre-training pictures: the meta-architecture diagram, the log curves, the live runner outside Jupyter."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("matplotlib")

from fourdviz import pretraining  # noqa: E402


def rows(n: int = 5, collapse: bool = False) -> list[dict]:
    out = [{"step": 0, "recall": 0.01}]
    for s in range(1, n + 1):
        out.append({"step": s, "loss": -0.1 * s, "loss_3d": -0.05 * s, "loss_3d4d": -0.03 * s,
                    "loss_4d": -0.02 * s, "std_z3d": 0.17 - (0.03 * s if collapse else 0),
                    "std_z4d": 0.17, "recall": 0.02 if s == n else None, "data_s": 0.5, "compute_s": 1.5})
    return out


def test_meta_architecture_with_and_without_a_model():
    from fourdcontrast.models.fourdcontrast import FourDContrast, method_config

    fig = pretraining.plot_meta_architecture()
    assert len(fig.axes) == 1
    model = FourDContrast(method_config(backbone_3d="MinkUNet14S", backbone_4d="MinkUNet14S", feature_dim=8))
    fig = pretraining.plot_meta_architecture(model)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "MinkUNet14S" in texts and "Eq. 9" in texts


def test_log_curves_of_one_and_of_several_runs():
    fig = pretraining.plot_pretrain_log(rows(), healthy_std=8 ** -0.5, total_steps=10, title="t")
    loss_ax, std_ax, rec_ax = fig.axes[:3]
    assert len(loss_ax.lines) == 4 and len(rec_ax.lines) == 1
    fig = pretraining.plot_pretrain_log({"with SG": rows(), "without SG": rows(collapse=True)})
    assert len(fig.axes[0].lines) == 8
    assert {"-", "--"} <= {line.get_linestyle() for line in fig.axes[0].lines}


def test_live_runner_outside_a_notebook_just_runs(tmp_path):
    assert pretraining.run_with_live_log(lambda: 42, tmp_path / "log.csv", lambda r: None) == 42
    assert pretraining.steps_per_second(rows()) == pytest.approx(0.5)
    assert math.isnan(pretraining.steps_per_second([]))


def test_log_curves_show_the_effective_rank_panel_with_the_collapse_line():
    import numpy as np

    with_rank = [{**r, "erank_backbone_3d": 6.0 - 0.1 * r["step"], "erank_z3d": 3.0,
                  "holdout_erank": 5.0 if r.get("recall") is not None else None} for r in rows()]
    fig = pretraining.plot_pretrain_log(with_rank, healthy_std=8 ** -0.5, feature_dim=8)
    assert len(fig.axes) == 4
    rank_ax = fig.axes[2]
    assert "effective rank" in rank_ax.get_title()
    ys = [line.get_ydata() for line in rank_ax.lines]
    assert any(np.allclose(y, 0.8) for y in ys)  # the collapse threshold 0.1 * d
    assert len(rank_ax.lines) == 4  # backbone, z, held-out, threshold
    assert len(pretraining.plot_pretrain_log(rows()).axes) == 3  # older logs: no rank panel
