"""Sparse residual U-Nets (MinkUNet14/18/34 and width variants), one family for 3D and 4D (Sec. 3.3.1).

The topology is MinkowskiEngine's ``examples/minkunet.py``: a 5^D stem at stride 1, four stride-2
downsamplings (kernel 2) each followed by residual blocks, four stride-2 transposed upsamplings (kernel 2)
each followed by concatenation with the encoder's tensor at that stride and residual blocks, and a 1×1
``final`` layer with bias. 4DContrast uses MinkUNet34 (its C widths) as the 3D backbone at 2 cm and
MinkUNet14 as the 4D backbone at 5 cm (supplement, Sec. B).

Parameter counts (``in_channels=3``, ``out_channels=20``, full hypercube kernels):

=================  ============  ============
model              3D            4D
=================  ============  ============
MinkUNet14         11.6 M        33.2 M
MinkUNet18         21.7 M        63.6 M
MinkUNet34         37.9 M        112.0 M
=================  ============  ============

MinkUNet34 equals MinkUNet34C (the PLANES the issue specifies). With ``kernel_shape="spatial"``
(``[3,3,3,1]`` blocks, ``[5,5,5,1]`` stem) MinkUNet14 4D has 12.7 M parameters, with ``"hypercross"`` 5.9 M
(measured by ``tests/models/test_resunet.py``).

Every model takes ``backend="torch"`` (our engine) or ``"minkowski"`` (MinkowskiEngine), builds the same
layers with the same parameter names, and so ``state_dict``s move between backends unchanged.

Activation memory (our engine): ``memory=MemoryOptions(...)`` trades recomputation for the memory a
forward keeps for its backward, without changing outputs or gradients (float rounding only; tested in
float64 to 1e-8) or parameters:

- ``recompute_activations``: every batch norm → (+ residual) → ReLU is one autograd function that keeps
  its input, never its output; the next convolution, the residual sums and the decoder's
  concatenations keep recipes that rebuild their inputs by one elementwise pass in the backward
  (:mod:`fourdcontrast.sparse.recompute`). About half a U-Net's activations, a few % of the time.
- ``compact_maps``: the kernel maps of the submanifold convolutions (every 3^D and the 5^D stem) store
  half their offsets — offset ``-k`` has offset ``k``'s pairs swapped (:attr:`KernelMap.mirrored
  <fourdcontrast.sparse.kernel_map.KernelMap>`): half the maps' memory, and half their build time.
- ``checkpoint``: the named stages (:data:`STAGES`) keep only their inputs and run their forward again
  in the backward (:func:`fourdcontrast.sparse.recompute.checkpoint`; the rerun keeps only convolution
  outputs when ``recompute_activations`` is on too; batch-norm running statistics are updated once).
  Their activations go, at the cost of one more forward of those stages.

``benchmarks/results/pretrain_step_paper_cpu.md`` has the measured memory and time of each.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from fourdcontrast.sparse import recompute
from fourdcontrast.sparse.backend import Backend, get_backend

# ME's BasicBlock batch-norm momentum.
BN_MOMENTUM = 0.1
# Kernel choices for the stem and block convolutions (the strided/transposed ones stay 2^D):
# "hypercube": full k^D (default, ME); "spatial": k^3 × 1 in time (4D only);
# "hypercross": centre plus axis-aligned arms.
KERNEL_SHAPES = ("hypercube", "spatial", "hypercross")
STEM_KERNEL = 5
BLOCK_KERNEL = 3
STAGES = ("stem", "enc1", "enc2", "enc3", "enc4", "dec1", "dec2", "dec3", "dec4")
"""The U-Net's stages (tensor stride 1, 2, 4, 8, 16, 8, 4, 2, 1): the stem (5^D convolution, BN, ReLU),
the four encoder stages (strided convolution, BN, ReLU, residual blocks) and the four decoder stages
(transposed convolution, BN, ReLU, concatenation with the skip, residual blocks; ``dec4`` ends with the
``final`` 1×1 layer)."""
CHECKPOINT_PRESETS = {
    "none": (),
    "encoder": ("stem", "enc1", "enc2", "enc3", "enc4"),
    "decoder": ("dec1", "dec2", "dec3", "dec4"),
    "full-resolution": ("stem", "dec4"),
    "all-but-dec4": STAGES[:-1],
    "all": STAGES,
}
"""Names for common sets of checkpointed stages (``MemoryOptions(checkpoint="decoder")``).
``"all-but-dec4"``: the backward starts with ``dec4`` (the full-resolution decoder stage, the largest), so
the peak falls during its backward, while every other stage's activations are still held; checkpointing
those and not ``dec4`` (whose rerun would fall at that same moment) gives most of ``"all"``'s saving at a
fraction of its time."""


@dataclass(frozen=True)
class MemoryOptions:
    """Switches that trade recomputation for the activation memory of a U-Net's forward+backward.

    Outputs, gradients and batch-norm running statistics equal those of the default path up to float
    rounding (float64: 1e-8, tested); only our engine (``backend="torch"``) supports them.

    Attributes:
        recompute_activations: batch norm, residual sums, ReLUs and concatenations keep only the
            convolution outputs they are computed from and are recomputed (elementwise) in the backward.
        compact_maps: submanifold convolutions' kernel maps keep half their offsets (mirrored maps).
        checkpoint: stages (of :data:`STAGES`) recomputed whole in the backward, or a key of
            :data:`CHECKPOINT_PRESETS` (``"decoder"``, ``"full-resolution"``, ``"all"``, ``"none"``); a
            comma-separated string of stage names also works (``"dec3,dec4"``).
    """

    recompute_activations: bool = False
    checkpoint: tuple[str, ...] | str = ()
    compact_maps: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", checkpoint_stages(self.checkpoint))

    @property
    def active(self) -> bool:
        return self.recompute_activations or bool(self.checkpoint) or self.compact_maps


def checkpoint_stages(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Stage names from a :data:`CHECKPOINT_PRESETS` key, a comma-separated string or a sequence.

    Raises:
        ValueError: for a name that is neither a preset nor a stage.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        if value in CHECKPOINT_PRESETS:
            return CHECKPOINT_PRESETS[value]
        value = [v.strip() for v in value.split(",") if v.strip()]
    stages = tuple(value)
    unknown = [v for v in stages if v not in STAGES]
    if unknown:
        raise ValueError(f"unknown checkpoint stage(s) {unknown}; choose from {STAGES} or one of "
                         f"{sorted(CHECKPOINT_PRESETS)}")
    return tuple(s for s in STAGES if s in stages)


def is_checkpoint_spec(value) -> bool:
    """Whether ``value`` is a valid ``checkpoint`` setting (see :func:`checkpoint_stages`)."""
    try:
        checkpoint_stages(value)
    except (ValueError, TypeError):
        return False
    return True


def memory_options(value: MemoryOptions | dict | None) -> MemoryOptions:
    """A :class:`MemoryOptions` from itself, a dict of its fields, or None (all switches off)."""
    if value is None:
        return MemoryOptions()
    if isinstance(value, MemoryOptions):
        return value
    if isinstance(value, dict):
        return MemoryOptions(**value)
    raise TypeError(f"memory must be MemoryOptions, a dict or None, got {type(value).__name__}")


def _fusable(bn: nn.Module, z: torch.Tensor) -> bool:
    """Whether :class:`~fourdcontrast.sparse.recompute.BatchNormActivation` may replace ``bn`` on ``z``: a
    plain ``nn.BatchNorm1d`` (not a synchronised one) in training mode with a momentum, float32/64 features
    outside autocast. Elsewhere (evaluation, SyncBN, autocast) the module runs as usual. (Under
    ``no_grad`` it fuses too, so that a checkpointed stage's graph-less forward and its rerun compute
    alike.)"""
    from fourdcontrast.sparse.functional import autocast_dtype

    return (type(bn) is nn.BatchNorm1d and bn.training and bn.momentum is not None
            and z.dtype in (torch.float32, torch.float64) and autocast_dtype(z.device) is None)


def bn_act(norm: nn.Module, x, residual=None, relu: bool = True):
    """``relu?(norm(x) [+ residual])`` on sparse tensors, by the recomputing function where it applies.

    Args:
        norm: a :class:`~fourdcontrast.sparse.nn.BatchNorm` (its ``bn`` submodule does the work).
        x: the sparse tensor to normalise.
        residual: a sparse tensor on the same coordinates, added after the normalisation, or None.
        relu: apply ReLU last.
    """
    bn, z = norm.bn, x.features
    if _fusable(bn, z):
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        y = recompute.BatchNormActivation.apply(
            z, bn.weight, bn.bias, None if residual is None else residual.features, bn.running_mean,
            bn.running_var, bn.momentum, bn.eps, relu)
        return x.replace_features(y)
    out = norm(x)
    if residual is not None:
        out = out + residual
    return out.replace_features(torch.relu(out.features)) if relu else out


def _projection(conv: nn.Module, x):
    """A 1×1 stride-1 convolution without bias (a residual projection) by the recomputable
    :class:`~fourdcontrast.sparse.recompute.Linear` (its output is rebuilt, not kept); ``conv(x)``
    otherwise (autocast, other layers)."""
    from fourdcontrast.sparse.functional import autocast_dtype

    kernel = getattr(conv, "kernel", None)
    if (kernel is None or kernel.ndim != 2 or conv.bias is not None or any(s != 1 for s in conv.stride)
            or autocast_dtype(x.device) is not None or kernel.dtype != x.features.dtype):
        return conv(x)
    return x.replace_features(recompute.Linear.apply(x.features, kernel))


def _cat(a, b):
    """Concatenation of two sparse tensors' channels that keeps its inputs, not its result."""
    a._check_same(b)
    return a.replace_features(recompute.Concatenate.apply(a.features, b.features))


