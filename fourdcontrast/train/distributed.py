"""Multi-process training under ``torchrun``: process group set-up and batch norm synchronised across
processes on any device.

``torch.nn.SyncBatchNorm`` refuses CPU tensors, so :class:`SyncBatchNorm1d` computes the batch statistics
itself: each process contributes its row count, feature sums and sums of squares through a
differentiable ``all_reduce``, so the forward and the backward equal batch norm over the concatenation
of every process's rows (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistributedContext:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA.

    Multi-node runs use torchrun's standard rendezvous, e.g. on each of 2 nodes::

        torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 \\
            -m fourdcontrast pretrain --config paper
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local)


def cleanup_distributed(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


class SyncBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` over (N, C) rows whose training statistics span every process of the group.

    Outside training, or without an initialised process group, it is plain ``BatchNorm1d``. Running
    statistics are updated like ``BatchNorm1d``'s (unbiased variance of the global batch).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in float32 at least
        stats = torch.cat([xf.sum(0), (xf * xf).sum(0), xf.new_tensor([float(len(xf))])])
        stats = all_reduce(stats)  # differentiable: gradients flow back to every process's rows
        c = x.shape[1]
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                n = float(self.num_batches_tracked)
                momentum = self.momentum if self.momentum is not None else 1.0 / n
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        y = (xf - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d`` inside ``module`` (our sparse ``BatchNorm`` wraps one as ``bn``) by
    a :class:`SyncBatchNorm1d` with the same parameters and buffers (in place; returns ``module``)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            sync = SyncBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats, device=child.running_mean.device
                                   if child.running_mean is not None else None)
            sync.load_state_dict(child.state_dict())
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child)
    return module


__all__ = ["DistributedContext", "SyncBatchNorm1d", "cleanup_distributed", "convert_sync_batchnorm",
           "setup_distributed"]
