"""Process memory settings for sequence generation and data loading.

Generating one sequence with its correspondences allocates about 50 MB of arrays (the 3D / 4D voxel
maps and pairs of four 120k-point frames) that live until the batch is collated. With glibc's default
settings most of that memory goes back to the operating system when it is freed and comes back as
fresh, zeroed pages on the next sequence: about 10 000 page faults per sequence, measured at ~1.8 µs
each on the development VM, i.e. about as long as all the arithmetic (``benchmarks/generation.py``).
:func:`retain_freed_memory` tells the C allocator to keep freed memory for reuse instead. It changes a
setting of the whole process, so library code never calls it: entry points that generate or load
sequences in a loop (the generation benchmark, a data-loader ``worker_init_fn``) do, explicitly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
"""glibc ``mallopt`` parameter: free memory kept at the top of the heap before it is returned."""
M_MMAP_THRESHOLD = -3
"""glibc ``mallopt`` parameter: allocations at least this large get their own ``mmap``."""
DEFAULT_TRIM_THRESHOLD = 1 << 30
"""Bytes of freed heap memory kept for reuse (1 GiB: several sequences' worth)."""
DEFAULT_MMAP_THRESHOLD = 32 << 20
"""Allocations below this many bytes come from the reusable heap (32 MiB, glibc's maximum on 64-bit
systems; a frame's largest array is ~4 MB)."""


def retain_freed_memory(
    trim_threshold: int = DEFAULT_TRIM_THRESHOLD, mmap_threshold: int = DEFAULT_MMAP_THRESHOLD
) -> bool:
    """Make the C allocator (glibc ``malloc``, used by numpy and torch) reuse freed memory.

    Sets ``M_MMAP_THRESHOLD`` (arrays smaller than it are carved from the heap, not mapped one by one)
    and ``M_TRIM_THRESHOLD`` (free heap memory up to it stays with the process), so arrays of the next
    sequence reuse the pages of the last one instead of faulting in new ones. The process keeps up to
    ``trim_threshold`` bytes it no longer uses. Same effect as the environment variables
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set before Python starts.

    Args:
        trim_threshold: bytes of free heap memory kept, >= 0.
        mmap_threshold: allocation size in bytes from which ``mmap`` is used, in (0, 32 MiB].

    Returns:
        True when both settings took effect; False (logged, nothing changed) where the C library is not
        glibc (macOS, Windows, musl) or refuses the values.

    Raises:
        ValueError: when a threshold is out of range.
    """
    if trim_threshold < 0:
        raise ValueError(f"trim_threshold must be >= 0 bytes, got {trim_threshold}")
    if not 0 < mmap_threshold <= DEFAULT_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be in (0, {DEFAULT_MMAP_THRESHOLD}] bytes: {mmap_threshold}")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logger.info("no glibc mallopt in this process (%s): allocator settings unchanged", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(M_TRIM_THRESHOLD, min(int(trim_threshold), 2**31 - 1))
    )
    if not ok:
        logger.info("mallopt refused mmap threshold %d / trim threshold %d", mmap_threshold, trim_threshold)
    return ok
