"""Convert a nuScenes dataroot into ROS 2 bags (one per scene) that `ros2 bag play` replays.

The official nuscenes-devkit reads the dataroot; `rosbags` writes standard ROS 2 messages (MCAP by default,
sqlite3 on request): per camera the ORIGINAL JPEG bytes as CompressedImage plus CameraInfo, LIDAR_TOP as
PointCloud2 (x, y, z, intensity float32, ring uint16), /tf_static (sensor extrinsics, transient local),
/tf and /odom (map -> base_link per ego pose) and optionally the Occ3D ground truth as a labelled
PointCloud2. Every message is stamped with its sensor's own sample_data timestamp; log time = header stamp.

Each scene becomes the bag directory `OUT/<scene name>/` with `metadata.yaml`, the storage file and
`calibration.yaml` (the occupancy node's calibration file). Inputs (tables, scenes, every source file: each
JPEG header, each `.pcd.bin` a whole number of points, each pose finite, gts when asked) are checked before
anything is written; each bag is written under a hidden temporary directory in OUT, gets
`conversion_complete.json` (options, message counts, file sizes) last, and is renamed into place, so an
interrupted run leaves no half-written bag.

Running the same command again continues an interrupted run: a bag whose completion record matches its files,
its metadata (read back with rosbags) and the scene is kept and skipped; an incomplete one (no or inconsistent
record) is written again, and temporaries of killed runs (`.fusionocc-convert-*`) are removed. A bag written
with other options is refused unless --overwrite, which rewrites every bag.
Topic layout: see `fusionocc_ros.bag_layout`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionocc_core.cli_options import VersionError, add_no_progress, add_version, resolve_version
from fusionocc_core.data.files import (
    DataFileError,
    fix_for,
    image_problem,
    open_nuscenes,
    points_problem,
    pose_problem,
    read_occ,
)
from fusionocc_core.geometry import quat_to_matrix
from fusionocc_core.occ3d import (
    CAMERA_NAMES,
    FREE_LABEL,
    LIDAR_NAME,
    NUSCENES_TABLES,
    POINT_CLOUD_RANGE,
    VOXEL_SIZE,
)
from fusionocc_ros import bag_layout as layout
from fusionocc_ros.errors import ConvertError, SourceError

STORAGES = ("mcap", "sqlite3")
DISTROS = ("humble", "jazzy", "kilted")
CALIBRATION_FILE = "calibration.yaml"
COMPLETE_FILE = "conversion_complete.json"  # written last into each bag directory
_COMPLETE_FORMAT = "fusionocc-convert-complete"
_TMP_PREFIX = ".fusionocc-convert-"
# What a bag directory of ours may hold; anything else at a destination is not ours to delete.
_BAG_FILES = ("metadata.yaml", CALIBRATION_FILE, COMPLETE_FILE)
_BAG_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal")
_PCD_COLUMNS = 5  # x, y, z, intensity, ring (float32 each)
_GTS_DIR = "gts"


@dataclass(frozen=True)
class ConvertOptions:
    """What goes into each bag and how it is stored.

    Attributes:
        storage: "mcap" (default) or "sqlite3".
        distro: ROS 2 distribution whose typestore defines the message definitions; bag format version 8 for
            humble, 9 for jazzy and kilted.
        keyframes_only: only the 2 Hz annotated keyframes (samples) instead of every sweep.
        with_occ_gt: add the Occ3D ground truth of each keyframe on /occ_gt (needs `gts/`).
        with_calibration: write `calibration.yaml` into each bag directory.
        overwrite: replace existing bags at the destination (only once the new one is complete).
        progress: show a tqdm progress bar on stderr.
    """

    storage: str = "mcap"
    distro: str = "jazzy"
    keyframes_only: bool = False
    with_occ_gt: bool = False
    with_calibration: bool = True
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ConvertError(f"storage {self.storage!r} is not one of {', '.join(STORAGES)}.")
        if self.distro not in DISTROS:
            raise ConvertError(f"distro {self.distro!r} is not one of {', '.join(DISTROS)}.")


@dataclass
class ConvertReport:
    """What one scene's conversion wrote.

    Attributes:
        scene: scene name.
        path: the bag directory.
        calibration_path: the calibration YAML (None when not written).
        message_counts: topic -> number of messages.
        source_bytes: total size of the source files read (images, point clouds, gts) [bytes].
        bag_bytes: total size of the bag directory [bytes].
        seconds: wall time of the conversion [s].
        start_ns, end_ns: first and last log time [ns].
        kept: the bag was complete already and was kept, not written (an interrupted run continued).
    """

    scene: str
    path: Path
    calibration_path: Path | None
    message_counts: dict[str, int] = field(default_factory=dict)
    source_bytes: int = 0
    bag_bytes: int = 0
    seconds: float = 0.0
    start_ns: int = 0
    end_ns: int = 0
    kept: bool = False

    @property
    def messages(self) -> int:
        """Total number of messages written."""
        return sum(self.message_counts.values())


# ----------------------------------------------------------------------------------------------------------
# Planning: what to write, checked before writing
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """One sample_data record to write."""

    stamp_us: int
    channel: str
    token: str
    path: Path
    is_key_frame: bool
    sample_token: str


@dataclass
class _ScenePlan:
    name: str
    token: str
    frames: list[_Frame]
    gts: dict[str, Path]  # keyframe sample token -> labels.npz


def _scene_by_name(nusc: Any, scene_name: str) -> dict[str, Any]:
    for scene in nusc.scene:
        if scene["name"] == scene_name:
            return scene
    names = ", ".join(s["name"] for s in nusc.scene)
    raise ConvertError(f"scene {scene_name!r} is not in {nusc.dataroot} ({nusc.version}); it has {names}.")


def _channel_chain(nusc: Any, first_token: str, scene_token: str) -> Iterator[dict[str, Any]]:
    """Every sample_data of one channel that belongs to the scene, oldest first (walks prev, then next)."""
    record = nusc.get("sample_data", first_token)
    while record["prev"]:
        previous = nusc.get("sample_data", record["prev"])
        if nusc.get("sample", previous["sample_token"])["scene_token"] != scene_token:
            break
        record = previous
    while True:
        yield record
        if not record["next"]:
            return
        record = nusc.get("sample_data", record["next"])
        if nusc.get("sample", record["sample_token"])["scene_token"] != scene_token:
            return


def _plan_scene(nusc: Any, scene_name: str, *, options: ConvertOptions) -> _ScenePlan:
    scene = _scene_by_name(nusc, scene_name)
    first_sample = nusc.get("sample", scene["first_sample_token"])
    dataroot = Path(nusc.dataroot)
    frames: list[_Frame] = []
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        if channel not in first_sample["data"]:
            raise ConvertError(f"scene {scene_name}: the first sample has no {channel} sample_data.")
        for record in _channel_chain(nusc, first_sample["data"][channel], scene["token"]):
            if options.keyframes_only and not record["is_key_frame"]:
                continue
            frames.append(
                _Frame(
                    int(record["timestamp"]),
                    channel,
                    record["token"],
                    dataroot / record["filename"],
                    bool(record["is_key_frame"]),
                    record["sample_token"],
                )
            )
    frames.sort(key=lambda f: (f.stamp_us, f.channel))
    gts: dict[str, Path] = {}
    if options.with_occ_gt:
        for frame in frames:
            if frame.channel == LIDAR_NAME and frame.is_key_frame:
                gts[frame.sample_token] = dataroot / _GTS_DIR / scene_name / frame.sample_token / "labels.npz"
    return _ScenePlan(scene_name, scene["token"], frames, gts)


def _check_sources(nusc: Any, plan: _ScenePlan, progress: Callable[[int], None] | None = None) -> None:
    """Checks every file and pose one scene's bag is made of, as the writer will read them.

    Raises:
        SourceError: the first missing or damaged file (or the pose table holding a non-finite pose), in
            one line with the number of other problems of the scene.
    """
    dataroot = Path(nusc.dataroot)
    check_data = f"`fusionocc check-data {dataroot}` lists them"
    missing = [f.path for f in plan.frames if not f.path.is_file()]
    missing += [p for p in plan.gts.values() if not p.is_file()]
    if missing:
        hint = " (Occ3D gts/ are needed for --with-occ-gt)" if _GTS_DIR in missing[0].parts else ""
        more = f"; scene {plan.name} lacks {len(missing)} source files, {check_data}"
        more = more if len(missing) > 1 else ""
        raise SourceError(missing[0], f"missing{hint}{more}; {fix_for(missing[0])}")
    problems: list[tuple[Path, str]] = []
    for frame in plan.frames:
        if frame.channel == LIDAR_NAME:
            problem = points_problem(frame.path)
            kind = "corrupt point cloud"
        else:
            # Any size: the CameraInfo follows a JPEG stored at another size than its record.
            problem = image_problem(frame.path)
            kind = "corrupt image"
        if problem is not None:
            problems.append((frame.path, f"{kind}: {problem}"))
        record = nusc.get("sample_data", frame.token)
        for table, token in (("ego_pose", record["ego_pose_token"]),
                             ("calibrated_sensor", record["calibrated_sensor_token"])):
            problem = pose_problem(nusc.get(table, token))
            if problem is not None:
                path = dataroot / nusc.version / f"{table}.json"
                problems.append((path, f"{table} {token} (of {frame.path.name}): {problem}"))
        if progress is not None:
            progress(1)
    for path in plan.gts.values():
        try:
            read_occ(path, ("semantics",))
        except DataFileError as error:
            problems.append((path, f"corrupt Occ3D ground truth: {error.problem}"))
    if problems:
        path, problem = problems[0]
        more = f" ({len(problems) - 1} more problems in scene {plan.name}: {check_data})"
        more = more if len(problems) > 1 else ""
        raise SourceError(path, f"{problem}{more}; {fix_for(path)}")


# ----------------------------------------------------------------------------------------------------------
# Messages (rosbags message objects built from numpy; no per-point Python loops)
# ----------------------------------------------------------------------------------------------------------


class _Messages:
    """Builds rosbags message objects of one typestore."""

    def __init__(self, typestore: Any) -> None:
        self.store = typestore
        types = typestore.types
        self.Time = types["builtin_interfaces/msg/Time"]
        self.Header = types["std_msgs/msg/Header"]
        self.CompressedImage = types[layout.COMPRESSED_IMAGE_TYPE]
        self.CameraInfo = types[layout.CAMERA_INFO_TYPE]
        self.RegionOfInterest = types["sensor_msgs/msg/RegionOfInterest"]
        self.PointCloud2 = types[layout.POINTCLOUD2_TYPE]
        self.PointField = types["sensor_msgs/msg/PointField"]
        self.TFMessage = types[layout.TF_TYPE]
        self.TransformStamped = types["geometry_msgs/msg/TransformStamped"]
        self.Transform = types["geometry_msgs/msg/Transform"]
        self.Vector3 = types["geometry_msgs/msg/Vector3"]
        self.Quaternion = types["geometry_msgs/msg/Quaternion"]
        self.Odometry = types[layout.ODOM_TYPE]
        self.PoseWithCovariance = types["geometry_msgs/msg/PoseWithCovariance"]
        self.Pose = types["geometry_msgs/msg/Pose"]
        self.Point = types["geometry_msgs/msg/Point"]
        self.TwistWithCovariance = types["geometry_msgs/msg/TwistWithCovariance"]
        self.Twist = types["geometry_msgs/msg/Twist"]

    def header(self, stamp_us: int, frame_id: str) -> Any:
        return self.Header(
            stamp=self.Time(sec=stamp_us // 1_000_000, nanosec=(stamp_us % 1_000_000) * 1000),
            frame_id=frame_id,
        )

    def quaternion(self, wxyz: Sequence[float]) -> Any:
        w, x, y, z = (float(v) for v in wxyz)
        return self.Quaternion(x=x, y=y, z=z, w=w)

    def transform(
        self,
        stamp_us: int,
        parent: str,
        child: str,
        translation: Sequence[float],
        rotation_wxyz: Sequence[float],
    ) -> Any:
        tx, ty, tz = (float(v) for v in translation)
        return self.TransformStamped(
            header=self.header(stamp_us, parent),
            child_frame_id=child,
            transform=self.Transform(
                translation=self.Vector3(x=tx, y=ty, z=tz),
                rotation=self.quaternion(rotation_wxyz),
            ),
        )

    def compressed_image(self, stamp_us: int, frame_id: str, jpeg: bytes) -> Any:
        return self.CompressedImage(
            header=self.header(stamp_us, frame_id),
            format="jpeg",
            data=np.frombuffer(jpeg, dtype=np.uint8),
        )

    def camera_info(
        self,
        stamp_us: int,
        frame_id: str,
        intrinsics: np.ndarray,
        width: int,
        height: int,
    ) -> Any:
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
    ) -> Any:
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
    ) -> Any:
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


_LIDAR_RECORD = np.dtype(
    {
        "names": ["x", "y", "z", "intensity", "ring"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": layout.LIDAR_POINT_STEP,
    }
)
_LIDAR_FIELDS = (
    ("x", 0, 7),
    ("y", 4, 7),
    ("z", 8, 7),
    ("intensity", 12, 7),
    ("ring", 16, 4),
)
_OCC_RECORD = np.dtype(
    {
        "names": ["x", "y", "z", "rgb", "label"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "u1"],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": layout.OCC_POINT_STEP,
    }
)
_OCC_FIELDS = (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("label", 16, 2))


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
    return raw.reshape(-1, _PCD_COLUMNS)


def lidar_payload(points: np.ndarray) -> np.ndarray:
    """Packs (N, 5) points into the LIDAR_TOP PointCloud2 record layout (ring as uint16)."""
    payload = np.zeros(points.shape[0], dtype=_LIDAR_RECORD)
    for column, name in enumerate(("x", "y", "z", "intensity")):
        payload[name] = points[:, column]
    payload["ring"] = np.clip(np.rint(points[:, 4]), 0, 65535).astype(np.uint16)
    return payload


def occ_payload(semantics: np.ndarray) -> np.ndarray:
    """Non-free voxels of a (200, 200, 16) label grid in the /occ_gt layout (voxel centres in base_link)."""
    from fusionocc_ros.conversions import packed_rgb_floats

    indices = np.argwhere(semantics != FREE_LABEL)  # (M, 3) [x, y, z], C order
    values = semantics[indices[:, 0], indices[:, 1], indices[:, 2]]
    centres = (np.asarray(POINT_CLOUD_RANGE[:3]) + VOXEL_SIZE * (indices + 0.5)).astype(np.float32)
    payload = np.zeros(indices.shape[0], dtype=_OCC_RECORD)
    payload["x"], payload["y"], payload["z"] = (
        centres[:, 0],
        centres[:, 1],
        centres[:, 2],
    )
    payload["rgb"] = packed_rgb_floats(values)
    payload["label"] = values
    return payload


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SourceError(path, f"cannot read: {error.strerror or error}") from None


def _jpeg_size(path: Path, data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG header (no decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                raise SourceError(path, f"expected a JPEG image, found {image.format}")
            return image.size
    except UnidentifiedImageError:
        # PIL's own message names the in-memory buffer (<_io.BytesIO object at 0x...>), not the file.
        raise SourceError(
            path, f"corrupt image: not a readable image (PIL cannot identify its format); {fix_for(path)}"
        ) from None
    except (OSError, SyntaxError) as error:
        raise SourceError(path, f"corrupt image: {error}; {fix_for(path)}") from None


def _read_gt(path: Path) -> np.ndarray:
    try:
        semantics = read_occ(path, ("semantics",))["semantics"]
    except DataFileError as error:
        raise SourceError(path, f"corrupt Occ3D ground truth: {error.problem}; {error.fix}") from None
    return semantics.astype(np.uint8, copy=False)


def _velocities(
    stamps_us: np.ndarray, translations: np.ndarray, rotations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference linear [m/s] and angular [rad/s] velocities in the ego (child) frame.

    Args:
        stamps_us: (N,) increasing stamps [us]; translations (N, 3); rotations (N, 3, 3) ego -> map.
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
# Writing
# ----------------------------------------------------------------------------------------------------------


def _typestore(distro: str) -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(
        {
            "humble": Stores.ROS2_HUMBLE,
            "jazzy": Stores.ROS2_JAZZY,
            "kilted": Stores.ROS2_KILTED,
        }[distro]
    )


def _qos(depth: int, *, transient_local: bool) -> Any:
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

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


def topic_qos(topic: str) -> tuple[int, bool]:
    """(keep-last depth, transient local) offered for a topic of a converted bag."""
    if topic == layout.TF_STATIC_TOPIC:
        return layout.STATIC_DEPTH, True
    if topic in (layout.TF_TOPIC, layout.ODOM_TOPIC):
        return layout.POSE_DEPTH, False
    return layout.SENSOR_DEPTH, False


def _calibration(nusc: Any, plan: _ScenePlan) -> Any:
    from fusionocc_ros.calibration import Calibration, SensorCalibration

    sensors: dict[str, SensorCalibration] = {}
    for frame in plan.frames:
        if frame.channel in sensors:
            continue
        record = nusc.get("sample_data", frame.token)
        cs = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
        pose = np.eye(4)
        pose[:3, :3] = quat_to_matrix(cs["rotation"])
        pose[:3, 3] = cs["translation"]
        intrinsics = np.asarray(cs["camera_intrinsic"]) if cs.get("camera_intrinsic") else None
        size = (int(record["width"]), int(record["height"])) if intrinsics is not None else None
        sensors[frame.channel] = SensorCalibration.from_matrix(
            frame.channel, pose, intrinsics=intrinsics, image_size=size
        )
    ordered = {name: sensors[name] for name in (*CAMERA_NAMES, LIDAR_NAME) if name in sensors}
    return Calibration(ordered, ego_frame=layout.EGO_FRAME)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remove_stale_temporaries(out_dir: Path, log: Callable[[str], None] | None = None) -> None:
    """Removes temporaries of earlier runs whose process is gone (killed conversions)."""
    for stale in out_dir.glob(f"{_TMP_PREFIX}*"):
        pid_text = stale.name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and int(pid_text) != os.getpid():
            try:
                os.kill(int(pid_text), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        elif pid_text.isdigit():
            continue
        shutil.rmtree(stale, ignore_errors=True)
        if log is not None:
            log(f"removed {stale}, left by an interrupted conversion")


def convert_scene(
    nusc: Any,
    scene_name: str,
    out_path: Path,
    *,
    options: ConvertOptions,
    progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Writes one scene as a rosbag2 directory `out_path` (plus `calibration.yaml` inside it).

    Every source file is checked before writing; the bag is written to a temporary directory next to
    `out_path`, gets its completion record (`conversion_complete.json`) last and is renamed to `out_path`
    only when complete.

    Args:
        nusc: a loaded `nuscenes.nuscenes.NuScenes`.
        scene_name: e.g. "scene-0061".
        out_path: the bag directory to create.
        options: content and storage options.
        progress: called with the number of messages written since the last call (a tqdm bar is used when
            None and `options.progress`).

    Returns:
        What was written.

    Raises:
        ConvertError: unknown scene, or `out_path` exists and `options.overwrite` is False.
        SourceError: a missing or corrupt source file, named by path.
    """
    out_path = Path(out_path)
    if out_path.exists() and not options.overwrite:
        raise ConvertError(f"{out_path} exists already, not overwriting (use --overwrite).")
    plan = _plan_scene(nusc, scene_name, options=options)
    _check_sources(nusc, plan)
    return _convert_planned(nusc, plan, out_path, options=options, progress=progress)


