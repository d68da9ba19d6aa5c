"""Figures for the embedded data: asset size, furniture load time, room generation time and size.

Run: ``python benchmarks/sources.py [--rooms 20]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fourdcontrast.sources.furniture import FURNITURE_DIR, furniture_catalog, load_furniture, sample_object
from fourdcontrast.sources.rooms import make_room


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


if __name__ == "__main__":
    main()
