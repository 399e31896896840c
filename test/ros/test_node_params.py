"""The node's parameter table (fusionocc_ros.node_params) and the ways values reach it: the shipped YAML mirrors
the table, `fusionocc node` arguments become parameter overrides, params files are checked before rcl reads
them, run-time changes and unknown names are judged by the table, and the launch file names its arguments.
No DDS: the node itself is tested in test_occupancy_node.py."""

from __future__ import annotations

import argparse
import pathlib
import py_compile

import pytest
import yaml

from fusionocc_ros.node_params import (
    PARAMETERS,
    SPECS,
    ParameterError,
    add_arguments,
    check_changes,
    nested_defaults,
    params_file_problem,
    params_files,
    ros_arguments,
    unknown_names,
    validate,
)

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_param_yaml_lists_every_parameter_with_its_default():
    data = yaml.safe_load((REPO / "config" / "fusionocc.param.yaml").read_text())
    assert list(data) == ["/**"]
    assert data["/**"]["ros__parameters"] == nested_defaults()
    assert len(PARAMETERS) == len({p.name for p in PARAMETERS})


def test_cli_arguments_become_ros_parameter_overrides():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--checkpoint", "m.pt", "--device", "cpu", "--calibration", "c.yaml", "--ros-args", "-r", "__ns:=/x"]
    )
    ros = ros_arguments(args)
    assert ros[0] == "--ros-args"
    assert ros[
        ros.index("checkpoint:=m.pt") - 1 : ros.index("checkpoint:=m.pt") + 1
    ] == ["-p", "checkpoint:=m.pt"]
    assert "calibration_file:=c.yaml" in ros and "device:=cpu" in ros and ros[-2:] == ["-r", "__ns:=/x"]


def test_unset_cli_arguments_leave_the_params_file_alone():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ros = ros_arguments(parser.parse_args(["--params-file", "mine.yaml"]))
    assert ros == ["--ros-args", "--params-file", "mine.yaml"]
    assert params_files([*ros, "--params-file", "other.yaml"]) == ["mine.yaml", "other.yaml"]


def test_params_file_problems_are_sentences(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"device": "cpu"}}}))
    assert params_file_problem(str(good)) is None
    assert "no such file" in params_file_problem(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    assert "not valid YAML" in params_file_problem(str(broken))
    flat = tmp_path / "flat.yaml"
    flat.write_text(yaml.safe_dump({"device": "cpu"}))
    assert "ros__parameters" in params_file_problem(str(flat))


def test_runtime_changes_are_judged_by_the_table():
    assert check_changes([("markers.max_cubes", 10), ("markers.alpha", 0.5)]) is None
    assert "markers.alpha must be <= 1.0" in check_changes([("markers.max_cubes", 10), ("markers.alpha", 2.0)])
    assert "precision must be one of" in check_changes([("precision", "int8")])
    assert check_changes([("use_sim_time", True)]) is None  # rclpy's own: not this table's to judge


def test_unknown_names_skip_declared_and_rclpy_parameters():
    assert unknown_names(["device", "use_sim_time", "sync.widnow_max_s", "devcie"]) == [
        "devcie", "sync.widnow_max_s"]


def test_validate_normalises_and_names_the_invalid_parameter():
    values = validate({"calibration_file": "c.yaml", "markers.alpha": 1, "camera_names": ("A",)})
    assert values["markers.alpha"] == 1.0 and isinstance(values["markers.alpha"], float)
    assert values["camera_names"] == ["A"]
    with pytest.raises(ParameterError, match="sync.window_min_s .* must not exceed"):
        validate({"calibration_file": "c.yaml", "sync.window_min_s": 0.1, "sync.window_max_s": 0.0})
    with pytest.raises(ParameterError, match="calibration_file is required"):
        validate({})


def test_descriptors_carry_ranges_read_only_and_choices():
    pytest.importorskip("rcl_interfaces")
    from fusionocc_ros.node_params import descriptor

    window = descriptor(SPECS["sync.window_min_s"])
    assert window.read_only and window.floating_point_range[0].from_value == -1.0 and "[s]" in window.description
    cubes = descriptor(SPECS["markers.max_cubes"])
    assert not cubes.read_only and cubes.integer_range[0].to_value == 2_000_000
    assert "(one of: fp32, fp16, bf16)" in descriptor(SPECS["precision"]).description


def test_launch_file_compiles_and_names_its_arguments():
    path = REPO / "launch" / "occupancy.launch.py"
    py_compile.compile(str(path), doraise=True)
    text = path.read_text()
    for argument in (
        "checkpoint",
        "preset",
        "device",
        "params_file",
        "image_transport",
        "use_rviz",
        "bag",
        "calibration",
    ):
        assert f'"{argument}"' in text
    assert "generate_launch_description" in text
