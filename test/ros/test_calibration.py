"""Calibration YAML: load, validate (errors name the sensor and key), save, round trip."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import yaml

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_ros.calibration import (
    Calibration,
    CalibrationError,
    SensorCalibration,
    calibration_from_dict,
    load_calibration,
    matrix_to_quaternion,
    quaternion_to_matrix,
    save_calibration,
)

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "config" / "calibration.example.yaml"


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_example_file_loads_with_every_nuscenes_sensor():
    calibration = load_calibration(EXAMPLE)
    calibration.require([*CAMERA_NAMES, LIDAR_NAME])
    assert calibration.ego_frame == "base_link"
    front = calibration["CAM_FRONT"]
    assert front.frame_id == "CAM_FRONT" and front.image_size == (1600, 900)
    # The front camera looks along ego +x: its optical axis (camera z) maps to ego x.
    np.testing.assert_allclose(front.sensor_to_ego[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=0.02)
    lidar = calibration[LIDAR_NAME]
    assert lidar.intrinsics is None
    np.testing.assert_allclose(lidar.sensor_to_ego[:3, 3], [0.943, 0.0, 1.84])
    # nuScenes lidar frame: y forward.
    np.testing.assert_allclose(lidar.sensor_to_ego[:3, :3] @ [0, 1, 0], [1, 0, 0], atol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_quaternion_matrix_round_trip_wxyz(seed):
    rotation = _rotation(seed)
    quaternion = matrix_to_quaternion(rotation)
    assert quaternion[0] >= 0 and np.linalg.norm(quaternion) == pytest.approx(1.0)
    np.testing.assert_allclose(quaternion_to_matrix(quaternion), rotation, atol=1e-12)
    # w, x, y, z order: 90 deg about +z is (cos 45, 0, 0, sin 45).
    np.testing.assert_allclose(matrix_to_quaternion([[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
                               [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-12)


def test_save_then_load_is_exact_and_refuses_to_overwrite(tmp_path):
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = _rotation(1), [1.5, -0.25, 1.75]
    intrinsics = np.array([[1000.0, 0, 800.5], [0, 1001.0, 450.25], [0, 0, 1]])
    calibration = Calibration(sensors={
        "CAM_FRONT": SensorCalibration.from_matrix("CAM_FRONT", pose, frame_id="cam_front_optical",
                                                   intrinsics=intrinsics, image_size=(1600, 900)),
        "LIDAR_TOP": SensorCalibration.from_matrix("LIDAR_TOP", np.eye(4)),
    }, ego_frame="ego")
    path = tmp_path / "sub" / "calibration.yaml"
    save_calibration(calibration, path)
    loaded = load_calibration(path)
    assert loaded.ego_frame == "ego" and list(loaded.sensors) == ["CAM_FRONT", "LIDAR_TOP"]
    assert loaded["CAM_FRONT"].frame_id == "cam_front_optical"
    np.testing.assert_allclose(loaded["CAM_FRONT"].sensor_to_ego, pose, atol=1e-12)
    np.testing.assert_array_equal(loaded["CAM_FRONT"].intrinsics, intrinsics)
    assert loaded["LIDAR_TOP"].frame_id == "LIDAR_TOP"
    with pytest.raises(CalibrationError, match="exists already, not overwriting"):
        save_calibration(calibration, path)
    save_calibration(calibration, path, overwrite=True)


def _data(**changes):
    entry = {"frame_id": "CAM_FRONT", "translation": [1, 2, 3], "rotation": [1, 0, 0, 0]}
    entry.update(changes)
    return {"version": 1, "sensors": {"CAM_FRONT": {k: v for k, v in entry.items() if v is not None}}}


@pytest.mark.parametrize("data,match", [
    (_data(rotation=[1, 1, 0, 0]), "CAM_FRONT: rotation quaternion .* unit norm"),
    (_data(rotation=[1, 0, 0]), "CAM_FRONT: rotation must be a list of 4"),
    (_data(translation=None), "CAM_FRONT: missing 'translation'"),
    (_data(translation=[1, "x", 3]), "translation must be a list of 3"),
    (_data(translation=[1, float("nan"), 3]), "finite"),
    (_data(intrinsics=[[1, 0, 0], [0, 1, 0]]), "intrinsics must be a 3x3"),
    (_data(intrinsics=[[-1, 0, 0], [0, 1, 0], [0, 0, 1]]), "fx, fy > 0"),
    (_data(image_size=[1600]), "image_size must be"),
    (_data(frame_id=""), "frame_id must be a non-empty string"),
    (_data(extra=1), "unknown key"),
    ({"version": 2, "sensors": {}}, "unsupported version 2"),
    ({"version": 1, "sensors": {}}, "non-empty mapping"),
    ([1, 2], "mapping at the top level"),
])
def test_invalid_entries_are_rejected_naming_the_problem(data, match):
    with pytest.raises(CalibrationError, match=match):
        calibration_from_dict(data)


def test_missing_file_bad_yaml_and_missing_sensors(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sensors: [unclosed")
    with pytest.raises(CalibrationError, match="not valid YAML"):
        load_calibration(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_data()))
    calibration = load_calibration(good)
    with pytest.raises(CalibrationError, match="lacks sensor.*LIDAR_TOP"):
        calibration.require(["CAM_FRONT", "LIDAR_TOP"])
    with pytest.raises(CalibrationError, match="no sensor 'CAM_BACK'"):
        calibration["CAM_BACK"]
