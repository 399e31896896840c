"""The occupancy node's calibration file: sensor -> ego extrinsics (and optional intrinsics) per sensor.

Format (YAML, version 1; quaternions are w, x, y, z as nuScenes stores them; the transform maps points from
the sensor frame into the ego frame, p_ego = R p_sensor + t)::

    version: 1
    ego_frame: base_link
    sensors:
      CAM_FRONT:
        frame_id: CAM_FRONT            # header.frame_id of this sensor's messages
        translation: [1.70, 0.016, 1.51]   # [m]
        rotation: [0.50, -0.50, 0.50, -0.50]
        intrinsics: [[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]]  # optional, [px]
        image_size: [1600, 900]        # optional, width height of the image the intrinsics refer to [px]
      LIDAR_TOP:
        frame_id: LIDAR_TOP
        translation: [0.94, 0.0, 1.84]
        rotation: [0.707, 0.0, 0.0, -0.707]

Camera intrinsics are optional because the node reads them from `CameraInfo`. The nuScenes -> rosbag2
converter writes this file with `save_calibration`; `config/calibration.example.yaml` is an example.
"""
from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from fusionocc_core.errors import FusionOccError
from fusionocc_core.geometry import matrix_to_quat, quat_to_matrix

FORMAT_VERSION = 1
_QUATERNION_TOLERANCE = 1e-3


class CalibrationError(FusionOccError, ValueError):
    """A calibration file or entry is missing, malformed or inconsistent; the message names it."""


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (w, x, y, z) (shared `fusionocc_core.geometry` implementation)."""
    return quat_to_matrix(quaternion)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation matrix."""
    return matrix_to_quat(matrix)


@dataclass(frozen=True)
class SensorCalibration:
    """One sensor's calibration.

    Attributes:
        name: sensor name (e.g. "CAM_FRONT", "LIDAR_TOP").
        frame_id: the frame id its messages carry.
        translation: (3,) sensor origin in the ego frame [m].
        rotation: (4,) unit quaternion w, x, y, z of the sensor -> ego rotation.
        intrinsics: optional (3, 3) camera matrix [px].
        image_size: optional (width, height) the intrinsics refer to [px].
    """

    name: str
    frame_id: str
    translation: np.ndarray
    rotation: np.ndarray
    intrinsics: np.ndarray | None = None
    image_size: tuple[int, int] | None = None

    @property
    def sensor_to_ego(self) -> np.ndarray:
        """(4, 4) homogeneous transform sensor -> ego."""
        pose = np.eye(4)
        pose[:3, :3] = quaternion_to_matrix(self.rotation)
        pose[:3, 3] = self.translation
        return pose

    @classmethod
    def from_matrix(cls, name: str, sensor_to_ego: np.ndarray, *, frame_id: str | None = None,
                    intrinsics: np.ndarray | None = None,
                    image_size: tuple[int, int] | None = None) -> SensorCalibration:
        """Builds an entry from a (4, 4) sensor -> ego transform (frame_id defaults to the name)."""
        pose = np.asarray(sensor_to_ego, dtype=np.float64)
        if pose.shape != (4, 4):
            raise CalibrationError(f"{name}: sensor_to_ego must be 4x4, got {pose.shape}")
        return _validated(name, {
            "frame_id": frame_id or name, "translation": pose[:3, 3].tolist(),
            "rotation": matrix_to_quaternion(pose[:3, :3]).tolist(),
            "intrinsics": None if intrinsics is None else np.asarray(intrinsics, np.float64).tolist(),
            "image_size": None if image_size is None else list(image_size),
        })


