"""Lenient loading of an exported backbone into a downstream network: tensors whose name and shape match
load, everything else is skipped and reported (e.g. the pre-training ``final`` layer, whose output width
is the contrastive feature dimension, not the number of classes)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["LoadReport", "load_lenient", "read_state_dict"]


@dataclass
class LoadReport:
    """What :func:`load_lenient` did.

    Attributes:
        loaded: names loaded from the checkpoint.
        shape_mismatch: ``name → (checkpoint shape, model shape)`` skipped because the shapes differ.
        missing: model tensors absent from the checkpoint (kept at their initialisation).
        unexpected: checkpoint tensors the model does not have (ignored).
    """

    loaded: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        """Every model tensor not loaded (shape mismatches and missing)."""
        return sorted(set(self.shape_mismatch) | set(self.missing))

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.shape_mismatch:
            parts.append("skipped (shape) " + ", ".join(
                f"{k} {tuple(a)}→{tuple(b)}" for k, (a, b) in sorted(self.shape_mismatch.items())))
        if self.missing:
            parts.append(f"missing {len(self.missing)}: " + ", ".join(self.missing[:8])
                         + (" …" if len(self.missing) > 8 else ""))
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)}: " + ", ".join(self.unexpected[:8])
                         + (" …" if len(self.unexpected) > 8 else ""))
        return "; ".join(parts)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict from an exported backbone (``export-backbone``) or a pre-training checkpoint
    (its ``encoder_3d``), loaded with ``weights_only=True``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        from fourdcontrast.train.pretrain import backbone_state_dict

        state = backbone_state_dict(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state


def load_lenient(model: nn.Module, state: dict[str, torch.Tensor] | str | os.PathLike,
                 prefix: str = "") -> LoadReport:
    """Copy the tensors of ``state`` whose names (after removing ``prefix``) and shapes match ``model``'s;
    report the rest. Returns the :class:`LoadReport` (also logged at INFO)."""
    if not isinstance(state, dict):
        state = read_state_dict(state)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = model.state_dict()
    report = LoadReport()
    accepted = {}
    for name, value in state.items():
        if name not in own:
            report.unexpected.append(name)
        elif tuple(value.shape) != tuple(own[name].shape):
            report.shape_mismatch[name] = (tuple(value.shape), tuple(own[name].shape))
        else:
            accepted[name] = value
            report.loaded.append(name)
    report.missing = [k for k in own if k not in state]
    model.load_state_dict(accepted, strict=False)
    logger.info("lenient load: %s", report.summary())
    return report
