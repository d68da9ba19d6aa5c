"""``fourdcontrast view``: render a sequence to PNG (any static view, or a polyscope screenshot) or open
the polyscope window.

The sequence comes from a shard written by ``fourdcontrast generate`` (``PATH`` + ``--index``) or, by
default, is generated from the embedded data (a procedural room, a shipped furniture object, a sampled
trajectory) with ``--seed``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

STATIC_VIEWS = ("sequence", "overlay", "trajectory", "correspondences", "3d4d", "check")
"""Views rendered with matplotlib."""
VIEWS = (*STATIC_VIEWS, "polyscope", "all")
DEFAULT_OUT = Path("outputs/view")
"""Where PNGs go by default (``<dir>/<view>.png``)."""


def default_sequence(seed: int = 0):
    """A sequence from the embedded data: ``default_scene(seed)``, the first of ``default_objects(seed)``,
    a trajectory from ``sample_trajectory`` and ``compose_sequence`` (needs the data pipeline and sources)."""
    try:
        from fourdcontrast.data.compose import compose_sequence
        from fourdcontrast.data.trajectory import sample_trajectory
        from fourdcontrast.sources.furniture import default_objects
        from fourdcontrast.sources.rooms import default_scene
    except ImportError as exc:
        raise RuntimeError(
            f"the default sequence needs fourdcontrast's data pipeline and embedded sources ({exc}); "
            "pass a shard file instead: fourdcontrast view SHARD.npz --index K"
        ) from exc
    from fourdcontrast.geometry import as_rng

    rng = as_rng(seed)
    scene = default_scene(seed)
    obj = default_objects(seed)[0]
    return compose_sequence(scene, obj, sample_trajectory(scene, obj, rng=rng), seed=seed)


def load_sequence(path: str | Path, index: int = 0):
    """Sequence ``index`` of a shard file written by ``fourdcontrast generate``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sequence file")
    try:
        from fourdcontrast.data.shards import Shard
    except ImportError as exc:
        raise RuntimeError(f"{path}: reading shards needs fourdcontrast.data.shards ({exc})") from exc
    return Shard(path)[index]


def render_view(sequence, view: str, path: Path) -> Path:
    """Render one named view of ``sequence`` to the PNG ``path``; returns the path."""
    if view == "polyscope":
        from fourdviz.polyscope_view import screenshot

        screenshot(sequence, path=path)
        return path
    from fourdviz import static

    makers = {
        "sequence": lambda: static.plot_sequence(sequence, layout="side"),
        "overlay": lambda: static.plot_sequence(sequence, layout="overlay"),
        "trajectory": lambda: static.plot_trajectory_sampling(sequence.trajectory, sequence.scene),
        "correspondences": lambda: static.plot_correspondences(sequence),
        "3d4d": lambda: static.plot_correspondences_3d4d(sequence, frame=0),
        "check": lambda: static.plot_correspondence_check(sequence, 0, min(1, len(sequence) - 1)),
    }
    if view not in makers:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    if view == "trajectory" and sequence.trajectory is None:
        raise ValueError("this sequence has no trajectory record to draw")
    return static.save_figure(makers[view](), path)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", help="shard file from `fourdcontrast generate` (default: generate one)"
    )
    parser.add_argument("--index", type=int, default=0, help="which sequence of the shard (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the default sequence (default 0)")
    parser.add_argument(
        "--view", choices=VIEWS, default="sequence", help="what to render (default: sequence)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"PNG file, or a folder for --view all (default: {DEFAULT_OUT}/<view>.png)",
    )
    parser.add_argument(
        "--show", action="store_true", help="open the polyscope window instead of writing PNGs"
    )


def run_cli(args: argparse.Namespace) -> int:
    sequence = load_sequence(args.path, args.index) if args.path else default_sequence(args.seed)
    if args.show:
        from fourdviz.polyscope_view import show

        show(sequence)
        return 0
    views = [*STATIC_VIEWS, "polyscope"] if args.view == "all" else [args.view]
    folder = args.out if (args.out is not None and args.view == "all") else DEFAULT_OUT
    for view in views:
        path = args.out if (args.out is not None and args.view != "all") else folder / f"{view}.png"
        if view == "trajectory" and sequence.trajectory is None:
            logger.warning("skipping the trajectory view: the sequence has no trajectory record")
            continue
        render_view(sequence, view, Path(path))
        logger.info("wrote %s", path)
    return 0
