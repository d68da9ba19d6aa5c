"""A tiny pre-training config: the real loop and data, small enough for a few seconds per run."""

TINY = {
    "method": "4dcontrast",
    "model": {"backbone_3d": "MinkUNet14A", "backbone_4d": "MinkUNet14A", "feature_dim": 16},
    "data": {"scenes": 1, "trajectories_per_scene": 8, "length": 3, "batch_size": 1, "voxel_size_3d": 0.15,
             "voxel_size_4d": 0.3, "workers": 0, "holdout_sequences": 1},
    "optim": {"lr": 0.05, "steps": 4},
    "run": {"log_every": 1, "checkpoint_every": 2, "recall_every": 2, "recall_samples": 200, "device": "cpu"},
}


def tiny_dict(**sections) -> dict:
    """TINY with ``section={field: value}`` overrides merged in."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for name, values in sections.items():
        if isinstance(values, dict):
            out[name] = {**out.get(name, {}), **values}
        else:
            out[name] = values
    return out
