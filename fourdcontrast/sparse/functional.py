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
faster for a whole MinkUNet34 on the development VM), the batched PyTorch path otherwise (CUDA, half
precision).

Inside ``torch.autocast`` the convolutions behave like PyTorch's dense ones (:func:`autocast_inputs`):
they compute in the autocast dtype whatever their input dtype, cast their kernels inside the autograd
graph (parameters keep float32 gradients), and sum the low-precision products in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence as SequenceABC

import torch

from fourdcontrast.sparse import native
from fourdcontrast.sparse.kernel_map import KernelMap, Workspace, as_tuple
from fourdcontrast.sparse.recompute import Recomputable
from fourdcontrast.sparse.tensor import SparseTensor

LOW_PRECISION = (torch.float16, torch.bfloat16)
"""Feature dtypes whose convolutions accumulate in float32 (one rounding per output, like a dense GEMM)."""


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype ``torch.autocast`` computes in on ``device``'s type, or None where autocast is off.

    Args:
        device: the device of the features (its type — ``cpu``, ``cuda``... — selects the autocast state).
    """
    kind = torch.device(device).type
    try:
        enabled = torch.is_autocast_enabled(kind)  # torch >= 2.4
    except TypeError:
        enabled = torch.is_autocast_cpu_enabled() if kind == "cpu" else torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (meta...)
        return None
    if not enabled:
        return None
    get = getattr(torch, "get_autocast_dtype", None)
    if get is not None:
        return get(kind)
    return torch.get_autocast_cpu_dtype() if kind == "cpu" else torch.get_autocast_gpu_dtype()


def autocast_inputs(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Features, kernel and bias in the dtype a convolution computes in, checked for device and dtype.

    Inside ``torch.autocast`` that is the autocast dtype, as for PyTorch's dense convolutions: float32
    (and low-precision) tensors are cast — inside the autograd graph, so the gradients of float32
    parameters arrive in float32 — float64 ones are left alone. Outside autocast the three must agree.

    Args:
        features: (N, C_in) input features.
        weight: the kernel, (K, C_in, C_out) or (C_in, C_out).
        bias: optional (1, C_out) or (C_out,) bias.

    Raises:
        ValueError: when the kernel or bias lives on another device than the features, or (outside
            autocast) has another dtype.
    """
    for name, t in (("kernel", weight), ("bias", bias)):
        if t is not None and t.device != features.device:
            raise ValueError(f"the {name} is on {t.device} but the features are on {features.device}; "
                             "move the module with .to(device)")
    dtype = autocast_dtype(features.device)
    if dtype is not None:
        def cast(t):
            eligible = t is not None and t.is_floating_point() and t.dtype != torch.float64
            return t.to(dtype) if eligible and t.dtype != dtype else t

        features, weight, bias = cast(features), cast(weight), cast(bias)
    for name, t in (("kernel", weight), ("bias", bias)):
        if t is not None and t.dtype != features.dtype:
            raise ValueError(
                f"the features are {features.dtype} but the {name} is {t.dtype}; convert the module with "
                ".to(dtype) or run it under torch.autocast")
    return features, weight, bias


def _autocast_off(device: torch.device):
    """A context that disables autocast on ``device``'s type where it is on (a no-op context otherwise)."""
    if autocast_dtype(device) is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, enabled=False)


