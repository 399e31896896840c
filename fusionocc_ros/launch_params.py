"""What `launch/occupancy.launch.py` hands the node and the bag player, as plain functions.

The launch file imports `launch`/`launch_ros`, which come with a ROS 2 install only; keeping its decisions here
lets them be tested without them. The rules:

- the user's params file wins for every parameter it sets: a launch argument becomes a parameter override only
  when it is given (non-empty), so launch defaults never replace what the YAML says;
- with `bag:=DIR` and no `calibration:=`, the node uses the bag's own `DIR/calibration.yaml` (written by
  `fusionocc convert`) unless the params file names a calibration file;
- the bag player gets fusionocc's sender transport profile unless the user has configured Fast DDS
  (`fusionocc_ros.transport`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# launch argument -> node parameter; each overrides only when the argument is non-empty
ARGUMENT_PARAMETERS: dict[str, str] = {
    "checkpoint": "checkpoint",
    "preset": "preset",
    "device": "device",
    "precision": "precision",
    "image_transport": "image_transport",
    "calibration": "calibration_file",
    "camera_image_topic": "topics.camera_image",
}


def params_file_values(params_file: str, node_name: str = "occupancy_node") -> dict[str, Any]:
    """Flat parameter values a ROS params YAML gives `node_name` (its `/**` and its own sections)."""
    if not params_file:
        return {}
    content = yaml.safe_load(Path(params_file).read_text()) or {}
    values: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}", f"/**/{node_name}"):
        section = content.get(key)
        if isinstance(section, dict):
            values.update(_flatten(section.get("ros__parameters") or {}))
    return values


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def node_overrides(arguments: Mapping[str, str], params_file: str = "") -> dict[str, str]:
    """Parameter overrides for the given (non-empty) launch arguments, plus the bag's calibration.

    Args:
        arguments: launch argument values as strings ('' = not given), incl. optionally `bag`.
        params_file: the params YAML the node also gets (to see whether it names a calibration file).
    """
    overrides = {
        parameter: arguments[argument]
        for argument, parameter in ARGUMENT_PARAMETERS.items()
        if arguments.get(argument, "")
    }
    bag = arguments.get("bag", "")
    if bag and "calibration_file" not in overrides and not params_file_values(params_file).get("calibration_file"):
        bag_calibration = Path(bag) / "calibration.yaml"
        if bag_calibration.is_file():
            overrides["calibration_file"] = str(bag_calibration)
    return overrides


def node_parameters(arguments: Mapping[str, str], params_file: str) -> list[Any]:
    """The `parameters=` list of the launch file's Node action: the YAML first, then only given overrides
    (later entries win in launch_ros)."""
    overrides = node_overrides(arguments, params_file)
    return ([params_file] if params_file else []) + ([overrides] if overrides else [])


def bag_player_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Extra environment of the launch file's `ros2 bag play`: fusionocc's sender profile, unless the user has
    configured the middleware (then nothing)."""
    from fusionocc_ros.transport import apply_transport_profile

    env = dict(environ)
    choice = apply_transport_profile("sender", env)
    return {key: env[key] for key in env if env.get(key) != environ.get(key)} if choice.applied else {}
