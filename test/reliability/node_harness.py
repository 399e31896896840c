"""NodeHarness: a real `OccupancyNode` in a private rclpy context, with a driver node that publishes its inputs
and records its outputs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rig import (
    RigFrame,
    rig_camera_info_msg,
    rig_cloud_msg,
    rig_image_msg,
    rig_odometry_msg,
    stamp_ns_of,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from fusionocc_core.occ3d import CAMERA_NAMES
from fusionocc_core.predictor import Predictor
from fusionocc_ros.node_params import PRIVATE_TOPICS
from fusionocc_ros.occupancy_node import OccupancyNode

InputMessage: TypeAlias = CameraInfo | Odometry | PointCloud2 | Image | CompressedImage
# A recorded output: the message, or only its stamp [ns] for the dense grid of a run with keep_messages=False.
Output: TypeAlias = Image | DiagnosticArray | int


class NodeHarness:
    """An `OccupancyNode` in a private rclpy context plus a driver node that publishes its inputs and records
    its outputs with their arrival time (`time.monotonic()`).

    Args:
        model: the model the node's Predictor wraps.
        calibration_file: the rig calibration.
        domain_id: ROS domain of the private context (unique per test process).
        spin: False leaves the node unspun (callbacks called directly by the caller).
        keep_messages: False keeps the dense-grid outputs as (arrival, stamp_ns) only (long runs).
        **overrides: node parameters.
    """

    NAMESPACE = "reliability"

    def __init__(self, model: torch.nn.Module, calibration_file: str | Path, *, domain_id: int, spin: bool = True,
                 keep_messages: bool = True, **overrides: object) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        params = {"calibration_file": str(calibration_file), "jpeg_draft": False, "image_transport": "raw",
                  "min_lidar_points": 10, "diagnostics_period_s": 0.2, **PRIVATE_TOPICS, **overrides}
        self.transport = str(params["image_transport"])
        self.node = OccupancyNode(
            predictor=Predictor(model, device="cpu"), context=self.context, namespace=self.NAMESPACE,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.driver = rclpy.create_node("reliability_driver", context=self.context)
        self.received: dict[str, list[tuple[float, Output]]] = {}
        self.lock = threading.Lock()
        self.publishers: dict[str, Publisher] = {}
        self.base = f"/{self.NAMESPACE}/occupancy_node"
        self._thread: threading.Thread | None = None
        self.executor: SingleThreadedExecutor | None = None
        self.keep_messages = keep_messages
        if spin:
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            self.driver.create_subscription(Image, f"{self.base}/output/dense_grid",
                                            lambda m: self._record("dense", m), qos)
            self.driver.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self._record("diagnostics", m),
                                            qos)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.node)
            self.executor.add_node(self.driver)
            self._thread = threading.Thread(target=self.executor.spin, daemon=True)
            self._thread.start()

    def _record(self, key: str, msg: Image | DiagnosticArray) -> None:
        item: Output = msg if self.keep_messages or key == "diagnostics" else stamp_ns_of(msg)
        with self.lock:
            entries = self.received.setdefault(key, [])
            entries.append((time.monotonic(), item))
            if key == "diagnostics" and len(entries) > 50:
                del entries[:-50]

    def outputs(self, key: str) -> list[tuple[float, Output]]:
        """(arrival time, output) of the outputs recorded so far: key "dense" or "diagnostics"."""
        with self.lock:
            return list(self.received.get(key, []))

    def publish(self, msg_type: type[InputMessage], topic: str, msg: InputMessage) -> None:
        """Publishes on the node's input `topic` (relative to the node, e.g. "input/pointcloud")."""
        if topic not in self.publishers:
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            publisher = self.driver.create_publisher(msg_type, f"{self.base}/{topic}", qos)
            deadline = time.monotonic() + 10.0
            while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.publishers[topic] = publisher
        self.publishers[topic].publish(msg)

    def send_and_count(self, msg_type: type[InputMessage], topic: str, msg: InputMessage, counter: str,
                       timeout_s: float = 10.0) -> None:
        """Publishes and waits until the node's `counter` ("in:<topic>") has grown (republishing a message
        lost by the best-effort subscription); loopback delivery is then deterministic."""
        before = self.node.counters.get(counter, 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.publish(msg_type, topic, msg)
            resend = time.monotonic() + 1.0
            while time.monotonic() < min(resend, deadline):
                if self.node.counters.get(counter, 0) > before:
                    return
                time.sleep(0.002)
        raise AssertionError(f"{counter} did not grow within {timeout_s} s; counters {self.node.counters}")

    # -------------------------------------------------------------------------------------- messages

    def camera_info_msg(self, name: str) -> CameraInfo:
        return rig_camera_info_msg(name)

    def odometry_msg(self, frame: RigFrame) -> Odometry:
        return rig_odometry_msg(frame)

    def cloud_msg(self, frame: RigFrame) -> PointCloud2:
        return rig_cloud_msg(frame)

    def image_msg(self, frame: RigFrame,
                  index: int) -> tuple[type[Image] | type[CompressedImage], str, Image | CompressedImage]:
        return rig_image_msg(frame, index, self.transport)

    def _send(self, msg_type: type[InputMessage], topic: str, msg: InputMessage, counter: str, wait: bool) -> None:
        if wait:
            self.send_and_count(msg_type, topic, msg, counter)
        else:
            self.publish(msg_type, topic, msg)

    def send_frame(self, frame: RigFrame, *, cameras: Iterable[int] | None = None, lidar: bool = True,
                   wait: bool = True) -> None:
        """Publishes camera infos, odometry, the sweep and the images (`cameras`: indices sent, all by
        default); with `wait`, each message is confirmed received before the next."""
        for name in CAMERA_NAMES:
            if name not in self.node._camera_models:
                self._send(CameraInfo, f"input/{name}/camera_info", self.camera_info_msg(name),
                           f"in:{name}/camera_info", wait)
        self._send(Odometry, "input/odometry", self.odometry_msg(frame), "in:odometry", wait)
        if lidar:
            self._send(PointCloud2, "input/pointcloud", self.cloud_msg(frame), "in:pointcloud", wait)
        for index in range(6) if cameras is None else cameras:
            msg_type, topic, msg = self.image_msg(frame, index)
            self._send(msg_type, topic, msg, f"in:{CAMERA_NAMES[index]}", wait)

    def wait_output(self, stamp_ns: int, timeout_s: float = 30.0) -> tuple[float, Output]:
        """The dense-grid output stamped `stamp_ns` (arrival time, message or stamp)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrival, msg in self.outputs("dense"):
                if (msg if isinstance(msg, int) else stamp_ns_of(msg)) == stamp_ns:
                    return arrival, msg
            time.sleep(0.005)
        raise AssertionError(f"no output for stamp {stamp_ns} within {timeout_s} s; counters {self.node.counters}")

    def latest_diagnostics(self, after: float = 0.0, timeout_s: float = 5.0) -> dict[str, str]:
        """Key/values of the first /diagnostics message that arrives after monotonic time `after`, plus the
        status's `__level__` (0 OK, 1 WARN, 2 ERROR) and `__message__`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrival, msg in self.outputs("diagnostics"):
                if arrival > after and isinstance(msg, DiagnosticArray):
                    values = {kv.key: kv.value for status in msg.status for kv in status.values}
                    level = msg.status[0].level
                    values["__level__"] = str(int.from_bytes(level, "little") if isinstance(level, bytes) else level)
                    values["__message__"] = msg.status[0].message
                    return values
            time.sleep(0.01)
        raise AssertionError("no /diagnostics message")

    def close(self) -> None:
        """Shuts down in the order a Ctrl-C does: executor, node (joins the worker), context."""
        if self.executor is not None:
            self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()
        self.context.try_shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
