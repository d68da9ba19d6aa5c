import numpy as np
import pytest

from fourdcontrast.sources.classes import CLASS_NAMES, class_id, class_of_category
from fourdcontrast.sources.furniture import load_furniture
from fourdcontrast.sources.rooms import (
    FREE_RADIUS,
    ROOM_TYPES,
    WALL_HEIGHT,
    default_rooms,
    default_scene,
    make_room,
)


@pytest.fixture(scope="module")
def furniture():
    return load_furniture()


def assert_same(a, b):
    for attr in ("points", "colors", "labels", "instances"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.name == b.name


def test_same_seed_same_room(furniture):
    assert_same(make_room(7, furniture=furniture), make_room(7, furniture=furniture))
    assert_same(default_scene(3), default_scene(3))
    other = make_room(8, furniture=furniture)
    assert len(other) != len(make_room(7, furniture=furniture))


def test_default_rooms_are_deterministic_and_independent(furniture):
    rooms = default_rooms(3, seed=11, furniture=furniture)
    again = default_rooms(2, seed=11, furniture=furniture)
    assert_same(rooms[0], again[0])
    assert_same(rooms[1], again[1])
    assert len({len(r) for r in rooms}) == 3


@pytest.mark.parametrize("room_type", sorted(ROOM_TYPES))
def test_room_is_labelled_and_plausible(furniture, room_type):
    room = make_room(1, furniture=furniture, room_type=room_type)
    assert room.class_names == CLASS_NAMES
    assert room.labels.min() >= 0 and room.labels.max() < len(CLASS_NAMES)
    assert room.colors.min() >= 0 and room.colors.max() <= 1
    present = set(np.unique(room.labels))
    assert {class_id("wall"), class_id("floor")} <= present
    assert len(present) >= 3  # some furniture
    anchor = ROOM_TYPES[room_type][1][0].category  # bed, desk, sofa, table, toilet
    for seed in (1, 2, 3):
        r = room if seed == 1 else make_room(seed, furniture=furniture, room_type=room_type, holes=(0, 0))
        assert class_of_category(anchor) in set(np.unique(r.labels)), (room_type, seed)
    floor = room.points[room.labels == class_id("floor")]
    assert abs(np.median(floor[:, 2])) < 0.03 and floor[:, 2].std() < 0.03
    walls = room.points[room.labels == class_id("wall")]
    assert walls[:, 2].max() == pytest.approx(WALL_HEIGHT, abs=0.06)
    assert room.points[:, 2].max() < WALL_HEIGHT + 0.1  # no ceiling above the walls
    # Each instance has one label.
    for inst in np.unique(room.instances):
        assert len(np.unique(room.labels[room.instances == inst])) == 1


def test_typical_room_size_and_spacing(furniture):
    room = make_room(2, furniture=furniture, size=(4.0, 5.0), room_type="office")
    assert 100_000 <= len(room) <= 200_000
    assert room.extent[:2] == pytest.approx([4.0, 5.0], abs=0.05)
    # Floor points about 2 cm apart: ~1/(0.02^2) per m² before thinning, at least ~45 % kept.
    floor = room.points[room.labels == class_id("floor")]
    assert 0.45 * 2500 * 20 * 0.6 < len(floor) < 2500 * 20


def test_door_opening_in_a_wall(furniture):
    room = make_room(4, furniture=furniture, holes=(0, 0), density_range=(1.0, 1.0), windows=(0, 0),
                     doors=(1, 1), size=(4.0, 4.0))
    walls = room.points[(room.labels == class_id("wall")) & (room.points[:, 2] < 1.8)
                        & (room.points[:, 2] > 0.2)]
    # Along the perimeter, a gap of ~0.9 m without wall points below the door's top.
    ws = [walls[np.abs(walls[:, 1]) < 0.05, 0], walls[np.abs(walls[:, 0] - 4) < 0.05, 1],
          walls[np.abs(walls[:, 1] - 4) < 0.05, 0], walls[np.abs(walls[:, 0]) < 0.05, 1]]
    gaps = [np.diff(np.sort(np.concatenate([[0.0, 4.0], w]))).max() for w in ws]
    assert max(gaps) == pytest.approx(0.9, abs=0.06)


def test_ceiling_option(furniture):
    room = make_room(5, furniture=furniture, ceiling=True)
    top = room.points[room.points[:, 2] > WALL_HEIGHT - 0.05]
    assert len(top) > 10_000  # a whole ceiling, not just wall tops
    assert make_room(5, furniture=furniture).points[:, 2].max() < WALL_HEIGHT + 0.05


def test_furniture_does_not_collide_and_leaves_free_floor(furniture):
    for seed in range(6):
        room = make_room(seed, furniture=furniture, noise=0.0)
        cells: dict[int, set] = {}
        cats = {}
        for inst in np.unique(room.instances[room.instances >= 5]):
            m = room.instances == inst
            p = room.points[m]
            cats[inst] = CLASS_NAMES[room.labels[m][0]]
            # Footprint of the lower half only: monitors stand on tops, chairs reach under them.
            low = p[p[:, 2] < 0.35]
            cells[inst] = set(map(tuple, np.floor(low[:, :2] / 0.05).astype(int)))
        ids = sorted(cells)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                if {cats[a], cats[b]} & {"monitor"}:
                    continue
                overlap = len(cells[a] & cells[b])
                assert overlap <= 2, (seed, cats[a], cats[b], overlap)
        # Some disc of nearly FREE_RADIUS holds no furniture point.
        furn = room.points[room.instances >= 5][:, :2]
        lo, hi = room.points[:, :2].min(0), room.points[:, :2].max(0)
        gx, gy = np.meshgrid(np.arange(lo[0], hi[0], 0.1), np.arange(lo[1], hi[1], 0.1))
        centres = np.stack([gx.ravel(), gy.ravel()], 1)
        from scipy.spatial import cKDTree

        d, _ = cKDTree(furn).query(centres)
        inside = np.all((centres > lo + FREE_RADIUS) & (centres < hi - FREE_RADIUS), axis=1)
        assert d[inside].max() > FREE_RADIUS - 0.1


def test_imperfections(furniture):
    clean = make_room(9, furniture=furniture, noise=0.0, holes=(0, 0), density_range=(1.0, 1.0),
                      tilt_deg=0.0, unevenness=0.0)
    scan = make_room(9, furniture=furniture)
    assert len(scan) < 0.85 * len(clean)  # uneven density and missing regions
    floor = clean.points[clean.labels == class_id("floor")]
    np.testing.assert_allclose(floor[:, 2], 0.0, atol=1e-6)
    noisy = scan.points[scan.labels == class_id("floor")]
    assert noisy[:, 2].std() > 0.002


def test_bad_arguments(furniture):
    with pytest.raises(ValueError, match="unknown room type 'kitchen'"):
        make_room(0, furniture=furniture, room_type="kitchen")
    with pytest.raises(TypeError):
        make_room(0, furniture=furniture, colour="red")
    with pytest.raises(ValueError, match="too small"):
        make_room(0, furniture=furniture, size=(0.2, 3.0))
