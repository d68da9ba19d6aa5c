"""Fixtures shared across the test folders: a seeded generator and ScanNet-format PLY bytes (used by
the PLY reader tests under io/ and the ScanNet reader tests under sources/)."""

import struct

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


SCANNET_HEADER = (
    "ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\nelement vertex {n}\n"
    "property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
    "property uchar blue\nproperty uchar alpha\nelement face {f}\nproperty list uchar int vertex_indices\n"
    "end_header\n"
)


def _scannet_ply_bytes(vertices, colors, faces) -> bytes:
    """A ScanNet-format binary PLY built by hand with struct (independent of our writer)."""
    out = SCANNET_HEADER.format(n=len(vertices), f=len(faces)).encode()
    for v, c in zip(vertices, colors, strict=True):
        out += struct.pack("<fffBBBB", *v, *c)
    for f in faces:
        out += struct.pack("<Biii", 3, *f)
    return out


@pytest.fixture
def scannet_ply_bytes():
    """``f(vertices, colors (N, 4) uint8, faces (F, 3)) -> bytes`` of a ScanNet ``_vh_clean_2.ply``."""
    return _scannet_ply_bytes
