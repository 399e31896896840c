"""`fusionocc rig`: the node's calibration YAML from a URDF or a bag's /tf_static + camera_info.

The truth is the converter's own calibration.yaml of a synthetic scene: rig-from-bag must reproduce it, the
rig written as URDF and read back must give the same extrinsics, and a URDF with one joint moved must not.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_ros import cli, rig
from fusionocc_ros.bag_converter import CALIBRATION_FILE, ConvertOptions, convert_scene
from fusionocc_ros.calibration import Calibration, load_calibration

SCENE = "scene-0001"


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory, synth_dataroot: Path) -> Path:
    """A converted synthetic scene (keyframes only: /tf_static and camera_info are all this needs)."""
    nusc = NuScenes("v1.0-mini", str(synth_dataroot), verbose=False)
    path = tmp_path_factory.mktemp("rig") / SCENE
    convert_scene(nusc, SCENE, path, options=ConvertOptions(progress=False, keyframes_only=True))
    return path


@pytest.fixture(scope="module")
def truth(bag: Path) -> Calibration:
    return load_calibration(bag / CALIBRATION_FILE)


def _rig(*args: object) -> int:
    return cli.main(["rig", *(str(a) for a in args)])


def assert_same_rig(expected: Calibration, actual: Calibration, *, intrinsics: bool = True) -> None:
    """Same sensors in the same order, same frames, extrinsics to float tolerance (and intrinsics)."""
    assert list(actual.sensors) == list(expected.sensors)
    assert actual.ego_frame == expected.ego_frame
    for name, want in expected.sensors.items():
        got = actual[name]
        assert got.frame_id == want.frame_id, name
        np.testing.assert_allclose(got.sensor_to_ego, want.sensor_to_ego, atol=1e-9, err_msg=name)
        if intrinsics:
            assert got.image_size == want.image_size, name
            if want.intrinsics is None:
                assert got.intrinsics is None, name
            else:
                np.testing.assert_allclose(got.intrinsics, want.intrinsics, err_msg=name)


def _only(directory: Path, *names: str) -> None:
    """Nothing else (no temporary file) is left in the directory."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


# ----------------------------------------------------------------------------------------------------------
# Round trips against the converter's calibration.yaml
# ----------------------------------------------------------------------------------------------------------


def test_rig_from_bag_equals_the_converters_calibration(bag, truth, tmp_path, capsys):
    out = tmp_path / "calibration.yaml"
    assert _rig("--bag", bag, "--out", out) == 0
    assert_same_rig(truth, load_calibration(out))
    assert list(truth.sensors) == [*CAMERA_NAMES, LIDAR_NAME]
    # Same writer, same values: the files are identical, not only close.
    assert out.read_text() == (bag / CALIBRATION_FILE).read_text()
    printed = capsys.readouterr().out
    assert f"wrote calibration {out}" in printed and "CAM_FRONT: frame CAM_FRONT" in printed
    _only(tmp_path, "calibration.yaml")


def test_rig_as_urdf_reads_back_with_the_same_extrinsics(bag, truth, tmp_path):
    urdf = tmp_path / "rig.urdf"
    assert _rig("--bag", bag, "--write-urdf", urdf) == 0
    _only(tmp_path, "rig.urdf")  # --write-urdf alone writes no YAML
    joints = ET.parse(urdf).getroot().findall("joint")
    assert [j.get("type") for j in joints] == ["fixed"] * len(truth.sensors)

    extrinsics = tmp_path / "extrinsics.yaml"
    assert _rig("--urdf", urdf, "--out", extrinsics) == 0
    from_urdf = load_calibration(extrinsics)
    assert_same_rig(truth, from_urdf, intrinsics=False)
    assert all(s.intrinsics is None and s.image_size is None for s in from_urdf.sensors.values())

    # URDF extrinsics + the bag's camera_info: the converter's calibration again, intrinsics included.
    full = tmp_path / "full.yaml"
    assert _rig("--urdf", urdf, "--camera-info-bag", bag, "--out", full) == 0
    assert_same_rig(truth, load_calibration(full))


def test_calibration_yaml_to_urdf_and_back(truth, bag, tmp_path):
    urdf = tmp_path / "rig.urdf"
    assert _rig("--calibration", bag / CALIBRATION_FILE, "--write-urdf", urdf) == 0
    assert_same_rig(truth, rig.rig_calibration(rig.read_urdf(urdf), rig.SensorFrames(), "base_link"),
                    intrinsics=False)


