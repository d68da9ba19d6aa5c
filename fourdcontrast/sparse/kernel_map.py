"""Kernel offsets, kernel maps and the per-forward coordinate manager that caches them.

A *kernel map* lists, for every kernel offset ``k``, the pairs ``(input row, output row)`` such that
``input coordinate = output coordinate + offset_k · tensor_stride_in · dilation``. A convolution is then
``out[o] += in[i] @ W[k]`` over all pairs; a transposed convolution uses the same map with the roles of
input and output swapped (MinkowskiEngine's definition), so a U-Net's decoder reuses the encoder's maps.

Offsets follow MinkowskiEngine's order so kernels move between the engines without permutation:

- ``"hypercube"``: all offsets of the box, axis 0 fastest; odd sizes span ``[-(k//2), k//2]``, even
  sizes ``[0, k-1]`` (so a size-2 stride-2 kernel covers exactly the voxels that floor into one output).
- ``"hypercross"``: the centre first, then for each axis (axis 0 first) the offsets ``-(k//2)..-1, 1..k//2``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field

import torch

from fourdcontrast.sparse import native

REGION_TYPES = ("hypercube", "hypercross")
# Largest number of neighbour queries looked up at once while building a map (bounds temporary memory).
QUERY_CHUNK = 1 << 22
# The same on GPUs (sync-free builder, see CoordinateManager): ~25 bytes of temporaries per query, so
# 2^25 queries take ~0.8 GiB and the 5^4 stem map of a 4D sequence at 2 cm (310M queries) ten chunks.
GPU_QUERY_CHUNK = 1 << 25
# Offsets whose pair counts differ by less than this fraction share one batched matmul (padding waste).
GROUP_WASTE = 0.2
# Most padded pairs per offset group (bounds the gathered (G, M, C) temporaries); offsets with more
# pairs are cut into pieces. Tuned for CPU caches (benchmarks/sparse_engine_profile.md).
GROUP_ROWS = 1 << 16
# The same on GPUs: few large launches instead of hundreds of small ones (a group's gathered rows take
# GPU_GROUP_ROWS × C values: 384 MiB at 96 float32 channels).
GPU_GROUP_ROWS = 1 << 20
# Padding pairs of the offset groups point at rows past the real ones ("dump rows") whose results are
# discarded. On the CPU one dump row suffices; on GPUs the padded pairs' atomic adds would all hit that
# one row, so padding position j uses dump row j mod GPU_DUMP_ROWS.
GPU_DUMP_ROWS = 1 << 10
# Row indices of kernel maps: int32 halves their memory (the 5^4 stem of a 4D U-Net has ~90 pairs per
# voxel); int64 only when a tensor has 2^31 rows or more.
INDEX_DTYPE = torch.int32
# Margin (in voxels of the target stride) kept around a coordinate set when packing it into int64 keys,
# so that neighbour queries within the margin never alias another voxel and need no bounds check. 2
# covers every kernel up to size 5 without dilation (a U-Net's 5^D stem and 3^D blocks); farther-reaching
# kernels take a slower path with per-axis bounds checks.
PACK_MARGIN = 2
# A coordinate set whose padded bounding box has at most this many cells (and at most DENSE_PER_VOXEL
# cells per voxel) also gets a dense int32 cell -> row table (at most 256 MiB): lookups become one
# gather instead of a binary search. The 4D 2 cm benchmark sequence (497k voxels, 52M cells) gets one:
# its 5^4 stem map (43M pairs) builds in 2.0 s instead of 6.9 s, peak memory unchanged within noise.
DENSE_CELLS = 1 << 26
DENSE_PER_VOXEL = 256


def as_tuple(value: int | SequenceABC[int], dimension: int, name: str) -> tuple[int, ...]:
    """Broadcast an int or a per-axis sequence to a ``dimension``-tuple of positive ints."""
    if not isinstance(value, SequenceABC | torch.Tensor):
        out = (int(value),) * dimension
    else:
        out = tuple(int(v) for v in value)
    if len(out) != dimension or any(v < 1 for v in out):
        raise ValueError(f"{name} must be a positive int or {dimension} positive ints, got {value!r}")
    return out


def kernel_offsets(
    kernel_size: int | SequenceABC[int], dimension: int, region: str = "hypercube"
) -> torch.Tensor:
    """The kernel's offsets in MinkowskiEngine's order.

    Args:
        kernel_size: size per axis (one int for all axes), in voxels.
        dimension: spatial dimension D (3 or 4 here; any D works).
        region: ``"hypercube"`` (full box) or ``"hypercross"`` (centre plus the axis-aligned arms; odd sizes).

    Returns:
        (K, D) int64 offsets in units of ``tensor_stride · dilation``.
    """
    rows = offset_rows(as_tuple(kernel_size, dimension, "kernel_size"), region)
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, dimension)


def offset_rows(size: tuple[int, ...], region: str = "hypercube") -> list[tuple[int, ...]]:
    """:func:`kernel_offsets` as host ints: K tuples of D ints (``size``: the kernel size per axis)."""
    dimension = len(size)
    if region == "hypercube":
        ranges = [range(-(k // 2), k // 2 + 1) if k % 2 else range(0, k) for k in size]
        # itertools.product varies the last factor fastest; reverse so axis 0 varies fastest.
        return [tuple(reversed(p)) for p in itertools.product(*reversed(ranges))]
    if region == "hypercross":
        if any(k % 2 == 0 for k in size):
            raise ValueError(f"a hypercross kernel needs odd sizes, got {size}")
        rows = [(0,) * dimension]
        for axis, k in enumerate(size):
            for step in [*range(-(k // 2), 0), *range(1, k // 2 + 1)]:
                row = [0] * dimension
                row[axis] = step
                rows.append(tuple(row))
        return rows
    raise ValueError(f"region must be one of {REGION_TYPES}, got {region!r}")


def kernel_volume(kernel_size: int | SequenceABC[int], dimension: int, region: str = "hypercube") -> int:
    """Number of kernel offsets K (the first axis of the weight ``(K, C_in, C_out)``)."""
    size = as_tuple(kernel_size, dimension, "kernel_size")
    if region == "hypercross":
        return 1 + sum(k - 1 for k in size)
    out = 1
    for k in size:
        out *= k
    return out


def small_tensor(values, device: torch.device | str | None, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """A small constant tensor (ints known on the host) on ``device`` without a host synchronisation.

    ``torch.tensor(values, device="cuda")`` copies from pageable host memory with a blocking copy, which
    waits for the GPU to finish its queued work; a non-blocking copy returns once CUDA has staged the
    values, so the host can keep queueing kernels.

    Args:
        values: nested Python numbers (or a CPU tensor).
        device: target device.
        dtype: element type (default int64).
    """
    host = torch.as_tensor(values, dtype=dtype)
    if device is None or torch.device(device).type == "cpu":
        return host
    return host.to(device, non_blocking=True)


def group_rows(sync_free: bool) -> int:
    """Most padded pairs per offset group: :data:`GPU_GROUP_ROWS` (GPU strategy) or :data:`GROUP_ROWS`."""
    return GPU_GROUP_ROWS if sync_free else GROUP_ROWS


def default_sync_free(device: torch.device | str | None) -> bool:
    """Whether a coordinate manager on ``device`` uses the GPU strategy by default (all devices but CPUs)."""
    return device is not None and torch.device(device).type != "cpu"


@dataclass(eq=False)
class OffsetGroup:
    """Pieces of kernel offsets with similar pair counts, padded to a common length M for one ``bmm``.

    Attributes:
        offsets: (G,) int64 kernel offset indices (rows of the weight), one per piece; an offset with
            more pairs than the group budget is cut into pieces and appears once per piece.
        in_pad: (G·M,) input rows (the map's index dtype); padding points past the real rows, at dump
            row ``n_in + j mod R`` for padding position ``j`` (``R`` = :attr:`KernelMap.dump_rows`).
        out_pad: (G·M,) output rows; padding at ``n_out + j mod R``.
        size: M, the padded number of pairs per piece.
    """

    offsets: torch.Tensor
    in_pad: torch.Tensor
    out_pad: torch.Tensor
    size: int

    def swapped(self) -> OffsetGroup:
        return OffsetGroup(self.offsets, self.out_pad, self.in_pad, self.size)


@dataclass(eq=False)
class KernelMap:
    """Input/output row pairs of one convolution, grouped by kernel offset.

    The compiled CPU kernels (:mod:`fourdcontrast.sparse.native`) use the flat pair lists. The PyTorch
    path packs them into padded offset groups with :meth:`groups`, which releases the flat lists to halve
    the map's memory (the 5^4 stem of a 4D U-Net at 2 cm has ~43 M pairs); :attr:`in_indices`,
    :attr:`out_indices` and :meth:`flat_pairs` then read the pairs back from the groups.

    Attributes:
        in_rows: (P,) int32 input rows of all pairs, offset by offset (offset 0 first); None once grouped
            (until :meth:`flat_pairs` rebuilds them).
        out_rows: (P,) int32 output rows of the same pairs; None once grouped.
        counts: number of pairs of each of the K offsets (``sum(counts) == P``).
        n_in: number of input rows.
        n_out: number of output rows.
        identity: index of an offset that maps every row onto itself (the centre of a submanifold
            convolution), whose pairs are left out and computed as one dense ``mm``; or None.
        sync_free: built by the GPU strategy of :class:`CoordinateManager`: :meth:`groups` then builds
            its padded index on the device in one go, with :data:`GPU_GROUP_ROWS` rows per group and
            padding spread over :data:`GPU_DUMP_ROWS` dump rows.
        mirrored: a compact map of a submanifold convolution with an odd hypercube kernel (K = 2h + 1
            offsets, the centre ``h`` the identity): offset ``K-1-k`` is offset ``k`` negated, so its
            pairs are offset ``k``'s with input and output swapped, and only offsets ``0..h-1`` are
            stored — ``in_rows`` / ``out_rows`` hold their pairs (:meth:`half_pairs`), ``counts`` all K
            counts. Half the memory; :meth:`flat_pairs`, :attr:`in_indices` and :meth:`groups` give
            the full map.
    """

    in_rows: torch.Tensor | None
    out_rows: torch.Tensor | None
    counts: list[int]
    n_in: int
    n_out: int
    identity: int | None = None
    sync_free: bool = False
    mirrored: bool = False
    _groups: list[OffsetGroup] | None = field(default=None, repr=False)
    _transposed: KernelMap | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mirrored:
            h = self.volume // 2
            if self.volume % 2 != 1 or self.identity != h or self.counts[h] != 0 or \
                    self.counts[:h] != self.counts[h + 1:][::-1] or self.n_in != self.n_out:
                raise ValueError("a mirrored kernel map needs K = 2h+1 offsets, the identity at h and "
                                 "mirror-symmetric counts on one coordinate set")

    @property
    def volume(self) -> int:
        return len(self.counts)

    @property
    def dump_rows(self) -> int:
        """R, the number of dump rows past the real rows that padding pairs point at (1 on the CPU)."""
        return GPU_DUMP_ROWS if self.sync_free else 1

    @property
    def in_indices(self) -> list[torch.Tensor]:
        """Per offset, the (P_k,) input rows."""
        return self._split(input_side=True)

    @property
    def out_indices(self) -> list[torch.Tensor]:
        """Per offset, the (P_k,) output rows (in the order of :attr:`in_indices`)."""
        return self._split(input_side=False)

    def _split(self, input_side: bool) -> list[torch.Tensor]:
        rows = self.in_rows if input_side else self.out_rows
        if rows is not None and self.mirrored:
            h = self.volume // 2
            own = list(torch.split(rows, self.counts[:h]))
            other = list(torch.split(self.out_rows if input_side else self.in_rows, self.counts[:h]))
            return [*own, rows[:0], *other[::-1]]
        if rows is not None:
            return list(torch.split(rows, self.counts))
        parts: list[list[torch.Tensor]] = [[] for _ in range(self.volume)]
        for group in self._groups or []:
            padded = (group.in_pad if input_side else group.out_pad).view(-1, group.size)
            real = (group.in_pad < self.n_in).view(-1, group.size)
            for slot, k in enumerate(group.offsets.tolist()):
                parts[k].append(padded[slot][real[slot]])
        groups = self._groups or []
        empty = torch.zeros(0, dtype=groups[0].in_pad.dtype if groups else INDEX_DTYPE,
                            device=groups[0].in_pad.device if groups else None)
        return [torch.cat(p) if p else empty for p in parts]

    def half_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For a :attr:`mirrored` map: the input and output rows of offsets ``0..h-1`` (what it stores)."""
        if not self.mirrored:
            raise ValueError("half_pairs() is for mirrored kernel maps")
        if self.in_rows is None:  # released by groups(): read back the first h offsets
            h = self.volume // 2
            self.in_rows = torch.cat(self.in_indices[:h])
            self.out_rows = torch.cat(self.out_indices[:h])
        return self.in_rows, self.out_rows

    def flat_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (P,) input and output rows of all pairs, offset by offset (rebuilt if grouped before; a
        :attr:`mirrored` map builds them afresh on every call — its compiled kernels use
        :meth:`half_pairs`)."""
        if self.mirrored:
            return torch.cat(self.in_indices), torch.cat(self.out_indices)
        if self.in_rows is None:
            self.in_rows = torch.cat(self.in_indices)
            self.out_rows = torch.cat(self.out_indices)
            other = self._transposed
            if other is not None:
                other.in_rows, other.out_rows = self.out_rows, self.in_rows
        return self.in_rows, self.out_rows

    @property
    def num_pairs(self) -> int:
        extra = self.n_in if self.identity is not None else 0
        return sum(self.counts) + extra

    def transposed(self) -> KernelMap:
        """The same pairs with input and output swapped (the map of the transposed convolution)."""
        if self._transposed is None:
            self._transposed = KernelMap(self.out_rows, self.in_rows, self.counts, self.n_out, self.n_in,
                                         self.identity, self.sync_free, self.mirrored, _transposed=self)
        return self._transposed

    def groups(self, waste: float = GROUP_WASTE, budget: int | None = None) -> list[OffsetGroup]:
        """Offsets batched into groups of similar pair counts (cached; shared with the transposed map).

        Offsets with more than ``budget`` pairs are cut into near-equal pieces; pieces are sorted by
        length, and a group grows while the next piece is at least ``1 - waste`` of the group's longest
        and the padded rows stay within ``budget``, so padding wastes at most about ``waste`` of the work
        and every group is a single gather, ``bmm`` and scatter of at most ``budget`` rows. The first
        call releases the flat pair lists (of this map and of its transpose).

        Args:
            waste: largest fraction of padding per group (relative to the group's longest piece).
            budget: most padded pairs per group; None: :func:`group_rows` of the map's strategy.
        """
        if budget is None:
            budget = group_rows(self.sync_free)
        if self._groups is None:
            other = self._transposed
            if other is not None and other._groups is not None:
                self._groups = [g.swapped() for g in other._groups]
            elif self.mirrored:
                # the stored half, then the same groups swapped for the mirrored offsets K-1-k
                h = self.volume // 2
                half = KernelMap(self.in_rows, self.out_rows, self.counts[:h], self.n_in, self.n_out, None,
                                 self.sync_free)
                groups = _make_groups(half, waste, budget)
                last = self.volume - 1
                self._groups = groups + [OffsetGroup(last - g.offsets, g.out_pad, g.in_pad, g.size)
                                         for g in groups]
            else:
                self._groups = _make_groups(self, waste, budget)
            self.in_rows = self.out_rows = None
            if other is not None:
                other.in_rows = other.out_rows = None
                if other._groups is None:
                    other._groups = [g.swapped() for g in self._groups]
        return self._groups


def _make_groups(kmap: KernelMap, waste: float, budget: int) -> list[OffsetGroup]:
    """The padded offset groups of ``kmap`` (see :meth:`KernelMap.groups`).

    The plan (which pieces of which offsets share a group) is computed on the host from the pair counts.
    On the CPU every piece is then copied into its slot by a slice copy (no per-pair temporaries); for a
    sync-free map the padded index is built on the device in one go (a handful of launches, whatever the
    number of pieces) and padding is spread over :data:`GPU_DUMP_ROWS` dump rows. Both give the same
    real pairs in the same slots.
    """
    counts = kmap.counts
    device = kmap.in_rows.device
    volume = len(counts)
    # Offsets with more pairs than the budget are cut into near-equal pieces, so that every group's
    # gathered temporaries stay within ``budget`` rows (cache-sized, and no large fresh allocations).
    n_pieces = [-(-c // budget) for c in counts]
    piece_len = [-(-c // n) if n else 0 for c, n in zip(counts, n_pieces, strict=True)]
    pieces = []  # (offset, first rank within the offset, length)
    for k in range(volume):
        for p in range(n_pieces[k]):
            first = p * piece_len[k]
            pieces.append((k, first, min(piece_len[k], counts[k] - first)))
    order = sorted(range(len(pieces)), key=lambda j: -pieces[j][2])
    plan: list[list[int]] = []
    for j in order:
        length = pieces[j][2]
        if plan and length >= (1 - waste) * pieces[plan[-1][0]][2] and \
                (len(plan[-1]) + 1) * pieces[plan[-1][0]][2] <= budget:
            plan[-1].append(j)
        else:
            plan.append([j])
    if not plan:
        return []
    start = [0] * volume
    acc = 0
    for k in range(volume):
        start[k] = acc
        acc += counts[k]
    size, base, total = [], [], 0
    slot_of_piece = [0] * len(pieces)
    for members in plan:
        m = pieces[members[0]][2]
        size.append(m)
        base.append(total)
        for slot, j in enumerate(members):
            slot_of_piece[j] = total + slot * m
        total += len(members) * m
    if kmap.sync_free:
        in_pad, out_pad = _padded_rows_on_device(kmap, plan, pieces, start, size, total)
    else:
        # copy every piece into its slot of the padded buffers (slice copies: no per-pair temporaries)
        in_pad = torch.full((total,), kmap.n_in, dtype=kmap.in_rows.dtype, device=device)
        out_pad = torch.full((total,), kmap.n_out, dtype=kmap.out_rows.dtype, device=device)
        for j, (k, first, length) in enumerate(pieces):
            src = slice(start[k] + first, start[k] + first + length)
            dst = slice(slot_of_piece[j], slot_of_piece[j] + length)
            in_pad[dst] = kmap.in_rows[src]
            out_pad[dst] = kmap.out_rows[src]
    # the offsets of all groups in one host-to-device copy (one tensor per group would be one blocking
    # copy per group on a GPU), handed out as views
    all_offsets = small_tensor([pieces[j][0] for members in plan for j in members], device)
    groups, first_member = [], 0
    for g, members in enumerate(plan):
        sl = slice(base[g], base[g] + len(members) * size[g])
        offsets = all_offsets[first_member: first_member + len(members)]
        first_member += len(members)
        groups.append(OffsetGroup(offsets, in_pad[sl], out_pad[sl], size[g]))
    return groups


def _padded_rows_on_device(kmap: KernelMap, plan: list[list[int]], pieces: list[tuple[int, int, int]],
                           start: list[int], size: list[int], total: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The padded (total,) input and output rows of the groups, built on the map's device in one go.

    Args:
        kmap: the map (flat pair lists present).
        plan: per group, the indices of its pieces (in slot order).
        pieces: (offset, first rank within the offset, length) of every piece.
        start: per offset, the position of its first pair in the flat lists.
        size: per group, M (the padded length of each of its slots).
        total: the padded length of all groups together.

    Returns:
        ``(in_pad, out_pad)``; padding position ``j`` holds dump row ``n + j mod GPU_DUMP_ROWS``.
    """
    device = kmap.in_rows.device
    slot_src, slot_len, slot_pad, slot_first = [], [], [], []
    position = 0
    for g, members in enumerate(plan):
        for j in members:
            k, first, length = pieces[j]
            slot_src.append(start[k] + first)
            slot_len.append(length)
            slot_pad.append(size[g])
            slot_first.append(position)
            position += size[g]
    # int32 temporaries where the positions fit: half the transient memory (the 5^4 stem of a 4D U-Net
    # at 2 cm pads ~50 M pairs)
    wide = max(total, kmap.in_rows.numel(), kmap.n_in, kmap.n_out) + GPU_DUMP_ROWS >= 2**31
    index = torch.int64 if wide else torch.int32
    meta = small_tensor([slot_src, slot_len, slot_pad, slot_first], device, index)
    slot = torch.repeat_interleave(torch.arange(len(slot_src), device=device, dtype=index), meta[2],
                                   output_size=total)
    pos = torch.arange(total, device=device, dtype=index)
    within = pos - meta[3].index_select(0, slot)
    real = within < meta[1].index_select(0, slot)
    src = torch.where(real, meta[0].index_select(0, slot) + within, 0)
    dump = pos.remainder_(GPU_DUMP_ROWS)
    dtype = kmap.in_rows.dtype
    in_pad = torch.where(real, kmap.in_rows.index_select(0, src), (dump + kmap.n_in).to(dtype))
    out_pad = torch.where(real, kmap.out_rows.index_select(0, src), (dump + kmap.n_out).to(dtype))
    return in_pad, out_pad


class Workspace:
    """Scratch buffers reused by every convolution of one forward and backward pass.

    The gathered rows and products of an offset group are temporaries of up to ``GROUP_ROWS × C``
    floats. Allocating them afresh for every group costs more than the arithmetic on CPUs: large blocks
    come straight from the operating system as new zeroed pages (measured on the 2-core development VM:
    a 50 MB gather 4× and a ``bmm`` 1.8× slower into a fresh tensor than into a reused one). A workspace
    keeps one flat buffer per named slot and hands out views of it; a buffer only grows (by at least
    ``GROWTH``), so a U-Net allocates each slot a few times per pass instead of for every group.

    Views handed out for a slot are valid until the next request for the same slot: callers use them as
    temporaries only, never as results.
    """

    GROWTH = 1.25

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, slot: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
            ) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape`` backed by the slot's buffer."""
        numel = math.prod(int(n) for n in shape)
        key = (slot, dtype, torch.device(device))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            grown = max(numel, int(self.GROWTH * buf.numel())) if buf is not None else numel
            self._buffers.pop(key, None)  # free the old buffer before allocating the new one
            buf = torch.empty(grown, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel].view(shape)

    @property
    def nbytes(self) -> int:
        """Bytes held by all buffers."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def clear(self) -> None:
        """Release every buffer."""
        self._buffers.clear()


@dataclass(eq=False)
class _CoordinateSet:
    coordinates: torch.Tensor  # (N, 1+D) int64
    tensor_stride: tuple[int, ...]
    # host ints: per column the smallest and largest coordinate (None for an empty set)
    bounds: tuple[list[int], list[int]] | None = None
    # (sorted keys, order, low, radix, multipliers, dense table or None), tensors on the set's device
    lookup: tuple | None = None
    # host ints of the packing: (low, radix, multipliers) per column
    packing: tuple[list[int], list[int], list[int]] | None = None


class CoordinateManager:
    """Holds the coordinate sets of one forward pass and caches what is derived from them.

    Every :class:`~fourdcontrast.sparse.tensor.SparseTensor` points to a manager and an integer
    ``coordinate_key``; tensors derived from one input (convolutions, batch norm, pooling...) share the
    manager, so each strided coordinate set and each kernel map — keyed by (input coordinates, output
    coordinates, kernel size, dilation, region) — is computed once per forward and reused by every
    layer (a U-Net computes each map once and its decoder reuses the encoder's maps, transposed).

    All coordinate sets of a manager live on one device (:attr:`device`); inserting coordinates of
    another device raises ``ValueError``.

    Two strategies build the maps; both give the same pairs in the same order. The CPU one (default on
    CPUs) uses the compiled builder where it exists, and otherwise looks neighbours up chunk by chunk,
    reading each chunk's hits back to the host. The GPU one (``sync_free``, default on every other
    device) never waits for the device inside a loop: a map costs one host synchronisation (its pair
    counts), a new coordinate set one (its bounds) plus one for the ``unique`` of a downsampling; the
    offset groups are sized for GPUs and built on the device in one go.

    Args:
        sync_free: use the GPU strategy; None: decided by the device of the first coordinate set
            (:func:`default_sync_free`).
        mirrored_maps: build the maps of submanifold convolutions with odd hypercube kernels as
            :attr:`KernelMap.mirrored` maps (half the pairs stored; settable later — maps built before
            stay as they are).

    Attributes:
        workspace: the :class:`Workspace` whose buffers the convolutions of this pass reuse for their
            temporaries (freed with the manager, or early with ``workspace.clear()``).
    """

    def __init__(self, sync_free: bool | None = None, mirrored_maps: bool = False) -> None:
        self.workspace = Workspace()
        self._sync_free = sync_free
        self.mirrored_maps = mirrored_maps
        self._sets: list[_CoordinateSet] = []
        self._downsampled: dict[tuple, int] = {}
        self._maps: dict[tuple, KernelMap] = {}

    # ---- coordinate sets -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device | None:
        """The device of the manager's coordinates (None while it holds none)."""
        return self._sets[0].coordinates.device if self._sets else None

    @property
    def sync_free(self) -> bool:
        """Whether maps are built by the GPU strategy (see the class docstring)."""
        if self._sync_free is not None:
            return self._sync_free
        return default_sync_free(self.device)

    def insert(self, coordinates: torch.Tensor, tensor_stride: tuple[int, ...]) -> int:
        """Register a coordinate set (N, 1+D) at ``tensor_stride``; returns its key.

        Raises:
            ValueError: when the manager already holds coordinates on another device.
        """
        device = self.device
        if device is not None and coordinates.device != device:
            raise ValueError(
                f"coordinates on {coordinates.device} cannot join a coordinate manager whose coordinates and "
                f"kernel maps are on {device}; move the sparse tensor with .to(device), which gives it a "
                "manager on the new device")
        self._sets.append(_CoordinateSet(coordinates, tuple(tensor_stride)))
        return len(self._sets) - 1

    def coordinates(self, key: int) -> torch.Tensor:
        return self._sets[key].coordinates

    def tensor_stride(self, key: int) -> tuple[int, ...]:
        return self._sets[key].tensor_stride

    def __len__(self) -> int:
        return len(self._sets)

    @property
    def num_kernel_maps(self) -> int:
        return len(self._maps)

    def downsample(self, key: int, stride: tuple[int, ...]) -> int:
        """Key of the coordinates at ``tensor_stride · stride``: ``floor(c / (ts·s)) · (ts·s)``, unique."""
        cache_key = (key, tuple(stride))
        if cache_key not in self._downsampled:
            src = self._sets[key]
            new_stride = tuple(t * s for t, s in zip(src.tensor_stride, stride, strict=True))
            if new_stride == src.tensor_stride:
                self._downsampled[cache_key] = key
            else:
                full = (1, *new_stride)
                step = small_tensor(full, src.coordinates.device)
                cells = torch.div(src.coordinates, step, rounding_mode="floor")
                coarse = cells * step
                # Unique rows through packed int64 keys (torch.unique(dim=0) is far slower on CPU), packed
                # with the source's cached host bounds: floor is monotone, so the cells' bounds are
                # floor(bounds / step) and the coarse set's bounds follow without reading the device.
                bounds = self._bounds(key)
                cell_bounds = None
                if bounds is None:
                    keys = torch.zeros(0, dtype=torch.int64, device=cells.device)
                else:
                    cell_bounds = ([lo // s for lo, s in zip(bounds[0], full, strict=True)],
                                   [hi // s for hi, s in zip(bounds[1], full, strict=True)])
                    keys = _mixed_radix_keys(cells, *cell_bounds)
                unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
                rows = torch.arange(keys.numel(), device=keys.device)
                first = torch.full((unique.numel(),), keys.numel(), dtype=torch.int64, device=keys.device)
                first = first.scatter_reduce(0, inverse, rows, reduce="amin")
                new_key = self.insert(coarse[first], new_stride)
                if cell_bounds is not None:
                    self._sets[new_key].bounds = tuple([c * s for c, s in zip(side, full, strict=True)]
                                                       for side in cell_bounds)
                self._downsampled[cache_key] = new_key
        return self._downsampled[cache_key]

    def map_keys(self) -> list[tuple]:
        """The cache keys of the kernel maps built so far."""
        return list(self._maps)

    def forget_maps(self, keys) -> None:
        """Drop the cached kernel maps under ``keys`` (a later request builds them again)."""
        for key in keys:
            self._maps.pop(key, None)

    def release_lookups(self) -> None:
        """Free the coordinate sets' lookup structures (sorted keys, dense tables), e.g. once every kernel
        map of a forward is built; a later map rebuilds the lookups it needs."""
        for cset in self._sets:
            cset.lookup = None

    def _bounds(self, key: int) -> tuple[list[int], list[int]] | None:
        """Per column, the smallest and the largest coordinate of a set (host ints; None when empty).

        One host synchronisation per coordinate set, cached.
        """
        cset = self._sets[key]
        if cset.bounds is None and cset.coordinates.shape[0]:
            low, high = torch.aminmax(cset.coordinates, dim=0)
            both = torch.stack([low, high]).tolist()
            cset.bounds = (both[0], both[1])
        return cset.bounds

    def _lookup(self, key: int):
        """Packed keys of a coordinate set: (sorted keys, order, low, radix, multipliers, dense table)."""
        cset = self._sets[key]
        if cset.lookup is None:
            coords = cset.coordinates
            device = coords.device
            stride = (1, *cset.tensor_stride)
            bounds = self._bounds(key)
            if bounds is None:
                low, radix = [0] * len(stride), [1] * len(stride)
            else:
                # floor division is monotone: the bounds of floor(c / s) are floor(bounds / s)
                margin = [0] + [PACK_MARGIN] * (len(stride) - 1)
                low = [lo // s - m for lo, s, m in zip(bounds[0], stride, margin, strict=True)]
                radix = [hi // s + m - lo + 1
                         for hi, s, m, lo in zip(bounds[1], stride, margin, low, strict=True)]
            total = math.prod(radix)
            if total >= 2**62:
                raise ValueError(f"coordinate ranges {radix} are too large to pack into int64 keys")
            mult = [1] * len(radix)
            for axis in range(len(radix) - 2, -1, -1):
                mult[axis] = mult[axis + 1] * radix[axis + 1]
            low_t, radix_t, mult_t = small_tensor([low, radix, mult], device)
            norm = torch.div(coords, small_tensor(stride, device), rounding_mode="floor")
            packed = ((norm - low_t) * mult_t).sum(dim=1)
            sorted_keys, order = torch.sort(packed)
            table = None
            if total <= DENSE_CELLS and total <= DENSE_PER_VOXEL * max(norm.shape[0], 1):
                table = torch.full((total,), -1, dtype=torch.int32, device=device)
                table[packed] = torch.arange(packed.numel(), dtype=torch.int32, device=device)
            cset.lookup = (sorted_keys, order, low_t, radix_t, mult_t, table)
            cset.packing = (low, radix, mult)
        return cset.lookup

    # ---- kernel maps -----------------------------------------------------------------------------
    def kernel_map(
        self,
        in_key: int,
        out_key: int,
        kernel_size: tuple[int, ...],
        dilation: tuple[int, ...],
        region: str = "hypercube",
    ) -> KernelMap:
        """The (cached) kernel map from the input set to the output set for one kernel."""
        cache_key = (in_key, out_key, tuple(kernel_size), tuple(dilation), region)
        kmap = self._maps.get(cache_key)
        if kmap is None:
            kmap = self._build(in_key, out_key, tuple(kernel_size), tuple(dilation), region)
            self._maps[cache_key] = kmap
        return kmap

    def _build(self, in_key, out_key, kernel_size, dilation, region) -> KernelMap:
        src, dst = self._sets[in_key], self._sets[out_key]
        dim = len(src.tensor_stride)
        sync_free = self.sync_free
        offsets = offset_rows(kernel_size, region)  # K tuples of D host ints
        # Fast path: size == stride, dilation 1, even sizes (or 1) -> every input falls in exactly one
        # output cell; the offset index follows from the position inside the cell.
        pairs = zip(dst.tensor_stride, src.tensor_stride, strict=True)
        ratio = [o // i if o % i == 0 else 0 for o, i in pairs]
        if (
            region == "hypercube"
            and all(d == 1 for d in dilation)
            and tuple(ratio) == kernel_size
            and all(k == 1 or k % 2 == 0 for k in kernel_size)
            and any(k > 1 for k in kernel_size)
        ):
            return self._build_partition(src, dst, out_key, kernel_size, sync_free)
        centre = (0,) * dim
        identity = offsets.index(centre) if in_key == out_key and centre in offsets else None
        if (self.mirrored_maps and identity is not None and region == "hypercube"
                and all(k % 2 for k in kernel_size) and len(offsets) > 1):
            return self._build_mirrored(in_key, kernel_size, dilation, identity)
        return self._build_offsets(in_key, out_key, offsets, dilation, identity)

    def _build_offsets(self, in_key: int, out_key: int, offsets: list[tuple[int, ...]],
                       dilation: tuple[int, ...], identity: int | None) -> KernelMap:
        """The pairs of the given kernel ``offsets`` (host tuples) from the input set to the output set;
        ``identity``: the index of an offset left out as the identity map (or None)."""
        src, dst = self._sets[in_key], self._sets[out_key]
        device = src.coordinates.device
        sync_free = self.sync_free
        n_in, n_out = src.coordinates.shape[0], dst.coordinates.shape[0]
        lookup = self._lookup(in_key)
        low, radix, mult = self._sets[in_key].packing
        mult_t = lookup[4]
        stride = (1, *src.tensor_stride)
        # Output coordinates expressed in input voxel units (outputs are multiples of the input stride).
        out_norm = torch.div(dst.coordinates, small_tensor(stride, device), rounding_mode="floor") - lookup[2]
        # kernel offsets in input voxels, batch axis 0; host arithmetic (no reads from the device)
        off_host = [(0, *(o * d for o, d in zip(row, dilation, strict=True))) for row in offsets]
        off_norm = small_tensor(off_host, device)
        # Outputs are visited in packed-key order: every offset's queries are then ascending, which
        # makes the binary search (or dense-table gather) cache-friendly (measured 6x faster than in
        # random order for 497k keys) and lists each offset's pairs in spatial order.
        base, out_order = torch.sort((out_norm * mult_t).sum(dim=1))
        deltas = small_tensor([sum(o * m for o, m in zip(row, mult, strict=True)) for row in off_host],
                              device)
        # Do all queries stay inside the input's packing box? (host arithmetic on cached bounds)
        dst_bounds = self._bounds(out_key)
        if n_out and dst_bounds is not None:
            columns = list(zip(*off_host, strict=True))
            off_lo, off_hi = [min(col) for col in columns], [max(col) for col in columns]
            columns = zip(*dst_bounds, stride, low, off_lo, off_hi, radix, strict=True)
            safe = all(lo // s - l0 + a >= 0 and hi // s - l0 + b < r for lo, hi, s, l0, a, b, r in columns)
        else:
            safe = True
        dtype = _index_dtype(n_in, n_out)
        table = lookup[5]
        if not sync_free and table is not None and safe and n_in and n_out and native.available_on(device):
            in_rows, out_rows, counts = native.load().kernel_map_dense(
                base, out_order, deltas, table, -1 if identity is None else identity, dtype == torch.int64)
            return KernelMap(in_rows, out_rows, counts.tolist(), n_in, n_out, identity, sync_free)
        out_norm = out_norm[out_order]  # key order, for the bounds checks of the unsafe queries below
        chunk = GPU_QUERY_CHUNK if sync_free else QUERY_CHUNK
        per_chunk = max(1, chunk // max(n_out, 1))
        n_offsets = len(offsets)

        def lookup_chunk(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            """(found, input row) of the queries of offsets start..stop-1: (k, n_out) each."""
            query = base.unsqueeze(0) + deltas[start:stop].unsqueeze(1)  # (k, n_out)
            if n_in == 0 or n_out == 0:
                return torch.zeros_like(query, dtype=torch.bool), torch.zeros_like(query)
            found, rows = _find(lookup, query if safe else query.clamp(min=0), in_range=safe,
                                sync_free=sync_free)
            if not safe:
                for j in range(stop - start):
                    q = out_norm + off_norm[start + j]
                    found[j] &= ((q >= 0) & (q < lookup[3])).all(dim=1)
            if identity is not None and start <= identity < stop:
                found[identity - start] = False
            return found, rows

        if sync_free:
            return _sync_free_pairs(lookup_chunk, per_chunk, n_offsets, out_order, n_in, n_out, identity,
                                    dtype)
        in_parts: list[torch.Tensor] = []
        out_parts: list[torch.Tensor] = []
        count_parts: list[torch.Tensor] = []
        for start in range(0, n_offsets, per_chunk):
            stop = min(start + per_chunk, n_offsets)
            found, rows = lookup_chunk(start, stop)
            # flat positions, row-major: offset by offset, outputs in key order
            hits = torch.nonzero(found.view(-1)).squeeze(1)
            in_parts.append(rows.view(-1).index_select(0, hits).to(dtype))
            out_parts.append(out_order.index_select(0, hits % max(n_out, 1)).to(dtype))
            count_parts.append(torch.bincount(torch.div(hits, max(n_out, 1), rounding_mode="floor"),
                                              minlength=stop - start))
        counts = torch.cat(count_parts).tolist()
        return KernelMap(torch.cat(in_parts), torch.cat(out_parts), counts, n_in, n_out, identity)

    def _build_mirrored(self, key: int, kernel_size, dilation, identity: int) -> KernelMap:
        """The :attr:`KernelMap.mirrored` map of a submanifold convolution: the pairs of offsets
        ``0..h-1`` (``h`` = ``identity``, the centre), looked up like any map's."""
        h = identity
        full = offset_rows(kernel_size, "hypercube")
        half = self._build_offsets(key, key, full[:h], dilation, None)
        counts = [*half.counts, 0, *half.counts[::-1]]
        return KernelMap(half.in_rows, half.out_rows, counts, half.n_in, half.n_out, h, half.sync_free,
                         mirrored=True)

    def _build_partition(self, src, dst, out_key, kernel_size, sync_free: bool) -> KernelMap:
        device = src.coordinates.device
        step = small_tensor((1, *dst.tensor_stride), device)
        coarse = torch.div(src.coordinates, step, rounding_mode="floor") * step
        lookup = self._lookup(out_key)
        low, mult = lookup[2], lookup[4]
        norm = torch.div(coarse, step, rounding_mode="floor") - low
        packed = (norm * mult).sum(dim=1)
        found, rows = _find(lookup, packed, sync_free=sync_free)
        out_rows = rows.long()
        ts = small_tensor(src.tensor_stride, device)
        within = torch.div(src.coordinates[:, 1:] - coarse[:, 1:], ts, rounding_mode="floor")
        index = torch.zeros(src.coordinates.shape[0], dtype=torch.int64, device=device)
        scale = 1
        for axis, k in enumerate(kernel_size):
            index += within[:, axis] * scale
            scale *= k
        perm = torch.argsort(index, stable=True)
        if sync_free:
            # counts by scatter_add (CUDA's bincount reads its maximum back), and the coverage check
            # in the same transfer: one synchronisation
            counts_t = torch.zeros(scale + 1, dtype=torch.int64, device=device)
            counts_t.scatter_add_(0, index, torch.ones_like(index))
            counts_t[scale] = (~found).sum()
            counts = counts_t.tolist()
            covered = counts.pop() == 0
        else:
            covered = bool(found.all())
            counts = torch.bincount(index, minlength=scale).tolist()
        if not covered:
            raise ValueError("output coordinates do not cover the strided input coordinates")
        n_in, n_out = src.coordinates.shape[0], dst.coordinates.shape[0]
        dtype = _index_dtype(n_in, n_out)
        return KernelMap(perm.to(dtype), out_rows[perm].to(dtype), counts, n_in, n_out, None, sync_free)


def _sync_free_pairs(lookup_chunk, per_chunk: int, n_offsets: int, out_order: torch.Tensor, n_in: int,
                     n_out: int, identity: int | None, dtype: torch.dtype) -> KernelMap:
    """The pairs of a kernel map with one host synchronisation (the GPU strategy).

    A first pass over the query chunks counts the hits of every offset on the device; the counts come
    back in one transfer; a second pass repeats the (cheap) lookups and extracts the hits with
    ``nonzero_static`` at the now known sizes, so no pass waits for the device. The pairs and their
    order equal the CPU builder's: offset by offset, outputs in packed-key order.

    Args:
        lookup_chunk: ``(start, stop) -> (found, rows)``, the (k, n_out) lookups of offsets start..stop-1.
        per_chunk: offsets per chunk.
        n_offsets: K.
        out_order: (n_out,) output rows in packed-key order.
        n_in, n_out: input and output rows.
        identity: the identity offset (left out), or None.
        dtype: index dtype of the pairs.
    """
    device = out_order.device
    counts_t = torch.zeros(n_offsets, dtype=torch.int64, device=device)
    chunks = [(start, min(start + per_chunk, n_offsets)) for start in range(0, n_offsets, per_chunk)]
    for start, stop in chunks:
        found, _ = lookup_chunk(start, stop)
        counts_t[start:stop] = found.sum(dim=1)
    counts = counts_t.tolist()  # the map's one synchronisation
    in_parts, out_parts = [], []
    for start, stop in chunks:
        n_hits = sum(counts[start:stop])
        if n_hits == 0:
            continue
        found, rows = lookup_chunk(start, stop)
        hits = _nonzero_static(found.view(-1), n_hits)
        in_parts.append(rows.view(-1).index_select(0, hits).to(dtype))
        out_parts.append(out_order.index_select(0, hits % n_out).to(dtype))
    if not in_parts:
        empty = torch.zeros(0, dtype=dtype, device=device)
        return KernelMap(empty, empty.clone(), counts, n_in, n_out, identity, True)
    return KernelMap(torch.cat(in_parts), torch.cat(out_parts), counts, n_in, n_out, identity, True)


def _nonzero_static(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) int64 positions of the True entries of a 1-D ``mask`` that has exactly ``size`` of them.

    ``torch.nonzero_static`` (CUDA since torch 2.6) needs no synchronisation; older versions fall back
    to ``torch.nonzero`` (one synchronisation).
    """
    static = getattr(torch, "nonzero_static", None)
    if static is not None:
        try:
            return static(mask, size=size).squeeze(1)
        except (NotImplementedError, RuntimeError):  # no kernel for this device in this torch version
            pass
    return torch.nonzero(mask).squeeze(1)


def _mixed_radix_keys(cells: torch.Tensor, low: list[int], high: list[int]) -> torch.Tensor:
    """(N,) int64 keys of (N, C) int coordinates within [low, high] per column that sort like the rows
    (lexicographically, column 0 first).

    Raises:
        ValueError: when the ranges do not fit into 62 bits.
    """
    radix = [hi - lo + 1 for lo, hi in zip(low, high, strict=True)]
    if math.prod(radix) >= 2**62:
        raise ValueError(f"coordinate ranges {radix} are too large to pack into int64 keys")
    mult = [1] * len(radix)
    for axis in range(len(radix) - 2, -1, -1):
        mult[axis] = mult[axis + 1] * radix[axis + 1]
    low_t, mult_t = small_tensor([low, mult], cells.device)
    return ((cells - low_t) * mult_t).sum(dim=1)


def _find(lookup, keys: torch.Tensor, in_range: bool = False, sync_free: bool = False
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of packed ``keys`` (>= 0) in a coordinate set: (found mask, row or garbage where not found).

    ``in_range``: the caller guarantees every key lies inside the set's packing box (skips a bounds pass).
    ``sync_free``: never branch on the keys' values (a branch reads a flag back from the device).
    """
    sorted_keys, order, _, _, _, table = lookup
    if table is not None:
        outside = None if in_range else keys >= table.numel()
        if outside is not None and (sync_free or bool(outside.any())):
            keys = keys.clamp(max=table.numel() - 1)
        else:
            outside = None
        rows = table.index_select(0, keys.reshape(-1)).view(keys.shape)
        found = rows >= 0
        if outside is not None:
            found &= ~outside
        return found, rows
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=max(sorted_keys.numel() - 1, 0))
    return sorted_keys[pos] == keys, order[pos]


def _index_dtype(n_in: int, n_out: int) -> torch.dtype:
    return INDEX_DTYPE if max(n_in, n_out) < torch.iinfo(INDEX_DTYPE).max else torch.int64
