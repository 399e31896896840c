"""Write the occupancy node's calibration YAML from a robot's URDF or from a bag's /tf_static and camera_info.

    fusionocc rig --urdf robot.urdf --out calibration.yaml [--base-frame base_link]
                  [--camera NAME=LINK ...] [--lidar NAME=LINK] [--camera-info-bag BAG]
    fusionocc rig --bag BAG --out calibration.yaml [--camera NAME=FRAME ...] [--lidar NAME=FRAME]
    fusionocc rig --bag BAG --write-urdf rig.urdf          (a starting URDF of a recorded rig)
    fusionocc rig --calibration calibration.yaml --write-urdf rig.urdf

Each sensor's extrinsics (sensor -> base frame) are the composition of the transforms on the path from the
base frame to the sensor's frame: URDF joints (at position 0) or the bag's /tf_static tree. Sensor names
default to nuScenes' (CAM_FRONT_LEFT ... CAM_BACK_RIGHT, LIDAR_TOP), each in the frame of its own name, as
`fusionocc convert` writes them; `--camera NAME=FRAME` (repeated; the cameras are then exactly those given,
in that order) and `--lidar NAME=FRAME` map them to a robot's frames. A camera's frame must be its optical
frame (z forward, x right, y down: the frame_id its images carry), not the x-forward body link.

Camera intrinsics are not part of a URDF: from `--urdf` alone the file holds extrinsics only and the node
takes each camera's intrinsics from its camera_info topic at run time; `--camera-info-bag BAG` (or `--bag`)
also stores the intrinsics and image size of the first CameraInfo whose header.frame_id is the camera's frame.
`--no-intrinsics` leaves them out of a `--bag` rig. The YAML is written atomically (temporary file + rename);
on any error (missing frame, frame not connected to the base, camera without camera_info, malformed URDF)
one line names the problem, the exit status is 2 and nothing is written.

URDF parser: `urdf_parser_py`, installed from PyPI as `urdfdom-py` (ROS 2's own URDF parser, the
`urdfdom_py` ROS package, so a colcon build resolves it with rosdep and pip installs the same code). It
validates the XML against the URDF schema (joint types, required elements, vector lengths) with errors that
name the element, and needs only lxml. yourdfpy was the alternative; it pulls in trimesh[easy] (scipy,
shapely, networkx, ...) for meshes this tool never loads, and has no rosdep key. The stale `urdf-parser-py`
0.0.4 upload on PyPI is the ROS 1 branch of the same code.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from fusionocc_core.errors import FusionOccError
from fusionocc_core.geometry import invert_transform
from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_ros import bag_layout as layout
from fusionocc_ros.calibration import (
    Calibration,
    CalibrationError,
    SensorCalibration,
    load_calibration,
    save_calibration,
)

EXIT_ERROR = 2
_FIXED_JOINTS = ("fixed",)


class RigError(FusionOccError, ValueError):
    """The rig cannot be built: the message names the frame, sensor, joint or file at fault."""


# ----------------------------------------------------------------------------------------------------------
# Sensors and frame trees
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorFrames:
    """Which frame each sensor lives in.

    Attributes:
        cameras: camera name -> frame (a URDF link or a TF frame id), in the node's camera order.
        lidar: (lidar name, frame).
    """

    cameras: Mapping[str, str] = field(default_factory=lambda: {name: name for name in CAMERA_NAMES})
    lidar: tuple[str, str] = (LIDAR_NAME, LIDAR_NAME)

    def items(self) -> Iterator[tuple[str, str]]:
        """(sensor name, frame) of every camera, then the lidar."""
        yield from self.cameras.items()
        yield self.lidar


@dataclass(frozen=True)
class Edge:
    """One parent -> child link of a frame tree.

    Attributes:
        parent, child: frame names.
        transform: (4, 4) child -> parent (p_parent = T p_child), as a URDF joint origin or a TF transform.
        source: where it came from, for messages ("joint 'cam_joint'", "/tf_static").
        moving: the joint type when the joint is not fixed (its pose is taken at position 0), else None.
    """

    parent: str
    child: str
    transform: np.ndarray
    source: str
    moving: str | None = None


@dataclass(frozen=True)
class FrameTree:
    """A forest of frames, each child with one parent (as tf2 and URDF have it).

    Attributes:
        edges: child frame -> the edge to its parent.
        frames: every frame named anywhere (roots included).
        origin: what the tree was read from, for messages ("robot.urdf", "BAG /tf_static").
    """

    edges: Mapping[str, Edge]
    frames: frozenset[str]
    origin: str

    def _to_root(self, frame: str) -> tuple[str, np.ndarray, list[Edge]]:
        """(root, frame -> root transform, edges walked) of a frame; raises RigError on a cycle."""
        pose = np.eye(4)
        walked: list[Edge] = []
        seen = {frame}
        current = frame
        while current in self.edges:
            edge = self.edges[current]
            pose = edge.transform @ pose
            walked.append(edge)
            current = edge.parent
            if current in seen:
                raise RigError(f"{self.origin}: frames form a cycle through {current!r}")
            seen.add(current)
        return current, pose, walked

    def pose(self, base: str, frame: str) -> tuple[np.ndarray, list[Edge]]:
        """(frame -> base transform, the edges on the path) of `frame`.

        The base need not be the root: both are walked to their root and the paths composed
        (T_base<-frame = T_root<-base^-1 T_root<-frame), so a sensor hung below base_footprint still works.

        Raises:
            RigError: a frame is unknown, or the two are in different trees.
        """
        for name in (base, frame):
            if name not in self.frames:
                names = sorted(self.frames)
                known = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
                raise RigError(f"{self.origin}: frame {name!r} does not exist (frames: {known or 'none'})")
        base_root, root_from_base, base_path = self._to_root(base)
        frame_root, root_from_frame, frame_path = self._to_root(frame)
        if base_root != frame_root:
            raise RigError(f"{self.origin}: frame {frame!r} is not connected to base frame {base!r} "
                           f"(its tree's root is {frame_root!r}, the base's is {base_root!r})")
        shared = {id(e) for e in base_path} & {id(e) for e in frame_path}
        path = [e for e in base_path + frame_path if id(e) not in shared]
        return invert_transform(root_from_base) @ root_from_frame, path


def _tree(edges: Sequence[Edge], origin: str, extra_frames: Sequence[str] = ()) -> FrameTree:
    by_child: dict[str, Edge] = {}
    for edge in edges:
        by_child[edge.child] = edge  # tf2 semantics: the newest transform of a child wins
    frames = frozenset(extra_frames) | {e.child for e in by_child.values()} | {e.parent for e in by_child.values()}
    return FrameTree(by_child, frames, origin)


def rig_calibration(tree: FrameTree, sensors: SensorFrames, base_frame: str, *,
                    intrinsics: Mapping[str, tuple[np.ndarray, tuple[int, int]]] | None = None,
                    intrinsics_source: str | None = None,
                    warn: Callable[[str], None] | None = None) -> Calibration:
    """The calibration of `sensors` in `tree` relative to `base_frame`.

    Args:
        intrinsics: camera frame -> (K, (width, height)), from camera_info; None for extrinsics only.
        intrinsics_source: where `intrinsics` were read (a bag); when given, every camera must have them.
        warn: called with one line per non-fixed joint on a sensor's path (taken at position 0).

    Raises:
        RigError: a frame is missing or not connected, a camera has no camera_info (with
            `intrinsics_source`), or an entry is invalid. Sensors are checked in order, extrinsics first.
    """
    entries: dict[str, SensorCalibration] = {}
    for name, frame in sensors.items():
        pose, path = tree.pose(base_frame, frame)
        for edge in path:
            if edge.moving is not None and warn is not None:
                warn(f"{name}: {edge.source} is {edge.moving}, not fixed; its pose at position 0 is used")
        k, size = None, None
        if name in sensors.cameras and intrinsics is not None:
            if frame not in intrinsics and intrinsics_source is not None:
                raise RigError(f"{intrinsics_source}: camera {name} has no camera_info: no "
                               f"{layout.CAMERA_INFO_TYPE} message has header.frame_id {frame!r} "
                               "(for extrinsics only: --no-intrinsics with --bag, no --camera-info-bag with --urdf)")
            k, size = intrinsics.get(frame, (None, None))
        try:
            entries[name] = SensorCalibration.from_matrix(name, pose, frame_id=frame, intrinsics=k,
                                                          image_size=size)
        except CalibrationError as error:  # the poses are rigid by construction: a camera_info is at fault
            raise RigError(f"{intrinsics_source or tree.origin}: {error}") from None
    return Calibration(entries, ego_frame=base_frame)


# ----------------------------------------------------------------------------------------------------------
# URDF
# ----------------------------------------------------------------------------------------------------------


def rpy_to_matrix(rpy: Sequence[float]) -> np.ndarray:
    """3x3 rotation of URDF roll, pitch, yaw (fixed axes x, then y, then z: R = Rz(yaw) Ry(pitch) Rx(roll))."""
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def matrix_to_rpy(rotation: np.ndarray) -> tuple[float, float, float]:
    """URDF roll, pitch, yaw of a 3x3 rotation; at gimbal lock (pitch = +-90 deg) roll is 0."""
    r = np.asarray(rotation, dtype=np.float64)
    # atan2 of (sin, cos) keeps full precision near +-90 deg, where asin(-r20) would not.
    pitch = math.atan2(-r[2, 0], math.hypot(r[0, 0], r[1, 0]))
    if math.hypot(r[0, 0], r[1, 0]) > 1e-12:
        return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])
    return 0.0, pitch, math.atan2(-r[0, 1], r[1, 1])


def _origin_matrix(origin: Any) -> np.ndarray:
    pose = np.eye(4)
    if origin is not None:
        pose[:3, :3] = rpy_to_matrix(origin.rpy if origin.rpy is not None else (0.0, 0.0, 0.0))
        pose[:3, 3] = origin.xyz if origin.xyz is not None else (0.0, 0.0, 0.0)
    return pose


def parse_urdf(text: str, *, source: str = "URDF") -> FrameTree:
    """The frame tree of a URDF's links and joints (each joint's origin; non-fixed joints at position 0).

    Raises:
        RigError: not XML, not a valid URDF (the parser's message names the element), a xacro file, a joint
            to an undeclared link, or a link with two parent joints.
    """
    from lxml import etree
    from urdf_parser_py import urdf
    from urdf_parser_py.xml_reflection import core

    if "xacro:" in text and "xmlns:xacro" in text:
        raise RigError(f"{source}: is a xacro file; expand it first (`xacro {source} > robot.urdf`)")
    problems: list[str] = []

    def collect(message: str) -> None:
        # Unknown tags and attributes (<gazebo>, <ros2_control>, ...) do not affect kinematics: ignored.
        if not message.startswith(("Unknown tag", "Unknown attribute")):
            problems.append(message)

    previous = core.on_error
    core.on_error = collect  # the parser's warnings go to a global hook; restored below
    try:
        robot = urdf.URDF.from_xml_string(text.encode())
    except etree.XMLSyntaxError as error:
        raise RigError(f"{source}: malformed XML: {error}") from None
    except core.ParseError as error:
        raise RigError(f"{source}: invalid URDF: {' '.join(str(error).split())}") from None
    except (AssertionError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise RigError(f"{source}: invalid URDF: {type(error).__name__}: {error}") from None
    finally:
        core.on_error = previous
    if problems:
        raise RigError(f"{source}: invalid URDF: {problems[0]}")
    links = [link.name for link in robot.links]
    edges: list[Edge] = []
    parents: dict[str, str] = {}
    for joint in robot.joints:
        for role, link in (("parent", joint.parent), ("child", joint.child)):
            if link not in links:
                raise RigError(f"{source}: joint {joint.name!r} names {role} link {link!r}, which is not declared")
        if joint.child in parents:
            raise RigError(f"{source}: link {joint.child!r} has two parent joints, "
                           f"{parents[joint.child]!r} and {joint.name!r}")
        parents[joint.child] = joint.name
        edges.append(Edge(joint.parent, joint.child, _origin_matrix(joint.origin), f"joint {joint.name!r}",
                          None if joint.type in _FIXED_JOINTS else joint.type))
    return _tree(edges, source, links)


def read_urdf(path: Path) -> FrameTree:
    """`parse_urdf` of a file; RigError when it cannot be read."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RigError(f"{path}: cannot read the URDF: {getattr(error, 'strerror', None) or error}") from None
    return parse_urdf(text, source=str(path))


def _number(value: float) -> str:
    return repr(float(value)) if value != 0 else "0"  # repr: shortest text that reads back the same float


def calibration_to_urdf(calibration: Calibration, *, robot_name: str = "fusionocc_rig") -> str:
    """A URDF of the rig: the ego frame as root link, one fixed joint per sensor frame (`<frame>_joint`).

    Extrinsics only (URDF has no place for intrinsics); floats are written to full precision, so
    `parse_urdf` gives back the same transforms to rounding.

    Raises:
        RigError: two sensors share a frame with different poses.
    """
    base = calibration.ego_frame
    lines = ['<?xml version="1.0"?>',
             ("<!-- Written by `fusionocc rig`: sensor frames of the FusionOcc calibration as fixed joints. "
              "Camera intrinsics come from camera_info. -->"),
             f"<robot name={quoteattr(robot_name)}>", f"  <link name={quoteattr(base)}/>"]
    written: dict[str, np.ndarray] = {base: np.eye(4)}
    for sensor in calibration.sensors.values():
        pose = sensor.sensor_to_ego
        if sensor.frame_id in written:
            if not np.allclose(written[sensor.frame_id], pose, atol=1e-9):
                raise RigError(f"sensor {sensor.name}: frame {sensor.frame_id!r} appears twice "
                               "with different poses")
            continue
        written[sensor.frame_id] = pose
        xyz = " ".join(_number(v) for v in pose[:3, 3])
        rpy = " ".join(_number(v) for v in matrix_to_rpy(pose[:3, :3]))
        lines += [
            f"  <link name={quoteattr(sensor.frame_id)}/>",
            f"  <joint name={quoteattr(sensor.frame_id + '_joint')} type=\"fixed\">",
            f"    <parent link={quoteattr(base)}/>",
            f"    <child link={quoteattr(sensor.frame_id)}/>",
            f"    <origin xyz=\"{xyz}\" rpy=\"{rpy}\"/>",
            "  </joint>",
        ]
    lines.append("</robot>")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Bags: /tf_static and camera_info (read with rosbags; no tf2 or rclpy)
# ----------------------------------------------------------------------------------------------------------


def _open_bag(path: Path) -> Any:
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    if not Path(path).exists():
        raise RigError(f"{path}: the bag does not exist")
    # TFMessage and CameraInfo are the same in every ROS 2 distro: any store decodes bags without definitions.
    try:
        reader = AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        reader.open()
    except (AnyReaderError, OSError, ValueError, KeyError) as error:
        raise RigError(f"{path}: not a readable bag: {error}") from None
    return reader


def _matrix(translation: Any, rotation: Any) -> np.ndarray:
    from fusionocc_core.geometry import quat_to_matrix

    quaternion = np.array([rotation.w, rotation.x, rotation.y, rotation.z], dtype=np.float64)
    norm = float(np.linalg.norm(quaternion))
    if not np.isfinite(norm) or norm < 1e-6:
        raise RigError("zero or non-finite rotation quaternion")
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(quaternion / norm)
    pose[:3, 3] = (translation.x, translation.y, translation.z)
    return pose


def read_bag(path: Path, camera_frames: Sequence[str] = (), *, tf_static: bool = True,
             ) -> tuple[FrameTree, dict[str, tuple[np.ndarray, tuple[int, int]]]]:
    """The /tf_static tree of a bag and the first CameraInfo (K, (width, height)) of each camera frame.

    A camera_info is matched by its header.frame_id, not by topic name, so any driver's topics work.
    With `tf_static=False` only the camera_info are read (the tree is empty).

    Raises:
        RigError: the bag is missing or unreadable, or has no /tf_static (when read).
    """
    reader = _open_bag(path)
    origin = f"{path} {layout.TF_STATIC_TOPIC}"
    try:
        static = [c for c in reader.connections
                  if c.topic == layout.TF_STATIC_TOPIC and c.msgtype == layout.TF_TYPE]
        if tf_static and not static:
            raise RigError(f"{path}: the bag has no {layout.TF_STATIC_TOPIC} ({layout.TF_TYPE}) topic")
        edges: list[Edge] = []
        # messages(connections=[]) would read every topic: only ask when there is something to read.
        for connection, _, raw in reader.messages(connections=static) if tf_static and static else ():
            for tf in reader.deserialize(raw, connection.msgtype).transforms:
                try:
                    pose = _matrix(tf.transform.translation, tf.transform.rotation)
                except RigError as error:
                    raise RigError(f"{origin}: {tf.header.frame_id} -> {tf.child_frame_id}: {error}") from None
                edges.append(Edge(tf.header.frame_id, tf.child_frame_id, pose, layout.TF_STATIC_TOPIC))
        infos: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}
        wanted = set(camera_frames)
        camera_info = [c for c in reader.connections if c.msgtype == layout.CAMERA_INFO_TYPE]
        if wanted and camera_info:
            for connection, _, raw in reader.messages(connections=camera_info):  # log-time order
                msg = reader.deserialize(raw, connection.msgtype)
                frame = msg.header.frame_id
                if frame in wanted and frame not in infos:
                    k = np.asarray(msg.k if hasattr(msg, "k") else msg.K, dtype=np.float64)  # ROS 1: K
                    infos[frame] = (k.reshape(3, 3), (int(msg.width), int(msg.height)))
                    if wanted <= set(infos):
                        break  # the rest of a long bag holds nothing new
    finally:
        reader.close()
    return _tree(edges, origin), infos



# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[Path], object], *, overwrite: bool) -> None:
    """Calls `write(temporary)` beside `path`, then renames it onto `path`: readers never see half a file and
    a failure leaves nothing at `path`.

    Raises:
        RigError: `path` exists and `overwrite` is False, or it cannot be written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RigError(f"{path} exists already, not overwriting (use --overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise RigError(f"{path}: cannot write: {error.strerror or error}") from None
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except OSError as error:
        raise RigError(f"{path}: cannot write: {error.strerror or error}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def save_rig(calibration: Calibration, path: Path, *, overwrite: bool = False) -> None:
    """Writes the calibration YAML atomically (the format and read-back check of `save_calibration`)."""
    write_atomic(path, lambda tmp: save_calibration(calibration, tmp, overwrite=True), overwrite=overwrite)


def save_urdf(text: str, path: Path, *, overwrite: bool = False) -> None:
    """Writes a URDF text (`calibration_to_urdf`) atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------


def _mapping(text: str) -> tuple[str, str]:
    """NAME=FRAME (or NAME alone: the frame of the same name)."""
    name, _, frame = text.partition("=")
    name, frame = name.strip(), (frame.strip() if "=" in text else name.strip())
    if not name or not frame:
        raise argparse.ArgumentTypeError(f"expected NAME=FRAME, got {text!r}")
    return name, frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `fusionocc rig`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--urdf", type=Path, help="the robot's URDF (expanded, not xacro)")
    source.add_argument("--bag", type=Path, help="a rosbag2 with /tf_static and the cameras' camera_info")
    source.add_argument("--calibration", type=Path, metavar="YAML",
                        help="an existing calibration YAML (to write it as URDF)")
    parser.add_argument("--out", type=Path, metavar="YAML", help="the calibration YAML to write")
    parser.add_argument("--write-urdf", type=Path, metavar="URDF", help="also (or only) write the rig as a URDF")
    parser.add_argument("--base-frame", default=layout.EGO_FRAME, metavar="FRAME",
                        help="the ego frame the extrinsics are relative to (default: %(default)s)")
    parser.add_argument("--camera", type=_mapping, action="append", metavar="NAME=FRAME",
                        help="a camera and its optical frame (URDF link / TF frame); repeat for each camera, in "
                             "the node's order (default: the nuScenes cameras, each in the frame of its name)")
    parser.add_argument("--lidar", type=_mapping, metavar="NAME=FRAME",
                        help=f"the lidar and its frame (default: {LIDAR_NAME}={LIDAR_NAME})")
    parser.add_argument("--camera-info-bag", type=Path, metavar="BAG",
                        help="with --urdf: take camera intrinsics and image sizes from this bag's camera_info")
    parser.add_argument("--no-intrinsics", action="store_true",
                        help="with --bag: extrinsics only (the node reads camera_info at run time)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _sensor_frames(args: argparse.Namespace) -> SensorFrames:
    default = SensorFrames()
    cameras = default.cameras
    if args.camera:
        names = [name for name, _ in args.camera]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise RigError(f"--camera {duplicate} is given twice")
        cameras = dict(args.camera)
    lidar = args.lidar or default.lidar
    if lidar[0] in cameras:
        raise RigError(f"{lidar[0]} is both a camera and the lidar")
    return SensorFrames(cameras, lidar)


def build_rig(args: argparse.Namespace, warn: Callable[[str], None]) -> Calibration:
    """The calibration that `fusionocc rig` writes for parsed arguments; RigError on any problem."""
    if args.out is None and args.write_urdf is None:
        raise RigError("nothing to write: give --out calibration.yaml and/or --write-urdf rig.urdf")
    if args.camera_info_bag is not None and args.urdf is None:
        raise RigError("--camera-info-bag applies to --urdf (--bag reads its own camera_info)")
    if args.calibration is not None:
        if args.camera or args.lidar:
            raise RigError("--camera/--lidar apply to --urdf and --bag, not to --calibration")
        try:
            return load_calibration(args.calibration)
        except CalibrationError as error:
            raise RigError(str(error)) from None
    sensors = _sensor_frames(args)
    camera_frames = list(sensors.cameras.values())
    if args.urdf is not None:
        tree = read_urdf(args.urdf)
        intrinsics_bag = args.camera_info_bag
        intrinsics = read_bag(intrinsics_bag, camera_frames, tf_static=False)[1] if intrinsics_bag else None
    else:
        if args.no_intrinsics and args.bag is None:
            raise RigError("--no-intrinsics applies to --bag")
        intrinsics_bag = None if args.no_intrinsics else args.bag
        tree, intrinsics = read_bag(args.bag, [] if args.no_intrinsics else camera_frames)
        intrinsics = None if args.no_intrinsics else intrinsics
    return rig_calibration(tree, sensors, args.base_frame, intrinsics=intrinsics,
                           intrinsics_source=None if intrinsics_bag is None else str(intrinsics_bag), warn=warn)


def run(args: argparse.Namespace) -> int:
    """Runs `fusionocc rig`: prints one line per sensor; exit 2 with one line naming the problem."""
    def warn(message: str) -> None:
        print(f"fusionocc rig: warning: {message}", file=sys.stderr)

    try:
        calibration = build_rig(args, warn)
        # Both outputs are checked before either is written, so an error leaves neither half-done.
        for path in (args.out, args.write_urdf):
            if path is not None and path.exists() and not args.overwrite:
                raise RigError(f"{path} exists already, not overwriting (use --overwrite)")
        text = calibration_to_urdf(calibration) if args.write_urdf is not None else None
        if args.out is not None:
            save_rig(calibration, args.out, overwrite=args.overwrite)
        if text is not None:
            save_urdf(text, args.write_urdf, overwrite=args.overwrite)
    except RigError as error:
        print(f"fusionocc rig: {error}", file=sys.stderr)
        return EXIT_ERROR
    for sensor in calibration.sensors.values():
        t = ", ".join(f"{v:.3f}" for v in sensor.translation)
        k = (f", fx {sensor.intrinsics[0, 0]:.1f} px at {sensor.image_size[0]}x{sensor.image_size[1]}"
             if sensor.intrinsics is not None and sensor.image_size is not None else "")
        print(f"{sensor.name}: frame {sensor.frame_id}, origin [{t}] m in {calibration.ego_frame}{k}")
    for label, path in (("calibration", args.out), ("URDF", args.write_urdf)):
        if path is not None:
            print(f"wrote {label} {path}")
    return 0
