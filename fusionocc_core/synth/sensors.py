"""The sensor rig: six nuScenes-like cameras and a 32-beam LIDAR_TOP, with their timing.

Extrinsics are sensor -> ego (base_link: x forward, y left, z up, on the ground below the rear axle). Camera
frames are x right, y down, z forward; the lidar frame is the nuScenes one (x right, y forward, z up), i.e.
rotated by -90 deg about z from the ego frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionocc_core.occ3d import CAMERA_NAMES
from fusionocc_core.synth.transforms import rot_x, rot_z

BASE_WIDTH, BASE_HEIGHT = 1600, 900  # resolution the base intrinsics refer to
LIDAR_PERIOD = 0.05  # 20 Hz sweeps [s]
CAMERA_PERIOD = 1.0 / 12.0  # 12 Hz frames [s]
KEYFRAME_PERIOD = 0.5  # 2 Hz samples [s]

# Camera frame axes expressed in the ego frame for a camera looking forward (columns: x right, y down, z fwd).
_CAM_TO_EGO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class CameraSpec:
    """One camera: pose on the vehicle, intrinsics at 1600x900, exposure delay after the lidar sweep start."""

    name: str
    translation: tuple[float, float, float]  # camera centre in the ego frame [m]
    yaw_deg: float  # viewing direction about +z, 0 = forward [deg]
    pitch_deg: float  # small downward tilt [deg]
    focal: float  # fx = fy at 1600x900 [px]
    delay: float  # exposure time after the lidar sweep stamp [s]

    @property
    def rotation(self) -> np.ndarray:
        """Camera -> ego rotation matrix."""
        return rot_z(np.deg2rad(self.yaw_deg)) @ _CAM_TO_EGO_FORWARD @ rot_x(-np.deg2rad(self.pitch_deg))

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 camera matrix for an image of width x height, scaled from the 1600x900 calibration."""
        sx, sy = width / BASE_WIDTH, height / BASE_HEIGHT
        return np.array(
            [
                [self.focal * sx, 0.0, (BASE_WIDTH / 2 + 8.0) * sx],
                [0.0, self.focal * sy, (BASE_HEIGHT / 2 + 4.0) * sy],
                [0.0, 0.0, 1.0],
            ]
        )

    def pixel_rays(self, width: int, height: int) -> np.ndarray:
        """Unit rays of all pixel centres in the camera frame, shape (height * width, 3), row-major."""
        k_inv = np.linalg.inv(self.intrinsics(width, height))
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], -1) @ k_inv.T
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _delay(yaw_deg: float) -> float:
    # The lidar spins clockwise seen from above, starting at the front; a camera fires as the beam crosses it.
    return ((-yaw_deg) % 360.0) / 360.0 * LIDAR_PERIOD


_CAMERA_POSES = {  # name: (translation, yaw, pitch, focal), close to the nuScenes rig
    "CAM_FRONT": ((1.70, 0.016, 1.51), 0.0, 0.4, 1266.4),
    "CAM_FRONT_RIGHT": ((1.55, -0.49, 1.50), -55.0, 0.6, 1260.8),
    "CAM_BACK_RIGHT": ((1.03, -0.48, 1.59), -110.0, 0.3, 1259.5),
    "CAM_BACK": ((0.03, 0.0, 1.57), 180.0, 0.5, 809.2),
    "CAM_BACK_LEFT": ((1.04, 0.48, 1.56), 110.0, 0.2, 1256.7),
    "CAM_FRONT_LEFT": ((1.52, 0.49, 1.51), 55.0, 0.5, 1272.6),
}
CAMERAS: tuple[CameraSpec, ...] = tuple(
    CameraSpec(name, pose[0], pose[1], pose[2], pose[3], _delay(pose[1]))
    for name, pose in ((n, _CAMERA_POSES[n]) for n in CAMERA_NAMES)
)


@dataclass(frozen=True)
class LidarSpec:
    """A spinning 32-beam lidar like the nuScenes Velodyne HDL-32E."""

    translation: tuple[float, float, float] = (0.943, 0.0, 1.84)  # in the ego frame [m]
    yaw_deg: float = -90.0  # lidar -> ego rotation about z [deg]
    num_beams: int = 32
    elevation_min_deg: float = -30.67
    elevation_max_deg: float = 10.67
    azimuth_steps: int = 1085  # firings per revolution
    max_range: float = 70.0  # [m]
    min_range: float = 1.0  # [m]
    range_noise: float = 0.015  # standard deviation [m]
    dropout: float = 0.02  # fraction of returns lost at random

    @property
    def rotation(self) -> np.ndarray:
        """Lidar -> ego rotation matrix."""
        return rot_z(np.deg2rad(self.yaw_deg))

    def rays(self, phase: float) -> tuple[np.ndarray, np.ndarray]:
        """Unit directions (beams * steps, 3) in the lidar frame and their ring index (0 = lowest beam).

        Args:
            phase: azimuth offset of the first firing as a fraction of one step (varies between sweeps).
        """
        elevation = np.deg2rad(np.linspace(self.elevation_min_deg, self.elevation_max_deg, self.num_beams))
        azimuth = 2 * np.pi * (np.arange(self.azimuth_steps) + phase) / self.azimuth_steps
        el, az = np.meshgrid(elevation, azimuth, indexing="ij")  # (beams, steps)
        rays = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
        ring = np.repeat(np.arange(self.num_beams), self.azimuth_steps)
        return rays, ring


LIDAR = LidarSpec()
