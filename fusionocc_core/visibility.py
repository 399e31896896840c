"""What the lidar observed: the rays from each sweep's sensor origin to its points, through the Occ3D grid, as
Occ3D's `mask_lidar` is built (a voxel a ray passed through is observed free, the voxel a ray ends in is observed
occupied, every other voxel is unknown).

Two forms:
- `lidar_observed`: the (200, 200, 16) voxel mask by marching every ray (the reference; ~1 s per sweep).
- `bev_observed`: the (200, 200) bird's-eye columns any ray crossed inside the grid's height band, by the
  farthest in-band reach per azimuth bin (a few ms per sweep). The node uses it to mark cells no sensor saw as
  unknown (-1) in the occupancy grid instead of free: a planner must not drive into space never observed.
Points are in the current ego frame; grid and voxel size from `fusionocc_core.occ3d`.
"""

from __future__ import annotations

import numpy as np

from fusionocc_core.occ3d import GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE

_LOWER = np.asarray(POINT_CLOUD_RANGE[:3], dtype=np.float64)
_UPPER = np.asarray(POINT_CLOUD_RANGE[3:], dtype=np.float64)
_SHAPE = np.asarray(GRID_SHAPE, dtype=np.int64)
# Rays per marching chunk: bounds the temporary sample arrays (a ray crosses at most ~570 half-voxel steps).
_CHUNK_RAYS = 8192


