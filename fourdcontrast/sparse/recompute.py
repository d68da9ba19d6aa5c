"""Activations that the backward recomputes instead of keeping.

In a residual U-Net every convolution output ``z`` goes through batch norm and ReLU,
``y = relu(bn(z) [+ r])``, and ``y`` is what the next convolution saves for its backward. PyTorch's
autograd keeps ``z`` (batch norm's input), ``y`` (ReLU's output, also the next convolution's input), the
residual sums and every channel concatenation of the decoder: about four (N, C) tensors per residual
block. Of these only ``z`` is needed to rebuild the others, at the cost of one elementwise pass each.

This module provides

- :class:`BatchNormActivation`: ``y = relu?(z · scale + shift [+ r])``, batch norm (batch statistics,
  running statistics updated exactly as ``nn.BatchNorm1d`` does), optional residual, optional ReLU, as
  one autograd function that keeps ``z``, the per-channel statistics and the residual, never ``y``;
  its backward recomputes the ReLU mask from them;
- :class:`Linear`: a 1×1 convolution (``features @ weight``) keeping its input, not its output (the
  residual blocks' projections); the strided and transposed sparse convolutions are recomputable too
  (:class:`~fourdcontrast.sparse.functional.SparseConvolutionFunction`);
- :class:`Concatenate`: ``torch.cat(features, dim=1)`` keeping its inputs (not the result) and returning
  contiguous gradient pieces (a view would pin the whole concatenated gradient until the skip
  connection's other gradient arrives);
- :func:`checkpoint`: activation checkpointing of a U-Net stage (forward without a graph, rerun in the
  backward) whose rerun may itself run under :func:`recomputed_activations`;
- :func:`recomputed_activations`: a context (``torch.autograd.graph.saved_tensors_hooks``) inside which
  any operation that saves the output of one of these functions for its backward — the next
  convolution saving its input, a concatenation saving its parts, a residual sum saving its residual —
  saves a :class:`Recipe` instead: a reference to the producing node, which rebuilds the tensor from the
  node's own saved tensors when the backward asks for it. Recipes chain (a block's output is rebuilt
  from its ``z`` and its residual, itself a recipe), so only convolution outputs stay in memory.

A recomputed tensor is bitwise equal to the forward's: the same elementwise operations run on the same
saved tensors (tested). Against ``nn.BatchNorm1d`` + ``ReLU`` the outputs and gradients differ only by
float rounding (the statistics are the same kernel's, the normalisation is written as one
multiply-add; float64 agrees to 1e-12).

Only the forward's memory changes: a backward pass allocates each recomputed tensor while the operation
that needs it runs and frees it afterwards.
"""

from __future__ import annotations

import contextlib

import torch


class Recomputable(torch.autograd.Function):
    """An autograd function whose output its backward node can rebuild (:meth:`recompute`).

    Its ``forward`` sets ``ctx.output_version`` to the output's version counter (an output modified in
    place since is kept, not recomputed) and may set ``ctx.recomputable = False`` (keep the output).
    """

    @staticmethod
    def recompute(ctx) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _normalize(z: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, residual: torch.Tensor | None,
               relu: bool) -> torch.Tensor:
    """``relu?(z · scale + shift [+ residual])``, a new tensor (the forward's and recompute's arithmetic)."""
    y = torch.addcmul(shift, z, scale)
    if residual is not None:
        y.add_(residual)
    if relu:
        y.relu_()
    return y


