"""The synthetic sensor rig: six cameras at 60 degree steps and a lidar at the ego origin, its calibration
file, frames of it (lidar sweep, six staggered images, ego pose) and their ROS messages."""

from __future__ import annotations

import array
import io
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from nav_msgs.msg import Odometry
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_core.predictor import SensorFrame
from fusionocc_ros.calibration import Calibration, SensorCalibration, load_calibration, save_calibration
from fusionocc_ros.conversions import compressed_image_to_rgb, rgb_to_image, xyzir_to_pointcloud2
from fusionocc_ros.odometry import pose_matrix

RIG_IMAGE_SIZE = (160, 90)  # (width, height) of the synthetic rig's images (16:9 like nuScenes)
RIG_INTRINSICS = np.array([[80.0, 0.0, 80.0], [0.0, 80.0, 45.0], [0.0, 0.0, 1.0]])


def write_rig_calibration(path: str | Path) -> Calibration:
    """Calibration file of the synthetic rig: six cameras at the ego origin looking out at 60 degree steps
    (optical frame z forward), lidar at the origin; returns the loaded Calibration."""
    sensors = {}
    optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # camera -> ego at yaw 0
    for index, name in enumerate(CAMERA_NAMES):
        yaw = np.deg2rad(60.0 * index)
        rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        pose = np.eye(4)
        pose[:3, :3] = rot @ optical
        pose[:3, 3] = [0.0, 0.0, 1.5]
        sensors[name] = SensorCalibration.from_matrix(name, pose)
    sensors[LIDAR_NAME] = SensorCalibration(LIDAR_NAME, LIDAR_NAME, np.array([0.0, 0.0, 1.8]),
                                            np.array([1.0, 0.0, 0.0, 0.0]))
    save_calibration(Calibration(sensors=sensors), path, overwrite=True)
    return load_calibration(path)


@dataclass
class RigFrame:
    """One synthetic sensor frame: lidar sweep, six staggered images, the ego pose."""

    stamp_ns: int
    points: np.ndarray  # (N, 5) lidar frame
    images: list[np.ndarray]  # (H, W, 3) uint8 per camera
    jpegs: list[bytes]
    camera_stamps_ns: list[int]
    translation: np.ndarray
    quaternion: np.ndarray  # w, x, y, z


def rig_frames(count: int, *, seed: int = 0, period_s: float = 0.1, start_s: float = 100.0,
               num_points: int = 400) -> list[RigFrame]:
    """`count` frames `period_s` apart; the ego drives along x at 5 m/s; cameras fire 0..25 ms after the
    sweep (nuScenes-like stagger)."""
    rng = np.random.default_rng(seed)
    width, height = RIG_IMAGE_SIZE
    frames = []
    for i in range(count):
        stamp = round((start_s + i * period_s) * 1e9)
        images, jpegs = [], []
        for _ in range(6):
            base = rng.integers(0, 256, 3)
            image = np.clip(base + rng.integers(-30, 30, (height, width, 3)), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            PILImage.fromarray(image).save(buffer, "JPEG", quality=90)
            images.append(image)
            jpegs.append(buffer.getvalue())
        points = np.concatenate(
            [rng.uniform(-30, 30, (num_points, 2)), rng.uniform(-1, 3, (num_points, 1)),
             rng.uniform(0, 255, (num_points, 1)), rng.integers(0, 32, (num_points, 1))], axis=1
        ).astype(np.float32)
        frames.append(RigFrame(stamp, points, images, jpegs, [stamp + 5_000_000 * c for c in range(6)],
                               np.array([5.0 * i * period_s, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0])))
    return frames


def direct_sensor_frame(frame: RigFrame, calibration: Calibration, *, transport: str = "raw") -> SensorFrame:
    """The Predictor input the node should build from `frame` (decoded exactly as the node decodes)."""
    if transport == "raw":
        images = np.stack(frame.images)
    else:
        images = np.stack([compressed_image_to_rgb(SimpleNamespace(data=j, format="jpeg")) for j in frame.jpegs])
    return SensorFrame(
        images=images,
        intrinsics=np.tile(RIG_INTRINSICS, (6, 1, 1)),
        cam_to_ego=np.stack([calibration[name].sensor_to_ego for name in CAMERA_NAMES]),
        lidar_points=frame.points,
        lidar_to_ego=calibration[LIDAR_NAME].sensor_to_ego,
        ego_to_global=pose_matrix(frame.translation, frame.quaternion),
        stamp_s=frame.stamp_ns / 1e9,
        camera_names=CAMERA_NAMES,
    )


def _set_stamp(header: Header, stamp_ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


def stamp_ns_of(msg: Image | PointCloud2 | Odometry) -> int:
    """header.stamp of a message [ns]."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def rig_camera_info_msg(name: str) -> CameraInfo:
    """The rig's CameraInfo for camera `name`."""
    info = CameraInfo(width=RIG_IMAGE_SIZE[0], height=RIG_IMAGE_SIZE[1])
    info.header.frame_id = name
    info.k = RIG_INTRINSICS.reshape(-1).tolist()
    return info


def rig_odometry_msg(frame: RigFrame) -> Odometry:
    """The frame's ego pose as nav_msgs/Odometry (map -> base_link)."""
    odom = Odometry(child_frame_id="base_link")
    odom.header.frame_id = "map"
    _set_stamp(odom.header, frame.stamp_ns)
    position, orientation = odom.pose.pose.position, odom.pose.pose.orientation
    position.x, position.y, position.z = map(float, frame.translation)
    orientation.w, orientation.x, orientation.y, orientation.z = map(float, frame.quaternion)
    return odom


def rig_cloud_msg(frame: RigFrame) -> PointCloud2:
    """The frame's lidar sweep as PointCloud2 (x, y, z, intensity, ring)."""
    header = Header(frame_id=LIDAR_NAME)
    _set_stamp(header, frame.stamp_ns)
    return xyzir_to_pointcloud2(frame.points, header=header)


def rig_image_msg(frame: RigFrame, index: int,
                  transport: str) -> tuple[type[Image] | type[CompressedImage], str, Image | CompressedImage]:
    """(message type, node-relative topic, message) of camera `index`: CompressedImage with the frame's JPEG
    for transport "compressed", raw Image otherwise."""
    name = CAMERA_NAMES[index]
    header = Header(frame_id=name)
    _set_stamp(header, frame.camera_stamps_ns[index])
    if transport == "compressed":
        msg = CompressedImage(header=header, format="jpeg")
        msg.data = array.array("B", frame.jpegs[index])
        return CompressedImage, f"input/{name}/image/compressed", msg
    return Image, f"input/{name}/image", rgb_to_image(frame.images[index], header=header)
