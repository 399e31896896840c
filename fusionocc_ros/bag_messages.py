"""ROS 2 messages of a converted bag, built as rosbags message objects from numpy (no per-point Python loops).

Holds what `fusionocc convert` puts into each message and nothing about nuScenes tables: the source readers
(`read_points`, `read_jpeg`, `read_gt`), the PointCloud2 payload encoders and their record layouts
(`lidar_payload`, `occ_payload`), the ego velocities of /odom (`velocities`), the message builders of one
typestore (`MessageBuilder`) and the typestore and QoS each topic is written with. Topic layout: see
`fusionocc_ros.bag_layout`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, cast

import numpy as np

from fusionocc_core.data.files import DataFileError, fix_for, points_problem, read_occ
from fusionocc_ros import bag_layout as layout
from fusionocc_ros.cloud_layouts import LIDAR_RECORD
from fusionocc_ros.errors import SourceError

if TYPE_CHECKING:
    from rosbags.interfaces import Qos
    from rosbags.typesys.store import Typestore
    from rosbags.typesys.stores import ros2_jazzy as ros2

    # Message classes: the same objects in the humble, jazzy and kilted typestores.
    Time: TypeAlias = ros2.builtin_interfaces__msg__Time
    Point: TypeAlias = ros2.geometry_msgs__msg__Point
    Pose: TypeAlias = ros2.geometry_msgs__msg__Pose
    PoseWithCovariance: TypeAlias = ros2.geometry_msgs__msg__PoseWithCovariance
    Quaternion: TypeAlias = ros2.geometry_msgs__msg__Quaternion
    Transform: TypeAlias = ros2.geometry_msgs__msg__Transform
    TransformStamped: TypeAlias = ros2.geometry_msgs__msg__TransformStamped
    Twist: TypeAlias = ros2.geometry_msgs__msg__Twist
    TwistWithCovariance: TypeAlias = ros2.geometry_msgs__msg__TwistWithCovariance
    Vector3: TypeAlias = ros2.geometry_msgs__msg__Vector3
    Odometry: TypeAlias = ros2.nav_msgs__msg__Odometry
    CameraInfo: TypeAlias = ros2.sensor_msgs__msg__CameraInfo
    CompressedImage: TypeAlias = ros2.sensor_msgs__msg__CompressedImage
    PointCloud2: TypeAlias = ros2.sensor_msgs__msg__PointCloud2
    PointField: TypeAlias = ros2.sensor_msgs__msg__PointField
    RegionOfInterest: TypeAlias = ros2.sensor_msgs__msg__RegionOfInterest
    Header: TypeAlias = ros2.std_msgs__msg__Header
    TFMessage: TypeAlias = ros2.tf2_msgs__msg__TFMessage

    BagMessage: TypeAlias = TFMessage | Odometry | PointCloud2 | CompressedImage | CameraInfo

PCD_COLUMNS = 5  # x, y, z, intensity, ring (float32 each) in a nuScenes `.pcd.bin`


# ----------------------------------------------------------------------------------------------------------
# Sources and payloads
# ----------------------------------------------------------------------------------------------------------


def read_points(path: Path) -> np.ndarray:
    """(N, 5) float32 x, y, z, intensity, ring of a nuScenes `.pcd.bin`.

    Raises:
        SourceError: unreadable, or its size is not a whole number of 5 x float32 points.
    """
    # The byte size decides: np.fromfile drops a tail shorter than one float32 without a word.
    problem = points_problem(path)
    if problem is not None:
        raise SourceError(path, f"corrupt point cloud: {problem}; {fix_for(path)}")
    try:
        raw = np.fromfile(path, dtype="<f4")
    except OSError as error:
        raise SourceError(path, f"cannot read: {error.strerror or error}") from None
    return raw.reshape(-1, PCD_COLUMNS)


def read_jpeg(path: Path) -> tuple[bytes, tuple[int, int]]:
    """The bytes of a JPEG file and its (width, height) from the header (no decode).

    Raises:
        SourceError: unreadable, not an image, or an image of another format.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(path, f"cannot read: {error.strerror or error}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                raise SourceError(path, f"expected a JPEG image, found {image.format}")
            return data, image.size
    except UnidentifiedImageError:
        # PIL's own message names the in-memory buffer (<_io.BytesIO object at 0x...>), not the file.
        raise SourceError(
            path, f"corrupt image: not a readable image (PIL cannot identify its format); {fix_for(path)}"
        ) from None
    except (OSError, SyntaxError) as error:
        raise SourceError(path, f"corrupt image: {error}; {fix_for(path)}") from None


def read_gt(path: Path) -> np.ndarray:
    """The (200, 200, 16) uint8 `semantics` of an Occ3D `labels.npz`.

    Raises:
        SourceError: missing, unreadable or not a valid Occ3D file.
    """
    try:
        semantics = read_occ(path, ("semantics",))["semantics"]
    except DataFileError as error:
        raise SourceError(path, f"corrupt Occ3D ground truth: {error.problem}; {error.fix}") from None
    return semantics.astype(np.uint8, copy=False)


def lidar_payload(points: np.ndarray) -> np.ndarray:
    """Packs (N, 5) points into the LIDAR_TOP PointCloud2 record layout (ring rounded, clipped to uint16)."""
    payload = np.zeros(points.shape[0], dtype=LIDAR_RECORD)
    for column, name in enumerate(("x", "y", "z", "intensity")):
        payload[name] = points[:, column]
    payload["ring"] = np.clip(np.rint(points[:, 4]), 0, 65535).astype(np.uint16)
    return payload


def occ_payload(semantics: np.ndarray) -> np.ndarray:
    """Non-free voxels of a (200, 200, 16) label grid in the /occ_gt layout (voxel centres in base_link), the
    same records as the node's /occupancy."""
    from fusionocc_ros.conversions import occupancy_cloud_records

    return occupancy_cloud_records(np.asarray(semantics))


def scale_intrinsics(intrinsics: np.ndarray | Sequence[Sequence[float]], size: tuple[int, int],
                     reference: tuple[int, int]) -> np.ndarray:
    """The 3 x 3 camera matrix of an image stored at `size` (width, height), given the one of `reference`.

    nuScenes intrinsics refer to the sample_data's width and height; a JPEG stored at another size gets them
    scaled with it.
    """
    matrix = np.asarray(intrinsics, dtype=np.float64)
    if size != reference:
        matrix = np.diag([size[0] / reference[0], size[1] / reference[1], 1.0]) @ matrix
    return matrix


def velocities(
    stamps_us: np.ndarray, translations: np.ndarray, rotations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference linear [m/s] and angular [rad/s] velocities in the ego (child) frame.

    Args:
        stamps_us: (N,) increasing stamps [us].
        translations: (N, 3) ego positions in the map frame [m].
        rotations: (N, 3, 3) ego -> map rotations.

    Returns:
        (N, 3) linear and (N, 3) angular velocities; zeros when N < 2.
    """
    n = stamps_us.shape[0]
    if n < 2:
        return np.zeros((n, 3)), np.zeros((n, 3))
    lo = np.clip(np.arange(n) - 1, 0, n - 1)
    hi = np.clip(np.arange(n) + 1, 0, n - 1)
    dt = ((stamps_us[hi] - stamps_us[lo]) * 1e-6)[:, None]
    linear_map = (translations[hi] - translations[lo]) / dt
    linear = np.einsum("nji,nj->ni", rotations, linear_map)  # R^T v
    relative = np.einsum("nji,njk->nik", rotations[lo], rotations[hi])  # R_lo^T R_hi
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack(
        [
            relative[:, 2, 1] - relative[:, 1, 2],
            relative[:, 0, 2] - relative[:, 2, 0],
            relative[:, 1, 0] - relative[:, 0, 1],
        ],
        axis=1,
    )
    sin = np.sin(angle)[:, None]
    scale = np.where(sin > 1e-9, angle[:, None] / (2 * np.where(sin > 1e-9, sin, 1.0)), 0.5)
    return linear, axis * scale / dt


# ----------------------------------------------------------------------------------------------------------
# Typestore, QoS and message builders
# ----------------------------------------------------------------------------------------------------------


def typestore(distro: str) -> Typestore:
    """The rosbags typestore of a ROS 2 distribution ("humble", "jazzy" or "kilted")."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore({"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY,
                          "kilted": Stores.ROS2_KILTED}[distro])