class BatchNormActivation(Recomputable):
    """Training-mode batch norm, then an optional residual and ReLU, keeping only its input.

    ``apply(z, weight, bias, residual, running_mean, running_var, momentum, eps, relu)``:

    Args:
        z: (N, C) features (N ≥ 2).
        weight, bias: (C,) affine parameters, or None (``affine=False``: 1 and 0).
        residual: (N, C) tensor added after the normalisation, or None.
        running_mean, running_var: (C,) buffers updated in place as ``nn.BatchNorm1d`` does (momentum
            average, unbiased variance), or None (``track_running_stats=False``).
        momentum: the running statistics' momentum (a float).
        eps: added to the variance.
        relu: apply ReLU last.

    Returns:
        (N, C) ``relu?(bn(z) [+ residual])``.
    """

    @staticmethod
    def forward(ctx, z, weight, bias, residual, running_mean, running_var, momentum, eps, relu):
        if z.shape[0] < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{tuple(z.shape)}")
        with torch.no_grad():
            if running_mean is not None:
                mean, var = torch.batch_norm_update_stats(z, running_mean, running_var, momentum)
            else:
                var, mean = torch.var_mean(z, dim=0, correction=0)
            invstd = torch.rsqrt(var + eps)
            scale = invstd if weight is None else weight * invstd
            shift = -mean * scale if bias is None else bias - mean * scale
            y = _normalize(z, scale, shift, residual, relu)
        ctx.save_for_backward(z, weight, residual, scale, shift, mean, invstd)
        ctx.relu, ctx.eps = relu, eps
        ctx.has_bias = bias is not None
        ctx.output_version = y._version
        return y

    @staticmethod
    def recompute(ctx) -> torch.Tensor:
        z, _, residual, scale, shift, _, _ = ctx.saved_tensors
        return _normalize(z, scale, shift, residual, ctx.relu)

    @staticmethod
    def backward(ctx, grad):
        need_z, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        z, weight, residual, scale, shift, mean, invstd = ctx.saved_tensors
        if ctx.relu:
            y = _normalize(z, scale, shift, residual, True)
            # the ReLU's gradient, written over the recomputed output (one (N, C) temporary fewer)
            grad = torch.ops.aten.threshold_backward.grad_input(grad, y, 0, grad_input=y)
        del residual  # (a recomputed residual: freed before batch norm's gradient is allocated)
        grad_z = grad_w = grad_b = None
        if need_z or need_w or need_b:
            grad_z, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
                grad, z, weight, None, None, mean, invstd, True, ctx.eps,
                [need_z, need_w and weight is not None, need_b and ctx.has_bias])
        grad_r = grad if need_r else None
        return grad_z, grad_w, grad_b, grad_r, None, None, None, None, None


class Linear(Recomputable):
    """``features @ weight`` (a 1×1 convolution) that keeps its input, not its result; ``apply(x, w)``."""

    @staticmethod
    def forward(ctx, features, weight):
        ctx.save_for_backward(features, weight)
        out = torch.mm(features, weight)
        ctx.output_version = out._version
        return out

    @staticmethod
    def recompute(ctx) -> torch.Tensor:
        features, weight = ctx.saved_tensors
        return torch.mm(features, weight)

    @staticmethod
    def backward(ctx, grad):
        features, weight = ctx.saved_tensors
        grad_f = grad.mm(weight.t()) if ctx.needs_input_grad[0] else None
        grad_w = features.t().mm(grad) if ctx.needs_input_grad[1] else None
        return grad_f, grad_w


class Concatenate(Recomputable):
    """``torch.cat(features, dim=1)`` that keeps its inputs, not its result; ``apply(*features)``."""

    @staticmethod
    def forward(ctx, *features):
        ctx.save_for_backward(*features)
        ctx.widths = [f.shape[1] for f in features]
        out = torch.cat(features, dim=1)
        ctx.output_version = out._version
        return out

    @staticmethod
    def recompute(ctx) -> torch.Tensor:
        return torch.cat(ctx.saved_tensors, dim=1)

    @staticmethod
    def backward(ctx, grad):
        pieces, start = [], 0
        for width, need in zip(ctx.widths, ctx.needs_input_grad, strict=True):
            pieces.append(grad[:, start: start + width].contiguous() if need else None)
            start += width
        return tuple(pieces)


class Recipe:
    """What a saved-tensor hook keeps instead of a recomputable tensor: its producing node."""

    __slots__ = ("node",)

    def __init__(self, node) -> None:
        self.node = node

    def unpack(self) -> torch.Tensor:
        return type(self.node)._forward_cls.recompute(self.node)


def _recipe_of(tensor: torch.Tensor) -> Recipe | None:
    """A :class:`Recipe` for ``tensor`` when it is the unmodified output of a :class:`Recomputable` (whose
    node does not set ``recomputable = False``)."""
    node = tensor.grad_fn
    cls = getattr(type(node), "_forward_cls", None) if node is not None else None
    if cls is None or not issubclass(cls, Recomputable) or not getattr(node, "recomputable", True):
        return None
    if tensor._base is not None or tensor._version != getattr(node, "output_version", -1):
        return None  # a view of the output, or modified in place since: keep the tensor itself
    return Recipe(node)


