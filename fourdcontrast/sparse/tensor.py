"""The sparse tensor record and batching helpers (MinkowskiEngine conventions, any dimension D)."""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field

import numpy as np
import torch

from fourdcontrast.sparse.kernel_map import CoordinateManager, as_tuple


@dataclass(eq=False)
class SparseTensor:
    """Features on a sparse set of integer coordinates.

    Args:
        features: (N, C) float features, one row per coordinate.
        coordinates: (N, 1+D) int coordinates, batch index first, then D axes in voxels of the input
            resolution (a tensor at stride ``s`` has coordinates that are multiples of ``s``).
        tensor_stride: distance between neighbouring voxels per axis (1 for the input; ×2 per strided
            convolution), one int or D ints.
        manager: the :class:`CoordinateManager` shared by all tensors of one forward pass (a new one when
            None).
        coordinate_key: this tensor's coordinate set inside ``manager`` (registered when None).

    Tensors derived from one another share the manager, so kernel maps are built once per forward.
    Features, coordinates, the manager's coordinate sets and kernel maps always live on one device: the
    coordinates follow the features, and a manager (or coordinate key) on another device raises
    ``ValueError`` — :meth:`to` is the way to move a sparse tensor.
    """

    features: torch.Tensor
    coordinates: torch.Tensor
    tensor_stride: int | tuple[int, ...] = 1
    manager: CoordinateManager | None = field(default=None, repr=False)
    coordinate_key: int | None = None

    def __post_init__(self) -> None:
        coords = torch.as_tensor(self.coordinates)
        if coords.ndim != 2 or coords.shape[1] < 2:
            raise ValueError(f"coordinates must have shape (N, 1+D), got {tuple(coords.shape)}")
        if coords.dtype.is_floating_point or coords.dtype == torch.bool:
            raise ValueError(f"coordinates must be integers, got {coords.dtype}")
        if self.features.ndim != 2 or self.features.shape[0] != coords.shape[0]:
            raise ValueError(
                f"features must have shape (N, C) with N = {coords.shape[0]} rows, "
                f"got {tuple(self.features.shape)}"
            )
        device = self.features.device
        self.coordinates = coords.to(device=device, dtype=torch.int64)
        self.tensor_stride = as_tuple(self.tensor_stride, coords.shape[1] - 1, "tensor_stride")
        if self.manager is None:
            self.manager = CoordinateManager()
        elif self.manager.device is not None and self.manager.device != device:
            raise ValueError(
                f"features on {device} but the coordinate manager's coordinates and kernel maps are on "
                f"{self.manager.device}; move the sparse tensor with .to(device) (which builds a manager on "
                "the new device) instead of pairing features of one device with another's coordinates")
        if self.coordinate_key is None:
            self.coordinate_key = self.manager.insert(self.coordinates, self.tensor_stride)
        elif len(self.manager.coordinates(self.coordinate_key)) != coords.shape[0]:
            n_key = len(self.manager.coordinates(self.coordinate_key))
            raise ValueError(f"coordinate key {self.coordinate_key} has {n_key} coordinates, "
                             f"the features {coords.shape[0]} rows")

    # MinkowskiEngine-style short names
    @property
    def F(self) -> torch.Tensor:  # noqa: N802
        return self.features

    @property
    def C(self) -> torch.Tensor:  # noqa: N802
        return self.coordinates

    @property
    def D(self) -> int:  # noqa: N802
        """Spatial dimension D (coordinates have 1+D columns)."""
        return self.coordinates.shape[1] - 1

    @property
    def device(self) -> torch.device:
        return self.features.device

    @property
    def dtype(self) -> torch.dtype:
        return self.features.dtype

    @property
    def batch_size(self) -> int:
        return int(self.coordinates[:, 0].max()) + 1 if len(self) else 0

    def __len__(self) -> int:
        return self.coordinates.shape[0]

    def replace_features(self, features: torch.Tensor) -> SparseTensor:
        """A tensor with new (N, C') features on the same coordinates (same manager and key).

        Args:
            features: (N, C') features on this tensor's device (any dtype).

        Raises:
            ValueError: when ``features`` live on another device (the manager's coordinates and kernel
                maps would stay behind; use :meth:`to`) or have another number of rows.
        """
        if features.device != self.device:
            raise ValueError(
                f"replace_features got features on {features.device} for a sparse tensor on {self.device}: "
                "its coordinates and kernel maps stay on the old device; move the tensor with "
                f".to({str(features.device)!r}) first, then replace its features")
        return SparseTensor(features, self.coordinates, self.tensor_stride, self.manager, self.coordinate_key)

    def _check_same(self, other: SparseTensor) -> None:
        if other.manager is not self.manager or other.coordinate_key != self.coordinate_key:
            raise ValueError("sparse tensors must share their coordinates (same manager and coordinate key)")

    def __add__(self, other: SparseTensor | torch.Tensor | float) -> SparseTensor:
        if isinstance(other, SparseTensor):
            self._check_same(other)
            other = other.features
        return self.replace_features(self.features + other)

    __radd__ = __add__

    def __mul__(self, other: torch.Tensor | float) -> SparseTensor:
        return self.replace_features(self.features * other)

    def to(self, *args, **kwargs) -> SparseTensor:
        """Convert or move the features like ``Tensor.to`` (same arguments).

        A dtype change keeps the coordinates and the manager. A device move copies the coordinates too
        (with the same ``non_blocking``) and gives the result a fresh manager on the new device, whose
        kernel maps are built there.
        """
        feats = self.features.to(*args, **kwargs)
        if feats.device == self.device:
            return self.replace_features(feats)
        non_blocking = bool(kwargs.get("non_blocking", False))
        coords = self.coordinates.to(feats.device, non_blocking=non_blocking)
        return SparseTensor(feats, coords, self.tensor_stride)

    def cpu(self) -> SparseTensor:
        """This tensor on the CPU (``self`` when it is there already)."""
        return self if self.device.type == "cpu" else self.to("cpu")

    def decomposed_features(self) -> list[torch.Tensor]:
        """Features split per batch item (in row order)."""
        batch = self.coordinates[:, 0]
        return [self.features[batch == b] for b in range(self.batch_size)]


