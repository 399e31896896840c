"""lidar_observed: voxels a lidar ray crossed or ended in, checked on hand-made rays and against the synthetic
generator's Occ3D mask_lidar (the reference the masks of the training data come from)."""

from __future__ import annotations

import numpy as np
import pytest

from fusionocc_core.occ3d import GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE
from fusionocc_core.synth.occupancy import mask_lidar
from fusionocc_core.visibility import bev_known, bev_observed, lidar_observed

LOWER = np.array(POINT_CLOUD_RANGE[:3])


def _voxel(point) -> tuple[int, int, int]:
    return tuple(np.floor((np.asarray(point) - LOWER) / VOXEL_SIZE).astype(int))


def test_one_ray_observes_the_voxels_up_to_its_end_and_nothing_beyond():
    origin = np.array([0.1, 0.1, 1.1])
    end = np.array([10.1, 0.1, 1.1])
    observed = lidar_observed(end[None], origin[None])
    for x in np.arange(0.1, 10.1, VOXEL_SIZE):
        assert observed[_voxel([x, 0.1, 1.1])]
    assert observed[_voxel(end)]  # the surface the ray hit
    assert not observed[_voxel([12.1, 0.1, 1.1])]  # behind the surface: unknown
    assert not observed[_voxel([5.1, 2.1, 1.1])]  # beside the ray
    assert observed.sum() == pytest.approx(10.0 / VOXEL_SIZE + 1, abs=1)


def test_a_point_beyond_the_grid_observes_the_ray_to_the_border_only():
    origin = np.array([0.1, 0.1, 1.1])
    observed = lidar_observed(np.array([[100.1, 0.1, 1.1]]), origin[None])
    assert observed[_voxel([39.9, 0.1, 1.1])] and observed[_voxel([0.1, 0.1, 1.1])]
    assert observed.sum() == pytest.approx(40.0 / VOXEL_SIZE, abs=1)


def test_each_sweep_casts_from_its_own_origin():
    points = np.array([[5.1, 0.1, 1.1], [5.1, 0.1, 1.1]])
    origins = np.array([[0.1, 0.1, 1.1], [5.1, 8.1, 1.1]])
    both = lidar_observed(points, origins, np.array([0, 1]))
    assert both[_voxel([2.1, 0.1, 1.1])]  # on the ray from the first origin
    assert both[_voxel([5.1, 4.1, 1.1])]  # on the ray from the second origin
    only_first = lidar_observed(points, origins, np.array([0, 0]))
    assert not only_first[_voxel([5.1, 4.1, 1.1])]


def test_agrees_with_the_generators_mask_lidar_on_random_rays():
    rng = np.random.default_rng(0)
    origin = np.array([0.94, 0.0, 1.84])  # the nuScenes LIDAR_TOP mounting
    directions = rng.normal(size=(4000, 3)) * [1.0, 1.0, 0.12]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ranges = rng.uniform(2.0, 60.0, len(directions))
    reference = mask_lidar(origin, directions, ranges).astype(bool)
    ours = lidar_observed(origin + directions * ranges[:, None], origin[None])
    iou = (reference & ours).sum() / (reference | ours).sum()
    assert iou > 0.97, iou


def test_bev_known_is_any_observed_voxel_in_the_column_and_shapes_are_checked():
    observed = np.zeros(GRID_SHAPE, dtype=bool)
    observed[3, 4, 15] = True
    known = bev_known(observed)
    assert known.shape == GRID_SHAPE[:2] and known[3, 4] and known.sum() == 1
    with pytest.raises(ValueError, match="observed must have shape"):
        bev_known(observed[:, :, :4])
    with pytest.raises(ValueError, match="sweep_index refers to origins"):
        lidar_observed(np.zeros((2, 3)), np.zeros((1, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="points must be"):
        lidar_observed(np.zeros(3), np.zeros((1, 3)))


def _sweeps_with_a_wall(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` synthetic sweeps from a moving sensor; a wall 8 m away blocks azimuth 0..0.5 rad."""
    points, index, origins = [], [], []
    for sweep in range(count):
        origin = np.array([0.94 - 2.5 * sweep, 0.3 * sweep, 1.84])
        azimuth = rng.uniform(-np.pi, np.pi, 20000)
        elevation = rng.uniform(-0.53, 0.19, 20000)
        rays = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                         np.sin(elevation)], 1)
        ranges = np.where(rays[:, 2] < 0, np.minimum(1.84 / np.maximum(-rays[:, 2], 1e-3), 70.0),
                          rng.uniform(5.0, 70.0, len(rays)))
        wall = (azimuth > 0) & (azimuth < 0.5)
        ranges = np.where(wall, np.minimum(ranges, 8.0 / np.cos(elevation)), ranges)
        points.append(origin + rays * ranges[:, None])
        index.append(np.full(len(rays), sweep))
        origins.append(origin)
    return np.concatenate(points), np.array(origins), np.concatenate(index)


@pytest.mark.parametrize("sweeps", [1, 4])
def test_bev_observed_equals_the_marched_columns_up_to_the_azimuth_resolution(sweeps):
    points, origins, index = _sweeps_with_a_wall(np.random.default_rng(1), sweeps)
    reference = bev_known(lidar_observed(points, origins, index))
    fast = bev_observed(points, origins, index)
    centres = LOWER[:2] + (np.stack(np.meshgrid(np.arange(GRID_SHAPE[0]), np.arange(GRID_SHAPE[1]),
                                                indexing="ij"), -1) + 0.5) * VOXEL_SIZE
    within = np.hypot(*(centres - origins[0, :2]).transpose(2, 0, 1)) < 40.0
    # within 40 m the rays are dense enough for both to agree; in the grid's corners the marched rays leave
    # gaps between them that the per-azimuth reach fills
    assert (reference != fast)[within].mean() < 0.005, (reference != fast)[within].sum()
    assert (reference != fast).mean() < 0.01
    # behind the wall (azimuth 0.25 rad, 20 m from the first origin) nothing was seen from the first sweep
    behind = np.floor((origins[0, :2] + 20 * np.array([np.cos(0.25), np.sin(0.25)]) - LOWER[:2]) / VOXEL_SIZE)
    if sweeps == 1:
        assert not fast[int(behind[0]), int(behind[1])] and not reference[int(behind[0]), int(behind[1])]
    assert fast[_voxel(origins[0])[:2]]  # the sensor's own column
