"""Which machine measured a figure: the CPU model name that every benchmark records beside its numbers."""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_model"]


def cpu_model() -> str:
    """The CPU's model name (``model name`` of ``/proc/cpuinfo``; ``platform.processor()`` elsewhere, or
    ``"unknown CPU"``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
