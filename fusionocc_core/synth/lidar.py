"""LIDAR_TOP simulation: one 20 Hz sweep = all beams x azimuth steps cast at the sweep's timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionocc_core.synth.materials import REFLECTIVITY
from fusionocc_core.synth.raycast import BoxScene
from fusionocc_core.synth.sensors import LidarSpec


@dataclass(frozen=True)
class LidarSweep:
    """Points in the lidar frame with their labels.

    Attributes:
        points: (N, 5) float32 x, y, z [m], intensity (0..255), ring index; the `.pcd.bin` layout.
        category: (N,) uint8 lidarseg category index.
        occ_class: (N,) uint8 Occ3D class.
        instance: (N,) int32 agent index of the hit box, -1 for static geometry.
        directions: (R, 3) all ray directions of the sweep in the lidar frame (hits and misses).
        ranges: (R,) range of every ray, inf for a miss (before noise and dropout).
    """

    points: np.ndarray
    category: np.ndarray
    occ_class: np.ndarray
    instance: np.ndarray
    directions: np.ndarray
    ranges: np.ndarray


def simulate_sweep(
    scene: BoxScene, *, spec: LidarSpec, origin: np.ndarray, rotation: np.ndarray, rng: np.random.Generator
) -> LidarSweep:
    """Casts one revolution from `origin` with lidar -> scene `rotation` (motion during the sweep ignored).

    Args:
        scene: the world's boxes at the sweep time.
        spec: the lidar's beam pattern and noise.
        origin: lidar centre in the scene frame [m].
        rotation: lidar -> scene rotation matrix.
        rng: generator for azimuth phase, range noise, dropout and intensity noise.

    Returns:
        The sweep's points and labels.
    """
    rays, ring = spec.rays(rng.uniform(0.0, 1.0))
    hits = scene.cast(origin, rays @ rotation.T, max_distance=spec.max_range)
    ranges = hits.distance
    keep = hits.hit & (ranges > spec.min_range) & (rng.random(len(rays)) >= spec.dropout)
    prim = hits.primitive[keep]
    r = ranges[keep] + rng.normal(0.0, spec.range_noise, int(keep.sum()))
    xyz = rays[keep] * r[:, None]
    boxes = scene.boxes
    cos_incidence = np.abs(np.sum(hits.normal[keep] * (rays[keep] @ rotation.T), axis=1))
    intensity = 255.0 * REFLECTIVITY[boxes.material[prim]] * (0.3 + 0.7 * cos_incidence)
    intensity = np.clip(intensity * rng.uniform(0.85, 1.15, len(r)), 0.0, 255.0).round()
    points = np.concatenate([xyz, intensity[:, None], ring[keep, None]], 1).astype(np.float32)
    return LidarSweep(
        points=points,
        category=boxes.category[prim],
        occ_class=boxes.occ_class[prim],
        instance=boxes.instance[prim],
        directions=rays,
        ranges=ranges,
    )
