"""Node-level fuzz: malformed CameraInfo / Odometry / Image / PointCloud2 messages (real rclpy
message objects) into a real OccupancyNode's subscription callbacks; nothing escapes, every bad one is counted
under `rejected:<topic>:<reason>`, good ones are stored; then good frames over DDS still give outputs equal to
the Predictor's direct prediction."""

from __future__ import annotations

import array
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("rclpy")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nav_msgs.msg import Odometry
from node_harness import NodeHarness
from reference import cloud_problems, image_problems, reference_cloud
from rig import (
    RIG_IMAGE_SIZE,
    RIG_INTRINSICS,
    direct_sensor_frame,
    rig_frames,
    stamp_ns_of,
    write_rig_calibration,
)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from strategies import cloud_messages, image_messages
from stub_model import stub_model

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_core.predictor import Predictor
from fusionocc_ros.conversions import image_to_dense_grid

EXAMPLES = int(os.environ.get("FUSIONOCC_FUZZ_EXAMPLES", "0")) or 1000
DOMAIN = 100 + os.getpid() % 100
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
FLOATS = st.one_of(st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e308]))


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    path = tmp_path_factory.mktemp("rig") / "calibration.yaml"
    return path, write_rig_calibration(path)


@pytest.fixture(scope="module")
def unspun(rig):
    harness = NodeHarness(stub_model(), rig[0], domain_id=DOMAIN, spin=False)
    yield harness
    harness.close()


def _rejections(node, topic):
    return sum(v for k, v in node.counters.items() if k.startswith(f"rejected:{topic}:"))


def _report(name, cases, rejected):
    print(f"\n{name:<22} {cases} cases, {rejected} rejected and counted, {cases - rejected} accepted")


def test_camera_info_fuzz(unspun):
    node, seen = unspun.node, {"cases": 0}
    name = CAMERA_NAMES[0]

    @FUZZ
    @given(st.lists(FLOATS, min_size=9, max_size=9), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
           st.booleans())
    def run(k, width, height, pinhole):
        seen["cases"] += 1
        if pinhole:  # half the cases carry a pinhole-shaped K, so acceptance is exercised too
            k = [*k[:3], 0.0, *k[4:6], 0.0, 0.0, 1.0]
        before = _rejections(node, f"{name}/camera_info")
        msg = CameraInfo(width=width, height=height)
        msg.k = k
        node._on_camera_info(name, msg)
        K = np.array(k).reshape(3, 3)
        valid = (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0 and K[1, 0] == 0
                 and K[2].tolist() == [0.0, 0.0, 1.0]
                 and (width == 0 or height == 0 or (0 <= K[0, 2] <= width and 0 <= K[1, 2] <= height)))
        assert (_rejections(node, f"{name}/camera_info") > before) == (not valid)
        if valid:
            np.testing.assert_array_equal(node._camera_models[name].intrinsics, K)

    run()
    _report("CameraInfo", seen["cases"], _rejections(node, f"{name}/camera_info"))
    node._camera_models[name] = SimpleNamespace(intrinsics=RIG_INTRINSICS, width=RIG_IMAGE_SIZE[0],
                                                height=RIG_IMAGE_SIZE[1])


@pytest.mark.parametrize("k", [
    [80.0, 0.0, 80.0, 0.0, 80.0, 45.0, 0.0, 0.0, 0.0],  # last row zero: projection divides by zero
    [80.0, 0.0, 80.0, 0.0, 80.0, 45.0, 0.0, 0.0, 2.0],  # scaled last row
    [80.0, 0.0, 80.0, 5.0, 80.0, 45.0, 0.0, 0.0, 1.0],  # K[1][0] set
    [80.0, 0.0, 1e9, 0.0, 80.0, 45.0, 0.0, 0.0, 1.0],  # principal point far outside the 160 x 90 image
    [80.0, 0.0, -3.0, 0.0, 80.0, 45.0, 0.0, 0.0, 1.0],  # negative principal point
], ids=["zero_last_row", "scaled_last_row", "lower_triangle", "huge_cx", "negative_cx"])
def test_camera_info_with_a_broken_matrix_is_rejected(unspun, k):
    node = unspun.node
    msg = CameraInfo(width=160, height=90)
    msg.k = k
    before = _rejections(node, f"{CAMERA_NAMES[1]}/camera_info")
    node._on_camera_info(CAMERA_NAMES[1], msg)
    assert _rejections(node, f"{CAMERA_NAMES[1]}/camera_info") > before


def test_odometry_fuzz(unspun):
    node, seen = unspun.node, {"cases": 0}

    @FUZZ
    @given(st.lists(FLOATS, min_size=7, max_size=7), st.sampled_from(["base_link", "", "odom", "base"]),
           st.integers(0, 2**31 - 1), st.integers(0, 999_999_999), st.booleans())
    def run(values, child, sec, nanosec, unit):
        seen["cases"] += 1
        if unit:  # half the cases carry a unit quaternion, so acceptance is exercised too
            values = [*values[:3], 0.6, 0.0, 0.0, 0.8]
        before = _rejections(node, "odometry")
        msg = Odometry(child_frame_id=child)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec  # any order: future, backwards
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        p.x, p.y, p.z, q.w, q.x, q.y, q.z = values
        node._on_odometry(msg)
        norm = float(np.linalg.norm(values[3:])) if np.isfinite(values[3:]).all() else math.nan
        valid = child in ("base_link", "") and np.isfinite(values[:3]).all() and abs(norm - 1) <= 1e-2
        assert (_rejections(node, "odometry") > before) == (not valid)

    run()
    _report("Odometry", seen["cases"], _rejections(node, "odometry"))


