"""Ray casting against boxes: distances, normals, misses, distance limits, box corners."""

import numpy as np
import pytest

from fusionocc_core.synth.raycast import BoxScene, box_corners
from fusionocc_core.synth.world import BoxSet


def _boxes(centers, sizes, yaws) -> BoxSet:
    n = len(centers)
    return BoxSet(
        np.asarray(centers, float),
        np.asarray(sizes, float),
        np.asarray(yaws, float),
        np.arange(n, dtype=np.uint8),
        np.zeros(n, np.uint8),
        np.zeros(n, np.uint8),
        np.zeros((n, 3), np.float32),
        np.full(n, -1, np.int32),
        np.zeros((n, 2), np.float32),
    )


def test_first_hit_distance_normal_and_primitive():
    boxes = _boxes([[10.0, 0.0, 1.0], [20.0, 0.0, 1.0]], [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], [0.0, 0.0])
    scene = BoxScene(boxes, anchor=np.array([5.0, 0.0, 0.0]))
    dirs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    hits = scene.cast(np.array([0.0, 0.0, 1.0]), dirs)
    assert hits.primitive.tolist() == [0, -1, -1]
    assert hits.distance[0] == pytest.approx(9.0, abs=1e-4)
    assert np.isinf(hits.distance[1])
    np.testing.assert_allclose(hits.normal[0], [-1.0, 0.0, 0.0], atol=1e-6)


def test_rotated_box_and_max_distance():
    boxes = _boxes([[10.0, 0.0, 0.0]], [[2.0, 2.0, 2.0]], [np.pi / 4])
    scene = BoxScene(boxes)
    hits = scene.cast(np.zeros(3), np.array([[1.0, 0.0, 0.0]]))
    assert hits.distance[0] == pytest.approx(10.0 - np.sqrt(2.0), abs=1e-4)  # the corner faces the ray
    limited = scene.cast(np.zeros(3), np.array([[1.0, 0.0, 0.0]]), max_distance=5.0)
    assert limited.primitive[0] == -1


def test_box_corners_are_the_extreme_points():
    boxes = _boxes([[1.0, 2.0, 3.0]], [[4.0, 2.0, 1.0]], [np.pi / 2])
    corners = box_corners(boxes)[0]
    np.testing.assert_allclose(corners.min(0), [0.0, 0.0, 2.5], atol=1e-9)
    np.testing.assert_allclose(corners.max(0), [2.0, 4.0, 3.5], atol=1e-9)


def test_empty_scene_is_an_error():
    with pytest.raises(ValueError, match="at least one box"):
        BoxScene(_boxes(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)))


@pytest.mark.parametrize("yaw", [0.0, 0.7])
def test_normals_of_all_six_faces_point_back_at_the_ray(yaw):
    boxes = _boxes([[0.0, 0.0, 0.0]], [[2.0, 3.0, 1.0]], [yaw])
    scene = BoxScene(boxes)
    c, s = np.cos(yaw), np.sin(yaw)
    axes = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    dirs = np.concatenate([axes, -axes])
    hits = scene.cast(-10.0 * dirs, dirs)
    assert np.all(hits.primitive == 0)
    np.testing.assert_allclose(hits.normal, -dirs, atol=1e-9)