def test_a_moved_joint_breaks_the_equality(bag, truth, tmp_path):
    urdf = tmp_path / "rig.urdf"
    assert _rig("--bag", bag, "--write-urdf", urdf) == 0
    tree = ET.parse(urdf)
    origin = tree.getroot().find("joint[@name='CAM_BACK_joint']/origin")
    xyz = [float(v) for v in origin.get("xyz").split()]
    origin.set("xyz", " ".join(repr(v) for v in (xyz[0] + 0.05, xyz[1], xyz[2])))
    moved = tmp_path / "moved.urdf"
    tree.write(moved)
    out = tmp_path / "moved.yaml"
    assert _rig("--urdf", moved, "--out", out) == 0
    mutated = load_calibration(out)
    with pytest.raises(AssertionError, match="CAM_BACK"):
        assert_same_rig(truth, mutated, intrinsics=False)
    # Exactly that sensor moved, by exactly 5 cm along base_link x.
    for name in truth.sensors:
        delta = mutated[name].translation - truth[name].translation
        np.testing.assert_allclose(delta, [0.05, 0, 0] if name == "CAM_BACK" else 0, atol=1e-12, err_msg=name)


def test_the_cli_as_a_user_runs_it(bag, truth, tmp_path):
    exe = Path(sys.executable).parent / "fusionocc"
    out = tmp_path / "calibration.yaml"
    done = subprocess.run([str(exe), "rig", "--bag", str(bag), "--out", str(out)], check=False,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert f"wrote calibration {out}" in done.stdout
    assert_same_rig(truth, load_calibration(out))


# ----------------------------------------------------------------------------------------------------------
# Composition through real chains: a robot URDF and a hand-made bag
# ----------------------------------------------------------------------------------------------------------

OPTICAL_RPY = (-math.pi / 2, 0.0, -math.pi / 2)  # REP 103 body link -> optical frame (z forward, x right)

ROBOT_URDF = f"""<?xml version="1.0"?>
<robot name="rover">
  <link name="base_footprint"/>
  <link name="base_link"/>
  <link name="mast"/>
  <link name="front_cam_link"/>
  <link name="front_cam_optical"/>
  <link name="velodyne"/>
  <link name="wheel"/>
  <joint name="footprint_joint" type="fixed">
    <parent link="base_footprint"/><child link="base_link"/><origin xyz="0 0 0.12"/>
  </joint>
  <joint name="mast_joint" type="revolute">
    <parent link="base_link"/><child link="mast"/><origin xyz="0.5 0.0 1.0" rpy="0 0 0.3"/>
    <axis xyz="0 0 1"/><limit lower="-1" upper="1" effort="1" velocity="1"/>
  </joint>
  <joint name="front_cam_joint" type="fixed">
    <parent link="mast"/><child link="front_cam_link"/><origin xyz="0.1 0.02 0.05" rpy="0.01 0.2 -0.05"/>
  </joint>
  <joint name="front_cam_optical_joint" type="fixed">
    <parent link="front_cam_link"/><child link="front_cam_optical"/>
    <origin xyz="0 0 0" rpy="{' '.join(repr(v) for v in OPTICAL_RPY)}"/>
  </joint>
  <joint name="velodyne_joint" type="fixed">
    <parent link="base_link"/><child link="velodyne"/><origin xyz="0.2 0 1.8" rpy="0 0 1.5707963267948966"/>
  </joint>
  <joint name="wheel_joint" type="continuous">
    <parent link="base_link"/><child link="wheel"/><origin xyz="0 0.3 0"/><axis xyz="0 1 0"/>
  </joint>
  <gazebo reference="velodyne"><sensor type="ray" name="vlp16"/></gazebo>
</robot>
"""


def _pose(xyz=(0.0, 0.0, 0.0), rpy=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Independent of the module: scipy's extrinsic x-y-z Euler angles are URDF's roll, pitch, yaw."""
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()
    pose[:3, 3] = xyz
    return pose


def test_urdf_chain_composed_and_mapped(tmp_path, capsys):
    urdf = tmp_path / "rover.urdf"
    urdf.write_text(ROBOT_URDF)
    out = tmp_path / "calibration.yaml"
    assert _rig("--urdf", urdf, "--out", out, "--camera", "CAM_FRONT=front_cam_optical",
                "--lidar", "LIDAR_TOP=velodyne") == 0
    warnings = capsys.readouterr().err
    assert "CAM_FRONT: joint 'mast_joint' is revolute" in warnings  # on the camera's path: said
    assert "wheel_joint" not in warnings  # on no sensor's path: silent
    calibration = load_calibration(out)
    assert list(calibration.sensors) == ["CAM_FRONT", "LIDAR_TOP"]
    assert calibration["CAM_FRONT"].frame_id == "front_cam_optical"
    camera = (_pose((0.5, 0.0, 1.0), (0, 0, 0.3)) @ _pose((0.1, 0.02, 0.05), (0.01, 0.2, -0.05))
              @ _pose(rpy=OPTICAL_RPY))
    np.testing.assert_allclose(calibration["CAM_FRONT"].sensor_to_ego, camera, atol=1e-12)
    np.testing.assert_allclose(calibration["LIDAR_TOP"].sensor_to_ego,
                               _pose((0.2, 0, 1.8), (0, 0, math.pi / 2)), atol=1e-12)

    # Relative to the root instead: the base need not be the root, any frame of the tree works.
    footprint = tmp_path / "footprint.yaml"
    assert _rig("--urdf", urdf, "--out", footprint, "--base-frame", "base_footprint",
                "--camera", "CAM_FRONT=front_cam_optical", "--lidar", "LIDAR_TOP=velodyne") == 0
    lifted = load_calibration(footprint)
    assert lifted.ego_frame == "base_footprint"
    np.testing.assert_allclose(lifted["CAM_FRONT"].sensor_to_ego, _pose((0, 0, 0.12)) @ camera, atol=1e-12)


def test_optical_frame_convention():
    """A camera looking along base_link +x in REP 103's optical frame: z forward, x right (-y), y down (-z)."""
    tree = rig.parse_urdf(ROBOT_URDF.replace('rpy="0 0 0.3"', 'rpy="0 0 0"').replace(
        'rpy="0.01 0.2 -0.05"', 'rpy="0 0 0"'))
    pose, _ = tree.pose("base_link", "front_cam_optical")
    np.testing.assert_allclose(pose[:3, :3] @ np.eye(3),
                               np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float), atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_rpy_round_trip(seed):
    rng = np.random.default_rng(seed)
    rotations = [Rotation.random(random_state=seed).as_matrix(),
                 Rotation.from_euler("xyz", [rng.uniform(-3, 3), math.pi / 2, rng.uniform(-3, 3)]).as_matrix(),
                 Rotation.from_euler("xyz", [rng.uniform(-3, 3), -math.pi / 2, rng.uniform(-3, 3)]).as_matrix()]
    for rotation in rotations:
        np.testing.assert_allclose(rig.rpy_to_matrix(rig.matrix_to_rpy(rotation)), rotation, atol=1e-12)
    rpy = rng.uniform(-1.5, 1.5, 3)
    np.testing.assert_allclose(rig.rpy_to_matrix(rpy), Rotation.from_euler("xyz", rpy).as_matrix(), atol=1e-12)


def _write_bag(path: Path, static: list[list[tuple[str, str, np.ndarray]]],
               infos: list[tuple[str, str, np.ndarray, int, int]]) -> None:
    """A small rosbag2: one /tf_static message per list of (parent, child, pose), then CameraInfo messages
    (topic, frame_id, K, width, height), as a robot's drivers and robot_state_publisher would record them."""
    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types

    def header(stamp: int, frame: str):
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp, nanosec=0), frame_id=frame)

    with Writer(path, version=9) as writer:
        tf_connection = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        stamp = 1
        for transforms in static:
            msgs = []
            for parent, child, pose in transforms:
                x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
                msgs.append(t["geometry_msgs/msg/TransformStamped"](
                    header=header(stamp, parent), child_frame_id=child,
                    transform=t["geometry_msgs/msg/Transform"](
                        translation=t["geometry_msgs/msg/Vector3"](x=pose[0, 3], y=pose[1, 3], z=pose[2, 3]),
                        rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))))
            data = store.serialize_cdr(t["tf2_msgs/msg/TFMessage"](transforms=msgs), "tf2_msgs/msg/TFMessage")
            writer.write(tf_connection, stamp * 10**9, data)
            stamp += 1
        connections = {}
        for topic, frame, k, width, height in infos:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, "sensor_msgs/msg/CameraInfo", typestore=store)
            msg = t["sensor_msgs/msg/CameraInfo"](
                header=header(stamp, frame), height=height, width=width, distortion_model="plumb_bob",
                d=np.zeros(5), k=np.asarray(k, float).reshape(-1), r=np.eye(3).reshape(-1),
                p=np.hstack([k, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0,
                roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False))
            writer.write(connections[topic], stamp * 10**9, store.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"))
            stamp += 1


K = np.array([[600.0, 0, 320], [0, 610, 240], [0, 0, 1]])
MOUNT = _pose((0.4, 0.0, 1.2), (0, 0.1, 0.2))
MOUNT_OLD = _pose((9.0, 9.0, 9.0))


@pytest.fixture(scope="module")
def robot_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robot") / "robot_bag"
    _write_bag(path, [
        [("base_footprint", "base_link", _pose((0, 0, 0.1))), ("base_link", "mount", MOUNT_OLD)],
        # A second publisher later: its mount transform replaces the first (tf2: the newest static wins).
        [("mount", "cam_optical", _pose((0.05, 0, 0), OPTICAL_RPY)), ("base_link", "velodyne", _pose((0, 0, 1.9))),
         ("base_link", "mount", MOUNT), ("odom", "gps", _pose((1, 2, 3))), ("mount", "raw_cam", _pose())],
    ], [("/front/color/camera_info", "cam_optical", K, 640, 480),
        ("/front/color/camera_info", "cam_optical", 2 * K - np.diag([0, 0, 1.0]), 1280, 960),
        ("/raw/camera_info", "raw_cam", np.zeros((3, 3)), 640, 480)])  # an uncalibrated driver's K = 0
    return path


def test_bag_chain_composed_with_camera_info_by_frame(robot_bag, tmp_path):
    out = tmp_path / "calibration.yaml"
    assert _rig("--bag", robot_bag, "--out", out, "--camera", "CAM_FRONT=cam_optical",
                "--lidar", "LIDAR_TOP=velodyne") == 0
    calibration = load_calibration(out)
    assert list(calibration.sensors) == ["CAM_FRONT", "LIDAR_TOP"]
    np.testing.assert_allclose(calibration["CAM_FRONT"].sensor_to_ego,
                               MOUNT @ _pose((0.05, 0, 0), OPTICAL_RPY), atol=1e-12)
    np.testing.assert_allclose(calibration["LIDAR_TOP"].sensor_to_ego, _pose((0, 0, 1.9)), atol=1e-12)
    np.testing.assert_allclose(calibration["CAM_FRONT"].intrinsics, K)  # the first camera_info of the frame
    assert calibration["CAM_FRONT"].image_size == (640, 480)
    assert calibration["LIDAR_TOP"].intrinsics is None


# ----------------------------------------------------------------------------------------------------------
# Errors: exit 2, one line naming the problem, nothing written
# ----------------------------------------------------------------------------------------------------------

def _robot(body: str, attributes: str = "") -> str:
    return f"<robot name='r'{attributes}><link name='base_link'/>{body}</robot>"


_JOINT = "<link name='c'/><joint name='j' type='{}'><parent link='base_link'/><child link='c'/>{}</joint>"
BAD_URDFS = {
    "truncated": (_robot("")[: -len("</robot>")], "malformed XML"),
    "bad joint type": (_robot(_JOINT.format("hinge", "")), "Invalid joint type: hinge"),
    "short xyz": (_robot(_JOINT.format("fixed", "<origin xyz='1 2'/>")), "origin[@xyz]"),
    "undeclared link": (_robot(_JOINT.format("fixed", "").replace("<link name='c'/>", "")),
                        "joint 'j' names child link 'c', which is not declared"),
    "two parents": (_robot("<link name='a'/>" + _JOINT.format("fixed", "")
                           + "<joint name='j2' type='fixed'><parent link='a'/><child link='c'/></joint>"),
                    "link 'c' has two parent joints, 'j' and 'j2'"),
    "xacro": (_robot("<xacro:property name='a' value='1'/>", " xmlns:xacro='http://www.ros.org/wiki/xacro'"),
              "is a xacro file"),
}


@pytest.mark.parametrize("case", sorted(BAD_URDFS))
def test_malformed_urdf(case, tmp_path, capsys):
    text, problem = BAD_URDFS[case]
    urdf = tmp_path / "robot.urdf"
    urdf.write_text(text)
    assert _rig("--urdf", urdf, "--out", tmp_path / "calibration.yaml") == 2
    err = capsys.readouterr().err
    assert problem in err and str(urdf) in err
    assert err.count("\n") == 1, err
    _only(tmp_path, "robot.urdf")


def _error_cases(bag: Path, robot_bag: Path, tmp_path: Path) -> dict[str, tuple[list[object], list[str]]]:
    rover = tmp_path / "rover.urdf"
    rover.write_text(ROBOT_URDF.replace("</robot>", '  <link name="loose_cam"/>\n</robot>'))
    return {
        "bag: missing frame": (["--bag", bag, "--lidar", "LIDAR_TOP=velodyne"],
                               ["frame 'velodyne' does not exist", "/tf_static"]),
        "bag: missing base": (["--bag", bag, "--base-frame", "base_footprint"],
                              ["frame 'base_footprint' does not exist"]),
        "bag: not connected": (["--bag", robot_bag, "--camera", "CAM_FRONT=cam_optical", "--lidar", "LIDAR_TOP=gps"],
                               ["frame 'gps' is not connected to base frame 'base_link'", "root is 'odom'"]),
        "bag: no camera_info": (["--bag", robot_bag, "--camera", "CAM_FRONT=cam_optical", "--camera",
                                 "CAM_BACK=mount", "--lidar", "LIDAR_TOP=velodyne"],
                                ["camera CAM_BACK has no camera_info", "'mount'"]),
        "bag: uncalibrated camera_info": (["--bag", robot_bag, "--camera", "CAM_FRONT=raw_cam",
                                           "--lidar", "LIDAR_TOP=velodyne"],
                                          [f"{robot_bag}: CAM_FRONT: intrinsics must be"]),
        "bag: missing": (["--bag", tmp_path / "no_such_bag"], ["no_such_bag: the bag does not exist"]),
        "bag: not a bag": (["--bag", rover], ["not a readable bag"]),
        "urdf: missing link": (["--urdf", rover, "--camera", "CAM_FRONT=rear_cam_optical",
                                "--lidar", "LIDAR_TOP=velodyne"], ["frame 'rear_cam_optical' does not exist"]),
        "urdf: not connected": (["--urdf", rover, "--camera", "CAM_FRONT=loose_cam", "--lidar", "LIDAR_TOP=velodyne"],
                                ["frame 'loose_cam' is not connected to base frame 'base_link'"]),
        "urdf: missing file": (["--urdf", tmp_path / "nope.urdf"], ["nope.urdf: cannot read the URDF"]),
        "urdf: camera_info bag lacks a camera": (
            ["--urdf", rover, "--camera", "CAM_FRONT=front_cam_link", "--lidar", "LIDAR_TOP=velodyne",
             "--camera-info-bag", robot_bag], ["camera CAM_FRONT has no camera_info", "'front_cam_link'"]),
        "duplicate camera": (["--bag", bag, "--camera", "CAM_FRONT", "--camera", "CAM_FRONT"],
                             ["--camera CAM_FRONT is given twice"]),
    }


CASES = ["bag: missing frame", "bag: missing base", "bag: not connected", "bag: no camera_info",
         "bag: uncalibrated camera_info", "bag: missing",
         "bag: not a bag", "urdf: missing link", "urdf: not connected", "urdf: missing file",
         "urdf: camera_info bag lacks a camera", "duplicate camera"]


@pytest.mark.parametrize("case", CASES)
def test_errors_name_the_problem_and_write_nothing(case, bag, robot_bag, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cases = _error_cases(bag, robot_bag, inputs)
    assert sorted(cases) == sorted(CASES)
    arguments, named = cases[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert _rig(*arguments, "--out", out_dir / "calibration.yaml", "--write-urdf", out_dir / "rig.urdf") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith("fusionocc rig: "), err
    for fragment in named:
        assert fragment in lines[0]
    _only(out_dir)


def test_existing_output_is_kept_without_overwrite(bag, truth, tmp_path, capsys):
    out = tmp_path / "calibration.yaml"
    out.write_text("mine\n")
    assert _rig("--bag", bag, "--out", out) == 2
    assert "exists already" in capsys.readouterr().err
    assert out.read_text() == "mine\n"
    # Neither output is written when one of them exists.
    assert _rig("--bag", bag, "--out", tmp_path / "new.yaml", "--write-urdf", out) == 2
    _only(tmp_path, "calibration.yaml")
    assert _rig("--bag", bag, "--out", out, "--overwrite") == 0
    assert_same_rig(truth, load_calibration(out))
    _only(tmp_path, "calibration.yaml")


def test_a_failed_write_leaves_nothing(bag, tmp_path, monkeypatch, capsys):
    def half_then_fail(calibration, path, *, overwrite=False):
        Path(path).write_text("version: 1\nsens")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rig, "save_calibration", half_then_fail)
    assert _rig("--bag", bag, "--out", tmp_path / "calibration.yaml") == 2
    assert "No space left on device" in capsys.readouterr().err
    _only(tmp_path)


def test_rig_is_a_listed_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "rig" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rig", "--out", "x.yaml"])  # a source is required
    assert exit_info.value.code == 2
