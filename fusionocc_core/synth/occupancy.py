"""Occ3D ground truth of one keyframe: semantics from the geometry, lidar and camera visibility masks.

All three volumes are (200, 200, 16) in the keyframe's ego frame (grid from `fusionocc_core.occ3d`).
"""

from __future__ import annotations

import numpy as np

from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE, voxel_centers
from fusionocc_core.synth.raycast import BoxScene
from fusionocc_core.synth.world import BoxSet

_LOWER = np.array(POINT_CLOUD_RANGE[:3])
_UPPER = np.array(POINT_CLOUD_RANGE[3:])
_SHAPE = np.array(GRID_SHAPE)
# Sub-voxel samples: a voxel is occupied when any of its 8 samples lies inside a box.
_SUBSAMPLES = (
    np.array([[x, y, z] for x in (-0.25, 0.25) for y in (-0.25, 0.25) for z in (-0.25, 0.25)]) * VOXEL_SIZE
)


def _class_rank(occ_class: np.ndarray) -> np.ndarray:
    """Write order: ground first, then buildings and vegetation, then objects (which win shared voxels)."""
    return np.where((occ_class >= 11) & (occ_class <= 14), 0, np.where(occ_class >= 15, 1, 2))


def voxel_index(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer voxel indices (N, 3) of points in the ego frame and a mask of those inside the grid."""
    index = np.floor((points - _LOWER) / VOXEL_SIZE).astype(np.int64)
    inside = np.all((index >= 0) & (index < _SHAPE), axis=1)
    return index, inside


def semantics(boxes: BoxSet) -> np.ndarray:
    """Occ3D class per voxel (17 = free) of boxes given in the ego frame.

    Args:
        boxes: all boxes of the keyframe, transformed into its ego frame.

    Returns:
        uint8 array (200, 200, 16).
    """
    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    c, s = np.abs(np.cos(boxes.yaws)), np.abs(np.sin(boxes.yaws))
    half = (
        np.stack(
            [
                c * boxes.sizes[:, 0] + s * boxes.sizes[:, 1],
                s * boxes.sizes[:, 0] + c * boxes.sizes[:, 1],
                boxes.sizes[:, 2],
            ],
            -1,
        )
        / 2
    )
    lo = np.clip(np.floor((boxes.centers - half - _LOWER) / VOXEL_SIZE).astype(np.int64), 0, _SHAPE - 1)
    hi = np.floor((boxes.centers + half - _LOWER) / VOXEL_SIZE).astype(np.int64)
    overlaps = np.all((hi >= 0) & (boxes.centers - half < _UPPER), axis=1)
    hi = np.clip(hi, 0, _SHAPE - 1)
    order = np.nonzero(overlaps)[0]
    order = order[np.argsort(_class_rank(boxes.occ_class[order]), kind="stable")]
    for b in order:  # one vectorised block per box
        axes = [np.arange(lo[b, k], hi[b, k] + 1) for k in range(3)]
        index = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        centres = _LOWER + (index + 0.5) * VOXEL_SIZE
        samples = (centres[:, None, :] + _SUBSAMPLES[None]).reshape(-1, 3)
        local = boxes.to_local(samples, np.full(len(samples), b))
        inside = np.all(np.abs(local) <= boxes.sizes[b] / 2, axis=1).reshape(-1, len(_SUBSAMPLES)).any(1)
        hit = index[inside]
        labels[hit[:, 0], hit[:, 1], hit[:, 2]] = boxes.occ_class[b]
    return labels


def _grid_exit(origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance along each ray from an origin inside the grid to the grid boundary (slab test)."""
    with np.errstate(divide="ignore"):
        inv = 1.0 / directions
    t = np.maximum((_LOWER - origin) * inv, (_UPPER - origin) * inv)
    return np.nan_to_num(t, nan=np.inf, posinf=np.inf).min(axis=1)


def mask_lidar(
    origin: np.ndarray, directions: np.ndarray, ranges: np.ndarray, *, step: float = 0.5 * VOXEL_SIZE
) -> np.ndarray:
    """Voxels traversed or hit by lidar rays (ray marching, all rays at once).

    Args:
        origin: lidar centre in the ego frame (3,) [m].
        directions: unit ray directions in the ego frame (R, 3).
        ranges: hit distance per ray, inf for a miss [m].
        step: marching step [m].

    Returns:
        uint8 0/1 array (200, 200, 16).
    """
    exit_t = _grid_exit(origin, directions)
    length = np.minimum(ranges, exit_t)
    counts = np.ceil(np.maximum(length, 0.0) / step).astype(np.int64)
    ray = np.repeat(np.arange(len(directions)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    t = np.minimum((k + 0.5) * step, length[ray] - 1e-3)
    samples = origin + directions[ray] * t[:, None]
    hit = np.isfinite(ranges) & (ranges < exit_t)
    surface = origin + directions[hit] * (ranges[hit] + 0.05)[:, None]  # just behind the hit surface
    index, inside = voxel_index(np.concatenate([samples, surface], 0))
    mask = np.zeros(GRID_SHAPE, dtype=np.uint8)
    index = index[inside]
    mask[index[:, 0], index[:, 1], index[:, 2]] = 1
    return mask


def mask_camera(
    scene: BoxScene,
    *,
    ego_rotation: np.ndarray,
    ego_translation: np.ndarray,
    cameras: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
) -> np.ndarray:
    """Voxels visible from at least one camera: the ray to the voxel centre (or its upper part) is not blocked
    before it reaches the voxel. Occluded voxels, and voxels outside every image, stay 0.

    Args:
        scene: the keyframe's boxes in the global frame.
        ego_rotation, ego_translation: ego -> global pose of the keyframe.
        cameras: per camera (camera -> ego rotation, camera centre in the ego frame, intrinsics, width,
            height).

    Returns:
        uint8 0/1 array (200, 200, 16).
    """
    centres = voxel_centers().reshape(-1, 3).astype(np.float64)
    n = len(centres)
    targets = np.concatenate([centres, centres + [0.0, 0.0, 0.45 * VOXEL_SIZE]], 0)
    voxel = np.concatenate([np.arange(n), np.arange(n)])
    visible = np.zeros(n, dtype=bool)
    for rotation, centre, intrinsics, width, height in cameras:
        rel = targets - centre
        cam = rel @ rotation  # ego -> camera coordinates
        z = cam[:, 2]
        front = z > 0.1
        u = intrinsics[0, 0] * cam[:, 0] / np.where(front, z, 1.0) + intrinsics[0, 2]
        v = intrinsics[1, 1] * cam[:, 1] / np.where(front, z, 1.0) + intrinsics[1, 2]
        sel = np.nonzero(front & (u >= 0) & (u < width) & (v >= 0) & (v < height) & ~visible[voxel])[0]
        dist = np.linalg.norm(rel[sel], axis=1)
        dirs_ego = rel[sel] / dist[:, None]
        hits = scene.cast(
            ego_rotation @ centre + ego_translation, dirs_ego @ ego_rotation.T, max_distance=dist + 0.01
        )
        clear = ~hits.hit
        blocked = np.nonzero(hits.hit)[0]
        hit_point = centre + dirs_ego[blocked] * (hits.distance[blocked] + 1e-3)[:, None]
        hit_index, _ = voxel_index(hit_point)
        target_index = np.stack(np.unravel_index(voxel[sel[blocked]], GRID_SHAPE), -1)
        clear[blocked] = np.all(hit_index == target_index, axis=1)  # the first surface is in the voxel itself
        visible[voxel[sel[clear]]] = True
    return visible.reshape(GRID_SHAPE).astype(np.uint8)
