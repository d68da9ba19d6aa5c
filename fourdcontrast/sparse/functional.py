"""Sparse operations with custom autograd: convolution, transposed convolution, pooling, concatenation.

The convolution is a custom :class:`torch.autograd.Function` that saves only its inputs (features,
weight) and the kernel map, never the gathered copies: per kernel offset ``k`` the forward computes
``out[o_k] += in[i_k] @ W[k]``; the backward ``grad_in[i_k] += grad[o_k] @ W[k]ᵀ`` and
``grad_W[k] = in[i_k]ᵀ @ grad[o_k]``, with offsets of similar pair counts batched into one ``bmm``. The
centre offset of a submanifold convolution maps every row on itself and is one dense ``mm``. Gathered
rows and products are written into the coordinate manager's reusable :class:`Workspace` buffers
(``benchmarks/sparse_engine_profile.md`` explains why). Code is device-agnostic (tensors follow their
inputs). On CPUs, float32/float64 convolutions run the compiled fused kernels of
:mod:`fourdcontrast.sparse.native` when they are built (same arithmetic, no large temporaries; ~2×
faster for a whole MinkUNet34 on the development VM), the batched PyTorch path otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC

import torch

from fourdcontrast.sparse import native
from fourdcontrast.sparse.kernel_map import KernelMap, Workspace, as_tuple
from fourdcontrast.sparse.tensor import SparseTensor


class SparseConvolutionFunction(torch.autograd.Function):
    """``out[o] = Σ_k in[i] @ W[k]`` over the pairs ``(i, o)`` of a :class:`KernelMap`.

    Offsets with similar pair counts are batched (:meth:`KernelMap.groups`): per group one gather of the
    input rows, one ``bmm`` with the group's kernels and one ``index_add_`` into the output, padding rows
    going to a dump row. Few large operations instead of three per offset keep the engine fast when the
    cores are shared (every operation is a parallel region that waits for its slowest thread). The
    gathered rows and products live in the ``workspace`` (reused buffers, see :class:`Workspace`).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap,
                workspace: Workspace | None = None) -> torch.Tensor:
        ws = workspace if workspace is not None else Workspace()
        ctx.save_for_backward(features, weight)
        ctx.kmap = kmap
        ctx.workspace = ws
        if native.usable(features):
            return _native_forward(features, weight, kmap, ws)
        c_in, c_out = weight.shape[1], weight.shape[2]
        out = features.new_empty((kmap.n_out + 1, c_out))
        if kmap.identity is not None:
            torch.mm(features, weight[kmap.identity], out=out[: kmap.n_out])
            out[kmap.n_out].zero_()
        else:
            out.zero_()
        dtype, device = features.dtype, features.device
        for group in kmap.groups():
            g = group.offsets.numel()
            x = ws.get("a", (g, group.size, c_in), dtype, device)
            torch.index_select(features, 0, _gather_index(group.in_pad, kmap.n_in), out=x.view(-1, c_in))
            y = ws.get("b", (g, group.size, c_out), dtype, device)
            torch.bmm(x, weight.index_select(0, group.offsets), out=y)
            out.index_add_(0, _scatter_index(group.out_pad), y.view(-1, c_out))
        return out[: kmap.n_out]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        features, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        ws: Workspace = ctx.workspace
        need_f, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if native.usable(features):
            return (*_native_backward(grad_out, features, weight, kmap, ws, need_f, need_w), None, None)
        c_in, c_out = weight.shape[1], weight.shape[2]
        dtype, device = grad_out.dtype, grad_out.device
        grad_ext = ws.get("grad", (kmap.n_out + 1, c_out), dtype, device)
        grad_ext[: kmap.n_out] = grad_out
        grad_ext[kmap.n_out].zero_()
        grad_f = grad_w = None
        if need_f:
            grad_f = features.new_empty((kmap.n_in + 1, c_in))
            if kmap.identity is not None:
                torch.mm(grad_out, weight[kmap.identity].t(), out=grad_f[: kmap.n_in])
                grad_f[kmap.n_in].zero_()
            else:
                grad_f.zero_()
        if need_w:
            grad_w = torch.zeros_like(weight)
            if kmap.identity is not None:
                torch.mm(features.t(), grad_out, out=grad_w[kmap.identity])
        for group in kmap.groups():
            g = group.offsets.numel()
            gy = ws.get("a", (g, group.size, c_out), dtype, device)
            torch.index_select(grad_ext, 0, group.out_pad, out=gy.view(-1, c_out))  # padding: zero rows
            w = weight.index_select(0, group.offsets)
            if need_f:
                gx = ws.get("b", (g, group.size, c_in), dtype, device)
                torch.bmm(gy, w.transpose(1, 2), out=gx)
                grad_f.index_add_(0, _scatter_index(group.in_pad), gx.view(-1, c_in))
            if need_w:
                x = ws.get("c", (g, group.size, c_in), dtype, device)
                torch.index_select(features, 0, _gather_index(group.in_pad, kmap.n_in), out=x.view(-1, c_in))
                grad_w.index_add_(0, group.offsets, torch.bmm(x.transpose(1, 2), gy))
        if need_f:
            grad_f = grad_f[: kmap.n_in]
        return grad_f, grad_w, None, None


