"""What learned features encode: cosine similarity to a query point, and 2D embeddings.

Features are any (N, C) float arrays, one per frame, row ``k`` belonging to point ``k`` of the frame.
"""

from __future__ import annotations

import logging

import numpy as np

from fourdcontrast.geometry import RngLike, as_rng
from fourdviz._optional import available, require

logger = logging.getLogger(__name__)

MAX_EMBEDDING_POINTS = 3000
"""Points embedded by default (t-SNE is O(N log N) but slow beyond a few thousand on 2 cores)."""
ZERO_NORM = 1e-12
"""Features shorter than this count as zero vectors (similarity 0 to everything)."""
TSNE_PERPLEXITY = 30.0
"""scikit-learn's default perplexity."""


def check_features(sequence, features) -> list[np.ndarray]:
    """Validate per-frame features against a sequence: returns a list of (n_t, C) float32 arrays."""
    if features is None:
        raise ValueError("features are required for this view (a list of (n_t, C) arrays, one per frame)")
    if len(features) != len(sequence.frames):
        raise ValueError(f"got features for {len(features)} frames, the sequence has {len(sequence.frames)}")
    out = []
    for t, (f, frame) in enumerate(zip(features, sequence.frames, strict=True)):
        f = np.asarray(f, dtype=np.float32)
        if f.ndim != 2 or len(f) != len(frame):
            raise ValueError(f"features of frame {t} have shape {f.shape}, expected ({len(frame)}, C)")
        out.append(f)
    if len({f.shape[1] for f in out}) > 1:
        raise ValueError("features of different frames have different channel counts")
    return out


def cosine_similarity(features: list[np.ndarray], query: np.ndarray) -> list[np.ndarray]:
    """Cosine similarity of every point's feature to a query feature.

    Args:
        features: per-frame (n_t, C) arrays.
        query: (C,) query feature.

    Returns:
        Per-frame (n_t,) float32 similarities in [-1, 1] (0 for zero-length features).
    """
    q = np.asarray(query, dtype=np.float64)
    qn = np.linalg.norm(q)
    q = q / qn if qn > ZERO_NORM else np.zeros_like(q)
    out = []
    for f in features:
        f = np.asarray(f, dtype=np.float64)
        norms = np.linalg.norm(f, axis=1)
        sim = np.divide(f @ q, norms, out=np.zeros(len(f)), where=norms > ZERO_NORM)
        out.append(np.clip(sim, -1.0, 1.0).astype(np.float32))
    return out


def query_similarity(features: list[np.ndarray], frame: int, index: int) -> list[np.ndarray]:
    """:func:`cosine_similarity` to the feature of point ``index`` of frame ``frame``."""
    if not 0 <= frame < len(features) or not 0 <= index < len(features[frame]):
        raise IndexError(f"query point ({frame}, {index}) is outside the features")
    return cosine_similarity(features, features[frame][index])


def embed(
    features: np.ndarray,
    method: str = "auto",
    max_points: int = MAX_EMBEDDING_POINTS,
    rng: RngLike = 0,
    perplexity: float = TSNE_PERPLEXITY,
) -> tuple[np.ndarray, np.ndarray, str]:
    """2D embedding of per-point features.

    Args:
        features: (N, C) features (concatenate frames first if needed).
        method: ``"tsne"`` (scikit-learn), ``"umap"`` (umap-learn), ``"pca"``, or ``"auto"`` (UMAP when
            installed, else t-SNE).
        max_points: at most this many points are embedded (chosen at random with ``rng``).
        rng: generator or seed (subsampling and the embedding's initialisation).
        perplexity: t-SNE perplexity (clipped below the number of points).

    Returns:
        ``(xy, chosen, method)``: (K, 2) float32 coordinates, (K,) int64 indices of the embedded rows of
        ``features``, and the method actually used.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"embed: need (N >= 3, C) features, got shape {x.shape}")
    gen = as_rng(rng)
    chosen = np.arange(len(x))
    if len(x) > max_points:
        chosen = np.sort(gen.choice(len(x), size=max_points, replace=False))
    x = x[chosen]
    seed = int(gen.integers(2**31 - 1))
    if method == "auto":
        method = "umap" if available("umap") else "tsne"
    if method == "umap":
        umap = require("umap", "UMAP embeddings")
        xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        manifold = require("sklearn.manifold", "t-SNE embeddings")
        p = float(min(perplexity, max(1.0, (len(x) - 1) / 3.0)))
        xy = manifold.TSNE(n_components=2, perplexity=p, init="pca", random_state=seed).fit_transform(x)
    elif method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    else:
        raise ValueError(f"embed: unknown method {method!r} (use 'auto', 'tsne', 'umap' or 'pca')")
    logger.debug("embedded %d points with %s", len(x), method)
    return np.asarray(xy, dtype=np.float32), chosen.astype(np.int64), method
