"""rclpy from the PyPI wheels works here: one node publishes and receives a full-size camera image and a
nuScenes-size lidar sweep over loopback, in process, and the content arrives unchanged.

Each test session uses its own ROS domain (derived from the pid) and a private rclpy Context, so parallel test
runs on the same machine do not see each other's topics.
"""
from __future__ import annotations

import array
import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2, PointField


def _domain_id() -> int:
    return 1 + os.getpid() % 200


@pytest.fixture
def node():
    context = Context()
    rclpy.init(context=context, domain_id=_domain_id())
    node = rclpy.create_node("loopback_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.test_executor = executor
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def _exchange(node, msg_type, topic: str, msg, *, timeout_s: float = 10.0):
    """Publishes `msg` until it is received on the same node (the first may be lost to discovery)."""
    received = []
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    sub = node.create_subscription(msg_type, topic, received.append, qos)
    pub = node.create_publisher(msg_type, topic, qos)
    deadline = time.monotonic() + timeout_s
    next_publish = 0.0
    while not received and time.monotonic() < deadline:
        if time.monotonic() >= next_publish:
            pub.publish(msg)
            next_publish = time.monotonic() + 0.2
        node.test_executor.spin_once(timeout_sec=0.05)
    node.destroy_subscription(sub)
    node.destroy_publisher(pub)
    assert received, f"no {msg_type.__name__} received on {topic} within {timeout_s} s"
    return received[0]


def test_full_size_rgb8_image_round_trips(node):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(900, 1600, 3), dtype=np.uint8)
    msg = Image()
    msg.header.frame_id = "CAM_FRONT"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1532402927, 612460000
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = 900, 1600, "rgb8", 0, 1600 * 3
    msg.data = array.array("B", pixels.tobytes())  # array.array skips the per-element check of the setter

    got = _exchange(node, Image, "loopback/image", msg)

    assert (got.height, got.width, got.encoding, got.step) == (900, 1600, "rgb8", 4800)
    assert got.header.frame_id == "CAM_FRONT"
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1532402927, 612460000)
    received = np.frombuffer(got.data, dtype=np.uint8).reshape(900, 1600, 3)
    np.testing.assert_array_equal(received, pixels)


def test_nuscenes_size_pointcloud2_round_trips(node):
    rng = np.random.default_rng(1)
    n = 34_720
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "ring"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"], "offsets": [0, 4, 8, 12, 16],
                      "itemsize": 20})
    points = np.zeros(n, dtype=dtype)
    for name in ("x", "y", "z"):
        points[name] = rng.uniform(-50, 50, n)
    points["intensity"] = rng.uniform(0, 255, n)
    points["ring"] = rng.integers(0, 32, n)
    msg = PointCloud2()
    msg.header.frame_id = "LIDAR_TOP"
    msg.height, msg.width, msg.point_step, msg.row_step = 1, n, 20, 20 * n
    msg.fields = [PointField(name=name, offset=off, datatype=dt, count=1) for name, off, dt in
                  (("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32), ("z", 8, PointField.FLOAT32),
                   ("intensity", 12, PointField.FLOAT32), ("ring", 16, PointField.UINT16))]
    msg.is_bigendian, msg.is_dense = False, True
    msg.data = array.array("B", points.tobytes())

    got = _exchange(node, PointCloud2, "loopback/points", msg)

    assert (got.width, got.height, got.point_step, got.row_step) == (n, 1, 20, 20 * n)
    assert [(f.name, f.offset, f.datatype, f.count) for f in got.fields] == \
        [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    received = np.frombuffer(got.data, dtype=dtype)
    np.testing.assert_array_equal(received, points)