class SparseConvolutionFunction(Recomputable):
    """``out[o] = Σ_k in[i] @ W[k]`` over the pairs ``(i, o)`` of a :class:`KernelMap`.

    Offsets with similar pair counts are batched (:meth:`KernelMap.groups`): per group one gather of the
    input rows, one ``bmm`` with the group's kernels and one ``index_add_`` into the output, padding rows
    going to dump rows past the real ones. Few large operations instead of three per offset keep the
    engine fast when the cores are shared (every operation is a parallel region that waits for its
    slowest thread). The gathered rows and products live in the ``workspace`` (reused buffers, see
    :class:`Workspace`).

    Features and weight must share a dtype (:func:`autocast_inputs` sees to it). In float16/bfloat16
    the products are computed in that dtype and summed into a float32 accumulator that is rounded once
    (as a dense GEMM does), and the gradients likewise. Autocast is off inside (the inputs already have
    the dtype to compute in, and ``out=`` products must not be re-cast).

    Under :func:`~fourdcontrast.sparse.recompute.recomputed_activations`, the outputs of *cheap*
    convolutions — maps with at most one pair per input or output row: the strided 2^D downsamplings and
    the transposed upsamplings — are recomputed in the backward from their saved input instead of being
    kept (their forward costs a fraction of a 3^D convolution's).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap,
                workspace: Workspace | None = None) -> torch.Tensor:
        ws = workspace if workspace is not None else Workspace()
        ctx.save_for_backward(features, weight)
        ctx.kmap = kmap
        ctx.workspace = ws
        ctx.recomputable = kmap.num_pairs <= max(kmap.n_in, kmap.n_out)
        out = _conv_forward(features, weight, kmap, ws)
        ctx.output_version = out._version
        return out

    @staticmethod
    def recompute(ctx) -> torch.Tensor:
        features, weight = ctx.saved_tensors
        return _conv_forward(features, weight, ctx.kmap, ctx.workspace)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        features, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        ws: Workspace = ctx.workspace
        need_f, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if native.usable(features):
            return (*_native_backward(grad_out, features, weight, kmap, ws, need_f, need_w), None, None)
        with _autocast_off(features.device):
            grad_f, grad_w = _torch_backward(grad_out.to(features.dtype), features, weight, kmap, ws,
                                             need_f, need_w)
        return grad_f, grad_w, None, None


def _conv_forward(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, ws: Workspace
                  ) -> torch.Tensor:
    if native.usable(features):
        return _native_forward(features, weight, kmap, ws)
    with _autocast_off(features.device):
        return _torch_forward(features, weight, kmap, ws)


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _torch_forward(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, ws: Workspace
                   ) -> torch.Tensor:
    """The forward by gathers, batched products and scatters (any device and floating dtype)."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    dtype, device = features.dtype, features.device
    acc = _accumulator(dtype)
    groups = kmap.groups()
    out = torch.empty((kmap.n_out + kmap.dump_rows, c_out), dtype=acc, device=device)
    if kmap.identity is not None:
        if acc == dtype:
            torch.mm(features, weight[kmap.identity], out=out[: kmap.n_out])
        else:
            out[: kmap.n_out] = torch.mm(features, weight[kmap.identity])
        out[kmap.n_out:].zero_()
    else:
        out.zero_()
    for group in groups:
        g = group.offsets.numel()
        x = ws.get("a", (g, group.size, c_in), dtype, device)
        torch.index_select(features, 0, _gather_index(group.in_pad, kmap.n_in), out=x.view(-1, c_in))
        y = ws.get("b", (g, group.size, c_out), dtype, device)
        torch.bmm(x, weight.index_select(0, group.offsets), out=y)
        out.index_add_(0, _scatter_index(group.out_pad), _in_dtype(ws, "b32", y.view(-1, c_out), acc))
    result = out[: kmap.n_out]
    return result if acc == dtype else result.to(dtype)


