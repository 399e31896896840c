"""The README's "Run it on your robot" commands, as written, on the synthetic rig.

The robot: the synthetic world's rig written out as a URDF (`fusionocc rig --calibration ... --write-urdf`), its
sensors published under robot-style names (`/cam_front/image/compressed`, `/lidar/points`, ...) by a player in
this process (a bag replayed with remaps, as a driver would publish). The README block runs in a shell: the rig
command to completion, the node command in the background until this test stops it with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from fusionocc_core.occ3d import CAMERA_NAMES
from fusionocc_ros import bag_layout
from fusionocc_ros.bag_converter import ConvertOptions, convert_scene, load_nuscenes
from fusionocc_ros.demo import SHIPPED_CHECKPOINT
from fusionocc_ros.node_process import COUNTERS_PREFIX, READY_MARK

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- robot-test -->"


def robot_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\s*\n```bash\n(.*?)\n```", text, flags=re.DOTALL)
    assert match, "README has no robot-test block"
    commands, pending = [], ""
    for line in match.group(1).splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        if (pending + line).strip():
            commands.append((pending + line).strip())
        pending = ""
    return commands


def test_readme_block_has_the_rig_and_node_commands():
    commands = robot_block()
    assert [c.split()[:2] for c in commands] == [["fusionocc", "rig"], ["fusionocc", "node"]]


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="needs the shipped tiny checkpoint")
def test_robot_journey_runs_as_written(synth_dataroot, tmp_path):
    from rclpy.context import Context

    from fusionocc_ros.replay import replay_bag

    nusc = load_nuscenes(synth_dataroot)
    scene = nusc.scene[0]["name"]
    bag = tmp_path / "recording" / scene
    convert_scene(nusc, scene, bag, options=ConvertOptions(keyframes_only=True, progress=False))
    # the robot's URDF: the synthetic rig written out by fusionocc rig
    subprocess.run([sys.executable, "-m", "fusionocc_ros.cli", "rig", "--calibration", str(bag / "calibration.yaml"),
                    "--write-urdf", str(tmp_path / "my_robot.urdf")], check=True, capture_output=True, timeout=120)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "fusion_occ.pth").symlink_to(SHIPPED_CHECKPOINT)

    domain_id = 1 + (os.getpid() + 171) % 200
    env = {k: v for k, v in os.environ.items() if "PROFILES_FILE" not in k}
    env.update(ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    rig_command, node_command = robot_block()
    rig = subprocess.run(["bash", "-c", rig_command], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert rig.returncode == 0, rig.stderr
    node = subprocess.Popen(["bash", "-c", f"exec {node_command}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert node.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = node.stdout.readline()
            lines.append(line)
            if READY_MARK in line or not line:
                break
        assert any(READY_MARK in line for line in lines), "".join(lines[-20:])
        ready = next(line for line in lines if READY_MARK in line)
        assert "/cam_front/image/compressed" in ready and "/lidar/points" in ready, ready

        # the driver: the recording published under the robot's topic names
        remaps = [f"{bag_layout.LIDAR_TOPIC}:=/lidar/points"]
        for camera in CAMERA_NAMES:
            remaps += [f"{bag_layout.image_topic(camera)}:=/{camera.lower()}/image/compressed",
                       f"{bag_layout.camera_info_topic(camera)}:=/{camera.lower()}/camera_info"]
        context = Context()
        rclpy.init(context=context, domain_id=domain_id)
        driver = rclpy.create_node("robot_driver", context=context,
                                   cli_args=["--ros-args", *[a for r in remaps for a in ("-r", r)]])
        try:
            report = replay_bag(bag, rate=0.1, node=driver, wait_for_subscribers=15.0)
        finally:
            driver.destroy_node()
            context.try_shutdown()
        assert report.published[bag_layout.LIDAR_TOPIC] == 4
        time.sleep(5.0)  # the last frame's inference
    finally:
        node.send_signal(signal.SIGINT)
        out, _ = node.communicate(timeout=60)
    lines.append(out)
    counters_line = next(line for line in "".join(lines).splitlines() if line.startswith(COUNTERS_PREFIX))
    counters = json.loads(counters_line[len(COUNTERS_PREFIX):])
    assert counters["in:pointcloud"] == 4 and all(counters[f"in:{c}"] == 4 for c in CAMERA_NAMES), counters
    assert counters.get("published", 0) >= 3, counters
    # The rig file has no intrinsics (URDF): an image that overtakes its camera's first camera_info is rejected
    # as no_camera_info (at most the first frame); nothing else may be rejected or lost.
    early = {k: v for k, v in counters.items() if k.endswith(":no_camera_info")}
    assert all(v == 1 for v in early.values()), counters
    assert not [k for k in counters if k.startswith(("lost:", "rejected:")) and k not in early], counters
