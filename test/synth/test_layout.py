"""The procedural world: every Occ3D class appears, objects never overlap, the ego's path stays clear."""

import numpy as np
import pytest
from shapely.geometry import Polygon
from shapely.strtree import STRtree

from fusionocc_core.synth.categories import CATEGORY_NAMES, CATEGORY_TO_OCC
from fusionocc_core.synth.layout import build_world


@pytest.fixture(scope="module", params=[0, 1, 2])
def world(request):
    return build_world(np.random.default_rng([request.param, 0, 0]), duration=9.6)


def test_every_occ3d_class_is_present(world):
    classes = set(world.boxes_at(0.0).occ_class.tolist())
    assert set(range(17)) - {0} <= classes
    assert 0 in classes  # "others": bins, bicycle racks, debris
    annotated = {CATEGORY_NAMES[c] for c in world.agents.category}
    assert {
        "vehicle.car",
        "human.pedestrian.adult",
        "movable_object.trafficcone",
        "movable_object.barrier",
        "vehicle.construction",
    } <= annotated
    assert all(CATEGORY_TO_OCC[c] not in (11, 12, 13, 14, 15, 16) for c in world.agents.category)


def _footprints(world, time):
    centres, yaws = world.agents.boxes(world.road, time)
    polygons = []
    for (x, y, _), yaw, (length, width, _) in zip(centres, yaws, world.agents.size, strict=True):
        corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
        c, s = np.cos(yaw), np.sin(yaw)
        polygons.append(Polygon(corners @ np.array([[c, s], [-s, c]]) + [x, y]))
    return polygons


@pytest.mark.parametrize("time", [0.0, 4.0, 9.5])
def test_objects_never_overlap(world, time):
    polygons = _footprints(world, time)
    tree = STRtree(polygons)
    for i, polygon in enumerate(polygons):
        for j in tree.query(polygon):
            if j > i:
                assert polygon.intersection(polygons[j]).area < 0.05, (i, j)


def test_ego_drives_forward_along_its_lane(world):
    p0, yaw0 = world.ego_pose(0.0)
    p1, _ = world.ego_pose(1.0)
    step = p1 - p0
    assert np.linalg.norm(step) == pytest.approx(world.ego_speed, rel=0.05)
    assert np.dot(step[:2], [np.cos(yaw0), np.sin(yaw0)]) > 0.95 * np.linalg.norm(step)
    # Nothing stands in the ego's path along the drive.
    for time in np.arange(0.0, 9.6, 0.5):
        position, yaw = world.ego_pose(time)
        ego = Polygon(
            np.array([[4.5, 1.0], [4.5, -1.0], [-0.5, -1.0], [-0.5, 1.0]])
            @ np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
            + position[:2]
        )
        assert all(ego.intersection(p).area < 0.01 for p in _footprints(world, time))


def _arrays(obj, prefix=""):
    """Every array and scalar of a (nested) dataclass, by dotted field name."""
    if hasattr(obj, "__dataclass_fields__"):
        out = {}
        for name in obj.__dataclass_fields__:
            out.update(_arrays(getattr(obj, name), f"{prefix}{name}."))
        return out
    return {prefix.rstrip("."): obj}


def test_same_seed_same_world():
    first, second = (build_world(np.random.default_rng([5, 0, 0]), duration=9.6) for _ in range(2))
    a, b = _arrays(first), _arrays(second)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
