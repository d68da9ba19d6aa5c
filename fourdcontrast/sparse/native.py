"""Optional compiled CPU kernels: a fused gather → GEMM → scatter sparse convolution.

The PyTorch path of :class:`~fourdcontrast.sparse.functional.SparseConvolutionFunction` gathers a whole
group of offsets into a temporary, multiplies it with one ``bmm`` and adds the product back with
``index_add_``; on CPUs the temporaries are written to and read back from memory. The C++ kernels in
``csrc/sparse_conv.cpp`` instead cut every offset's pairs into chunks of :func:`chunk_rows` rows that
each thread gathers into a cache-resident buffer, multiplies (BLAS through ATen) and adds straight
into the destination rows. Results equal the PyTorch path up to float rounding (tested); on the 2-core
development VM a 96-channel submanifold convolution of the benchmark room runs ~1.5× faster
(``benchmarks/sparse_engine_profile.md``).

The kernels are compiled on first use with :func:`torch.utils.cpp_extension.load` (a C++ compiler with
OpenMP and the ``ninja`` package are needed; ~30 s once, then cached under ``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``). Where that fails the engine warns once and keeps the PyTorch
path. They are used for CPU float32/float64 tensors unless the environment variable
``FOURDCONTRAST_NATIVE`` is ``0`` (CUDA tensors always take the PyTorch path). The same extension builds
kernel maps by dense-table lookup on CPUs (``kernel_map_dense``: the pairs the PyTorch builder finds, in
the same order, without its per-offset temporaries).

``fourdcontrast native`` compiles them ahead of time and says whether they load (``make test`` runs it).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import warnings
from pathlib import Path

import torch

ENV_VAR = "FOURDCONTRAST_NATIVE"
"""Environment variable: ``0`` disables the compiled kernels (anything else, or unset, allows them)."""

SOURCE = Path(__file__).with_name("csrc") / "sparse_conv.cpp"
EXTENSION_NAME = "fourdcontrast_sparse_conv_" + hashlib.sha1(
    f"{torch.__version__} {Path(torch.__file__).parent}".encode()).hexdigest()[:12]
"""Module name of the build. It hashes the torch version and installation: the build depends on torch's
C++ ABI and include paths, and torch's build cache is keyed by Python version and CUDA/CPU only (two
virtual environments would otherwise rebuild over each other, ~30 s every time one follows the other)."""
CHUNK_VALUES = 1 << 17
"""Values per gathered chunk buffer (512 KiB of float32): a chunk has ``CHUNK_VALUES // max(C_in, C_out)``
rows, within [``MIN_CHUNK``, ``MAX_CHUNK``] (measured best on the development VM: 96 channels 512–1024
rows, 32 channels 2048–4096, 256 channels 512)."""
MIN_CHUNK = 64
MAX_CHUNK = 4096

log = logging.getLogger(__name__)


@functools.cache
def load():
    """The compiled extension module, or None (with one warning) where it cannot be built or loaded."""
    try:
        from torch.utils.cpp_extension import load as load_extension

        flags = ["-O3", "-fopenmp"]
        log.info("native sparse kernels: loading (the first build takes ~30 s)")
        return load_extension(EXTENSION_NAME, [str(SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                              verbose=False)
    except Exception as exc:  # no compiler, no ninja, unwritable cache...
        warnings.warn(
            f"fourdcontrast: the native sparse kernels ({SOURCE}) could not be built ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}); using the PyTorch path",
            RuntimeWarning, stacklevel=2,
        )
        return None


def allowed() -> bool:
    """False when ``FOURDCONTRAST_NATIVE=0`` disables the kernels."""
    return os.environ.get(ENV_VAR, "1").strip() != "0"


def available_on(device: torch.device | str) -> bool:
    """Whether the compiled kernels may run on ``device`` (a CPU, allowed, and built)."""
    return torch.device(device).type == "cpu" and allowed() and load() is not None


def usable(features: torch.Tensor) -> bool:
    """Whether the compiled convolution applies to ``features`` (CPU float32/float64, allowed, and built)."""
    return features.dtype in (torch.float32, torch.float64) and available_on(features.device)


def chunk_rows(c_in: int, c_out: int) -> int:
    """Rows per chunk for a convolution with ``c_in`` → ``c_out`` channels."""
    return max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_VALUES // max(c_in, c_out, 1)))


def scratch_shape(c_in: int, c_out: int) -> tuple[int, int]:
    """(threads, values per thread) of the scratch buffer the kernels need (forward and backward)."""
    chunk = chunk_rows(c_in, c_out)
    return torch.get_num_threads(), chunk * (2 * c_in + c_out) + c_in * c_out


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """``fourdcontrast native``: no options."""
    del parser


def run_cli(args: argparse.Namespace) -> int:
    """Compile (if needed) and load the kernels; exit status 0 when they load, 1 otherwise."""
    del args
    module = load()
    if module is None:
        print("native sparse kernels: NOT available (the PyTorch path will be used)")
        return 1
    state = "disabled by FOURDCONTRAST_NATIVE=0" if not allowed() else "in use for CPU float32/float64"
    print(f"native sparse kernels: built ({module.__file__}); {state}")
    return 0