class _FrozenBatchNormStatistics:
    """Context that restores the running statistics of ``module``'s batch norms on exit (the forward a
    checkpoint recomputes must not update them a second time)."""

    def __init__(self, module: nn.Module) -> None:
        self.bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.saved: list = []

    def __enter__(self):
        self.saved = [[b.clone() if b is not None else None
                       for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in self.bns]
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for m, values in zip(self.bns, self.saved, strict=True):
                for buffer, value in zip((m.running_mean, m.running_var, m.num_batches_tracked), values,
                                         strict=True):
                    if buffer is not None:
                        buffer.copy_(value)
        self.saved = []
        return False


def kernel_spec(size: int, dimension: int, kernel_shape: str) -> tuple[tuple[int, ...], str]:
    """Per-axis kernel size and region of a ``size`` kernel under ``kernel_shape``.

    Returns:
        ``(kernel_size, region)`` for :class:`~fourdcontrast.sparse.nn.Conv`.
    """
    if kernel_shape == "hypercube":
        return (size,) * dimension, "hypercube"
    if kernel_shape == "spatial":
        if dimension < 4:
            raise ValueError("kernel_shape='spatial' needs a time axis (dimension >= 4)")
        return (size,) * 3 + (1,) * (dimension - 3), "hypercube"
    if kernel_shape == "hypercross":
        return (size,) * dimension, "hypercross"
    raise ValueError(f"kernel_shape must be one of {KERNEL_SHAPES}, got {kernel_shape!r}")


def _fan(tensor: torch.Tensor, mode: str) -> int:
    # MinkowskiEngine's rule: (K, C_in, C_out) -> fan_in = C_in·K, fan_out = C_out·K;
    # a 2-D (C_in, C_out) kernel -> fan_in = size(1), fan_out = size(0).
    if tensor.ndim == 2:
        return tensor.shape[1] if mode == "fan_in" else tensor.shape[0]
    return tensor.shape[0] * (tensor.shape[1] if mode == "fan_in" else tensor.shape[2])


def kaiming_normal_(tensor: torch.Tensor, mode: str = "fan_out", nonlinearity: str = "relu") -> torch.Tensor:
    """Kaiming-normal initialisation of a sparse kernel with MinkowskiEngine's fan rule (in place)."""
    std = nn.init.calculate_gain(nonlinearity) / math.sqrt(_fan(tensor, mode))
    with torch.no_grad():
        return tensor.normal_(0.0, std)


def weight_initialization(model: nn.Module, backend: Backend) -> None:
    """ME's ``ResNetBase.weight_initialization``: kaiming-normal (fan_out, relu) for convolutions (not the
    transposed ones, which keep their uniform reset), BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, backend.conv_types) and not isinstance(m, backend.conv_transpose_types):
            kaiming_normal_(m.kernel, mode="fan_out", nonlinearity="relu")
        if isinstance(m, backend.batch_norm_types):
            nn.init.constant_(m.bn.weight, 1)
            nn.init.constant_(m.bn.bias, 0)


class BasicBlock(nn.Module):
    """Residual block: conv3 → BN → ReLU → conv3 → BN, plus the (optionally projected) input, → ReLU.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the first convolution.
        dilation: dilation of both convolutions.
        downsample: module applied to the input for the residual when shapes differ (or None).
        bn_momentum: batch-norm momentum (ME: 0.1).
        dimension: spatial dimension D.
        kernel_shape: one of :data:`KERNEL_SHAPES`.
        backend: ``"torch"`` or ``"minkowski"``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, bn_momentum: float = BN_MOMENTUM, dimension: int = 3,
                 kernel_shape: str = "hypercube", backend: str = "torch") -> None:
        super().__init__()
        ops = get_backend(backend)
        ks, region = kernel_spec(BLOCK_KERNEL, dimension, kernel_shape)
        self.conv1 = ops.Conv(inplanes, planes, kernel_size=ks, stride=stride, dilation=dilation,
                              dimension=dimension, region=region)
        self.norm1 = ops.BatchNorm(planes, momentum=bn_momentum)
        self.conv2 = ops.Conv(planes, planes, kernel_size=ks, stride=1, dilation=dilation,
                              dimension=dimension, region=region)
        self.norm2 = ops.BatchNorm(planes, momentum=bn_momentum)
        self.relu = ops.ReLU(inplace=True)  # as ME's examples: applied only to fresh tensors
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)

    def forward_recomputed(self, x):
        """:meth:`forward` through :func:`bn_act` (the ``recompute_activations`` switch)."""
        out = bn_act(self.norm1, self.conv1(x))
        out = self.conv2(out)
        if self.downsample is None:
            residual = x
        else:
            conv, norm = self.downsample
            residual = bn_act(norm, _projection(conv, x), relu=False)
        return bn_act(self.norm2, out, residual)