def test_raw_image_fuzz(unspun):
    node, seen = unspun.node, {"cases": 0, "sync": 0}
    name = CAMERA_NAMES[2]
    node._on_camera_info(name, unspun.camera_info_msg(name))

    @FUZZ
    @given(image_messages(), st.sampled_from([name, name, name, "camera", ""]))
    def run(case, frame_id):
        ns, _ = case
        seen["cases"] += 1
        before = _rejections(node, name)
        msg = Image(height=ns.height, width=ns.width, encoding=ns.encoding, is_bigendian=ns.is_bigendian,
                    step=ns.step)
        msg.data = array.array("B", ns.data)
        msg.header.frame_id = frame_id
        node._on_image(name, msg)
        valid = frame_id == name and not image_problems(ns) and (ns.width, ns.height) == RIG_IMAGE_SIZE
        assert (_rejections(node, name) > before) == (not valid)

    run()
    _report("Image (raw)", seen["cases"], _rejections(node, name))


def test_pointcloud_fuzz(unspun):
    node, seen = unspun.node, {"cases": 0}

    @FUZZ
    @given(cloud_messages(), st.sampled_from([LIDAR_NAME, LIDAR_NAME, "velodyne"]))
    def run(case, frame_id):
        ns, _ = case
        seen["cases"] += 1
        if any(f.count > 2**32 - 1 or f.datatype > 255 for f in ns.fields):
            return
        before = _rejections(node, "pointcloud")
        msg = PointCloud2(height=ns.height, width=ns.width, is_bigendian=bool(ns.is_bigendian),
                          point_step=ns.point_step, row_step=ns.row_step, is_dense=False)
        msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                      for f in ns.fields]
        msg.data = array.array("B", ns.data)
        msg.header.frame_id = frame_id
        node._on_pointcloud(msg)
        valid = frame_id == LIDAR_NAME and not cloud_problems(ns)
        if valid:
            valid = reference_cloud(ns)[0].shape[0] >= 10  # min_lidar_points
        assert (_rejections(node, "pointcloud") > before) == (not valid)

    run()
    _report("PointCloud2", seen["cases"], _rejections(node, "pointcloud"))
    assert node.counters.get("inference_failures", 0) == 0


def test_good_frames_interleaved_with_bad_messages_over_dds_equal_direct_prediction(rig):
    """Bad messages of every input type between good frames; outputs equal the Predictor's, all counted."""
    path, calibration = rig
    model = stub_model()
    frames = rig_frames(4, seed=3)
    harness = NodeHarness(model, path, domain_id=DOMAIN + 1)
    try:
        for frame in frames:
            bad_cloud = harness.cloud_msg(frame)
            bad_cloud.fields = [f for f in bad_cloud.fields if f.name != "intensity"]
            harness.send_and_count(PointCloud2, "input/pointcloud", bad_cloud, "in:pointcloud")
            bad_odom = harness.odometry_msg(frame)
            bad_odom.pose.pose.orientation.w = math.nan
            harness.send_and_count(Odometry, "input/odometry", bad_odom, "in:odometry")
            bad_info = harness.camera_info_msg(CAMERA_NAMES[3])
            bad_info.k = [0.0] * 9
            harness.send_and_count(CameraInfo, f"input/{CAMERA_NAMES[3]}/camera_info", bad_info,
                                   f"in:{CAMERA_NAMES[3]}/camera_info")
            _, topic, bad_image = harness.image_msg(frame, 1)
            bad_image.encoding = "yuv422"
            harness.send_and_count(Image, topic, bad_image, f"in:{CAMERA_NAMES[1]}")
            harness.send_frame(frame)
            harness.wait_output(frame.stamp_ns)
        harness.node.wait_idle(10.0)  # "published" is counted just after the outputs go out
        counters = harness.node.counters
    finally:
        harness.close()
    n = len(frames)
    assert counters["rejected:pointcloud:fields"] == n
    assert counters["rejected:odometry:pose"] == n
    assert counters[f"rejected:{CAMERA_NAMES[3]}/camera_info:intrinsics"] == n
    assert counters[f"rejected:{CAMERA_NAMES[1]}:encoding"] == n
    assert counters["published"] == n and counters.get("inference_failures", 0) == 0
    direct = Predictor(model, device="cpu")
    outputs = {stamp_ns_of(m): m for _, m in harness.outputs("dense")}
    for frame in frames:
        expected = direct.predict(direct_sensor_frame(frame, calibration)).labels
        np.testing.assert_array_equal(image_to_dense_grid(outputs[frame.stamp_ns]), expected)