def _native_forward(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, ws: Workspace
                    ) -> torch.Tensor:
    """The forward by the compiled fused kernels (:mod:`fourdcontrast.sparse.native`)."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    features, weight = features.detach().contiguous(), weight.detach().contiguous()
    out = features.new_empty((kmap.n_out, c_out))
    if kmap.identity is not None:
        torch.mm(features, weight[kmap.identity], out=out)
    else:
        out.zero_()
    in_rows, out_rows = kmap.flat_pairs()
    scratch = ws.get("native", native.scratch_shape(c_in, c_out), features.dtype, features.device)
    native.load().conv_forward(features, weight, in_rows, out_rows, kmap.counts, out, scratch,
                               native.chunk_rows(c_in, c_out))
    return out


def _native_backward(grad_out: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap,
                     ws: Workspace, need_f: bool, need_w: bool
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Input and weight gradients by the compiled fused kernels."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    grad_out, features = grad_out.detach().contiguous(), features.detach().contiguous()
    weight = weight.detach().contiguous()
    grad_f = grad_w = None
    if need_f:
        grad_f = features.new_empty((kmap.n_in, c_in))
        if kmap.identity is not None:
            torch.mm(grad_out, weight[kmap.identity].t(), out=grad_f)
        else:
            grad_f.zero_()
    if need_w:
        grad_w = torch.empty_like(weight)  # every offset is written: the kernel's, then the identity's
    if need_f or need_w:
        in_rows, out_rows = kmap.flat_pairs()
        scratch = ws.get("native", native.scratch_shape(c_in, c_out), features.dtype, features.device)
        native.load().conv_backward(grad_out, features, weight, in_rows, out_rows, kmap.counts, grad_f,
                                    grad_w, scratch, native.chunk_rows(c_in, c_out))
    if need_w and kmap.identity is not None:
        torch.mm(features.t(), grad_out, out=grad_w[kmap.identity])
    return grad_f, grad_w


def _gather_index(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Padded rows with the dump row ``n`` replaced by a valid row (for gathers from tensors of n rows)."""
    return rows.clamp(max=max(n - 1, 0))


def _scatter_index(rows: torch.Tensor) -> torch.Tensor:
    """Rows as int64: CPU ``index_add_`` takes a ~4× slower path with int32 indices (torch 2.13)."""
    return rows if rows.dtype == torch.int64 else rows.long()


def conv(
    x: SparseTensor,
    weight: torch.Tensor,
    kernel_size: int | SequenceABC[int] = 3,
    stride: int | SequenceABC[int] = 1,
    dilation: int | SequenceABC[int] = 1,
    region: str = "hypercube",
    bias: torch.Tensor | None = None,
) -> SparseTensor:
    """Sparse convolution (MinkowskiEngine semantics).

    Args:
        x: input with (N, C_in) features.
        weight: (K, C_in, C_out) kernel in MinkowskiEngine's offset order, or (C_in, C_out) for K = 1.
        kernel_size: size per axis in voxels of the input stride.
        stride: 1 keeps the coordinates (submanifold convolution); otherwise the output lives on
            ``floor(c / (ts·s)) · (ts·s)`` at tensor stride ``ts·s``.
        dilation: spacing of kernel taps in input-stride units.
        region: ``"hypercube"`` or ``"hypercross"`` (see :func:`kernel_offsets`).
        bias: optional (1, C_out) or (C_out,) bias.

    Returns:
        The output :class:`SparseTensor` (M, C_out), sharing ``x``'s coordinate manager.
    """
    d = x.D
    ks, st = as_tuple(kernel_size, d, "kernel_size"), as_tuple(stride, d, "stride")
    dil = as_tuple(dilation, d, "dilation")
    manager = x.manager
    out_key = manager.downsample(x.coordinate_key, st)
    if weight.ndim == 2 and out_key == x.coordinate_key and all(k == 1 for k in ks):
        feats = torch.mm(x.features, weight)
    else:
        kmap = manager.kernel_map(x.coordinate_key, out_key, ks, dil, region)
        weight3 = weight if weight.ndim == 3 else weight.unsqueeze(0)
        if weight3.shape[0] != kmap.volume:
            raise ValueError(f"weight has {weight3.shape[0]} kernel offsets, the kernel has {kmap.volume}")
        feats = SparseConvolutionFunction.apply(x.features, weight3, kmap, manager.workspace)
    if bias is not None:
        feats = feats + bias.reshape(1, -1)
    return SparseTensor(
        feats, manager.coordinates(out_key), manager.tensor_stride(out_key), manager, out_key
    )


