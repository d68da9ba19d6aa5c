"""Loading an exported backbone into a downstream network.

:func:`load_lenient` copies the tensors whose name and shape match and reports the rest (e.g. the
pre-training ``final`` layer, whose output width is the contrastive feature dimension, not the number of
classes). :func:`load_guarded` does the same and raises :class:`LoadError` when anything but the allowed
tensors (the classification head, :data:`HEAD_TENSORS`) was skipped in either direction, so that an
architecture mismatch can never give a half-random "pre-trained" network."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["HEAD_TENSORS", "LoadError", "LoadReport", "check_load", "load_guarded", "load_lenient",
           "read_state_dict"]

HEAD_TENSORS: tuple[str, ...] = ("final.kernel", "final.bias")
"""The U-Net's last 1×1 layer: the pre-training projection to the feature dimension, replaced by the
classification head when fine-tuning; the only tensors :func:`load_guarded` may skip by default."""


class LoadError(ValueError):
    """A checkpoint does not fit the network beyond the tensors allowed to differ."""


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


def _match(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """What would load (the report) and the tensors that would (name → tensor)."""
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
    return report, accepted


def load_lenient(model: nn.Module, state: dict[str, torch.Tensor] | str | os.PathLike,
                 prefix: str = "") -> LoadReport:
    """Copy the tensors of ``state`` whose names (after removing ``prefix``) and shapes match ``model``'s;
    report the rest. Returns the :class:`LoadReport` (also logged at INFO)."""
    if not isinstance(state, dict):
        state = read_state_dict(state)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    report, accepted = _match(model, state)
    model.load_state_dict(accepted, strict=False)
    logger.info("lenient load: %s", report.summary())
    return report


def check_load(report: LoadReport, allowed: tuple[str, ...] = HEAD_TENSORS,
               source: str = "checkpoint") -> None:
    """Raise :class:`LoadError` (naming ``source`` and the tensors) when ``report`` skipped a model tensor
    (missing or of another shape) or left a checkpoint tensor unused, other than those in ``allowed``."""
    bad_skipped = [k for k in report.skipped if k not in allowed]
    bad_unused = [k for k in report.unexpected if k not in allowed]
    if bad_skipped or bad_unused:
        parts = []
        if bad_skipped:
            parts.append(f"{len(bad_skipped)} network tensor(s) not loaded: " + ", ".join(bad_skipped[:8])
                         + (" …" if len(bad_skipped) > 8 else ""))
        if bad_unused:
            parts.append(f"{len(bad_unused)} checkpoint tensor(s) the network does not have: "
                         + ", ".join(bad_unused[:8]) + (" …" if len(bad_unused) > 8 else ""))
        rule = f"only {', '.join(allowed)} may differ" if allowed else "every tensor must match"
        raise LoadError(f"{source} does not fit the network ({rule}): " + "; ".join(parts)
                        + f" ({report.summary()})")


def load_guarded(model: nn.Module, state: dict[str, torch.Tensor] | str | os.PathLike,
                 allowed: tuple[str, ...] = HEAD_TENSORS, source: str | None = None) -> LoadReport:
    """Copy ``state`` into ``model`` like :func:`load_lenient`, after :func:`check_load` has confirmed that
    every tensor but ``allowed`` loads (in both directions). Returns the :class:`LoadReport`.

    Raises:
        LoadError: the checkpoint does not fit (the network is left untouched then).
    """
    if not isinstance(state, dict):
        source = source or str(state)
        state = read_state_dict(state)
    report, accepted = _match(model, state)
    check_load(report, allowed, source or "checkpoint")
    model.load_state_dict(accepted, strict=False)
    logger.info("guarded load: %s", report.summary())
    return report