def _segment_in_grid(origin: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clips the segments origin -> ends (R, 3) to the grid box (slab test).

    Returns:
        (t0, t1, hit): parameters in [0, 1] where each segment enters and leaves the grid, and whether its end
        point itself lies inside the grid (an observed surface); t0 > t1 means the segment misses the grid.
    """
    delta = ends - origin
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / delta
        ta = (_LOWER - origin) * inverse
        tb = (_UPPER - origin) * inverse
    near = np.where(delta == 0, np.where((origin >= _LOWER) & (origin < _UPPER), -np.inf, np.inf),
                    np.minimum(ta, tb))
    far = np.where(delta == 0, np.where((origin >= _LOWER) & (origin < _UPPER), np.inf, -np.inf),
                   np.maximum(ta, tb))
    t0 = np.clip(near.max(axis=1), 0.0, 1.0)
    t1 = np.clip(far.min(axis=1), 0.0, 1.0)
    hit = np.all((ends >= _LOWER) & (ends < _UPPER), axis=1)
    return t0, t1, hit


def _mark(observed: np.ndarray, points: np.ndarray) -> None:
    index = np.floor((points - _LOWER) / VOXEL_SIZE).astype(np.int64)
    inside = np.all((index >= 0) & (index < _SHAPE), axis=1)
    index = index[inside]
    observed[index[:, 0], index[:, 1], index[:, 2]] = True


def lidar_observed(points: np.ndarray, origins: np.ndarray, sweep_index: np.ndarray | None = None, *,
                   step: float = 0.5 * VOXEL_SIZE) -> np.ndarray:
    """Voxels of the Occ3D grid that lidar rays passed through or ended in.

    Args:
        points: (N, 3) lidar points in the ego frame of the grid [m].
        origins: (S, 3) sensor origin of each sweep in the same frame [m] (one row for a single sweep).
        sweep_index: (N,) row of `origins` each point was measured from (None: all from row 0).
        step: marching step along each ray [m]; half a voxel, as the synthetic Occ3D masks are built.

    Returns:
        (200, 200, 16) bool array indexed [x, y, z]: True where observed.

    Raises:
        ValueError: shapes that do not fit together, or a step that is not positive.
    """
    points, origins, sweep_index = _checked(points, origins, sweep_index)
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    observed = np.zeros(GRID_SHAPE, dtype=bool)
    for sweep, origin in enumerate(origins):
        ends = points[sweep_index == sweep, :3]
        if not len(ends):
            continue
        # Rays ending in the same voxel cross (nearly) the same voxels: march one ray per end voxel (to the
        # mean end point of its points), which keeps a fused 8-sweep window to a few ten thousand rays.
        key = np.floor((ends - _LOWER) / VOXEL_SIZE).astype(np.int64)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        sums = np.zeros((len(first), 3))
        np.add.at(sums, inverse.reshape(-1), ends)
        ends = sums / np.bincount(inverse.reshape(-1), minlength=len(first))[:, None]
        t0, t1, hit = _segment_in_grid(origin, ends)
        _mark(observed, ends[hit])
        crossing = t1 > t0
        rays, t0, t1 = ends[crossing] - origin, t0[crossing], t1[crossing]
        lengths = np.linalg.norm(rays, axis=1)
        for lo in range(0, len(rays), _CHUNK_RAYS):
            chunk = slice(lo, lo + _CHUNK_RAYS)
            start, stop = t0[chunk] * lengths[chunk], t1[chunk] * lengths[chunk]  # [m] along each ray
            counts = np.ceil((stop - start) / step).astype(np.int64)
            ray = np.repeat(np.arange(len(counts)), counts)
            k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            distance = np.minimum(start[ray] + (k + 0.5) * step, stop[ray] - 1e-6)
            direction = rays[chunk] / np.maximum(lengths[chunk], 1e-12)[:, None]
            _mark(observed, origin + direction[ray] * distance[:, None])
    return observed


def bev_observed(points: np.ndarray, origins: np.ndarray, sweep_index: np.ndarray | None = None, *,
                 azimuth_bins: int = 1440) -> np.ndarray:
    """Bird's-eye columns of the grid that lidar rays crossed while inside its height band: equal, up to the
    azimuth resolution, to `bev_known(lidar_observed(...))`.

    Per sweep and azimuth bin, the farthest horizontal distance any ray of the bin reached before it ended or
    left the band [z_min, z_max) counts as seen; a column is observed when its centre lies within that reach
    (half a voxel of slack for the end point's own column) in its bin or a neighbouring one.

    Args:
        points: (N, 3) lidar points in the ego frame of the grid [m].
        origins: (S, 3) sensor origin of each sweep in the same frame [m].
        sweep_index: (N,) row of `origins` each point was measured from (None: all from row 0).
        azimuth_bins: bins over 360 deg (1440 = 0.25 deg, 17 cm at the grid's 40 m edge).

    Returns:
        (200, 200) bool array indexed [x, y].

    Raises:
        ValueError: shapes that do not fit together.
    """
    points, origins, sweep_index = _checked(points, origins, sweep_index)
    z_low, z_high = _LOWER[2], _UPPER[2]
    centres = _LOWER[:2] + (np.stack(np.meshgrid(np.arange(GRID_SHAPE[0]), np.arange(GRID_SHAPE[1]),
                                                 indexing="ij"), -1) + 0.5) * VOXEL_SIZE
    known = np.zeros(GRID_SHAPE[:2], dtype=bool)
    for sweep, origin in enumerate(origins):
        if not z_low <= origin[2] < z_high:
            continue  # a sensor outside the band: its rays' in-band part is not the ray's start; not handled
        rel = points[sweep_index == sweep, :3] - origin
        if not len(rel):
            continue
        # fraction of each ray inside the band (the ray starts inside it)
        with np.errstate(divide="ignore", invalid="ignore"):
            exit_t = np.where(rel[:, 2] > 0, (z_high - origin[2]) / rel[:, 2],
                              np.where(rel[:, 2] < 0, (z_low - origin[2]) / rel[:, 2], np.inf))
        reach = np.hypot(rel[:, 0], rel[:, 1]) * np.minimum(exit_t, 1.0)
        bins = _azimuth_bin(rel[:, 0], rel[:, 1], azimuth_bins)
        farthest = np.full(azimuth_bins, -1.0)
        np.maximum.at(farthest, bins, reach)
        farthest = np.maximum(farthest, np.maximum(np.roll(farthest, 1), np.roll(farthest, -1)))
        offset = centres - origin[:2]
        distance = np.hypot(offset[..., 0], offset[..., 1])
        known |= distance <= farthest[_azimuth_bin(offset[..., 0], offset[..., 1], azimuth_bins)] + 0.5 * VOXEL_SIZE
    return known


def _azimuth_bin(x: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum(((np.arctan2(y, x) + np.pi) * (bins / (2 * np.pi))).astype(np.int64), bins - 1)


def _checked(points: np.ndarray, origins: np.ndarray,
             sweep_index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float64)
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    if sweep_index is None:
        sweep_index = np.zeros(len(points), dtype=np.int64)
    sweep_index = np.asarray(sweep_index, dtype=np.int64)
    if sweep_index.shape != (len(points),):
        raise ValueError(f"sweep_index must have one entry per point ({len(points)}), got {sweep_index.shape}")
    if len(points) and (sweep_index.min() < 0 or sweep_index.max() >= len(origins)):
        raise ValueError(f"sweep_index refers to origins 0..{sweep_index.max()}, only {len(origins)} given")
    return points, origins, sweep_index


def bev_known(observed: np.ndarray) -> np.ndarray:
    """(200, 200) bool [x, y]: columns with at least one observed voxel (what the occupancy grid may call free
    or occupied; the rest is unknown)."""
    observed = np.asarray(observed, dtype=bool)
    if observed.shape != GRID_SHAPE:
        raise ValueError(f"observed must have shape {GRID_SHAPE}, got {observed.shape}")
    return observed.any(axis=2)