class MinkUNetBase(nn.Module):
    """The MinkUNet topology; subclasses set ``BLOCK``, ``LAYERS`` and ``PLANES``.

    Args:
        in_channels: input feature channels (4DContrast: 3, occupancy repeated).
        out_channels: channels of the ``final`` 1×1 layer (with bias).
        dimension: spatial dimension D (3 for scenes, 4 for sequences ``(x, y, z, t)``).
        kernel_shape: ``"hypercube"`` (default, full k^D kernels), ``"spatial"`` (k^3 × 1, 4D only) or
            ``"hypercross"``, for the stem and the block convolutions.
        backend: ``"torch"`` (our engine) or ``"minkowski"`` (MinkowskiEngine).
        memory: :class:`MemoryOptions` (or a dict of its fields; default: all switches off); our engine
            only. Settable later through the ``memory`` attribute.

    ``forward`` takes a sparse tensor of the chosen backend at tensor stride 1 and returns one with
    ``out_channels`` features on the same coordinates.
    """

    BLOCK: type[BasicBlock] = BasicBlock
    PLANES: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    DILATIONS: tuple[int, ...] = (1, 1, 1, 1, 1, 1, 1, 1)
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    INIT_DIM = 32

    def __init__(self, in_channels: int, out_channels: int, dimension: int = 3,
                 kernel_shape: str = "hypercube", backend: str = "torch",
                 memory: MemoryOptions | dict | None = None) -> None:
        super().__init__()
        if kernel_shape not in KERNEL_SHAPES:
            raise ValueError(f"kernel_shape must be one of {KERNEL_SHAPES}, got {kernel_shape!r}")
        self.dimension, self.kernel_shape, self.backend = dimension, kernel_shape, backend
        self.memory = memory_options(memory)
        ops = self._ops = get_backend(backend)
        D = dimension  # noqa: N806
        P, L = self.PLANES, self.LAYERS  # noqa: N806
        exp = self.BLOCK.expansion
        stem_ks, stem_region = kernel_spec(STEM_KERNEL, D, kernel_shape)

        def down(ch):
            return ops.Conv(ch, ch, kernel_size=2, stride=2, dimension=D)

        def up(c_in, c_out):
            return ops.ConvTranspose(c_in, c_out, kernel_size=2, stride=2, dimension=D)

        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = ops.Conv(in_channels, self.inplanes, kernel_size=stem_ks, dimension=D,
                                  region=stem_region)
        self.bn0 = ops.BatchNorm(self.inplanes)
        self.conv1p1s2 = down(self.inplanes)
        self.bn1 = ops.BatchNorm(self.inplanes)
        self.block1 = self._make_layer(P[0], L[0])
        self.conv2p2s2 = down(self.inplanes)
        self.bn2 = ops.BatchNorm(self.inplanes)
        self.block2 = self._make_layer(P[1], L[1])
        self.conv3p4s2 = down(self.inplanes)
        self.bn3 = ops.BatchNorm(self.inplanes)
        self.block3 = self._make_layer(P[2], L[2])
        self.conv4p8s2 = down(self.inplanes)
        self.bn4 = ops.BatchNorm(self.inplanes)
        self.block4 = self._make_layer(P[3], L[3])

        self.convtr4p16s2 = up(self.inplanes, P[4])
        self.bntr4 = ops.BatchNorm(P[4])
        self.inplanes = P[4] + P[2] * exp
        self.block5 = self._make_layer(P[4], L[4])
        self.convtr5p8s2 = up(self.inplanes, P[5])
        self.bntr5 = ops.BatchNorm(P[5])
        self.inplanes = P[5] + P[1] * exp
        self.block6 = self._make_layer(P[5], L[5])
        self.convtr6p4s2 = up(self.inplanes, P[6])
        self.bntr6 = ops.BatchNorm(P[6])
        self.inplanes = P[6] + P[0] * exp
        self.block7 = self._make_layer(P[6], L[6])
        self.convtr7p2s2 = up(self.inplanes, P[7])
        self.bntr7 = ops.BatchNorm(P[7])
        self.inplanes = P[7] + self.INIT_DIM
        self.block8 = self._make_layer(P[7], L[7])

        self.final = ops.Conv(P[7] * exp, out_channels, kernel_size=1, bias=True, dimension=D)
        self.relu = ops.ReLU(inplace=True)  # as ME's examples: applied only to fresh tensors
        weight_initialization(self, ops)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1,
                    bn_momentum: float = BN_MOMENTUM) -> nn.Sequential:
        ops, block = self._ops, self.BLOCK
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                ops.Conv(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                         dimension=self.dimension),
                ops.BatchNorm(planes * block.expansion),
            )
        common = dict(dimension=self.dimension, kernel_shape=self.kernel_shape, backend=self.backend)
        layers = [block(self.inplanes, planes, stride=stride, dilation=dilation, downsample=downsample,
                        bn_momentum=bn_momentum, **common)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, stride=1, dilation=dilation, bn_momentum=bn_momentum,
                                **common))
        return nn.Sequential(*layers)

    @property
    def memory(self) -> MemoryOptions:
        return self._memory

    @memory.setter
    def memory(self, value: MemoryOptions | dict | None) -> None:
        options = memory_options(value)
        if options.active and self.backend != "torch":
            raise ValueError(f"memory switches ({options}) need our engine (backend='torch'), "
                             f"not backend={self.backend!r}")
        self._memory = options

    def forward(self, x):
        if self._memory.active:
            return self._forward_switched(x)
        cat = self._ops.cat
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        out = self.relu(self.bn1(self.conv1p1s2(out_p1)))
        out_b1p2 = self.block1(out)
        out = self.relu(self.bn2(self.conv2p2s2(out_b1p2)))
        out_b2p4 = self.block2(out)
        out = self.relu(self.bn3(self.conv3p4s2(out_b2p4)))
        out_b3p8 = self.block3(out)
        out = self.relu(self.bn4(self.conv4p8s2(out_b3p8)))
        out = self.block4(out)

        out = self.relu(self.bntr4(self.convtr4p16s2(out)))
        out = self.block5(cat(out, out_b3p8))
        out = self.relu(self.bntr5(self.convtr5p8s2(out)))
        out = self.block6(cat(out, out_b2p4))
        out = self.relu(self.bntr6(self.convtr6p4s2(out)))
        out = self.block7(cat(out, out_b1p2))
        out = self.relu(self.bntr7(self.convtr7p2s2(out)))
        out = self.block8(cat(out, out_p1))
        return self.final(out)

    # --- the memory switches ------------------------------------------------------------------------------
    def _layer(self, layer: nn.Sequential, x):
        if not self._memory.recompute_activations:
            return layer(x)
        for block in layer:
            x = block.forward_recomputed(x)
        return x

    def _transition(self, conv: nn.Module, norm: nn.Module, x):
        """``relu(norm(conv(x)))``: the strided/transposed convolution that opens a stage, and the stem."""
        if self._memory.recompute_activations:
            return bn_act(norm, conv(x))
        return self.relu(norm(conv(x)))

    def _cat(self, a, b):
        return _cat(a, b) if self._memory.recompute_activations else self._ops.cat(a, b)

    def _encoder_stage(self, conv, norm, layer) -> Callable:
        return lambda x: self._layer(layer, self._transition(conv, norm, x))

    def _decoder_stage(self, conv, norm, layer, final: nn.Module | None = None) -> Callable:
        def stage(x, skip):
            out = self._layer(layer, self._cat(self._transition(conv, norm, x), skip))
            return final(out) if final is not None else out

        return stage

    def _run(self, name: str, fn: Callable, *args):
        """``fn(*args)``, recomputed in the backward when stage ``name`` is checkpointed."""
        if name not in self._memory.checkpoint or not torch.is_grad_enabled():
            return fn(*args)
        modules = nn.ModuleList(self._stage_modules(name))
        recompute_activations = self._memory.recompute_activations

        @contextlib.contextmanager
        def rerun():
            with _FrozenBatchNormStatistics(modules), recompute.recomputed_activations(recompute_activations):
                yield

        manager = args[0].manager
        before = set(manager.map_keys())
        out = recompute.checkpoint(fn, *args, parameters=list(modules.parameters()), context=rerun)
        if name == "stem":
            # the stem's 5^D map serves the stem alone: drop it until the stem's backward rebuilds it
            manager.forget_maps(set(manager.map_keys()) - before)
        return out

    def _stage_modules(self, name: str) -> list[nn.Module]:
        index = STAGES.index(name)
        if name == "stem":
            return [self.conv0p1s1, self.bn0]
        if name.startswith("enc"):
            k = index
            return [getattr(self, f"conv{k}p{2 ** (k - 1)}s2"), getattr(self, f"bn{k}"),
                    getattr(self, f"block{k}")]
        k = index - 1  # dec1 -> convtr4p16s2, bntr4, block5
        convs = {4: "convtr4p16s2", 5: "convtr5p8s2", 6: "convtr6p4s2", 7: "convtr7p2s2"}
        mods = [getattr(self, convs[k]), getattr(self, f"bntr{k}"), getattr(self, f"block{k + 1}")]
        return mods + ([self.final] if name == "dec4" else [])

    def _forward_switched(self, x):
        """:meth:`forward` with the :class:`MemoryOptions` switches (same arithmetic, less memory)."""
        if self._memory.compact_maps:
            x.manager.mirrored_maps = True  # the maps this forward builds (the manager is per forward)
        with recompute.recomputed_activations(self._memory.recompute_activations):
            out_p1 = self._run("stem", lambda t: self._transition(self.conv0p1s1, self.bn0, t), x)
            out_b1p2 = self._run("enc1", self._encoder_stage(self.conv1p1s2, self.bn1, self.block1), out_p1)
            out_b2p4 = self._run("enc2", self._encoder_stage(self.conv2p2s2, self.bn2, self.block2), out_b1p2)
            out_b3p8 = self._run("enc3", self._encoder_stage(self.conv3p4s2, self.bn3, self.block3), out_b2p4)
            out = self._run("enc4", self._encoder_stage(self.conv4p8s2, self.bn4, self.block4), out_b3p8)
            out = self._run("dec1", self._decoder_stage(self.convtr4p16s2, self.bntr4, self.block5), out,
                            out_b3p8)
            out = self._run("dec2", self._decoder_stage(self.convtr5p8s2, self.bntr5, self.block6), out,
                            out_b2p4)
            out = self._run("dec3", self._decoder_stage(self.convtr6p4s2, self.bntr6, self.block7), out,
                            out_b1p2)
            out = self._run("dec4", self._decoder_stage(self.convtr7p2s2, self.bntr7, self.block8,
                                                        self.final), out, out_p1)
        if self._memory.checkpoint:
            # the checkpointed stages keep the manager alive until the backward; their recomputation
            # reuses the cached kernel maps, so the coordinate lookup tables can go now
            out.manager.release_lookups()
        return out