def _pack(tensor: torch.Tensor):
    recipe = _recipe_of(tensor)
    return tensor if recipe is None else recipe


def _unpack(saved):
    return saved.unpack() if isinstance(saved, Recipe) else saved


def recomputed_activations(enabled: bool = True):
    """Context in which saved outputs of :class:`Recomputable` functions are kept as :class:`Recipe`\\ s.

    Args:
        enabled: False returns a context that does nothing.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)


class _Checkpoint(torch.autograd.Function):
    """A stage run without a graph in the forward and run again, with one, in the backward.

    ``apply(run, templates, context, holder, parameters, *features)``: ``templates`` are
    ``(coordinates, tensor_stride, manager, coordinate_key)`` of the input sparse tensors (no features:
    the function keeps the features through ``save_for_backward``, where :func:`recomputed_activations`
    may turn them into recipes); ``parameters`` the stage's parameters, passed again at the end of the
    inputs so that the output requires a gradient whenever they do (even when the features do not: the
    stem's input) and their gradients flow through this node; ``context`` returns the context the
    backward's rerun runs in; the output sparse tensor is handed back through ``holder`` (a dict) and its
    features returned.
    """

    @staticmethod
    def forward(ctx, run, templates, context, holder, n_params, *tensors):
        from fourdcontrast.sparse.tensor import SparseTensor

        features = tensors[: len(tensors) - n_params]
        ctx.run, ctx.templates, ctx.context, ctx.params = run, templates, context, tensors[len(features):]
        ctx.save_for_backward(*features)
        out = run(*[SparseTensor(f, *t) for f, t in zip(features, templates, strict=True)])
        holder["output"] = out
        return out.features

    @staticmethod
    def backward(ctx, grad):
        from fourdcontrast.sparse.tensor import SparseTensor

        params = ctx.params
        needs = ctx.needs_input_grad[5:]
        feature_needs = needs[: len(needs) - len(params)]
        inputs = [f.detach().requires_grad_(need)
                  for f, need in zip(ctx.saved_tensors, feature_needs, strict=True)]
        wanted = [t for t, need in zip([*inputs, *params], needs, strict=True) if need]
        with torch.enable_grad(), ctx.context():
            out = ctx.run(*[SparseTensor(f, *t) for f, t in zip(inputs, ctx.templates, strict=True)])
            # inside the context: its exit may touch buffers the rerun's graph saved
            found = torch.autograd.grad(out.features, wanted, grad, allow_unused=True) if wanted else ()
        found = iter(found)
        grads = [next(found) if need else None for need in needs]
        return (None, None, None, None, None, *grads)


def checkpoint(run, *inputs, parameters=(), context=contextlib.nullcontext):
    """``run(*inputs)`` (sparse tensors in, a sparse tensor out) that keeps only its inputs for the
    backward and reruns ``run`` there, inside ``context()``.

    Unlike ``torch.utils.checkpoint``, the rerun builds an ordinary graph, so it can run under
    :func:`recomputed_activations` (pass it in ``context``): the stage's backward then holds only its
    convolution outputs, not all of its activations. ``run`` must be deterministic and must not depend on
    anything but its inputs and parameters (the rerun sees the same kernel maps through the inputs'
    coordinate manager); ``context`` is where a caller undoes side effects of the forward (batch-norm
    running statistics): it is entered before the rerun and left after the rerun's backward.

    Args:
        run: the stage: ``run(*sparse_tensors) -> SparseTensor``.
        inputs: the sparse tensors it takes.
        parameters: every parameter ``run`` uses (they get their gradients through this node; one left
            out would get none).
        context: a callable returning the context manager of the backward's rerun.

    Returns:
        ``run(*inputs)``, with a graph node that reruns it in the backward.
    """
    templates = tuple((x.coordinates, x.tensor_stride, x.manager, x.coordinate_key) for x in inputs)
    holder: dict = {}
    params = tuple(parameters)
    feats = _Checkpoint.apply(run, templates, context, holder, len(params), *[x.features for x in inputs],
                              *params)
    return holder.pop("output").replace_features(feats)


__all__ = ["BatchNormActivation", "Concatenate", "Linear", "Recipe", "Recomputable", "checkpoint",
           "recomputed_activations"]