@dataclass(frozen=True)
class Calibration:
    """All sensors of a rig, keyed by sensor name, and the ego frame they are calibrated to."""

    sensors: Mapping[str, SensorCalibration]
    ego_frame: str = "base_link"

    def __getitem__(self, name: str) -> SensorCalibration:
        if name not in self.sensors:
            raise CalibrationError(f"calibration has no sensor {name!r}; it has "
                                   f"{', '.join(self.sensors) or 'none'}")
        return self.sensors[name]

    def require(self, names: Iterable[str]) -> None:
        """Raises CalibrationError naming every sensor of `names` that is missing."""
        missing = [name for name in names if name not in self.sensors]
        if missing:
            raise CalibrationError(f"calibration lacks sensor(s) {', '.join(missing)}; it has "
                                   f"{', '.join(self.sensors) or 'none'}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form written to YAML."""
        sensors: dict[str, Any] = {}
        for name, sensor in self.sensors.items():
            entry: dict[str, Any] = {
                "frame_id": sensor.frame_id,
                "translation": [float(v) for v in sensor.translation],
                "rotation": [float(v) for v in sensor.rotation],
            }
            if sensor.intrinsics is not None:
                entry["intrinsics"] = [[float(v) for v in row] for row in sensor.intrinsics]
            if sensor.image_size is not None:
                entry["image_size"] = [int(v) for v in sensor.image_size]
            sensors[name] = entry
        return {"version": FORMAT_VERSION, "ego_frame": self.ego_frame, "sensors": sensors}


def _vector(name: str, key: str, value: Any, length: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name}: {key} must be a list of {length} numbers, got {value!r}") from None
    if array.shape != (length,) or not np.isfinite(array).all():
        raise CalibrationError(f"{name}: {key} must be a list of {length} finite numbers, got {value!r}")
    return array


def _validated(name: str, entry: Any) -> SensorCalibration:
    if not isinstance(entry, Mapping):
        raise CalibrationError(f"{name}: entry must be a mapping, got {type(entry).__name__}")
    for key in ("translation", "rotation"):
        if key not in entry:
            raise CalibrationError(f"{name}: missing {key!r}")
    unknown = set(entry) - {"frame_id", "translation", "rotation", "intrinsics", "image_size"}
    if unknown:
        raise CalibrationError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}")
    translation = _vector(name, "translation", entry["translation"], 3)
    rotation = _vector(name, "rotation", entry["rotation"], 4)
    norm = float(np.linalg.norm(rotation))
    if abs(norm - 1.0) > _QUATERNION_TOLERANCE:
        raise CalibrationError(f"{name}: rotation quaternion (w, x, y, z) must have unit norm, "
                               f"got norm {norm:.6f}")
    intrinsics = None
    if entry.get("intrinsics") is not None:
        try:
            intrinsics = np.asarray(entry["intrinsics"], dtype=np.float64)
        except (TypeError, ValueError):
            intrinsics = np.zeros(0)
        if intrinsics.shape != (3, 3) or not np.isfinite(intrinsics).all():
            raise CalibrationError(f"{name}: intrinsics must be a 3x3 list of finite numbers, "
                                   f"got {entry['intrinsics']!r}")
        if intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0 or not np.allclose(intrinsics[2], [0, 0, 1]):
            raise CalibrationError(f"{name}: intrinsics must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with "
                                   f"fx, fy > 0, got {intrinsics.tolist()}")
    image_size = None
    if entry.get("image_size") is not None:
        size = entry["image_size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)):
            raise CalibrationError(f"{name}: image_size must be [width, height] positive integers, "
                                   f"got {size!r}")
        image_size = (int(size[0]), int(size[1]))
    frame_id = entry.get("frame_id", name)
    if not isinstance(frame_id, str) or not frame_id:
        raise CalibrationError(f"{name}: frame_id must be a non-empty string, got {frame_id!r}")
    return SensorCalibration(name=name, frame_id=frame_id, translation=translation, rotation=rotation / norm,
                             intrinsics=intrinsics, image_size=image_size)


def calibration_from_dict(data: Any, *, source: str = "calibration") -> Calibration:
    """Validates plain data (as read from YAML) into a Calibration.

    Raises:
        CalibrationError: wrong version, no sensors, or an invalid entry (the message names the sensor).
    """
    if not isinstance(data, Mapping):
        raise CalibrationError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CalibrationError(f"{source}: unsupported version {version!r} "
                               f"(this reader knows {FORMAT_VERSION})")
    sensors = data.get("sensors")
    if not isinstance(sensors, Mapping) or not sensors:
        raise CalibrationError(f"{source}: 'sensors' must be a non-empty mapping of sensor name -> entry")
    ego_frame = data.get("ego_frame", "base_link")
    if not isinstance(ego_frame, str) or not ego_frame:
        raise CalibrationError(f"{source}: ego_frame must be a non-empty string, got {ego_frame!r}")
    try:
        parsed = {str(name): _validated(str(name), entry) for name, entry in sensors.items()}
    except CalibrationError as error:
        raise CalibrationError(f"{source}: {error}") from None
    return Calibration(sensors=parsed, ego_frame=ego_frame)


def load_calibration(path: str | pathlib.Path) -> Calibration:
    """Reads and validates a calibration YAML file.

    Raises:
        CalibrationError: the file is missing, not YAML, or invalid (the message names the file and sensor).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CalibrationError(f"calibration file {path} is not valid YAML: {error}") from None
    return calibration_from_dict(data, source=str(path))


def save_calibration(calibration: Calibration, path: str | pathlib.Path, *, overwrite: bool = False) -> None:
    """Writes a calibration YAML file (readable by `load_calibration`, round-trip exact for float64 values).

    Raises:
        CalibrationError: the file exists and `overwrite` is False.
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise CalibrationError(f"{path} exists already, not overwriting.")
    calibration_from_dict(calibration.to_dict())  # never write what we could not read back
    header = ("# FusionOcc sensor calibration: sensor -> ego extrinsics, quaternions (w, x, y, z), "
              "translations [m],\n# optional camera intrinsics [px] (the node prefers CameraInfo).\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(calibration.to_dict(), sort_keys=False, default_flow_style=None))
