"""The launch file's decisions (fusionocc_ros.launch_params): the user's params file wins, launch arguments
override only when given, `bag:=` brings the bag's own calibration, the bag player gets the sender profile."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from fusionocc_ros.launch_params import (
    ARGUMENT_PARAMETERS,
    bag_player_env,
    node_overrides,
    node_parameters,
    params_file_values,
)
from fusionocc_ros.node_params import SPECS
from fusionocc_ros.transport import SHM_PROFILE

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "occupancy.launch.py"
NOT_GIVEN = dict.fromkeys((*ARGUMENT_PARAMETERS, "bag"), "")


def _params_file(tmp_path: Path, **values) -> str:
    path = tmp_path / "mine.param.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    return str(path)


def test_launch_defaults_never_replace_the_users_params_file(tmp_path):
    mine = _params_file(tmp_path, preset="tiny", device="cpu", precision="bf16", image_transport="raw",
                        calibration_file="/robot/calibration.yaml")
    assert node_parameters(NOT_GIVEN, mine) == [mine]  # nothing on top of the YAML


def test_a_given_argument_overrides_only_its_parameter(tmp_path):
    mine = _params_file(tmp_path, preset="tiny", device="cpu")
    arguments = {**NOT_GIVEN, "device": "cuda:1", "checkpoint": "/m.pth"}
    assert node_parameters(arguments, mine) == [mine, {"device": "cuda:1", "checkpoint": "/m.pth"}]


def test_every_argument_maps_to_a_declared_parameter():
    assert set(ARGUMENT_PARAMETERS.values()) <= set(SPECS)


def test_bag_brings_its_own_calibration_unless_one_is_given(tmp_path):
    bag = tmp_path / "scene-0001"
    bag.mkdir()
    (bag / "calibration.yaml").write_text("frames: {}\n")
    plain = _params_file(tmp_path, preset="tiny")
    assert node_overrides({**NOT_GIVEN, "bag": str(bag)}, plain) == {
        "calibration_file": str(bag / "calibration.yaml")}
    given = {**NOT_GIVEN, "bag": str(bag), "calibration": "/other.yaml"}
    assert node_overrides(given, plain) == {"calibration_file": "/other.yaml"}
    in_yaml = _params_file(tmp_path, calibration_file="/robot.yaml")
    assert node_overrides({**NOT_GIVEN, "bag": str(bag)}, in_yaml) == {}


def test_the_shipped_params_file_leaves_calibration_to_the_bag(tmp_path):
    shipped = str(REPO / "config" / "fusionocc.param.yaml")
    assert params_file_values(shipped)["calibration_file"] == ""
    bag = tmp_path / "b"
    bag.mkdir()
    (bag / "calibration.yaml").write_text("x: 1\n")
    assert node_overrides({**NOT_GIVEN, "bag": str(bag)}, shipped)["calibration_file"] == str(bag / "calibration.yaml")


def test_params_file_values_reads_node_sections_and_nesting(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {"device": "cpu", "sync": {"window_min_s": -0.1}}},
        "occupancy_node": {"ros__parameters": {"device": "cuda"}},
        "other_node": {"ros__parameters": {"preset": "fast"}},
    }))
    values = params_file_values(str(path))
    assert values == {"device": "cuda", "sync.window_min_s": -0.1}


def test_bag_player_gets_the_sender_profile_unless_the_user_has_one():
    assert bag_player_env({}) == {"FASTDDS_DEFAULT_PROFILES_FILE": str(SHM_PROFILE)}
    assert bag_player_env({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}) == {}


def test_launch_file_uses_these_functions_and_declares_every_argument():
    tree = ast.parse(LAUNCH.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "fusionocc_ros.launch_params" for alias in node.names}
    assert {"node_parameters", "bag_player_env", "ARGUMENT_PARAMETERS"} <= imported
    declared = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    assert set(ARGUMENT_PARAMETERS) | {"bag", "params_file", "namespace", "use_rviz"} <= declared
    # no remappings: topics come from the node's topics.* parameters
    assert "remappings=" not in LAUNCH.read_text()
    # every parameter argument defaults to '' (= not given)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            name = node.args[0].value
            default = next(k.value for k in node.keywords if k.arg == "default_value")
            if name in ARGUMENT_PARAMETERS or name == "namespace":
                assert isinstance(default, ast.Constant) and default.value == "", name
