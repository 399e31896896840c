"""Parameters of the occupancy node: one table (name, default, range, description) that the node declares,
`config/fusionocc.param.yaml` mirrors and docs/node.md documents (tests keep both equal to it), and the ways
values reach it: `fusionocc node`'s arguments (each becomes a parameter override) and parameter YAML files
(checked before rcl reads them).

Read-only parameters need a restart; the others can be changed at run time with `ros2 param set` and are
validated the same way.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from fusionocc_core.cli_options import add_device, add_preset
from fusionocc_core.errors import FusionOccError
from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME

DEFAULT_PARAMS_FILE = pathlib.Path(__file__).resolve().parents[1] / "config" / "fusionocc.param.yaml"


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Attributes:
        name: dotted ROS parameter name.
        default: default value (its type is the parameter's type).
        description: what it does, with the unit in brackets.
        read_only: True when a change needs a restart.
        min_value: inclusive lower bound for numbers.
        max_value: inclusive upper bound for numbers.
        choices: allowed values for strings.
    """

    name: str
    default: Any
    description: str
    read_only: bool = True
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] | None = None


PARAMETERS: tuple[ParamSpec, ...] = (
    # Model and device.
    ParamSpec(
        "checkpoint",
        "",
        "FusionOcc checkpoint (.pt) to load; empty = `preset` with random weights "
        "(outputs are meaningless, for plumbing tests only)",
    ),
    ParamSpec(
        "preset",
        "official",
        "model preset used when `checkpoint` is empty",
        choices=("official", "fast", "tiny"),
    ),
    ParamSpec(
        "seed",
        0,
        "random seed of the preset weights when no checkpoint is given",
        min_value=0,
        max_value=2**31 - 1,
    ),
    ParamSpec("device", "auto", "inference device: auto (CUDA when present), cpu, cuda, cuda:N"),
    ParamSpec("precision", "fp32", "inference precision (autocast)", choices=("fp32", "fp16", "bf16")),
    # Rig.
    ParamSpec(
        "calibration_file",
        "",
        "calibration YAML with sensor -> ego extrinsics (see config/calibration.example.yaml); required",
    ),
    ParamSpec(
        "camera_names",
        list(CAMERA_NAMES),
        "camera names in the model's order (calibration entries; `{camera}` in the topic patterns)",
    ),
    ParamSpec("lidar_name", LIDAR_NAME, "calibration entry of the lidar"),
    ParamSpec(
        "image_transport",
        "compressed",
        "camera message type: raw (sensor_msgs/Image on `topics.camera_image`) or compressed "
        "(sensor_msgs/CompressedImage on `topics.camera_image` + /compressed, image_transport's naming)",
        choices=("raw", "compressed"),
    ),
    # Topics: patterns instead of one remap per topic; the defaults are the names of `fusionocc convert`'s
    # bags (and of nuScenes), so a replayed bag needs no remapping. Remaps still apply on top.
    ParamSpec(
        "topics.camera_image",
        "/{camera}/image_rect",
        "image topic of each camera; `{camera}` is replaced by each of `camera_names` ({camera_lower} by "
        "its lower-case form)",
    ),
    ParamSpec("topics.camera_info", "/{camera}/camera_info", "camera_info topic of each camera (same placeholders)"),
    ParamSpec("topics.pointcloud", "/" + LIDAR_NAME, "lidar sensor_msgs/PointCloud2 topic"),
    ParamSpec("topics.odometry", "/odom", "ego nav_msgs/Odometry topic"),
    ParamSpec(
        "jpeg_draft",
        True,
        "decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) that is still at "
        "least the network input size (faster; intrinsics are scaled to match)",
    ),
    ParamSpec("ego_frame", "base_link", "frame of every output (the lidar stamp's ego frame)"),
    ParamSpec(
        "check_frame_ids",
        True,
        "reject sensor messages whose header.frame_id differs from the calibration's frame_id",
    ),
    ParamSpec(
        "lidar_timeout_s",
        1.0,
        "images arriving without a PointCloud2 for this long is a lidar dropout: ERROR in /diagnostics, "
        "no occupancy until the lidar returns [s]",
        min_value=0.1,
        max_value=3600.0,
    ),
    ParamSpec(
        "min_lidar_points",
        100,
        "sweeps with fewer finite points are rejected",
        min_value=0,
        max_value=10_000_000,
    ),
    # Synchronisation.
    ParamSpec(
        "sync.window_min_s",
        -0.05,
        "earliest camera stamp accepted, relative to the lidar stamp [s]",
        min_value=-1.0,
        max_value=1.0,
    ),
    ParamSpec(
        "sync.window_max_s",
        0.05,
        "latest camera stamp accepted, relative to the lidar stamp [s]",
        min_value=-1.0,
        max_value=1.0,
    ),
    ParamSpec(
        "sync.camera_queue_size",
        8,
        "images kept per camera while waiting for a sweep",
        min_value=1,
        max_value=1000,
    ),
    ParamSpec(
        "sync.lidar_queue_size", 4, "sweeps kept waiting for their images", min_value=1, max_value=1000
    ),
    ParamSpec(
        "sync.arrival_slack_s",
        0.05,
        "how much later than newer stamps of other topics a message may still arrive [s]",
        min_value=0.0,
        max_value=10.0,
    ),
    ParamSpec(
        "sync.max_missing_cameras",
        2,
        "a sweep missing at most this many cameras is published degraded (their views zeroed, "
        "WARN in /diagnostics) instead of dropped; 0 requires every camera",
        min_value=0,
        max_value=64,
    ),
    ParamSpec(
        "sync.reset_jump_s",
        1.0,
        "a stamp this much older than its topic's newest one resets the "
        "synchroniser and the temporal history [s]",
        min_value=0.001,
        max_value=3600.0,
    ),
    # Odometry and temporal fusion.
    ParamSpec(
        "odom.max_offset_s",
        0.1,
        "largest gap between a sensor stamp (sweep or image) and the odometry used to interpolate the ego pose "
        "[s]",
        min_value=0.0,
        max_value=10.0,
    ),
    ParamSpec("odom.queue_size", 200, "odometry messages kept", min_value=2, max_value=100_000),
    ParamSpec(
        "odom.qos_depth",
        100,
        "history depth of the odometry subscription: odometry comes at up to ~100 Hz (one pose per image and "
        "sweep in a converted bag), so the sensors' qos_depth would drop poses during a short executor stall",
        min_value=1,
        max_value=10_000,
    ),
    ParamSpec("temporal.enabled", True, "fuse the previous camera frame and previous lidar keyframes"),
    ParamSpec(
        "temporal.keyframe_interval_s",
        0.5,
        "spacing of the fused history frames [s]",
        min_value=0.05,
        max_value=5.0,
    ),
    ParamSpec(
        "temporal.num_lidar_keyframes",
        7,
        "previous lidar keyframes fused with the current sweep",
        min_value=0,
        max_value=20,
    ),
    ParamSpec(
        "temporal.max_gap_s",
        2.0,
        "a larger gap between frames clears the history [s]",
        min_value=0.01,
        max_value=3600.0,
    ),
    ParamSpec(
        "temporal.max_pose_jump_m",
        10.0,
        "a larger ego displacement between frames clears the history [m]",
        min_value=0.01,
        max_value=10_000.0,
    ),
    # Outputs.
    ParamSpec(
        "occupancy_grid.unknown_unobserved",
        False,
        "mark bird's-eye cells no lidar ray of the fused sweeps crossed as unknown (-1) instead of free or "
        "occupied in ~/output/occupancy_grid (the lidar visibility Occ3D's masks use; ~50 ms for 8 fused sweeps "
        "on 2 cores, fusionocc bench --suite visibility)",
    ),
    ParamSpec(
        "markers.max_cubes",
        40_000,
        "cap on RViz cubes (nearest columns kept); markers are built only "
        "while ~/output/markers has subscribers",
        read_only=False,
        min_value=0,
        max_value=2_000_000,
    ),
    ParamSpec("markers.alpha", 1.0, "cube opacity", read_only=False, min_value=0.0, max_value=1.0),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics [s]", min_value=0.05, max_value=60.0),
    ParamSpec("qos_depth", 5, "history depth of the sensor-data subscriptions", min_value=1, max_value=1000),
    ParamSpec(
        "qos_reliability",
        "best_effort",
        "reliability of the sensor-data subscriptions: best_effort connects to every writer (drivers "
        "usually offer best effort); reliable lets a reliable writer (ros2 bag play of a fusionocc bag) "
        "resend what the transport lost, but cannot connect to a best-effort writer",
        choices=("best_effort", "reliable"),
    ),
)
SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
TOPIC_PARAMETERS = ("topics.camera_image", "topics.camera_info", "topics.pointcloud", "topics.odometry")
# The node's private input names (`~/input/...`), for tools and tests that publish straight to one node.
PRIVATE_TOPICS: dict[str, str] = {
    "topics.camera_image": "~/input/{camera}/image",
    "topics.camera_info": "~/input/{camera}/camera_info",
    "topics.pointcloud": "~/input/pointcloud",
    "topics.odometry": "~/input/odometry",
}