def _convert_planned(
    nusc: Any,
    plan: _ScenePlan,
    out_path: Path,
    *,
    options: ConvertOptions,
    progress: Callable[[int], None] | None,
) -> ConvertReport:
    """`convert_scene` once the plan is made and its sources are checked."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_path.parent)
    tmp_root = out_path.parent / f"{_TMP_PREFIX}{out_path.name}-{os.getpid()}"
    shutil.rmtree(tmp_root, ignore_errors=True)
    tmp_root.mkdir()
    bar = None
    if progress is None and options.progress:
        from tqdm import tqdm

        bar = tqdm(total=_message_total(plan), desc=plan.name, unit="msg", file=sys.stderr)
        progress = bar.update
    try:
        report = _write_bag(nusc, plan, tmp_root / out_path.name, options=options, progress=progress)
        if options.with_calibration:
            from fusionocc_ros.calibration import save_calibration

            save_calibration(_calibration(nusc, plan), tmp_root / out_path.name / CALIBRATION_FILE)
        _write_complete_record(tmp_root / out_path.name, report, options)
        _move_into_place(tmp_root / out_path.name, out_path, overwrite=options.overwrite)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp_root, ignore_errors=True)
    report.path = out_path
    report.calibration_path = out_path / CALIBRATION_FILE if options.with_calibration else None
    report.bag_bytes = _dir_bytes(out_path)
    return report


def _move_into_place(source: Path, destination: Path, *, overwrite: bool) -> None:
    if destination.exists():
        if not overwrite:
            raise ConvertError(f"{destination} exists already, not overwriting (use --overwrite).")
        old = destination.parent / f"{_TMP_PREFIX}{destination.name}-old-{os.getpid()}"
        destination.rename(old)
        source.rename(destination)
        shutil.rmtree(old, ignore_errors=True)
    else:
        source.rename(destination)


# ----------------------------------------------------------------------------------------------------------
# Completion record: which bags an interrupted run may keep
# ----------------------------------------------------------------------------------------------------------


def _content_options(options: ConvertOptions) -> dict[str, Any]:
    """The options that change a bag's content (not overwrite or progress)."""
    return {
        "storage": options.storage,
        "distro": options.distro,
        "keyframes_only": options.keyframes_only,
        "with_occ_gt": options.with_occ_gt,
        "with_calibration": options.with_calibration,
    }


