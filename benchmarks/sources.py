"""Figures for the embedded data: asset size, furniture load time, room generation time and size.

Run: ``python benchmarks/sources.py [--rooms 20]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from fourdcontrast.io.ply import write_ply
from fourdcontrast.sources.furniture import FURNITURE_DIR, furniture_catalog, load_furniture, sample_object
from fourdcontrast.sources.rooms import make_room
from fourdcontrast.sources.scannet import read_scannet_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=20, help="rooms to time")
    args = parser.parse_args()
    files = [p for p in Path(FURNITURE_DIR).rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    catalog = furniture_catalog()
    print(f"assets: {len(catalog)} models, {len(files)} files, {size / 2**20:.2f} MiB")
    for category in sorted({e["category"] for e in catalog}):
        print(f"  {category:10s} {sum(e['category'] == category for e in catalog)}")
    t = time.perf_counter()
    furniture = load_furniture()
    print(f"load_furniture: {1e3 * (time.perf_counter() - t):.1f} ms, "
          f"{sum(len(o) for o in furniture)} points")
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for obj in furniture:
        sample_object(obj, rng=rng)
    print(f"sample_object (1000 points): {1e3 * (time.perf_counter() - t) / len(furniture):.2f} ms each")
    times, counts = [], []
    for seed in range(args.rooms):
        t = time.perf_counter()
        room = make_room(seed, furniture=furniture)
        times.append(time.perf_counter() - t)
        counts.append(len(room))
    times, counts = np.array(times), np.array(counts)
    print(f"make_room ({args.rooms} rooms, furniture preloaded): {1e3 * np.median(times):.0f} ms median, "
          f"{1e3 * times.max():.0f} ms max; points {counts.min()}–{counts.max()} "
          f"(median {int(np.median(counts))})")
    room = make_room(0, furniture=furniture, size=(4.0, 5.0), room_type="office")
    print(f"4 × 5 m office: {len(room)} points, {room.points.nbytes / 2**20:.1f} MiB of float32 xyz")

    bench_scannet()


def bench_scannet(n_vertices: int = 150_000, n_faces: int = 290_000, n_segments: int = 3000) -> None:
    """Read time of a ScanNet-sized scene (typical _vh_clean_2: ~150k vertices, ~290k faces)."""
    rng = np.random.default_rng(0)
    name = "scene0000_00"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        v = rng.uniform(0, 6, size=(n_vertices, 3))
        colors = rng.integers(0, 256, size=(n_vertices, 4)).astype(np.uint8)
        faces = rng.integers(0, n_vertices, size=(n_faces, 3))
        write_ply(folder / f"{name}_vh_clean_2.ply", v, faces, colors=colors)
        write_ply(folder / f"{name}_vh_clean_2.labels.ply", v, faces, colors=colors,
                  vertex_properties={"label": rng.integers(0, 41, n_vertices).astype(np.uint16)})
        segs = rng.integers(0, n_segments, n_vertices)
        segs_path = folder / f"{name}_vh_clean_2.0.010000.segs.json"
        segs_path.write_text(json.dumps({"segIndices": segs.tolist()}))
        groups = [{"id": i, "objectId": i, "label": "chair",
                   "segments": list(range(i * 50, (i + 1) * 50))} for i in range(n_segments // 50)]
        (folder / f"{name}.aggregation.json").write_text(json.dumps({"segGroups": groups}))
        (folder / f"{name}.txt").write_text("axisAlignment = " + " ".join(map(str, np.eye(4).ravel())) + "\n")
        t = time.perf_counter()
        scene = read_scannet_scene(folder)
        print(f"read_scannet_scene ({n_vertices} vertices, {n_faces} faces, labels, instances): "
              f"{1e3 * (time.perf_counter() - t):.0f} ms; {len(scene)} points")


if __name__ == "__main__":
    main()