def camera_topic(pattern: str, camera: str) -> str:
    """A camera's topic from a pattern with `{camera}` / `{camera_lower}`."""
    return pattern.replace("{camera}", camera).replace("{camera_lower}", camera.lower())


class ParameterError(FusionOccError, ValueError):
    """An invalid parameter value or combination; the message names the parameter and the reason."""


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """Reason `value` is invalid for `spec`, or None when it is fine."""
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return f"{spec.name} must be a list of strings, got {value!r}"
        if not value or len(set(value)) != len(value):
            return f"{spec.name} must be non-empty and without duplicates, got {list(value)}"
        return None
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return f"{spec.name} must be of type {expected.__name__}, got {value!r}"
    if spec.min_value is not None and value < spec.min_value:
        return f"{spec.name} must be >= {spec.min_value}, got {value}"
    if spec.max_value is not None and value > spec.max_value:
        return f"{spec.name} must be <= {spec.max_value}, got {value}"
    if spec.choices is not None and value not in spec.choices:
        return f"{spec.name} must be one of {', '.join(spec.choices)}, got {value!r}"
    return None


def check_combination(values: Mapping[str, Any]) -> str | None:
    """Reason a combination of values is invalid, or None."""
    if values["sync.window_min_s"] > values["sync.window_max_s"]:
        return (
            f"sync.window_min_s ({values['sync.window_min_s']}) must not exceed sync.window_max_s "
            f"({values['sync.window_max_s']})"
        )
    for name in TOPIC_PARAMETERS:
        topic = values[name]
        if not topic or any(ch.isspace() for ch in topic):
            return f"{name} must be a topic name, got {topic!r}"
        if name.startswith("topics.camera") and len(values["camera_names"]) > 1 and "{camera" not in topic:
            return f"{name} must contain {{camera}} (one topic per camera), got {topic!r}"
    if not values["calibration_file"]:
        return "calibration_file is required (sensor -> ego extrinsics; see config/calibration.example.yaml)"
    return None


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Checks every value and the combinations; returns a plain dict (lists for string arrays).

    Raises:
        ParameterError: naming the first invalid parameter and why.
    """
    result: dict[str, Any] = {}
    for spec in PARAMETERS:
        value = values.get(spec.name, spec.default)
        reason = check_value(spec, value)
        if reason:
            raise ParameterError(reason)
        result[spec.name] = (
            list(value)
            if isinstance(value, (list, tuple))
            else (float(value) if isinstance(spec.default, float) else value)
        )
    reason = check_combination(result)
    if reason:
        raise ParameterError(reason)
    return result


def check_changes(changes: Iterable[tuple[str, Any]]) -> str | None:
    """Reason a run-time change of (name, value) pairs is invalid, or None; names not in the table (rclpy's
    own, such as use_sim_time) are not this table's to judge."""
    for name, value in changes:
        spec = SPECS.get(name)
        reason = check_value(spec, value) if spec is not None else None
        if reason:
            return reason
    return None


