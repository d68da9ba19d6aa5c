"""What a pre-training forward keeps alive for its backward, by U-Net stage and by kind.

:func:`saved_memory` runs the meta-architecture's forward under
:class:`torch.autograd.graph.saved_tensors_hooks` and accounts every tensor saved for the backward once (by
storage), attributed to

- the **stage** of the module that produced it (``3d.stem`` ... ``3d.dec4``, ``3d.heads``; the same for
  ``4d``; ``losses`` for rows gathered by the loss functions), and
- its **kind**: the producing operation, from its ``grad_fn`` (``conv`` outputs, ``bn`` outputs, ``relu``
  outputs, ``cat`` / ``add`` results, ``gather`` / ``normalize`` rows of the losses...),

plus, walking the autograd graph, the **kernel maps** the convolutions keep (pair lists, offset groups)
and the engine's **workspace** (the gathered-row buffers), attributed to the stage of the convolution that
built them. Parameters are not activations and are left out.

This accounts the saved tensors of the *unswitched* path. With
:class:`~fourdcontrast.models.resunet.MemoryOptions` switched on, the U-Nets install their own
saved-tensor hooks inside their forward (innermost hooks win), so their tensors are not seen here; the
switches' effect is measured as peak memory (``fourdcontrast.train.benchmark``).
"""

from __future__ import annotations

import re
import weakref
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

STAGES = {
    "conv0p1s1": "stem", "bn0": "stem",
    "conv1p1s2": "enc1", "bn1": "enc1", "block1": "enc1",
    "conv2p2s2": "enc2", "bn2": "enc2", "block2": "enc2",
    "conv3p4s2": "enc3", "bn3": "enc3", "block3": "enc3",
    "conv4p8s2": "enc4", "bn4": "enc4", "block4": "enc4",
    "convtr4p16s2": "dec1", "bntr4": "dec1", "block5": "dec1",
    "convtr5p8s2": "dec2", "bntr5": "dec2", "block6": "dec2",
    "convtr6p4s2": "dec3", "bntr6": "dec3", "block7": "dec3",
    "convtr7p2s2": "dec4", "bntr7": "dec4", "block8": "dec4", "final": "dec4",
}
"""U-Net stage of each top-level U-Net submodule (the stride of each stage: stem 1, enc1 2, enc2 4, enc3 8,
enc4 16, dec1 8, dec2 4, dec3 2, dec4 1)."""
BRANCHES = {"encoder_3d": "3d", "projector_3d": "3d", "predictor_3d": "3d",
            "encoder_4d": "4d", "projector_4d": "4d", "predictor_4d": "4d"}
KINDS = (
    ("SparseConvolution", "conv"), ("Addmm", "conv"), ("Mm", "conv"), ("BatchNorm", "bn"),
    ("Relu", "relu"), ("Threshold", "relu"), ("Cat", "cat"), ("Add", "add"), ("IndexSelect", "gather"),
    ("Index", "gather"), ("Gather", "gather"), ("Norm", "normalize"), ("Div", "normalize"),
)
"""(substring of the ``grad_fn`` class name, kind); the first match wins."""


def _kind(tensor: torch.Tensor) -> str:
    """The producing operation of a saved tensor, from its ``grad_fn``; tensors without one are ``index``
    (integer tensors: the pair rows of gathers) or ``no grad_fn`` (inputs, detached rows)."""
    fn = tensor.grad_fn
    if fn is None:
        return "index" if not tensor.is_floating_point() else "no grad_fn"
    name = type(fn).__name__
    for key, kind in KINDS:
        if key in name:
            return kind
    return re.sub(r"Backward\d*$", "", name).lower() or "other"


def _stage(path: str) -> str:
    """``encoder_3d.block3.0.conv1`` → ``3d.enc3``; projector/predictor → ``3d.heads``; ``""`` → losses."""
    parts = path.split(".")
    branch = BRANCHES.get(parts[0])
    if branch is None:
        return "losses"
    if parts[0].startswith(("projector", "predictor")):
        return f"{branch}.heads"
    return f"{branch}.{STAGES.get(parts[1], 'other') if len(parts) > 1 else 'other'}"


