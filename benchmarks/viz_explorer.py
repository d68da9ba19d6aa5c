"""How responsive the visualizer is on a 100k-point scene: explorer build, click → similarity recolour,
the data a click sends to the browser, static renders and a headless polyscope screenshot.

Run: ``PYTHONPATH=. python benchmarks/viz_explorer.py`` (prints figures; no assertions).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fourdviz"))

from vizdata import make_features, make_sequence  # noqa: E402

N_SCENE, N_OBJECT, FRAMES, CHANNELS = 100_000, 1_000, 4, 96


def timed(label: str, fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    print(f"{label:<55s} {best * 1000:9.1f} ms")
    return out


def main() -> None:
    seq = make_sequence(n_scene=N_SCENE, n_object=N_OBJECT, frames=FRAMES)
    feats = make_features(seq, channels=CHANNELS)
    total = sum(len(f) for f in seq.frames)
    print(f"sequence: {FRAMES} frames, {total:,} points in all, features C={CHANNELS}")

    from fourdviz import interactive, static

    ex = timed(
        "SequenceExplorer build (10k points/frame shown)", lambda: interactive.SequenceExplorer(seq, feats)
    )
    shown = sum(len(i) for _, _, i in ex._traces)
    timed("click → similarity over all frames + recolour", lambda: ex.set_query(0, 123), repeat=3)
    payload = sum(len(json.dumps(np.asarray(c).round(3).tolist())) for c in ex.marker_colors())
    print(f"{'points shown / total':<55s} {shown:,} / {total:,}")
    print(f"{'recolour payload (JSON of marker colours)':<55s} {payload / 1e6:9.2f} MB")
    full = interactive.SequenceExplorer(seq, feats, max_points=None)
    timed("click with no subsampling (all points shown)", lambda: full.set_query(0, 123), repeat=3)

    timed(
        "static plot_sequence (side) + PNG",
        lambda: static.save_figure(static.plot_sequence(seq), "/tmp/b.png"),
    )
    timed(
        "static plot_similarity + PNG",
        lambda: static.save_figure(static.plot_similarity(seq, feats, (0, 5)), "/tmp/b.png"),
    )
    timed(
        "static plot_correspondence_check + PNG",
        lambda: static.save_figure(static.plot_correspondence_check(seq, 0, 1), "/tmp/b.png"),
    )
    try:
        from fourdviz import polyscope_view

        timed(
            "polyscope screenshot, cold (init + all points)",
            lambda: polyscope_view.screenshot(seq, feats, query=(0, 5)),
        )
        timed(
            "polyscope screenshot, warm",
            lambda: polyscope_view.screenshot(seq, feats, query=(0, 5)),
            repeat=2,
        )
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"polyscope screenshot unavailable: {exc}")


if __name__ == "__main__":
    main()