ROS_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})  # declared by rclpy itself


def unknown_names(names: Iterable[str]) -> list[str]:
    """The sorted names that neither the table nor rclpy declares (a misspelled key in a params file)."""
    return sorted(set(names) - set(SPECS) - ROS_PARAMETERS)


def descriptor(spec: ParamSpec) -> Any:
    """rcl_interfaces ParameterDescriptor of a spec (description, ranges, read_only, choices in text)."""
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
    )

    types = {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
        list: ParameterType.PARAMETER_STRING_ARRAY,
    }
    text = spec.description + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
    result = ParameterDescriptor(
        name=spec.name, type=types[type(spec.default)], description=text, read_only=spec.read_only
    )
    if spec.min_value is not None and spec.max_value is not None:
        if isinstance(spec.default, float):
            result.floating_point_range = [
                FloatingPointRange(from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)
            ]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            result.integer_range = [
                IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=0)
            ]
    return result


def nested_defaults(names: Sequence[str] | None = None) -> dict[str, Any]:
    """Defaults as the nested mapping of a ROS parameter YAML (`a.b` -> {'a': {'b': ...}})."""
    tree: dict[str, Any] = {}
    for spec in PARAMETERS:
        if names is not None and spec.name not in names:
            continue
        node = tree
        *parents, leaf = spec.name.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = spec.default
    return tree


