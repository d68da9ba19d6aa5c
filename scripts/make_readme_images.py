"""Make the README's small images under ``docs/img/`` from what the project already draws.

- ``demo_similarity_shipped.png``: the figure ``make demo`` writes as
  ``outputs/demo/figures/similarity_shipped.png`` — drawn here by the demo's own feature stage
  (:func:`fourdcontrast.demo._compare_features`) on the same held-out sequences; the shipped backbone's
  figure does not depend on the demo's pre-training, so no pre-training is run (~1 minute on 2 cores).
- ``nb01.png`` … ``nb06.png``: thumbnails of one figure of each committed notebook (its embedded PNG
  output, the cell chosen in :data:`THUMBNAILS`), so the README's pictures are the notebooks' own.

Usage: ``python scripts/make_readme_images.py [--skip-demo]`` (writes into ``docs/img/``).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "img"
THUMB_WIDTH = 360  # pixels
DEMO_WIDTH = 720  # pixels
THUMBNAILS = {
    # image name: (notebook, index of the code cell whose PNG output is used)
    "nb01.png": ("01_generate_4d_sequences", 14),  # the augmented sequence, frame by frame
    "nb02.png": ("02_correspondences", 5),  # 3D-3D correspondences across the frames
    "nb03.png": ("03_pretraining", 21),  # a live pre-training run's loss terms and collapse monitor
    "nb04.png": ("04_learned_features", 20),  # similarity to one point across the frames, per backbone
    "nb05.png": ("05_downstream", 14),  # predictions vs ground truth on a test room
    "nb06.png": ("06_instances_and_boxes", 12),  # predicted instances and boxes vs ground truth
}

logger = logging.getLogger(__name__)


def notebook_png(notebook: str, cell: int) -> Image.Image:
    """The first PNG output of code cell ``cell`` (index into the notebook's cells) of ``notebook``."""
    path = REPO / "notebooks" / f"{notebook}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    for output in cells[cell].get("outputs", []):
        png = output.get("data", {}).get("image/png")
        if png:
            return Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
    raise ValueError(f"{path}: cell {cell} has no image/png output")


def save_resized(image: Image.Image, path: Path, width: int) -> None:
    """Save ``image`` scaled to ``width`` pixels (aspect kept; never enlarged) as an optimised PNG with a
    256-colour palette (a third of the bytes; figures have few colours)."""
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image = image.quantize(256)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    image.save(tmp, optimize=True)
    tmp.replace(path)


def demo_figure(path: Path) -> None:
    """Run the demo's feature stage for its three backbones (the shipped one in place of a fresh run) and
    keep the shipped backbone's similarity figure."""
    from fourdcontrast.demo import PRETRAIN_CONFIG, SHIPPED_BACKBONE, _compare_features
    from fourdcontrast.train.config import load_config

    config = load_config(PRETRAIN_CONFIG, ["data.workers=1"])
    with tempfile.TemporaryDirectory() as tmp:
        result = _compare_features(Path(tmp), config, SHIPPED_BACKBONE)
        logger.info("held-out recall: %s", {k: round(v["recall"], 4) for k, v in result["backbones"].items()})
        save_resized(Image.open(result["figures"]["similarity_shipped"]).convert("RGB"), path, DEMO_WIDTH)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="only the notebook thumbnails")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, (notebook, cell) in THUMBNAILS.items():
        save_resized(notebook_png(notebook, cell), OUT / name, THUMB_WIDTH)
        logger.info("wrote %s (%s, cell %d)", OUT / name, notebook, cell)
    if not args.skip_demo:
        demo_figure(OUT / "demo_similarity_shipped.png")
        logger.info("wrote %s", OUT / "demo_similarity_shipped.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
