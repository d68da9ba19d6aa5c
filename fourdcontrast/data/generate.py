"""Offline generation of 4D sequences (paper, Sec. 4: 20 trajectories per scan, t = 4).

``fourdcontrast generate --scenes DIR|default --objects DIR|default --trajectories-per-scene 20
--length 4 --workers N --seed S --out DIR [--resume]``

Work is split into *units*, one per scene; a unit generates that scene's trajectories and writes one
shard atomically (temp file + rename). Every (scene, trajectory) pair draws from its own generator,
seeded by ``numpy.random.SeedSequence(seed, spawn_key=(scene, trajectory))``, so the output does not
depend on the number of workers or on the order units finish. The manifest (``manifest.json``, also
written atomically after every unit) records the parameters, the seeds, per-unit counts and the
discard rate; ``--resume`` skips the units it lists as done and regenerates the rest — a shard renamed
into place just before an interruption is simply rewritten with identical content — so an interrupted
run completes without duplicated or lost sequences.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fourdcontrast.data import make_sequence
from fourdcontrast.data.augment import AugmentationError
from fourdcontrast.data.shards import save_shard
from fourdcontrast.data.trajectory import (
    DEFAULT_LENGTH,
    candidate_positions,
    compute_height_map,
    nearest_candidate_lookup,
)
from fourdcontrast.errors import InputError, RunFolderError
from fourdcontrast.geometry import as_rng
from fourdcontrast.io.atomic import atomic_write_bytes
from fourdcontrast.io.mesh import read_scene
from fourdcontrast.records import Scene, Sequence, ShapeObject
from fourdcontrast.sources.furniture import default_objects as sources_default_objects
from fourdcontrast.sources.furniture import read_object
from fourdcontrast.sources.rooms import default_scene as sources_default_scene
from fourdcontrast.sources.scannet import read_scannet_scene

logger = logging.getLogger(__name__)

DEFAULT_TRAJECTORIES_PER_SCENE = 20
"""Trajectories generated per scan (paper, Sec. 4: 20)."""
DEFAULT_OBJECT_POINTS = 1000
"""Points sampled from each object (paper, Sec. 4: 1000)."""
DEFAULT_SCENE_COUNT = 8
"""Number of built-in scenes used by ``--scenes default``."""
MANIFEST = "manifest.json"
SCENE_SUFFIXES = (".npz", ".ply")
OBJECT_SUFFIXES = (".npz", ".ply", ".off", ".obj", ".glb", ".stl")


@dataclass(frozen=True)
class SceneSpec:
    """Where a unit's scene comes from: a file path, or ``("default", i)`` for built-in scene ``i``."""

    kind: str
    ref: str

    def load(self) -> Scene:
        """Read the scene (raises ValueError naming the file when it cannot)."""
        if self.kind == "default":
            return default_scene(int(self.ref))
        return load_scene(self.ref)


def default_scene(i: int) -> Scene:
    """Built-in scene ``i``: the embedded procedural labelled room of seed ``i``
    (:func:`fourdcontrast.sources.default_scene`)."""
    return sources_default_scene(i)


def default_objects() -> list[ShapeObject]:
    """Built-in objects: the shipped CC-0 furniture of the paper's classes, 1000 points each
    (:func:`fourdcontrast.sources.default_objects`)."""
    return sources_default_objects(seed=0, n=DEFAULT_OBJECT_POINTS)


def load_scene(path: str | os.PathLike) -> Scene:
    """A scene file: a ScanNet ``*_vh_clean_2.ply`` (with its labels and instances when beside it), or
    any PLY/OBJ/OFF/GLB/NPZ point cloud or mesh (its vertices). Raises ValueError naming the file."""
    path = Path(path)
    if path.name.endswith("_vh_clean_2.ply"):
        return read_scannet_scene(path)
    return read_scene(path)