def conv_transpose(
    x: SparseTensor,
    weight: torch.Tensor,
    kernel_size: int | SequenceABC[int] = 2,
    stride: int | SequenceABC[int] = 2,
    dilation: int | SequenceABC[int] = 1,
    region: str = "hypercube",
    bias: torch.Tensor | None = None,
    target: SparseTensor | None = None,
) -> SparseTensor:
    """Sparse transposed convolution back to finer coordinates that already exist in the manager.

    The output lives on the coordinates at tensor stride ``ts / stride`` from which ``x`` was
    downsampled (the encoder's coordinates: U-Net skips line up), or on ``target``'s coordinates. The map
    is the transpose of the strided convolution's map (same kernel, same offsets), reused from the cache.

    Args:
        x: input at tensor stride ``ts`` with (N, C_in) features.
        weight: (K, C_in, C_out) kernel.
        kernel_size, stride, dilation, region: as in :func:`conv` (of the matching downsampling).
        bias: optional (1, C_out) bias.
        target: optional tensor whose coordinates receive the output.

    Returns:
        The upsampled :class:`SparseTensor`.
    """
    d = x.D
    ks, st = as_tuple(kernel_size, d, "kernel_size"), as_tuple(stride, d, "stride")
    dil = as_tuple(dilation, d, "dilation")
    manager = x.manager
    if target is not None:
        if target.manager is not manager:
            raise ValueError("target must share the input's coordinate manager")
        fine_key = target.coordinate_key
    else:
        fine_key = _finer_key(x, st)
    kmap = manager.kernel_map(fine_key, x.coordinate_key, ks, dil, region).transposed()
    if weight.shape[0] != kmap.volume:
        raise ValueError(f"weight has {weight.shape[0]} kernel offsets, the kernel has {kmap.volume}")
    feats = SparseConvolutionFunction.apply(x.features, weight, kmap, manager.workspace)
    if bias is not None:
        feats = feats + bias.reshape(1, -1)
    return SparseTensor(
        feats, manager.coordinates(fine_key), manager.tensor_stride(fine_key), manager, fine_key
    )


def _finer_key(x: SparseTensor, stride: tuple[int, ...]) -> int:
    manager = x.manager
    want = []
    for t, s in zip(x.tensor_stride, stride, strict=True):
        if t % s:
            raise ValueError(f"cannot upsample tensor stride {x.tensor_stride} by {stride}")
        want.append(t // s)
    want = tuple(want)
    for (src, st), dst in manager._downsampled.items():
        if dst == x.coordinate_key and st == stride and manager.tensor_stride(src) == want:
            return src
    raise ValueError(
        f"no coordinates at tensor stride {want} were downsampled to this tensor; pass target= explicitly"
    )


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate features of tensors on the same coordinates (channel axis)."""
    if len(tensors) == 1 and isinstance(tensors[0], list | tuple):
        tensors = tuple(tensors[0])
    if not tensors:
        raise ValueError("cat needs at least one sparse tensor")
    for t in tensors[1:]:
        tensors[0]._check_same(t)
    return tensors[0].replace_features(torch.cat([t.features for t in tensors], dim=1))


def global_pool(x: SparseTensor, mode: str = "avg") -> SparseTensor:
    """Average (``"avg"``) or maximum (``"max"``) of the features per batch item.

    Returns:
        A (B, C) tensor on coordinates ``(b, 0, ..., 0)``; its manager is ``x``'s.
    """
    if mode not in ("avg", "max"):
        raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
    batch = x.coordinates[:, 0]
    n_batch = x.batch_size
    index = batch.unsqueeze(1).expand_as(x.features)
    init = x.features.new_zeros((n_batch, x.features.shape[1]))
    reduce = "mean" if mode == "avg" else "amax"
    feats = init.scatter_reduce(0, index, x.features, reduce=reduce, include_self=False)
    coords = torch.zeros((n_batch, 1 + x.D), dtype=torch.int64, device=x.device)
    coords[:, 0] = torch.arange(n_batch, device=x.device)
    return SparseTensor(feats, coords, x.tensor_stride, x.manager)
