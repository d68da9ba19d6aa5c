"""Small synthetic scenes for the pipeline tests: box rooms sampled at a few cm, with the messiness of
real scans where a test needs it (ceiling, table, tilted floor, holes, clutter, overhangs)."""

import numpy as np
import pytest

from fourdcontrast.data.synthetic import sample_box_surface, synthetic_box_object, synthetic_room
from fourdcontrast.records import Scene

ROOM = (4.0, 3.5, 2.5)
SPACING = 0.04


@pytest.fixture(scope="session")
def room() -> Scene:
    """4 × 3.5 m room with ceiling and a table (top 0.72–0.75 m over x 0.6–1.8, y 0.6–1.4)."""
    return synthetic_room(0, size=ROOM, spacing=SPACING, ceiling=True, table=True, name="room")


@pytest.fixture(scope="session")
def open_room() -> Scene:
    """The same room without its ceiling points."""
    scene = synthetic_room(0, size=ROOM, spacing=SPACING, ceiling=True, table=True)
    return Scene(points=scene.points[scene.points[:, 2] < ROOM[2] - 0.05], name="open_room")


@pytest.fixture(scope="session")
def messy_room() -> Scene:
    """A scan-like room: floor tilted by 2.5 cm over its width, a 25 cm hole in the floor at (3.0, 2.5),
    a clutter box on the floor at (3.2–3.6, 0.3–0.7), a shelf overhang at 1.9 m, a ceiling, 1 cm noise."""
    rng = np.random.default_rng(1)
    w, d, h = ROOM
    pts = sample_box_surface([0, 0, 0], [w, d, h], SPACING, rng, "xXyYzZ")
    hole = (np.abs(pts[:, 0] - 3.0) < 0.125) & (np.abs(pts[:, 1] - 2.5) < 0.125) & (pts[:, 2] == 0)
    pts = pts[~hole]
    clutter = sample_box_surface([3.2, 0.3, 0.0], [3.6, 0.7, 0.5], SPACING / 2, rng, "xXyYZ")
    shelf = sample_box_surface([0.0, 2.9, 1.88], [1.5, 3.5, 1.9], SPACING, rng, "zZ")
    pts = np.concatenate([pts, clutter, shelf]).astype(np.float64)
    pts[:, 2] += 0.025 * pts[:, 0] / w  # tilt: 0 at x = 0, 2.5 cm at x = w
    pts += rng.normal(scale=0.01 / 3, size=pts.shape)
    return Scene(points=pts.astype(np.float32), name="messy_room")


@pytest.fixture(scope="session")
def walls_only() -> Scene:
    """Walls and a ceiling, no floor: no usable floor."""
    rng = np.random.default_rng(2)
    return Scene(points=sample_box_surface([0, 0, 0], [3, 3, 2.5], SPACING, rng, "xXyYZ"), name="walls_only")


@pytest.fixture(scope="session")
def chair():
    """Box "chair" of 1000 points, 0.5 × 0.5 × 0.9 m, canonical pose."""
    return synthetic_box_object(3)


@pytest.fixture(scope="session")
def small_room() -> Scene:
    """A coarse 3 × 2.5 m room (5 cm spacing) for the generation tests."""
    return synthetic_room(4, size=(3.0, 2.5, 2.4), spacing=0.05, name="small_room")
