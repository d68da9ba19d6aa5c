#!/usr/bin/env python3
"""Build ``fourdcontrast/assets/furniture/`` from Debian's ``sweethome3d-furniture`` (reproducible).

Only ``BlendSwap-CC-0.sh3f`` (CC0 1.0) is used. Get it without installing::

    cd /tmp && apt-get download sweethome3d-furniture && dpkg-deb -x sweethome3d-furniture_*.deb /tmp/sh3d
    python scripts/build_furniture_assets.py \
        --sh3f /tmp/sh3d/usr/share/sweethome3d/furniture/BlendSwap-CC-0.sh3f

For every curated model (``CURATED``: model folder → category) it reads the OBJ (y up, centimetres),
rotates it to z up, scales each axis to the catalog's width/depth/height (as Sweet Home 3D does), puts it
in the canonical pose (xy bbox centre at the origin, min z = 0, front facing -y), samples its surface
area-weighted (one point per ``SPACING``² of area, between ``MIN_POINTS`` and ``MAX_POINTS``, fixed
seed) and writes ``<id>.npz`` (points as uint16 over the bounding box ``lo``..``hi``, normals as int8),
``index.json`` and ``PROVENANCE.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fourdcontrast.geometry import sample_surface, triangle_areas  # noqa: E402
from fourdcontrast.io.atomic import atomic_path  # noqa: E402
from fourdcontrast.io.mesh import read_mesh  # noqa: E402
from fourdcontrast.sources.furniture import canonical_placement, up_rotation  # noqa: E402

DEFAULT_SH3F = Path("/usr/share/sweethome3d/furniture/BlendSwap-CC-0.sh3f")
OUT = REPO / "fourdcontrast" / "assets" / "furniture"
SPACING = 0.015
"""Surface spacing of the stored samples, metres (rooms use ~2 cm)."""
MIN_POINTS, MAX_POINTS = 4000, 20000
SEED = 20220101

CURATED: dict[str, str] = {
    # chairs (ModelNet chair; stools and armchairs included as ScanNet does)
    "armchair": "chair", "armchair2": "chair", "antiqueChair": "chair", "chair": "chair",
    "chair2": "chair", "chairWithCushion": "chair", "designChair": "chair", "foldingChair": "chair",
    "modernArmchair": "chair", "oakChair": "chair", "osakaChair": "chair", "plasticChair": "chair",
    "sillaBlanca": "chair", "silla2": "chair", "stool": "chair", "stool2": "chair", "thonet": "chair",
    "winchesterArmchair": "chair",
    # beds
    "bed1": "bed", "bed2": "bed", "bed3": "bed", "bedWithTexture": "bed",
    # the paper's other ModelNet classes
    "bedsideTable2": "nightstand",
    "L_shaped_sofa": "sofa", "sofa": "sofa", "couch": "sofa", "couch2": "sofa", "sofa2": "sofa",
    "winchesterSofa": "sofa",
    "oakTable": "table", "table": "table", "tableWithTablecloth": "table", "technicalTable1": "table",
    "desk": "desk", "lbDesk": "desk",
    "drawersCabinet": "dresser",
    "toiletsUnit": "toilet",
    # room furniture beyond the eight classes
    "led_tv": "monitor",
    "cupboard": "cabinet", "lowerCabinet": "cabinet", "wardrobeWithSlidingDoors": "cabinet",
    "bookcase": "other", "verticalShelves": "other", "plant": "other", "decorativePlant": "other",
    "dustbin": "other",
}
"""Model folder in the .sh3f → category. There is no bathtub in the CC-0 set."""


def read_catalog(zf: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    """Catalog entries keyed by model folder (``/blendswap-cc-0/<folder>/<file>.obj``)."""
    entries: dict[int, dict[str, str]] = {}
    for line in zf.read("PluginFurnitureCatalog.properties").decode("latin-1").splitlines():
        m = re.match(r"^(\w+)#(\d+)=(.*)$", line.strip())
        if m:
            entries.setdefault(int(m.group(2)), {})[m.group(1)] = m.group(3)
    return {e["model"].split("/")[2]: e for e in entries.values() if "model" in e}


def blendswap_source(zf: zipfile.ZipFile, folder: str) -> tuple[str, str]:
    """(title/author line, URL) from the model's BLENDSWAP_LICENSE.txt."""
    try:
        text = zf.read(f"blendswap-cc-0/{folder}/BLENDSWAP_LICENSE.txt").decode("utf-8", "replace")
    except KeyError:
        return "", ""
    title = re.search(r'Thank you for downloading (.*)', text)
    url = re.search(r"(https?://\S+)", text)
    lic = re.search(r"Released under\s+(.*)", text)
    if lic and "Zero" not in lic.group(1):
        raise SystemExit(f"{folder}: BLENDSWAP_LICENSE.txt says {lic.group(1)!r}, not CC0")
    return (title.group(1).strip() if title else ""), (url.group(1) if url else "")