def _write_complete_record(bag: Path, report: ConvertReport, options: ConvertOptions) -> None:
    """Writes `conversion_complete.json` into a finished bag directory: its options, message counts and the
    size of every file, so a later run can tell a complete bag from a damaged or partial copy."""
    record = {
        "format": _COMPLETE_FORMAT,
        "version": 1,
        "scene": report.scene,
        "options": _content_options(options),
        "message_counts": dict(sorted(report.message_counts.items())),
        "files": {p.name: p.stat().st_size for p in sorted(bag.iterdir()) if p.is_file()},
    }
    (bag / COMPLETE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _bag_state(path: Path, plan: _ScenePlan, options: ConvertOptions) -> tuple[str, str]:
    """What an existing destination is: ("complete", summary), ("incomplete", why: write it again),
    ("different", why: written with other options or for other data; refused without --overwrite) or
    ("foreign", why: not a bag directory of ours; never deleted without --overwrite)."""
    if not path.is_dir():
        return "foreign", "is not a directory"
    names = [p.name for p in path.iterdir()]
    strangers = [n for n in names if n not in _BAG_FILES and not n.endswith(_BAG_SUFFIXES)]
    if strangers:
        return "foreign", f"holds {', '.join(sorted(strangers)[:3])}, which a converted bag does not"
    if COMPLETE_FILE not in names:
        return "incomplete", f"no {COMPLETE_FILE} (the conversion did not finish, or predates the record)"
    try:
        record = json.loads((path / COMPLETE_FILE).read_text())
        counts = {str(k): int(v) for k, v in record["message_counts"].items()}
        sizes = {str(k): int(v) for k, v in record["files"].items()}
        stored = dict(record["options"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "incomplete", f"{COMPLETE_FILE} is unreadable"
    wanted = _content_options(options)
    if stored != wanted:
        changed = ", ".join(
            f"{k} {stored.get(k)!r} -> {v!r}" for k, v in wanted.items() if stored.get(k) != v
        )
        return "different", f"was written with other options ({changed})"
    for name, size in sizes.items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual:,} bytes"
            return "incomplete", f"{name} is {found}, {size:,} bytes when written"
    from rosbags.rosbag2 import Reader

    try:
        with Reader(path) as reader:  # reads metadata.yaml, and an MCAP file's footer and summary
            in_bag: dict[str, int] = {}
            for connection in reader.connections:
                in_bag[connection.topic] = in_bag.get(connection.topic, 0) + connection.msgcount
    except Exception as error:
        return "incomplete", f"rosbags cannot open it ({type(error).__name__}: {error})"
    in_bag = {topic: n for topic, n in in_bag.items() if n}
    if in_bag != counts:
        written = sum(counts.values())
        return "incomplete", f"its metadata counts {sum(in_bag.values())} messages, {written} were written"
    expected = _message_total(plan)
    if sum(counts.values()) != expected:
        return "different", f"holds {sum(counts.values())} messages, the scene now makes {expected}"
    return "complete", f"{sum(counts.values())} messages"


def _kept_report(path: Path, options: ConvertOptions) -> ConvertReport:
    """The report of a complete bag that is kept (its counts and time span read back)."""
    from rosbags.rosbag2 import Reader

    record = json.loads((path / COMPLETE_FILE).read_text())
    with Reader(path) as reader:
        start, end = (reader.start_time, reader.end_time) if reader.message_count else (0, 0)
    calibration = path / CALIBRATION_FILE
    return ConvertReport(
        scene=record["scene"],
        path=path,
        calibration_path=calibration if options.with_calibration else None,
        message_counts=dict(record["message_counts"]),
        bag_bytes=_dir_bytes(path),
        start_ns=start,
        end_ns=max(start, end - 1),  # rosbags' end_time is one past the last message
        kept=True,
    )


def _message_total(plan: _ScenePlan) -> int:
    cameras = sum(1 for f in plan.frames if f.channel != LIDAR_NAME)
    poses = len({f.stamp_us for f in plan.frames})
    return 1 + 2 * cameras + (len(plan.frames) - cameras) + 2 * poses + len(plan.gts)


def _write_bag(
    nusc: Any,
    plan: _ScenePlan,
    bag_path: Path,
    *,
    options: ConvertOptions,
    progress: Callable[[int], None] | None,
) -> ConvertReport:
    from rosbags.rosbag2 import StoragePlugin, Writer

    started = time.perf_counter()
    store = _typestore(options.distro)
    msgs = _Messages(store)
    report = ConvertReport(scene=plan.name, path=bag_path, calibration_path=None)
    storage = StoragePlugin.MCAP if options.storage == "mcap" else StoragePlugin.SQLITE3
    version = 8 if options.distro == "humble" else 9
    topics = layout.sensor_topics(with_occ_gt=options.with_occ_gt)

    # Ego poses of every written sample_data (one per distinct stamp), for /tf and /odom.
    pose_records: dict[int, dict[str, Any]] = {}
    for frame in plan.frames:
        record = nusc.get("sample_data", frame.token)
        pose_records.setdefault(frame.stamp_us, nusc.get("ego_pose", record["ego_pose_token"]))
    pose_stamps = np.array(sorted(pose_records), dtype=np.int64)
    translations = np.array([pose_records[int(s)]["translation"] for s in pose_stamps], dtype=np.float64)
    quaternions = np.array([pose_records[int(s)]["rotation"] for s in pose_stamps], dtype=np.float64)
    linear, angular = _velocities(pose_stamps, translations, quat_to_matrix(quaternions))
    pose_index = {int(s): i for i, s in enumerate(pose_stamps)}
    emitted_pose: set[int] = set()

    with Writer(bag_path, version=version, storage_plugin=storage) as writer:
        connections = {}
        for topic, msgtype in topics.items():
            depth, latched = topic_qos(topic)
            connections[topic] = writer.add_connection(
                topic,
                msgtype,
                typestore=store,
                offered_qos_profiles=[_qos(depth, transient_local=latched)],
            )

        def write(topic: str, stamp_us: int, message: Any) -> None:
            data = store.serialize_cdr(message, topics[topic])
            writer.write(connections[topic], stamp_us * 1000, data)
            report.message_counts[topic] = report.message_counts.get(topic, 0) + 1
            if progress is not None:
                progress(1)

        first_stamp = plan.frames[0].stamp_us if plan.frames else 0
        static = []
        seen: set[str] = set()
        for frame in plan.frames:
            if frame.channel in seen:
                continue
            seen.add(frame.channel)
            cs = nusc.get(
                "calibrated_sensor",
                nusc.get("sample_data", frame.token)["calibrated_sensor_token"],
            )
            static.append(
                msgs.transform(
                    first_stamp,
                    layout.EGO_FRAME,
                    frame.channel,
                    cs["translation"],
                    cs["rotation"],
                )
            )
        write(layout.TF_STATIC_TOPIC, first_stamp, msgs.TFMessage(transforms=static))

        for frame in plan.frames:
            stamp = frame.stamp_us
            if stamp not in emitted_pose:
                emitted_pose.add(stamp)
                i = pose_index[stamp]
                write(
                    layout.TF_TOPIC,
                    stamp,
                    msgs.TFMessage(
                        transforms=[
                            msgs.transform(
                                stamp,
                                layout.MAP_FRAME,
                                layout.EGO_FRAME,
                                translations[i],
                                quaternions[i],
                            )
                        ]
                    ),
                )
                write(
                    layout.ODOM_TOPIC,
                    stamp,
                    msgs.odometry(stamp, translations[i], quaternions[i], linear[i], angular[i]),
                )
            record = nusc.get("sample_data", frame.token)
            if frame.channel == LIDAR_NAME:
                points = read_points(frame.path)
                report.source_bytes += frame.path.stat().st_size
                write(
                    layout.LIDAR_TOPIC,
                    stamp,
                    msgs.cloud(
                        stamp,
                        frame.channel,
                        _LIDAR_FIELDS,
                        lidar_payload(points),
                        layout.LIDAR_POINT_STEP,
                    ),
                )
                if frame.sample_token in plan.gts and frame.is_key_frame:
                    gt_path = plan.gts[frame.sample_token]
                    semantics = _read_gt(gt_path)
                    report.source_bytes += gt_path.stat().st_size
                    write(
                        layout.OCC_GT_TOPIC,
                        stamp,
                        msgs.cloud(
                            stamp,
                            layout.EGO_FRAME,
                            _OCC_FIELDS,
                            occ_payload(semantics),
                            layout.OCC_POINT_STEP,
                        ),
                    )
            else:
                jpeg = _read_bytes(frame.path)
                report.source_bytes += len(jpeg)
                width, height = _jpeg_size(frame.path, jpeg)
                cs = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
                if not cs.get("camera_intrinsic"):
                    raise ConvertError(
                        f"calibrated_sensor {cs['token']} of {frame.channel} has no camera_intrinsic."
                    )
                intrinsics = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
                ref_w, ref_h = (
                    int(record.get("width") or width),
                    int(record.get("height") or height),
                )
                if (width, height) != (
                    ref_w,
                    ref_h,
                ):  # intrinsics refer to the sample_data's size
                    intrinsics = np.diag([width / ref_w, height / ref_h, 1.0]) @ intrinsics
                write(
                    layout.image_topic(frame.channel),
                    stamp,
                    msgs.compressed_image(stamp, frame.channel, jpeg),
                )
                write(
                    layout.camera_info_topic(frame.channel),
                    stamp,
                    msgs.camera_info(stamp, frame.channel, intrinsics, width, height),
                )
        report.start_ns = writer.min_timestamp if writer.counts else 0
        report.end_ns = writer.max_timestamp
    if options.distro == "humble":
        _strip_type_hashes(bag_path / "metadata.yaml")
    report.seconds = time.perf_counter() - started
    return report


def _strip_type_hashes(metadata_path: Path) -> None:
    """Drops `type_description_hash` (Jazzy+) from metadata.yaml: Humble's rosbag2 does not know it."""
    import yaml

    metadata = yaml.safe_load(metadata_path.read_text())
    for entry in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        entry["topic_metadata"].pop("type_description_hash", None)
    metadata_path.write_text(yaml.safe_dump(metadata, sort_keys=False))


def load_nuscenes(dataroot: Path | str, *, version: str | None = None) -> Any:
    """Loads a dataroot with the official devkit after checking its tables exist.

    Args:
        version: the table folder; None = the only `v1.0-*` folder of the dataroot (the rule of every
            --version, `fusionocc_core.cli_options.resolve_version`).

    Raises:
        ConvertError: the dataroot, the version folder or one of the devkit's tables is missing, several
            versions and none chosen, or the devkit cannot load the tables (with its message).
        SourceError: a table is not valid JSON or a lidarseg file is missing (named by path).
    """
    dataroot = Path(dataroot)
    if not dataroot.is_dir():
        raise ConvertError(f"{dataroot} is not a directory (expected a nuScenes dataroot).")
    try:
        version = resolve_version(dataroot, version)
    except VersionError as error:
        raise ConvertError(f"{error}.") from None
    tables = dataroot / version
    missing = [f"{tables / name}.json" for name in NUSCENES_TABLES if not (tables / f"{name}.json").is_file()]
    if missing:
        raise ConvertError(f"{dataroot} lacks nuScenes {version} table(s): {', '.join(missing)}.")
    try:
        return open_nuscenes(dataroot, version)
    except DataFileError as error:
        if error.path.is_dir():  # no single file to blame: the devkit's message with the table folder
            raise ConvertError(str(error)) from None
        raise SourceError(error.path, f"{error.problem}; {error.fix}") from None


def convert_dataroot(
    dataroot: Path | str,
    out_dir: Path | str,
    *,
    options: ConvertOptions,
    version: str | None = None,
    scenes: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[ConvertReport]:
    """Converts scenes of a dataroot, one bag directory `out_dir/<scene name>` per scene.

    All scenes, all their source files and all destinations are checked before the first bag is written.
    Without `options.overwrite`, an existing destination is kept when it is a complete bag of the same
    options and scene (report `kept`), written again when it is an incomplete one (an interrupted run), and
    refused otherwise; temporaries of killed runs are removed.

    Args:
        dataroot: nuScenes dataroot (holding `<version>/`, `samples/`, `sweeps/`, optionally `gts/`).
        out_dir: where the bag directories go (created when missing).
        options: content and storage options.
        version: devkit version, e.g. "v1.0-mini", "v1.0-trainval"; None = the only one of the dataroot.
        scenes: scene names; None for every scene of the version.
        log: called with one line per bag kept or written again and per leftover removed (default: silent).

    Returns:
        One report per scene, in order.

    Raises:
        ConvertError: bad tables, unknown scenes, or existing destinations that are not complete bags of these
            options (without overwrite).
        SourceError: a missing or corrupt source file, named by path.
    """
    say = log or (lambda _line: None)
    nusc = load_nuscenes(dataroot, version=version)
    out_dir = Path(out_dir)
    names = list(scenes) if scenes is not None else [s["name"] for s in nusc.scene]
    if not names:
        raise ConvertError("no scenes selected.")
    for name in names:
        _scene_by_name(nusc, name)
    if out_dir.is_dir():
        _remove_stale_temporaries(out_dir, say)
    plans = {name: _plan_scene(nusc, name, options=options) for name in names}
    kept: dict[str, ConvertReport] = {}
    rewrite: dict[str, str] = {}  # incomplete bag -> why; replaced once its new version is complete
    refused: list[str] = []
    for name in names:
        destination = out_dir / name
        if options.overwrite or not (destination.exists() or destination.is_symlink()):
            continue
        state, detail = _bag_state(destination, plans[name], options)
        if state == "complete":
            kept[name] = _kept_report(destination, options)
        elif state == "incomplete":
            rewrite[name] = detail
        else:
            refused.append(f"{destination} exists and {detail}")
    if refused:
        raise ConvertError(f"{'; '.join(refused)}: not overwriting (use --overwrite).")
    to_write = [name for name in names if name not in kept]
    bar = None
    update = _no_progress
    if options.progress and to_write:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(plans[n].frames) for n in to_write), desc="checking sources", unit="file",
                   file=sys.stderr)
        update = bar.update
    try:
        for name in to_write:  # every file of every scene to write is checked before the first bag
            _check_sources(nusc, plans[name], update)
    finally:
        if bar is not None:
            bar.close()
    for name in names:
        if name in kept:
            say(f"{out_dir / name}: complete ({kept[name].messages} messages), kept")
        elif name in rewrite:
            say(f"{out_dir / name}: incomplete ({rewrite[name]}), writing it again")
    bar = None
    update = _no_progress
    if options.progress and to_write:
        from tqdm import tqdm

        bar = tqdm(total=sum(_message_total(plans[n]) for n in to_write), desc="convert", unit="msg",
                   file=sys.stderr)
        update = bar.update
    reports: list[ConvertReport] = []
    try:
        for name in names:
            if name in kept:
                reports.append(kept[name])
                continue
            scene_options = dataclasses.replace(options, overwrite=options.overwrite or name in rewrite)
            reports.append(_convert_planned(nusc, plans[name], out_dir / name, options=scene_options,
                                            progress=update))
    finally:
        if bar is not None:
            bar.close()
    return reports


def _no_progress(_: int) -> None:
    return None


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `fusionocc convert`."""
    parser.add_argument(
        "dataroot",
        type=Path,
        help="nuScenes dataroot (with v1.0-*/ tables, samples/, sweeps/)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory; one bag directory per scene",
    )
    add_version(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenes", nargs="+", metavar="NAME", help="scene names, e.g. scene-0061")
    which.add_argument("--all", action="store_true", help="every scene of the version")
    parser.add_argument(
        "--storage",
        choices=STORAGES,
        default="mcap",
        help="bag storage (default: %(default)s)",
    )
    parser.add_argument(
        "--distro",
        choices=DISTROS,
        default="jazzy",
        help="typestore for message definitions; humble writes bag format 8, others 9 (default: %(default)s)",
    )
    parser.add_argument(
        "--keyframes-only",
        action="store_true",
        help="only the 2 Hz keyframes (default: every sweep: cameras 12 Hz, lidar 20 Hz)",
    )
    parser.add_argument(
        "--with-occ-gt",
        action="store_true",
        help="add Occ3D ground truth on /occ_gt (needs gts/<scene>/<token>/labels.npz)",
    )
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="do not write calibration.yaml into each bag directory",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing bags (default: keep complete ones of the same options, redo incomplete ones)",
    )
    add_no_progress(parser)


def _log(line: str) -> None:
    print(f"fusionocc convert: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Runs `fusionocc convert`; prints one line per bag; returns 1 with a message on a named error."""
    from fusionocc_ros.errors import BagToolError

    try:
        options = ConvertOptions(
            storage=args.storage,
            distro=args.distro,
            keyframes_only=args.keyframes_only,
            with_occ_gt=args.with_occ_gt,
            with_calibration=not args.no_calibration,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        reports = convert_dataroot(
            args.dataroot,
            args.out,
            options=options,
            version=args.version,
            scenes=None if args.all else args.scenes,
            log=_log,
        )
    except BagToolError as error:
        print(f"fusionocc convert: {error}", file=sys.stderr)
        return 1
    for report in reports:
        if report.kept:
            continue  # logged above
        duration = (report.end_ns - report.start_ns) * 1e-9
        print(
            f"{report.path}: {report.messages} messages, {duration:.1f} s of data, "
            f"{report.bag_bytes / 1e6:.1f} MB (sources {report.source_bytes / 1e6:.1f} MB), "
            f"written in {report.seconds:.1f} s"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`python -m fusionocc_ros.bag_converter`)."""
    parser = argparse.ArgumentParser(prog="fusionocc convert", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