def _torch_backward(grad_out: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap,
                    ws: Workspace, need_f: bool, need_w: bool
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Input and weight gradients by gathers, batched products and scatters."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    dtype, device = grad_out.dtype, grad_out.device
    acc = _accumulator(dtype)
    groups = kmap.groups()
    dump = kmap.dump_rows
    grad_ext = ws.get("grad", (kmap.n_out + dump, c_out), dtype, device)
    grad_ext[: kmap.n_out] = grad_out
    grad_ext[kmap.n_out:].zero_()  # padding pairs gather zero gradients
    grad_f = grad_w = None
    if need_f:
        grad_f = torch.empty((kmap.n_in + dump, c_in), dtype=acc, device=device)
        if kmap.identity is not None:
            if acc == dtype:
                torch.mm(grad_out, weight[kmap.identity].t(), out=grad_f[: kmap.n_in])
            else:
                grad_f[: kmap.n_in] = torch.mm(grad_out, weight[kmap.identity].t())
            grad_f[kmap.n_in:].zero_()
        else:
            grad_f.zero_()
    if need_w:
        grad_w = torch.zeros(weight.shape, dtype=acc, device=device)
        if kmap.identity is not None:
            if acc == dtype:
                torch.mm(features.t(), grad_out, out=grad_w[kmap.identity])
            else:
                grad_w[kmap.identity] = torch.mm(features.t(), grad_out)
    for group in groups:
        g = group.offsets.numel()
        gy = ws.get("a", (g, group.size, c_out), dtype, device)
        torch.index_select(grad_ext, 0, group.out_pad, out=gy.view(-1, c_out))  # padding: zero rows
        w = weight.index_select(0, group.offsets)
        if need_f:
            gx = ws.get("b", (g, group.size, c_in), dtype, device)
            torch.bmm(gy, w.transpose(1, 2), out=gx)
            grad_f.index_add_(0, _scatter_index(group.in_pad), _in_dtype(ws, "b32", gx.view(-1, c_in), acc))
        if need_w:
            x = ws.get("c", (g, group.size, c_in), dtype, device)
            torch.index_select(features, 0, _gather_index(group.in_pad, kmap.n_in), out=x.view(-1, c_in))
            grad_w.index_add_(0, group.offsets, torch.bmm(x.transpose(1, 2), gy).to(acc))
    if need_f:
        grad_f = grad_f[: kmap.n_in].to(features.dtype)
    if need_w:
        grad_w = grad_w.to(weight.dtype)
    return grad_f, grad_w


def _in_dtype(ws: Workspace, slot: str, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``values`` converted to ``dtype`` in a workspace buffer (``values`` itself when it has that dtype)."""
    if values.dtype == dtype:
        return values
    return ws.get(slot, tuple(values.shape), dtype, values.device).copy_(values)


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
    scratch = ws.get("native", native.scratch_shape(c_in, c_out), features.dtype, features.device)
    chunk = native.chunk_rows(c_in, c_out)
    if kmap.mirrored:
        # offsets 0..h-1 as stored, then offsets K-1-k as the same pairs swapped
        h = kmap.volume // 2
        in_rows, out_rows = kmap.half_pairs()
        counts = kmap.counts[:h]
        native.load().conv_forward(features, weight[:h], in_rows, out_rows, counts, out, scratch, chunk)
        native.load().conv_forward(features, _mirror(weight, h), out_rows, in_rows, counts, out, scratch,
                                   chunk)
        return out
    in_rows, out_rows = kmap.flat_pairs()
    native.load().conv_forward(features, weight, in_rows, out_rows, kmap.counts, out, scratch, chunk)
    return out


def _mirror(weight: torch.Tensor, h: int) -> torch.Tensor:
    """(h, C_in, C_out) kernels of offsets K-1, K-2, ..., K-h (the mirrors of offsets 0..h-1)."""
    return weight[h + 1:].flip(0).contiguous()


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
    scratch = ws.get("native", native.scratch_shape(c_in, c_out), features.dtype, features.device)
    chunk = native.chunk_rows(c_in, c_out)
    if (need_f or need_w) and kmap.mirrored:
        h = kmap.volume // 2
        in_rows, out_rows = kmap.half_pairs()
        counts = kmap.counts[:h]
        first = torch.empty_like(weight[:h]) if need_w else None
        native.load().conv_backward(grad_out, features, weight[:h], in_rows, out_rows, counts, grad_f, first,
                                    scratch, chunk)
        second = torch.empty_like(weight[:h]) if need_w else None
        native.load().conv_backward(grad_out, features, _mirror(weight, h), out_rows, in_rows, counts, grad_f,
                                    second, scratch, chunk)
        if need_w:
            grad_w[:h] = first
            grad_w[h + 1:] = second.flip(0)
    elif need_f or need_w:
        in_rows, out_rows = kmap.flat_pairs()
        native.load().conv_backward(grad_out, features, weight, in_rows, out_rows, kmap.counts, grad_f,
                                    grad_w, scratch, chunk)
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
        The output :class:`SparseTensor` (M, C_out), sharing ``x``'s coordinate manager. Inside
        ``torch.autocast`` it is computed in (and has) the autocast dtype whatever the input dtype, as
        PyTorch's dense convolutions (see :func:`autocast_inputs`).
    """
    d = x.D
    ks, st = as_tuple(kernel_size, d, "kernel_size"), as_tuple(stride, d, "stride")
    dil = as_tuple(dilation, d, "dilation")
    features, weight, bias = autocast_inputs(x.features, weight, bias)
    manager = x.manager
    out_key = manager.downsample(x.coordinate_key, st)
    if weight.ndim == 2 and out_key == x.coordinate_key and all(k == 1 for k in ks):
        feats = torch.mm(features, weight)
    else:
        kmap = manager.kernel_map(x.coordinate_key, out_key, ks, dil, region)
        weight3 = weight if weight.ndim == 3 else weight.unsqueeze(0)
        if weight3.shape[0] != kmap.volume:
            raise ValueError(f"weight has {weight3.shape[0]} kernel offsets, the kernel has {kmap.volume}")
        feats = SparseConvolutionFunction.apply(features, weight3, kmap, manager.workspace)
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
        The upsampled :class:`SparseTensor` (in the autocast dtype inside ``torch.autocast``).
    """
    d = x.D
    ks, st = as_tuple(kernel_size, d, "kernel_size"), as_tuple(stride, d, "stride")
    dil = as_tuple(dilation, d, "dilation")
    features, weight, bias = autocast_inputs(x.features, weight, bias)
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
    feats = SparseConvolutionFunction.apply(features, weight, kmap, manager.workspace)
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
