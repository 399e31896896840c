"""The sensor rig: intrinsics scaling, camera directions and timing, lidar beam pattern, quaternions."""

import numpy as np
import pytest

from fusionocc_core.occ3d import CAMERA_NAMES
from fusionocc_core.synth.sensors import CAMERAS, LIDAR, LIDAR_PERIOD
from fusionocc_core.synth.transforms import matrix_to_quat, quat_to_matrix, rot_z


def test_cameras_follow_occ3d_names_and_nuscenes_yaws():
    assert tuple(c.name for c in CAMERAS) == CAMERA_NAMES
    expected = {
        "CAM_FRONT": 0,
        "CAM_FRONT_LEFT": 55,
        "CAM_FRONT_RIGHT": -55,
        "CAM_BACK_LEFT": 110,
        "CAM_BACK_RIGHT": -110,
        "CAM_BACK": 180,
    }
    for camera in CAMERAS:
        axis = camera.rotation @ np.array([0.0, 0.0, 1.0])  # optical axis in the ego frame
        yaw = np.rad2deg(np.arctan2(axis[1], axis[0]))
        assert abs((yaw - expected[camera.name] + 180) % 360 - 180) < 0.5, camera.name
        assert abs(axis[2]) < 0.02  # nearly level
        down = camera.rotation @ np.array([0.0, 1.0, 0.0])  # image y points down
        assert down[2] < -0.99


def test_intrinsics_scale_with_image_size():
    front = next(c for c in CAMERAS if c.name == "CAM_FRONT")
    full, small = front.intrinsics(1600, 900), front.intrinsics(704, 396)
    assert full[0, 0] == pytest.approx(1266.4)
    assert small[0, 0] == pytest.approx(1266.4 * 704 / 1600)
    assert small[1, 2] == pytest.approx(full[1, 2] * 396 / 900)
    rays = front.pixel_rays(704, 396)
    assert rays.shape == (704 * 396, 3)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-9)
    # Re-projecting the ray of pixel (row 10, col 20) lands on that pixel's centre.
    uvw = small @ rays[10 * 704 + 20]
    np.testing.assert_allclose(uvw[:2] / uvw[2], [20.5, 10.5], atol=1e-9)


def test_camera_exposures_are_staggered_across_one_sweep_front_first():
    delays = {c.name: c.delay for c in CAMERAS}
    assert delays["CAM_FRONT"] == 0.0
    assert all(0.0 <= d < LIDAR_PERIOD for d in delays.values())
    assert len(set(delays.values())) == 6
    assert delays["CAM_FRONT_RIGHT"] < delays["CAM_BACK_RIGHT"] < delays["CAM_BACK"] < delays["CAM_BACK_LEFT"]


def test_lidar_beam_pattern():
    rays, ring = LIDAR.rays(0.3)
    assert rays.shape == (32 * 1085, 3) and ring.max() == 31
    elevation = np.rad2deg(np.arcsin(rays[:, 2]))
    assert elevation.min() == pytest.approx(-30.67) and elevation.max() == pytest.approx(10.67)
    assert np.all(np.diff(elevation[ring == 5]) == 0)
    # The lidar frame is the nuScenes one: its y axis points forward in the ego frame.
    np.testing.assert_allclose(LIDAR.rotation @ [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("yaw", [0.0, 0.5, -2.0, 3.1])
def test_quaternion_round_trip(yaw):
    rotation = rot_z(yaw) @ CAMERAS[2].rotation
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(rotation)), rotation, atol=1e-12)
    assert matrix_to_quat(rotation)[0] >= 0
