"""Occ3D-nuScenes facts shared by every part of the project: classes, colours and the voxel grid.

Grid: x, y in [-40, 40) m, z in [-1, 5.4) m, voxel 0.4 m -> (200, 200, 16) indexed [x, y, z] in the ego frame
(base_link of the keyframe; x forward, y left, z up). Voxel i along x covers [-40 + 0.4 i, -40 + 0.4 (i + 1)),
its centre is -40 + 0.4 (i + 0.5).
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain", "manmade",
    "vegetation", "free",
)
NUM_CLASSES = 18
FREE_LABEL = 17

# RGB display colours (free is never drawn).
CLASS_COLORS = np.array(
    [
        (0, 0, 0), (255, 120, 50), (255, 192, 203), (255, 255, 0), (0, 150, 245), (0, 255, 255),
        (200, 180, 0), (255, 0, 0), (255, 240, 150), (135, 60, 0), (160, 32, 240), (255, 0, 255),
        (139, 137, 137), (75, 0, 75), (150, 240, 80), (230, 230, 250), (0, 175, 0), (255, 255, 255),
    ],
    dtype=np.uint8,
)

POINT_CLOUD_RANGE = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)  # x_min, y_min, z_min, x_max, y_max, z_max [m]
VOXEL_SIZE = 0.4  # [m]
GRID_SHAPE = (200, 200, 16)  # (X, Y, Z)

# nuScenes lidarseg general class name -> Occ3D class id (everything not listed -> 0 "others").
LIDARSEG_TO_OCC: dict[str, int] = {
    "movable_object.barrier": 1,
    "vehicle.bicycle": 2,
    "vehicle.bus.bendy": 3,
    "vehicle.bus.rigid": 3,
    "vehicle.car": 4,
    "vehicle.construction": 5,
    "vehicle.motorcycle": 6,
    "human.pedestrian.adult": 7,
    "human.pedestrian.child": 7,
    "human.pedestrian.construction_worker": 7,
    "human.pedestrian.police_officer": 7,
    "movable_object.trafficcone": 8,
    "vehicle.trailer": 9,
    "vehicle.truck": 10,
    "flat.driveable_surface": 11,
    "flat.other": 12,
    "flat.sidewalk": 13,
    "flat.terrain": 14,
    "static.manmade": 15,
    "static.vegetation": 16,
}

CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT",
)
LIDAR_NAME = "LIDAR_TOP"

# Tables of a nuScenes version folder (v1.0-*/<name>.json) that the devkit needs (lidarseg is optional).
NUSCENES_TABLES: tuple[str, ...] = (
    "scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor", "log", "map", "category",
    "attribute", "visibility", "instance", "sample_annotation",
)


def voxel_centers() -> np.ndarray:
    """Centres of all voxels in the ego frame, shape (200, 200, 16, 3) [m], indexed [x, y, z]."""
    x0, y0, z0 = POINT_CLOUD_RANGE[:3]
    axes = [lo + VOXEL_SIZE * (np.arange(n) + 0.5) for lo, n in zip((x0, y0, z0), GRID_SHAPE, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)
