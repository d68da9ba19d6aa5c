"""Shape, dtype and sampling checks on torch tensors shared by :mod:`fourdcontrast.losses` and
:mod:`fourdcontrast.metrics`.

Each check raises ``ValueError`` naming the argument and what it got; none copies data to the host.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_float",
    "check_matrix",
    "check_pairs",
    "check_same_width",
    "is_integer",
    "random_subset",
]


def check_matrix(name: str, x: Tensor, cols: int | None = None) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or (cols is not None and x.shape[1] != cols):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        want = f"(N, {cols})" if cols is not None else "(N, C)"
        raise ValueError(f"{name} must be a {want} tensor, got {shape}")


def check_float(name: str, x: Tensor) -> None:
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def is_integer(x: Tensor) -> bool:
    return not x.dtype.is_floating_point and not x.dtype.is_complex and x.dtype != torch.bool


def check_pairs(pairs: Tensor) -> None:
    if not isinstance(pairs, Tensor) or pairs.dim() != 2 or pairs.shape[1] != 2 or not is_integer(pairs):
        shape = (tuple(pairs.shape), pairs.dtype) if isinstance(pairs, Tensor) else type(pairs).__name__
        raise ValueError(f"pairs must be a (K, 2) integer tensor, got {shape}")



def check_same_width(**tensors: Tensor) -> None:
    widths = {name: t.shape[1] for name, t in tensors.items()}
    if len(set(widths.values())) > 1:
        raise ValueError(f"feature widths differ: {widths}")


def random_subset(n: int, k: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """(min(n, k),) int64 indices: ``arange(n)`` when n <= k (nothing sampled), else k distinct indices
    drawn uniformly without replacement. The permutation is drawn on the generator's device and moved to
    ``device``, so a CPU generator also drives CUDA inputs."""
    if n <= k:
        return torch.arange(n, device=device)
    if generator is None:
        return torch.randperm(n, device=device)[:k]
    return torch.randperm(n, generator=generator, device=generator.device)[:k].to(device)