def batched_coordinates(
    coordinates: SequenceABC[np.ndarray | torch.Tensor], device: torch.device | str | None = None
) -> torch.Tensor:
    """Stack per-sample (N_b, D) int coordinates into one (ΣN_b, 1+D) int64 tensor, batch index first."""
    if len(coordinates) == 0:
        raise ValueError("batched_coordinates needs at least one coordinate array")
    parts = []
    for b, c in enumerate(coordinates):
        c = torch.as_tensor(np.asarray(c) if not isinstance(c, torch.Tensor) else c)
        if c.ndim != 2:
            raise ValueError(f"coordinates of sample {b} must have shape (N, D), got {tuple(c.shape)}")
        c = c.to(device=device, dtype=torch.int64)
        parts.append(torch.cat([torch.full_like(c[:, :1], b), c], dim=1))
    return torch.cat(parts, dim=0)


def sparse_collate(
    coordinates: SequenceABC[np.ndarray | torch.Tensor],
    features: SequenceABC[np.ndarray | torch.Tensor],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> SparseTensor:
    """Build one batched :class:`SparseTensor` from per-sample (N_b, D) coordinates and (N_b, C) features."""
    if len(coordinates) != len(features):
        raise ValueError(f"{len(coordinates)} coordinate arrays but {len(features)} feature arrays")
    coords = batched_coordinates(coordinates, device)
    feats = torch.cat(
        [torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f) for f in features]
    )
    return SparseTensor(feats.to(device=coords.device, dtype=dtype), coords)
