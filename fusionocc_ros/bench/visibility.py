"""Suite `visibility`: which bird's-eye cells the lidar observed (the node's `occupancy_grid.unknown_unobserved`),
`bev_observed` (farthest reach per azimuth bin) against marching every ray through the voxel grid with the
synthetic generator's Occ3D `mask_lidar`, on fused sweeps of a 32-beam lidar driving down a street."""
from __future__ import annotations

from functools import partial

import numpy as np

from fusionocc_ros.bench.common import Row, SuiteResult, time_call


def street_sweeps(sweeps: int, points_per_sweep: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, origins, sweep index) of `sweeps` sweeps 4 m apart (ego at 8 m/s, keyframes 0.5 s apart) in the
    current ego frame: ground hits below the horizon, building facades 12 m to either side above it."""
    rng = np.random.default_rng(seed)
    points, origins, index = [], [], []
    for sweep in range(sweeps):
        origin = np.array([0.94 - 4.0 * sweep, 0.0, 1.84])
        azimuth = rng.uniform(-np.pi, np.pi, points_per_sweep)
        elevation = np.deg2rad(rng.uniform(-30.67, 10.67, points_per_sweep))
        rays = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                         np.sin(elevation)], 1)
        with np.errstate(divide="ignore"):
            ground = np.where(rays[:, 2] < 0, 1.84 / -rays[:, 2], np.inf)
            facade = np.abs(12.0 / rays[:, 1])
        ranges = np.minimum(np.minimum(ground, facade), 70.0)
        points.append(origin + rays * ranges[:, None])
        origins.append(origin)
        index.append(np.full(points_per_sweep, sweep))
    return np.concatenate(points), np.array(origins), np.concatenate(index)


def marched_columns(points: np.ndarray, origins: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The baseline: each sweep's rays marched through the voxels by `mask_lidar`, as bird's-eye columns."""
    from fusionocc_core.occ3d import GRID_SHAPE
    from fusionocc_core.synth.occupancy import mask_lidar
    from fusionocc_core.visibility import bev_known

    observed = np.zeros(GRID_SHAPE, dtype=bool)
    for sweep, origin in enumerate(origins):
        rays = points[index == sweep] - origin
        ranges = np.linalg.norm(rays, axis=1)
        observed |= mask_lidar(origin, rays / ranges[:, None], ranges).astype(bool)
    return bev_known(observed)


def suite_visibility(quick: bool) -> SuiteResult:
    from fusionocc_core.visibility import bev_observed

    result = SuiteResult("visibility")
    for sweeps in (1, 8):
        points, origins, index = street_sweeps(sweeps, 8_000 if quick else 34_000)
        marched = marched_columns(points, origins, index)
        fast = bev_observed(points, origins, index)
        agreement = float((marched == fast).mean())
        base, _, _ = time_call(partial(marched_columns, points, origins, index), repeats=1 if quick else 3,
                               warmup=0)
        median, p95, _ = time_call(partial(bev_observed, points, origins, index), repeats=3 if quick else 20)
        result.rows.append(Row(f"bev_observed, {sweeps} sweep(s) of {len(points) // sweeps // 1000}k points",
                               median, p95, baseline_ms=base, extra={"agreement": agreement}))
        result.notes.append(f"{sweeps} sweep(s): {100 * agreement:.2f} % of the 200 x 200 cells equal to the marched "
                            f"rays' columns; {100 * fast.mean():.1f} % observed")
    result.notes.append("baseline: the generator's mask_lidar (every ray marched through the voxels in half-voxel "
                        "steps) per sweep")
    return result