# ---------------------------------------------------------------------------------------- command line, YAML


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `fusionocc node` (each becomes a ROS parameter override; unset ones keep the value of
    --params-file, else the parameter's default)."""

    def param(name: str) -> str:
        return f"ROS parameter {name}; default: the params file's, else {SPECS[name].default or 'none'}"

    parser.add_argument(
        "--params-file",
        default=str(DEFAULT_PARAMS_FILE) if DEFAULT_PARAMS_FILE.is_file() else "",
        help="ROS parameter YAML (default: config/fusionocc.param.yaml of this checkout)",
    )
    parser.add_argument(
        "--checkpoint",
        type=pathlib.Path,
        help=f"FusionOcc checkpoint; without it the preset runs with random weights ({param('checkpoint')})",
    )
    add_preset(parser, help=f"model preset without a checkpoint ({param('preset')})")
    add_device(parser, what="inference device", default=None, help_suffix=f" ({param('device')})")
    parser.add_argument(
        "--precision",
        choices=SPECS["precision"].choices,
        help=f"inference precision, autocast ({param('precision')})",
    )
    parser.add_argument(
        "--calibration",
        type=pathlib.Path,
        metavar="YAML",
        help="sensor calibration YAML (sensor -> ego extrinsics, see config/calibration.example.yaml; "
        "written by `fusionocc rig` and `fusionocc convert`); sets the ROS parameter calibration_file, like "
        "the launch argument calibration:= (default: the params file's)",
    )
    parser.add_argument(
        "--image-transport",
        choices=SPECS["image_transport"].choices,
        help=f"camera message type: raw (sensor_msgs/Image) or compressed ({param('image_transport')})",
    )
    parser.add_argument(
        "--ros-args",
        dest="ros_args",
        nargs=argparse.REMAINDER,
        default=[],
        help="everything after it goes to ROS (remaps, e.g. -r __ns:=/x -r ~/input/odometry:=/odom)",
    )


def ros_arguments(args: argparse.Namespace) -> list[str]:
    """The rclpy command line equivalent of parsed `fusionocc node` arguments (`add_arguments`)."""
    ros: list[str] = ["--ros-args"]
    if args.params_file:
        ros += ["--params-file", args.params_file]
    overrides = {
        "checkpoint": args.checkpoint,
        "preset": args.preset,
        "device": args.device,
        "precision": args.precision,
        "calibration_file": args.calibration,
        "image_transport": args.image_transport,
    }
    for name, value in overrides.items():
        if value is not None:
            ros += ["-p", f"{name}:={value}"]
    extra = [a for a in (args.ros_args or []) if a != "--ros-args"]
    return ros + extra


def params_files(args: Sequence[str]) -> list[str]:
    """The files named by `--params-file` in an rclpy command line."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--params-file"]


def params_file_problem(path: str) -> str | None:
    """Why a ROS parameter YAML cannot be used, or None; checked before rclpy.init, where rcl would fail on it
    with an RCLError traceback instead of a sentence."""
    file = pathlib.Path(path)
    if not file.is_file():
        return f"params file {path}: no such file"
    try:
        content = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        return f"params file {path}: not valid YAML ({str(error).splitlines()[0]})"
    if not isinstance(content, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict) for v in content.values()
    ):
        return f"params file {path}: expected `<node name or /**>: {{ros__parameters: {{...}}}}` at the top level"
    return None