def topic_qos(topic: str) -> tuple[int, bool]:
    """(keep-last depth, transient local) offered for a topic of a converted bag."""
    if topic == layout.TF_STATIC_TOPIC:
        return layout.STATIC_DEPTH, True
    if topic in (layout.TF_TOPIC, layout.ODOM_TOPIC):
        return layout.POSE_DEPTH, False
    return layout.SENSOR_DEPTH, False


def offered_qos(topic: str) -> Qos:
    """The reliable keep-last QoS profile a converted bag offers for `topic` (see `topic_qos`)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    depth, transient_local = topic_qos(topic)
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


class MessageBuilder:
    """Builds the rosbags message objects of one typestore; stamps are integer microseconds."""

    def __init__(self, store: Typestore) -> None:
        self.store = store
        types = store.types
        self.Time = cast("type[Time]", types["builtin_interfaces/msg/Time"])
        self.Header = cast("type[Header]", types["std_msgs/msg/Header"])
        self.CompressedImage = cast("type[CompressedImage]", types[layout.COMPRESSED_IMAGE_TYPE])
        self.CameraInfo = cast("type[CameraInfo]", types[layout.CAMERA_INFO_TYPE])
        self.RegionOfInterest = cast("type[RegionOfInterest]", types["sensor_msgs/msg/RegionOfInterest"])
        self.PointCloud2 = cast("type[PointCloud2]", types[layout.POINTCLOUD2_TYPE])
        self.PointField = cast("type[PointField]", types["sensor_msgs/msg/PointField"])
        self.TFMessage = cast("type[TFMessage]", types[layout.TF_TYPE])
        self.TransformStamped = cast("type[TransformStamped]", types["geometry_msgs/msg/TransformStamped"])
        self.Transform = cast("type[Transform]", types["geometry_msgs/msg/Transform"])
        self.Vector3 = cast("type[Vector3]", types["geometry_msgs/msg/Vector3"])
        self.Quaternion = cast("type[Quaternion]", types["geometry_msgs/msg/Quaternion"])
        self.Odometry = cast("type[Odometry]", types[layout.ODOM_TYPE])
        self.PoseWithCovariance = cast("type[PoseWithCovariance]", types["geometry_msgs/msg/PoseWithCovariance"])
        self.Pose = cast("type[Pose]", types["geometry_msgs/msg/Pose"])
        self.Point = cast("type[Point]", types["geometry_msgs/msg/Point"])
        self.TwistWithCovariance = cast("type[TwistWithCovariance]", types["geometry_msgs/msg/TwistWithCovariance"])
        self.Twist = cast("type[Twist]", types["geometry_msgs/msg/Twist"])

    def header(self, stamp_us: int, frame_id: str) -> Header:
        """A std_msgs/Header stamped `stamp_us` in `frame_id`."""
        return self.Header(
            stamp=self.Time(sec=stamp_us // 1_000_000, nanosec=(stamp_us % 1_000_000) * 1000),
            frame_id=frame_id,
        )

    def quaternion(self, wxyz: Sequence[float] | np.ndarray) -> Quaternion:
        """A geometry_msgs/Quaternion of a nuScenes (w, x, y, z) rotation."""
        w, x, y, z = (float(v) for v in wxyz)
        return self.Quaternion(x=x, y=y, z=z, w=w)

    def transform(
        self,
        stamp_us: int,
        parent: str,
        child: str,
        translation: Sequence[float] | np.ndarray,
        rotation_wxyz: Sequence[float] | np.ndarray,
    ) -> TransformStamped:
        """The transform `parent` -> `child` (the child's pose in the parent frame)."""
        tx, ty, tz = (float(v) for v in translation)
        return self.TransformStamped(
            header=self.header(stamp_us, parent),
            child_frame_id=child,
            transform=self.Transform(
                translation=self.Vector3(x=tx, y=ty, z=tz),
                rotation=self.quaternion(rotation_wxyz),
            ),
        )

    def compressed_image(self, stamp_us: int, frame_id: str, jpeg: bytes) -> CompressedImage:
        """The original JPEG bytes as a sensor_msgs/CompressedImage."""
        return self.CompressedImage(
            header=self.header(stamp_us, frame_id),
            format="jpeg",
            data=np.frombuffer(jpeg, dtype=np.uint8),
        )

    def camera_info(
        self, stamp_us: int, frame_id: str, intrinsics: np.ndarray, width: int, height: int
    ) -> CameraInfo:
        """A distortion-free (plumb_bob, zero coefficients) sensor_msgs/CameraInfo of a 3 x 3 camera matrix."""
        k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
        p = np.zeros((3, 4), dtype=np.float64)
        p[:, :3] = k
        return self.CameraInfo(
            header=self.header(stamp_us, frame_id),
            height=int(height),
            width=int(width),
            distortion_model="plumb_bob",
            d=np.zeros(5, dtype=np.float64),
            k=k.reshape(-1),
            r=np.eye(3, dtype=np.float64).reshape(-1),
            p=p.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )

    def cloud(
        self,
        stamp_us: int,
        frame_id: str,
        fields: Sequence[tuple[str, int, int]],
        payload: np.ndarray,
        point_step: int,
    ) -> PointCloud2:
        """A dense little-endian sensor_msgs/PointCloud2 (height 1) of a structured `payload`.

        Args:
            fields: (name, offset, PointField datatype) of each field, e.g. `cloud_layouts.LIDAR_FIELDS`.
            payload: (N,) records of `point_step` bytes each, e.g. from `lidar_payload`.
        """
        count = int(payload.shape[0])
        return self.PointCloud2(
            header=self.header(stamp_us, frame_id),
            height=1,
            width=count,
            fields=[self.PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields],
            is_bigendian=False,
            point_step=point_step,
            row_step=point_step * count,
            data=np.frombuffer(payload.tobytes(), dtype=np.uint8),
            is_dense=True,
        )

    def odometry(
        self,
        stamp_us: int,
        translation: np.ndarray,
        rotation_wxyz: np.ndarray,
        linear: np.ndarray,
        angular: np.ndarray,
    ) -> Odometry:
        """The ego pose as nav_msgs/Odometry map -> base_link, twist in base_link, zero covariances."""
        tx, ty, tz = (float(v) for v in translation)
        pose = self.Pose(
            position=self.Point(x=tx, y=ty, z=tz),
            orientation=self.quaternion(rotation_wxyz),
        )
        twist = self.Twist(
            linear=self.Vector3(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
            angular=self.Vector3(x=float(angular[0]), y=float(angular[1]), z=float(angular[2])),
        )
        zeros = np.zeros(36, dtype=np.float64)
        return self.Odometry(
            header=self.header(stamp_us, layout.MAP_FRAME),
            child_frame_id=layout.EGO_FRAME,
            pose=self.PoseWithCovariance(pose=pose, covariance=zeros),
            twist=self.TwistWithCovariance(twist=twist, covariance=zeros.copy()),
        )
