"""The semantic class set of the labelled rooms and of the ScanNet reader (a ScanNet-like subset).

``CLASS_NAMES`` are the labels of :class:`~fourdcontrast.records.Scene` (``labels`` index them). The
paper's eight ModelNet object categories (Sec. 4) are ``OBJECT_CATEGORIES``; rooms also use ``bed`` and
``monitor``. ``dresser`` pieces are labelled ``cabinet`` in scenes (ScanNet merges them likewise).
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "wall", "floor", "chair", "table", "desk", "bed", "sofa", "toilet", "cabinet", "nightstand",
    "monitor", "other",
)
"""Semantic classes of labelled scenes; a label is an index into this tuple (-1 = unlabelled)."""

OBJECT_CATEGORIES: tuple[str, ...] = (
    "chair", "desk", "dresser", "nightstand", "sofa", "table", "bathtub", "toilet",
)
"""The paper's eight ModelNet furniture categories for the moving objects (Sec. 4)."""

CATEGORY_TO_CLASS: dict[str, str] = {
    "chair": "chair", "table": "table", "desk": "desk", "bed": "bed", "sofa": "sofa",
    "toilet": "toilet", "cabinet": "cabinet", "dresser": "cabinet", "nightstand": "nightstand",
    "monitor": "monitor", "bathtub": "other",
}
"""Object category → scene class (anything else → ``other``)."""

RAW_CATEGORY_TO_CLASS: dict[str, str] = {
    "wall": "wall", "walls": "wall", "floor": "floor", "carpet": "floor", "rug": "floor",
    "chair": "chair", "office chair": "chair", "armchair": "chair", "stool": "chair",
    "folded chair": "chair", "dining chair": "chair", "seat": "chair", "sofa chair": "chair",
    "table": "table", "coffee table": "table", "end table": "table", "dining table": "table",
    "kitchen table": "table", "round table": "table", "side table": "table",
    "desk": "desk", "computer desk": "desk",
    "bed": "bed", "loft bed": "bed", "bunk bed": "bed",
    "sofa": "sofa", "couch": "sofa", "couch cushions": "sofa", "loveseat": "sofa",
    "toilet": "toilet",
    "cabinet": "cabinet", "cabinets": "cabinet", "kitchen cabinet": "cabinet",
    "kitchen cabinets": "cabinet", "file cabinet": "cabinet", "dresser": "cabinet",
    "wardrobe": "cabinet", "wardrobe closet": "cabinet", "drawer": "cabinet", "dresser drawer": "cabinet",
    "nightstand": "nightstand", "night stand": "nightstand", "bedside table": "nightstand",
    "monitor": "monitor", "computer monitor": "monitor", "tv": "monitor", "television": "monitor",
    "screen": "monitor",
}
"""ScanNet ``raw_category`` (aggregation ``label``, lower case) → class; unknown → ``other``."""

NYU40_TO_CLASS: dict[int, str] = {
    1: "wall", 2: "floor", 3: "cabinet", 4: "bed", 5: "chair", 6: "sofa", 7: "table", 14: "desk",
    17: "cabinet", 25: "monitor", 32: "nightstand", 33: "toilet",
}
"""NYU40 ids (ScanNet ``labels.ply``) → class: 17 dresser → cabinet, 25 television → monitor; other
non-zero ids → ``other``; 0 (unannotated) → unlabelled (-1)."""


def class_id(name: str) -> int:
    """Index of class ``name`` in :data:`CLASS_NAMES`.

    Raises:
        KeyError: for a name not in the class set.
    """
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; classes: {', '.join(CLASS_NAMES)}") from None


def class_of_category(category: str) -> int:
    """Scene class id of an object category (``dresser`` → ``cabinet``; unknown → ``other``)."""
    return class_id(CATEGORY_TO_CLASS.get(category, "other"))


def class_of_raw_category(raw: str) -> int:
    """Scene class id of a ScanNet raw category (case-insensitive; unknown → ``other``)."""
    return class_id(RAW_CATEGORY_TO_CLASS.get(raw.strip().lower(), "other"))


def class_of_nyu40(nyu40: int) -> int:
    """Scene class id of a NYU40 id (0 → -1 unlabelled; unmapped → ``other``)."""
    if nyu40 == 0:
        return -1
    return class_id(NYU40_TO_CLASS.get(int(nyu40), "other"))