def load_object(path: str | os.PathLike, count: int = DEFAULT_OBJECT_POINTS) -> ShapeObject:
    """An object file (mesh or ``.npz`` point set), upright, at a plausible size for its category (the
    name of its parent folder, as in ModelNet), sampled to ``count`` points seeded by the file name so
    loading is deterministic. Raises ValueError naming the file."""
    path = Path(path)
    rng = np.random.default_rng(list(path.name.encode()))
    return read_object(path, category=path.parent.name, n=count, rng=rng)


def _files(directory: str, suffixes: tuple[str, ...], what: str) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{root}: {what} folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"{root}: no {what} files ({', '.join(suffixes)})")
    return files


def scene_specs(scenes: str, count: int = DEFAULT_SCENE_COUNT) -> list[SceneSpec]:
    """Scene specs for ``--scenes``: ``"default"`` (``count`` built-in rooms) or a folder."""
    if scenes == "default":
        return [SceneSpec("default", str(i)) for i in range(count)]
    return [SceneSpec("file", str(p)) for p in _files(scenes, SCENE_SUFFIXES, "scene")]


def load_objects(objects: str) -> list[ShapeObject]:
    """Objects for ``--objects``: ``"default"`` or a folder of object files."""
    if objects == "default":
        return default_objects()
    return [load_object(p) for p in _files(objects, OBJECT_SUFFIXES, "object")]