@dataclass
class MemoryBreakdown:
    """Bytes a forward keeps alive for its backward.

    Attributes:
        saved: bytes of saved activations by ``(stage, kind)`` (each storage counted once).
        kernel_maps: bytes of kernel maps (pair lists and offset groups) by stage.
        workspace: bytes of the convolutions' workspace buffers (gathered rows, per coordinate manager).
        counts: number of saved storages by ``(stage, kind)``.
    """

    saved: dict[tuple[str, str], int] = field(default_factory=dict)
    kernel_maps: dict[str, int] = field(default_factory=dict)
    workspace: int = 0
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.saved.values()) + sum(self.kernel_maps.values()) + self.workspace

    def by_stage(self) -> dict[str, int]:
        """Saved bytes plus kernel maps per stage."""
        out: dict[str, int] = defaultdict(int)
        for (stage, _), n in self.saved.items():
            out[stage] += n
        for stage, n in self.kernel_maps.items():
            out[stage] += n
        return dict(out)

    def by_kind(self) -> dict[str, int]:
        """Saved bytes per kind, plus ``kernel maps`` and ``workspace``."""
        out: dict[str, int] = defaultdict(int)
        for (_, kind), n in self.saved.items():
            out[kind] += n
        out["kernel maps"] = sum(self.kernel_maps.values())
        out["workspace"] = self.workspace
        return dict(out)

    def table(self, per: float = 1.0) -> str:
        """A markdown table (MiB, divided by ``per``, e.g. the batch size): stages × kinds."""
        kinds = sorted({k for _, k in self.saved}, key=lambda k: -self.by_kind()[k])
        stages = sorted(self.by_stage(), key=_stage_order)
        mib = 2**20 * per
        head = "| stage | " + " | ".join(kinds) + " | kernel maps | total |"
        lines = [head, "|" + "---|" * (len(kinds) + 3)]
        for s in stages:
            row = [self.saved.get((s, k), 0) / mib for k in kinds]
            maps = self.kernel_maps.get(s, 0) / mib
            lines.append(f"| {s} | " + " | ".join(f"{v:.0f}" if v else "" for v in row)
                         + f" | {maps:.0f} | {sum(row) + maps:.0f} |")
        col = [sum(self.saved.get((s, k), 0) for s in stages) / mib for k in kinds]
        maps = sum(self.kernel_maps.values()) / mib
        lines.append("| **all** | " + " | ".join(f"{v:.0f}" for v in col)
                     + f" | {maps:.0f} | {sum(col) + maps:.0f} |")
        lines.append(f"\nworkspace buffers (gathered rows): {self.workspace / mib:.1f} MiB")
        return "\n".join(lines)


def _stage_order(stage: str) -> tuple:
    order = ["stem", "enc1", "enc2", "enc3", "enc4", "dec1", "dec2", "dec3", "dec4", "heads", "other"]
    branch, _, name = stage.partition(".")
    return (branch == "losses", branch, order.index(name) if name in order else len(order))


def _kernel_map_bytes(kmap, seen: set[int]) -> int:
    """Bytes of a kernel map's index tensors not counted before (storages in ``seen``)."""
    tensors = [kmap.in_rows, kmap.out_rows]
    for group in kmap._groups or []:
        tensors += [group.in_pad, group.out_pad, group.offsets]
    total = 0
    for t in tensors:
        if t is None:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


def _graph_nodes(roots) -> list:
    """Every autograd node reachable from ``roots`` (grad_fns), each once."""
    stack, seen, out = [r for r in roots if r is not None], set(), []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return out


def saved_memory(model: nn.Module, batch, generator: torch.Generator | None = None
                 ) -> tuple[MemoryBreakdown, dict]:
    """Run ``model(batch)`` and account what its graph keeps for the backward (see the module docstring).

    Args:
        model: a :class:`~fourdcontrast.models.fourdcontrast.FourDContrast` (or any module whose forward
            takes ``batch`` and returns a dict with ``loss``).
        batch: the model's input.
        generator: passed to the forward.

    Returns:
        ``(breakdown, out)``: the :class:`MemoryBreakdown` and the forward's output (its ``loss`` still
        attached to the graph, so the caller may run the backward).
    """
    names = {m: n for n, m in model.named_modules()}
    stack: list[str] = []
    # storage -> (path of the module whose output it is, innermost first; weak reference to that output,
    # so that an address reused after a free is not attributed to the earlier producer)
    producer: dict[int, tuple[str, weakref.ref]] = {}
    map_stage: dict[int, str] = {}  # id(kernel map) -> stage of the convolution that built it
    managers: dict[int, object] = {}

    def pre(module, args):
        stack.append(names[module])

    def post(module, args, output):
        stack.pop()
        feats = getattr(output, "features", output)
        if isinstance(feats, torch.Tensor):
            ptr = feats.untyped_storage().data_ptr()
            entry = producer.get(ptr)
            if entry is None or entry[1]() is None:
                producer[ptr] = (names[module], weakref.ref(feats))
        manager = getattr(output, "manager", None)
        if manager is not None and hasattr(manager, "_maps"):
            managers[id(manager)] = manager
            for kmap in manager._maps.values():
                map_stage.setdefault(id(kmap), _stage(names[module]))

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, tuple[int, str, str]] = {}

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in saved:
            entry = producer.get(ptr)
            alive = entry is not None and entry[1]() is not None
            path = entry[0] if alive else (stack[-1] if stack else "")
            saved[ptr] = (t.untyped_storage().nbytes(), _stage(path), _kind(t))
        return t

    handles = []
    for m in model.modules():
        if m is not model:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(batch, generator=generator) if generator is not None else model(batch)
    finally:
        for h in handles:
            h.remove()
    result = MemoryBreakdown()
    for nbytes, stage, kind in saved.values():
        result.saved[(stage, kind)] = result.saved.get((stage, kind), 0) + nbytes
        result.counts[(stage, kind)] = result.counts.get((stage, kind), 0) + 1
    seen: set[int] = set()
    workspaces: dict[int, int] = {}
    for node in _graph_nodes([out["loss"].grad_fn]):
        kmap = getattr(node, "kmap", None)
        if kmap is not None:
            stage = map_stage.get(id(kmap))
            if stage is None and kmap._transposed is not None:
                stage = map_stage.get(id(kmap._transposed))
            stage = stage or "other"
            result.kernel_maps[stage] = result.kernel_maps.get(stage, 0) + _kernel_map_bytes(kmap, seen)
        ws = getattr(node, "workspace", None)
        if ws is not None:
            workspaces[id(ws)] = ws.nbytes
    result.workspace = sum(workspaces.values())
    return result, out


__all__ = ["MemoryBreakdown", "saved_memory"]