def convert(zf: zipfile.ZipFile, folder: str, entry: dict[str, str], tmp: Path):
    obj = entry["model"].lstrip("/")
    if "modelRotation" in entry:
        raise SystemExit(f"{folder}: catalog modelRotation is not supported")
    prefix = obj.rsplit("/", 1)[0] + "/"
    for member in zf.namelist():
        if member.startswith(prefix) and not member.endswith("/"):
            target = tmp / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(member))
    mesh = read_mesh(tmp / obj)
    v = mesh.vertices @ up_rotation("y").T / 100.0  # cm → m, y up → z up
    extent = v.max(axis=0) - v.min(axis=0)
    size = np.array([float(entry["width"]), float(entry["depth"]), float(entry["height"])]) / 100.0
    v = canonical_placement(v * (size / np.maximum(extent, 1e-9)))
    area = float(triangle_areas(v, mesh.faces).sum())
    n = int(np.clip(round(area / SPACING**2), MIN_POINTS, MAX_POINTS))
    points, normals, _ = sample_surface(v, mesh.faces, n, np.random.default_rng(SEED))
    lo, hi = points.min(axis=0), points.max(axis=0)
    q = np.round((points - lo) / np.maximum(hi - lo, 1e-9) * 65535.0).astype(np.uint16)
    normals_q = np.round(normals * 127.0).astype(np.int8)
    return q, lo, hi, normals_q, area, size, len(mesh.vertices), len(mesh.faces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sh3f", type=Path, default=DEFAULT_SH3F, help="path of BlendSwap-CC-0.sh3f")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args(argv)
    if not args.sh3f.is_file():
        raise SystemExit(f"{args.sh3f}: not found (see this script's docstring for how to get it)")
    if args.sh3f.name != "BlendSwap-CC-0.sh3f":
        raise SystemExit("only BlendSwap-CC-0.sh3f is CC0 and may be shipped")
    sha = hashlib.sha256(args.sh3f.read_bytes()).hexdigest()
    args.out.mkdir(parents=True, exist_ok=True)
    zf = zipfile.ZipFile(args.sh3f)
    catalog = read_catalog(zf)
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder, category in sorted(CURATED.items()):
            entry = catalog[folder]
            q, lo, hi, normals, area, size, nv, nf = convert(zf, folder, entry, Path(tmp))
            buf = io.BytesIO()
            np.savez_compressed(buf, points=q, lo=lo.astype(np.float32), hi=hi.astype(np.float32),
                                normals=normals)
            with atomic_path(args.out / f"{folder}.npz") as t:
                t.write_bytes(buf.getvalue())
            title, url = blendswap_source(zf, folder)
            models.append({
                "id": folder, "name": entry["name"], "category": category, "file": f"{folder}.npz",
                "size_m": [round(float(s), 4) for s in size], "area_m2": round(area, 4),
                "n_points": len(q), "source_vertices": nv, "source_faces": nf,
                "creator": entry.get("creator", ""), "title": title, "url": url, "license": "CC0-1.0",
                "source": f"sweethome3d-furniture:BlendSwap-CC-0.sh3f:{entry['model']}",
            })
            print(f"{folder:28s} {category:10s} {len(q):6d} points  {area:6.2f} m²", file=sys.stderr)
    index = {"source_package": "sweethome3d-furniture 1.8-1", "sh3f": "BlendSwap-CC-0.sh3f",
             "sh3f_sha256": sha, "spacing_m": SPACING, "seed": SEED, "license": "CC0-1.0",
             "models": models}
    with atomic_path(args.out / "index.json") as t:
        t.write_text(json.dumps(index, indent=1) + "\n")
    write_provenance(args.out / "PROVENANCE.md", index, zf.read("LICENSE.TXT").decode("utf-8", "replace"))
    return 0


def write_provenance(path: Path, index: dict, licence: str) -> None:
    rows = "\n".join(
        f"| {m['id']} | {m['category']} | {m['name']} | {m['creator']} | {m['url'] or '-'} | "
        f"{' × '.join(f'{s:.2f}' for s in m['size_m'])} | {m['n_points']} |"
        for m in index["models"])
    text = f"""# Provenance and licence of the shipped furniture

All {len(index['models'])} models here are **CC0 1.0 (public domain dedication)**. They come from
`{index['sh3f']}` (sha256 `{index['sh3f_sha256']}`) of the Debian package
`{index['source_package']}` (`/usr/share/sweethome3d/furniture/`), originally from Blend Swap. No
other library of that package (CC-BY, CC-BY-US, Reallusion) and nothing of the GPL `sweethome3d`
application is shipped.

Converted by `scripts/build_furniture_assets.py` (deterministic, seed {index['seed']}): OBJ (y up,
cm) → z up, each axis scaled to the catalog width × depth × height, canonical pose (xy bbox centre at
the origin, lowest point at z = 0, front facing -y), area-weighted surface samples at about
{index['spacing_m'] * 100:.1f} cm spacing (4k–20k per model) with unit normals. No mesh is shipped.

**No bathtub**: the CC-0 library has no bathtub model, so the paper's eighth ModelNet class (bathtub)
is missing from the embedded set; the other seven (chair, desk, dresser, nightstand, sofa, table,
toilet) are present, plus bed, monitor, cabinet and other pieces for the rooms.

| id | category | catalog name | creator | source | size w × d × h (m) | points |
|---|---|---|---|---|---|---|
{rows}

## Licence text of the library (`LICENSE.TXT` in the .sh3f)

```
{licence.strip()}
```
"""
    with atomic_path(path) as t:
        t.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