def unit_seed(seed: int, scene: int, trajectory: int) -> int:
    """The 63-bit seed of trajectory ``trajectory`` of scene ``scene`` under the global ``seed``."""
    state = np.random.SeedSequence(seed, spawn_key=(scene, trajectory)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@dataclass
class GenerationConfig:
    """Parameters of an offline generation (all recorded in the manifest).

    Attributes:
        trajectories_per_scene: sequences per scan (paper: 20).
        length: frames per sequence (paper: 4).
        seed: global seed.
        scene_count: built-in scenes when ``--scenes default``.
    """

    trajectories_per_scene: int = DEFAULT_TRAJECTORIES_PER_SCENE
    length: int = DEFAULT_LENGTH
    seed: int = 0
    scene_count: int = DEFAULT_SCENE_COUNT
    sources: dict = field(default_factory=dict)


def generate_scene_sequences(
    scene: Scene,
    objects: list[ShapeObject],
    scene_index: int,
    config: GenerationConfig,
    first_trajectory: int = 0,
    maps: dict | None = None,
) -> tuple[list[Sequence], dict]:
    """Generate the ``config.trajectories_per_scene`` sequences of one scene.

    Trajectory ``k`` uses the generator seeded by :func:`unit_seed`; it picks its object uniformly from
    ``objects``, then calls :func:`~fourdcontrast.data.make_sequence`. Height maps are computed once per
    scene and candidates once per object radius.

    Args:
        scene: the scan.
        objects: objects to pick from.
        scene_index: index of the scene in the run (part of every seed).
        config: parameters.
        first_trajectory: index of the first trajectory (to generate a slice of a scene's).
        maps: optional dict kept by the caller to reuse height maps across calls for this scene.

    Returns:
        The sequences (failed trajectories are skipped) and the unit's counts: ``sequences``,
        ``failed``, ``tries``, ``discarded``, ``failures`` (messages).
    """
    stats: dict = {"tries": 0, "discarded": 0}
    failures: list[str] = []
    sequences: list[Sequence] = []
    maps = {} if maps is None else maps
    if "base" not in maps:
        try:
            maps["base"] = compute_height_map(scene)
        except ValueError as exc:
            maps["base"] = str(exc)
    base = maps["base"]
    if isinstance(base, str):
        failures.append(base)
    todo = range(first_trajectory, first_trajectory + config.trajectories_per_scene)
    for k in todo if not isinstance(base, str) else []:
        seed = unit_seed(config.seed, scene_index, k)
        rng = as_rng(seed)
        obj = objects[int(rng.integers(len(objects)))]
        try:
            if obj.radius not in maps:
                hm = candidate_positions(base, obj.radius)
                maps[obj.radius] = (hm, nearest_candidate_lookup(hm))
            hm, lookup = maps[obj.radius]
            sequences.append(
                make_sequence(scene, obj, rng, config.length, hm, lookup, stats=stats, seed=seed)
            )
        except (AugmentationError, ValueError) as exc:
            failures.append(f"trajectory {k}: {exc}")
    counts = {
        "sequences": len(sequences),
        "failed": config.trajectories_per_scene - len(sequences),
        "tries": stats["tries"],
        "discarded": stats["discarded"],
        "failures": failures[:5],
    }
    return sequences, counts


def shard_name(scene_index: int) -> str:
    return f"shard_{scene_index:06d}.npz"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker process


def _run_unit(
    item: tuple[int, SceneSpec], objects: list[ShapeObject], config: GenerationConfig, out: str
) -> tuple[int, dict]:
    index, spec = item
    scene = spec.load()
    sequences, counts = generate_scene_sequences(scene, objects, index, config)
    save_shard(Path(out) / shard_name(index), scene, sequences, meta={"scene_index": index})
    counts["shard"] = shard_name(index)
    counts["scene"] = scene.name
    return index, counts


def _write_manifest(path: Path, manifest: dict) -> None:
    units = manifest["units"].values()
    tries = sum(u["tries"] for u in units)
    manifest["totals"] = {
        "units_done": len(manifest["units"]),
        "units": len(manifest["scenes"]),
        "sequences": sum(u["sequences"] for u in units),
        "failed": sum(u["failed"] for u in units),
        "tries": tries,
        "discarded": sum(u["discarded"] for u in units),
        "discard_rate": sum(u["discarded"] for u in units) / tries if tries else 0.0,
    }
    atomic_write_bytes(path, json.dumps(manifest, indent=1, sort_keys=True).encode())


def run_generation(
    specs: list[SceneSpec],
    objects: list[ShapeObject],
    out: str | os.PathLike,
    config: GenerationConfig,
    workers: int = 1,
    resume: bool = False,
    on_unit: Callable[[int, dict], None] | None = None,
    overwrite: bool = False,
) -> dict:
    """Generate every scene's sequences into ``out`` (shards + manifest); see the module docstring.

    Args:
        specs: the scenes, one unit each.
        objects: the objects trajectories pick from.
        out: output folder (created).
        config: parameters (recorded in the manifest).
        workers: worker processes (1 = in this process).
        resume: continue the run recorded in ``out/manifest.json``, skipping finished units.
        on_unit: called in this process after each finished unit with (scene index, counts) — after
            the manifest records it (tests use it to interrupt a run).
        overwrite: start again in an ``out`` that holds a run: its manifest and shards are deleted first.

    Returns:
        The final manifest.

    Raises:
        RunFolderError: (a ``ValueError``) ``out`` holds a manifest and neither ``resume`` nor
            ``overwrite`` is given; the message names the folder, the scenes done and the two flags.
        InputError: ``resume`` and ``overwrite`` together; the manifest is unreadable or was written with
            other parameters, scenes or objects.
    """
    out = Path(out)
    path = out / MANIFEST
    if resume and overwrite:
        raise InputError(f"--resume and --overwrite exclude each other: --resume continues the run in {out}, "
                         "--overwrite deletes it")
    if path.exists() and overwrite:
        for shard in out.glob("shard_*.npz"):
            shard.unlink()
        path.unlink()
        logger.info("--overwrite: removed the generation run in %s (manifest and shards)", out)
    out.mkdir(parents=True, exist_ok=True)
    params = {**asdict(config), "objects": [o.name for o in objects]}
    scenes = [asdict(s) for s in specs]
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: unreadable manifest ({exc}); --overwrite starts the run "
                             "again") from exc
        done = len(manifest.get("units", {}))
        if not resume:
            raise RunFolderError(
                f"{out} already holds a generation run ({done} of {len(manifest.get('scenes', []))} scenes "
                f"done; {MANIFEST}): pass --resume to continue it, or --overwrite to start again (deletes "
                "its shards)")
        if manifest.get("parameters") != params or manifest.get("scenes") != scenes:
            raise InputError(f"{path}: written with other parameters or scenes; cannot resume with these "
                             "(--overwrite starts again with them)")
        manifest["units"] = {k: v for k, v in manifest["units"].items() if (out / v["shard"]).exists()}
        logger.info("resuming the generation in %s: found %s with %d of %d scenes done; reusing them", out,
                    MANIFEST, len(manifest["units"]), len(specs))
    else:
        manifest = {"version": 1, "parameters": params, "scenes": scenes, "units": {}}
    todo = [(i, s) for i, s in enumerate(specs) if str(i) not in manifest["units"]]
    manifest["seeds"] = "numpy.random.SeedSequence(seed, spawn_key=(scene_index, trajectory_index))"
    _write_manifest(path, manifest)
    logger.info("%d of %d scenes to generate into %s", len(todo), len(specs), out)

    def record(results: Iterable[tuple[int, dict]]) -> None:
        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="scenes", unit="scene")
        try:
            for index, counts in results:
                manifest["units"][str(index)] = counts
                _write_manifest(path, manifest)
                bar.update(1)
                bar.set_postfix(
                    sequences=manifest["totals"]["sequences"],
                    discard=f"{manifest['totals']['discard_rate']:.2f}",
                )
                if on_unit is not None:
                    on_unit(index, counts)
        finally:
            bar.close()

    run = functools.partial(_run_unit, objects=objects, config=config, out=str(out))
    if workers <= 1:
        record(run(item) for item in todo)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            record(pool.imap_unordered(run, todo))
    return manifest


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fourdcontrast generate``."""
    parser.add_argument("--scenes", default="default", help="folder of .ply/.npz scans, or 'default'")
    parser.add_argument("--objects", default="default", help="folder of object files, or 'default'")
    parser.add_argument(
        "--trajectories-per-scene",
        type=int,
        default=DEFAULT_TRAJECTORIES_PER_SCENE,
        help="sequences per scan (paper: 20)",
    )
    parser.add_argument("--length", type=int, default=DEFAULT_LENGTH, help="frames per sequence (paper: 4)")
    parser.add_argument(
        "--scene-count", type=int, default=DEFAULT_SCENE_COUNT, help="built-in scenes for --scenes default"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="global seed")
    parser.add_argument("--out", required=True, help="output folder for shards and manifest.json")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    runs.add_argument("--overwrite", action="store_true",
                      help="start again in an --out that holds a run, deleting its manifest and shards")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``fourdcontrast generate``; returns the exit status (1 on bad input)."""
    try:
        specs = scene_specs(args.scenes, args.scene_count)
        objects = load_objects(args.objects)
        config = GenerationConfig(
            trajectories_per_scene=args.trajectories_per_scene,
            length=args.length,
            seed=args.seed,
            scene_count=args.scene_count if args.scenes == "default" else 0,
            sources={"scenes": args.scenes, "objects": args.objects},
        )
        manifest = run_generation(specs, objects, args.out, config, args.workers, args.resume,
                                  overwrite=args.overwrite)
    except InputError:
        raise  # the command line prints it on one line and exits with status 2
    except ValueError as exc:
        logger.error("error: %s", exc)
        return 1
    t = manifest["totals"]
    logger.info(
        "%d sequences in %d shards (%d failed), discard rate %.3f",
        t["sequences"],
        t["units_done"],
        t["failed"],
        t["discard_rate"],
    )
    return 0


if __name__ == "__main__":  # `python -m fourdcontrast.data.generate ...` = `fourdcontrast generate ...`
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _parser = argparse.ArgumentParser(prog="fourdcontrast generate", description=__doc__.splitlines()[0])
    add_cli_arguments(_parser)
    sys.exit(run_cli(_parser.parse_args()))
