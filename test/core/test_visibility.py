"""bev_observed: the bird's-eye columns lidar rays crossed, checked on hand-made rings of rays and against the
synthetic generator's Occ3D mask_lidar (rays marched through the voxels, the reference the training masks come
from)."""

from __future__ import annotations

import numpy as np
import pytest

from fusionocc_core.occ3d import GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE
from fusionocc_core.synth.occupancy import mask_lidar
from fusionocc_core.visibility import bev_known, bev_observed

LOWER = np.array(POINT_CLOUD_RANGE[:3])
CENTRES = LOWER[:2] + (np.stack(np.meshgrid(np.arange(GRID_SHAPE[0]), np.arange(GRID_SHAPE[1]), indexing="ij"),
                                -1) + 0.5) * VOXEL_SIZE


def _column(point) -> tuple[int, int]:
    return tuple(np.floor((np.asarray(point)[:2] - LOWER[:2]) / VOXEL_SIZE).astype(int))


def _distance(origin: np.ndarray) -> np.ndarray:
    return np.hypot(*(CENTRES - origin[:2]).transpose(2, 0, 1))


def _ring(origin: np.ndarray, horizontal: float, rise: float = 0.0, rays: int = 1440) -> np.ndarray:
    """One ray per azimuth bin, each ending `horizontal` m away and `rise` m above the origin."""
    azimuth = (np.arange(rays) + 0.5) * 2 * np.pi / rays - np.pi
    return origin + np.stack([horizontal * np.cos(azimuth), horizontal * np.sin(azimuth),
                              np.full(rays, rise)], 1)


def _marched_columns(points: np.ndarray, origins: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The reference: each sweep's rays marched through the voxels by the generator's mask_lidar."""
    masks = []
    for sweep, origin in enumerate(origins):
        rays = points[index == sweep] - origin
        ranges = np.linalg.norm(rays, axis=1)
        masks.append(mask_lidar(origin, rays / ranges[:, None], ranges).astype(bool))
    return bev_known(np.logical_or.reduce(masks))


def test_a_ring_of_rays_observes_the_columns_up_to_its_hits_and_nothing_beyond():
    origin = np.array([0.1, 0.1, 1.1])
    observed = bev_observed(_ring(origin, 10.0), origin[None])
    distance = _distance(origin)
    assert observed[distance < 9.5].all()  # crossed on the way, the sensor's own column included
    assert not observed[distance > 10.5].any()  # behind the hits: unknown
    assert observed[_column(origin)]


def test_rays_count_only_while_inside_the_grids_height_band():
    origin = np.array([0.1, 0.1, 1.84])
    # rising rays: they leave the band (z < 5.4 m) 10 m away horizontally, and end 20 m away above the grid
    observed = bev_observed(_ring(origin, 20.0, rise=2 * (POINT_CLOUD_RANGE[5] - 1.84)), origin[None])
    distance = _distance(origin)
    assert observed[distance < 9.5].all() and not observed[distance > 10.5].any()
    # a point beyond the grid's edge, level with the sensor: the whole ray inside the band counts
    assert bev_observed(_ring(origin, 100.0), origin[None]).all()


def test_each_sweep_casts_from_its_own_origin():
    origins = np.array([[0.1, 0.1, 1.1], [20.1, 0.1, 1.1]])
    points = np.concatenate([_ring(origins[0], 5.0), _ring(origins[1], 5.0)])
    index = np.repeat([0, 1], 1440)
    both = bev_observed(points, origins, index)
    assert both[_distance(origins[0]) < 4.5].all() and both[_distance(origins[1]) < 4.5].all()
    between = _column([10.1, 0.1])  # 10 m from both origins: no ray of either sweep gets there
    assert not both[between]
    only_first = bev_observed(points, origins, np.zeros_like(index))  # all rays wrongly from the first origin
    assert only_first[between]  # the rays to the second ring would have crossed it


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
    reference = _marched_columns(points, origins, index)
    fast = bev_observed(points, origins, index)
    within = _distance(origins[0]) < 40.0
    # within 40 m the rays are dense enough for both to agree; in the grid's corners the marched rays leave
    # gaps between them that the per-azimuth reach fills
    assert (reference != fast)[within].mean() < 0.005, (reference != fast)[within].sum()
    assert (reference != fast).mean() < 0.01
    # behind the wall (azimuth 0.25 rad, 20 m from the first origin) nothing was seen from the first sweep
    behind = _column(origins[0] + 20 * np.array([np.cos(0.25), np.sin(0.25), 0.0]))
    if sweeps == 1:
        assert not fast[behind] and not reference[behind]
    assert fast[_column(origins[0])]  # the sensor's own column


def test_bev_known_is_any_observed_voxel_in_the_column_and_shapes_are_checked():
    observed = np.zeros(GRID_SHAPE, dtype=bool)
    observed[3, 4, 15] = True
    known = bev_known(observed)
    assert known.shape == GRID_SHAPE[:2] and known[3, 4] and known.sum() == 1
    with pytest.raises(ValueError, match="observed must have shape"):
        bev_known(observed[:, :, :4])
    with pytest.raises(ValueError, match="sweep_index refers to origins"):
        bev_observed(np.zeros((2, 3)), np.zeros((1, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="points must be"):
        bev_observed(np.zeros(3), np.zeros((1, 3)))