class MinkUNet14(MinkUNetBase):
    """MinkUNet14: one block per stage (4DContrast's 4D backbone)."""

    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class MinkUNet18(MinkUNetBase):
    LAYERS = (2, 2, 2, 2, 2, 2, 2, 2)


class MinkUNet34(MinkUNetBase):
    """MinkUNet34: LAYERS (2, 3, 4, 6, 2, 2, 2, 2) (4DContrast's 3D backbone)."""

    LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)


class MinkUNet14A(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet14B(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet14C(MinkUNet14):
    PLANES = (32, 64, 128, 256, 192, 192, 128, 128)


class MinkUNet14S(MinkUNet14):
    """MinkUNet14 at half the widths of MinkUNet14A (ours, not in MinkowskiEngine's examples): 2.0 M
    parameters in 3D, for the CPU presets and the shipped checkpoint (≤ 10 MB in half precision)."""

    INIT_DIM = 16
    PLANES = (16, 32, 64, 128, 64, 64, 48, 48)


class MinkUNet18A(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet18B(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet34A(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 64)


class MinkUNet34B(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 32)


class MinkUNet34C(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 96, 96)


BACKBONES: dict[str, type[MinkUNetBase]] = {
    cls.__name__: cls
    for cls in (MinkUNet14, MinkUNet14A, MinkUNet14B, MinkUNet14C, MinkUNet14S, MinkUNet18, MinkUNet18A,
                MinkUNet18B, MinkUNet34, MinkUNet34A, MinkUNet34B, MinkUNet34C)
}
"""The U-Nets by name, for configs (``backbone_3d: MinkUNet34``)."""


def build_backbone(name: str, in_channels: int, out_channels: int, dimension: int = 3,
                   kernel_shape: str = "hypercube", backend: str = "torch",
                   memory: MemoryOptions | dict | None = None) -> MinkUNetBase:
    """The U-Net ``name`` (a key of :data:`BACKBONES`) with the given channels, dimension and kernels.

    Args:
        memory: the activation-memory switches (:class:`MemoryOptions`; default off).

    Raises:
        ValueError: for an unknown name, or memory switches on the MinkowskiEngine backend.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](in_channels, out_channels, dimension=dimension, kernel_shape=kernel_shape,
                           backend=backend, memory=memory)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "BACKBONES",
    "CHECKPOINT_PRESETS",
    "KERNEL_SHAPES",
    "STAGES",
    "BasicBlock",
    "MemoryOptions",
    "MinkUNet14",
    "MinkUNet14A",
    "MinkUNet14B",
    "MinkUNet14C",
    "MinkUNet14S",
    "MinkUNet18",
    "MinkUNet18A",
    "MinkUNet18B",
    "MinkUNet34",
    "MinkUNet34A",
    "MinkUNet34B",
    "MinkUNet34C",
    "MinkUNetBase",
    "bn_act",
    "build_backbone",
    "checkpoint_stages",
    "count_parameters",
    "is_checkpoint_spec",
    "kaiming_normal_",
    "kernel_spec",
    "memory_options",
]
