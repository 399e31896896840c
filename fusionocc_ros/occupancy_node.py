"""The ROS 2 occupancy node: six cameras + one lidar + odometry in, FusionOcc 3D semantic occupancy out.

Inner workings: subscription callbacks only check messages (encoding, sizes, fields, frame ids; a bad
message is rejected with a log line and a counter, never an exception) and hand them to a
`LidarAnchoredSync`. The newest complete group goes to a single-slot mailbox read by one worker thread (an
older group still waiting there is dropped and counted, so nothing queues up when inference is slower than
the sensors). The worker decodes the images, looks up the ego pose from odometry, runs the `Predictor`
(temporal history inside) and publishes every output stamped with the lidar sweep's stamp in the ego frame.

Topics: inputs from the `topics.*` patterns (defaults: the names of `fusionocc convert`'s bags,
`/<camera>/image_rect[/compressed]`, `/<camera>/camera_info`, `/LIDAR_TOP`, `/odom`); outputs
`~/output/occupied_voxels`, `~/output/markers`, `~/output/dense_grid`, `~/output/occupancy_grid`,
`~/debug/processing_time_ms`, `~/debug/<stage>_ms`, and `/diagnostics` (`fusionocc_ros.node_status`).
Parameters and the `fusionocc node` arguments: `fusionocc_ros.node_params`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid, Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import QoSMessageLostInfo, QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64, Header
from visualization_msgs.msg import MarkerArray

from fusionocc_core.cpu_threads import (
    configure_cpu_inference,
    prepare_openmp_environment,
)
from fusionocc_core.errors import FusionOccError

# libgomp reads OMP_WAIT_POLICY once, when torch loads (the predictor import below): passive waits keep a
# frame near its fair share when other processes compete for the cores (fusionocc_core/cpu_threads.py).
prepare_openmp_environment()
from fusionocc_core.predictor import Predictor, SensorFrame  # noqa: E402
from fusionocc_ros import conversions, marker_cdr, node_status  # noqa: E402
from fusionocc_ros.calibration import Calibration, CalibrationError, load_calibration  # noqa: E402
from fusionocc_ros.conversions import CameraModel, ConversionError  # noqa: E402
from fusionocc_ros.node_params import (  # noqa: E402
    PARAMETERS,
    SPECS,
    ParameterError,
    camera_topic,
    check_changes,
    descriptor,
    params_file_problem,
    params_files,
    ros_arguments,
    unknown_names,
    validate,
)
from fusionocc_ros.node_params import add_arguments as add_arguments  # noqa: E402  (cli.py's subcommand API)
from fusionocc_ros.odometry import OdometryBuffer  # noqa: E402
from fusionocc_ros.sync import LidarAnchoredSync, SyncGroup  # noqa: E402
from fusionocc_ros.transport import apply_transport_profile  # noqa: E402

DEBUG_STAGES = ("decode", "images", "history", "depth", "inference", "publish")
_NS = 1_000_000_000


class NodeSetupError(FusionOccError, RuntimeError):
    """The node cannot start (bad parameters, calibration or model); the message says what to fix."""


@dataclass(frozen=True)
class _Sweep:
    """A checked, decoded lidar sweep waiting for its images."""

    stamp: Time  # of the lidar header: every output carries it
    points: np.ndarray  # (N, 5) lidar frame


def _stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


class OccupancyNode(Node):
    """The occupancy node (see the module docstring).

    Args:
        predictor: an already built Predictor (tests, embedding); built from the parameters when None.
        node_name: ROS node name.
        **node_options: passed to rclpy's Node (context, parameter_overrides, cli_args, namespace, ...).

    Raises:
        NodeSetupError: invalid parameters, an unreadable calibration or a model that cannot be loaded.
    """

    def __init__(
        self, *, predictor: Predictor | None = None, node_name: str = "occupancy_node", **node_options: Any
    ) -> None:
        super().__init__(node_name, **node_options)
        self._counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._mailbox: SyncGroup | None = None
        self._busy = False  # the worker is processing a group it took from the mailbox
        self._mailbox_cv = threading.Condition()
        self._stopping = False
        self._worker: threading.Thread | None = None
        try:
            self._params = self._declare_parameters()
            self._calibration = self._load_calibration()
            self._cameras = tuple(self._params["camera_names"])
            self._predictor = predictor if predictor is not None else self._build_predictor()
            if predictor is None:
                self._warm_up()
            # also for a given predictor: the visibility is an output option, not part of the model
            self._predictor.observe_bev = self._params["occupancy_grid.unknown_unobserved"]
        except NodeSetupError:
            super().destroy_node()
            raise
        # Run-time changes: one callback accepts or refuses, another applies what ROS then stored, so a change
        # refused by any on-set callback (or by the descriptors) never reaches self._params.
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._input_size = self._predictor.input_size
        self._camera_models: dict[str, CameraModel] = {}
        for name in self._cameras:
            entry = self._calibration[name]
            if entry.intrinsics is not None:
                width, height = entry.image_size or (0, 0)
                self._camera_models[name] = CameraModel(entry.intrinsics, width, height)
        p = self._params
        # degraded groups and undecodable images share one limit; at least one camera always remains
        self._max_missing_cameras = min(p["sync.max_missing_cameras"], len(self._cameras) - 1)
        self._sync = LidarAnchoredSync(
            self._cameras, window_min_s=p["sync.window_min_s"], window_max_s=p["sync.window_max_s"],
            camera_queue_size=p["sync.camera_queue_size"], lidar_queue_size=p["sync.lidar_queue_size"],
            arrival_slack_s=p["sync.arrival_slack_s"], reset_jump_s=p["sync.reset_jump_s"],
            max_missing_cameras=self._max_missing_cameras,
        )
        self._odometry = OdometryBuffer(
            capacity=p["odom.queue_size"], max_offset_ns=round(p["odom.max_offset_s"] * _NS),
            reset_jump_ns=round(p["sync.reset_jump_s"] * _NS),
        )
        self._marker_cdr = self._marker_cdr_available()
        self._create_interfaces()
        self._last_output_monotonic: float | None = None
        self._last_processing_ms = float("nan")
        self._last_missing: tuple[str, ...] = ()  # cameras missing from the last published frame
        self._last_image_monotonic: float | None = None  # arrival of the newest image / sweep (dropout policy)
        self._last_sweep_monotonic: float | None = None
        self._started_monotonic = time.monotonic()
        self._reported_failures = 0
        self._worker = threading.Thread(target=self._work, name="fusionocc-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: {len(self._cameras)} cameras ({p['image_transport']}), model input {self._input_size}, "
            f"device {self._predictor.device}, precision {self._predictor.precision}, "
            f"outputs in {p['ego_frame']}; inputs ({p['qos_reliability']}, depth {p['qos_depth']}): "
            + ", ".join(sorted(set(self.input_topics.values())))
        )

    # ---------------------------------------------------------------------------------------------- setup

    def _declare_parameters(self) -> dict[str, Any]:
        values = {}
        for spec in PARAMETERS:
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor(spec)).value
            except Exception as error:  # rclpy raises several types for out-of-range / wrong-type values
                raise NodeSetupError(f"parameter {spec.name}: {error}") from None
        try:
            params = validate(values)
        except ParameterError as error:
            raise NodeSetupError(str(error)) from None
        unknown = unknown_names(self._parameter_overrides)
        if unknown:  # a misspelled key in a params file would otherwise be ignored without a word
            self._count("unknown_parameters", len(unknown))
            self.get_logger().warning(
                "ignoring unknown parameter(s) " + ", ".join(unknown) + " (not declared by the node; see "
                "config/fusionocc.param.yaml for the names)"
            )
        return params

    def _check_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        """On-set callback: accepts or refuses a change and nothing else, since an on-set callback after this
        one may still refuse it (rclpy has already checked types, ranges and read-only flags)."""
        reason = check_changes((parameter.name, parameter.value) for parameter in parameters)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _apply_parameters(self, parameters: list[Parameter[Any]]) -> None:
        """Post-set callback: values ROS has accepted and stored take effect (each is read where it is used)."""
        for parameter in parameters:
            if parameter.name in SPECS:
                self._params[parameter.name] = parameter.value

    def _marker_cdr_available(self) -> bool:
        try:
            return marker_cdr.cdr_layout_matches()
        except Exception as error:  # an unexpected message layout: fall back to message objects
            self.get_logger().info(f"MarkerArray CDR fast path unavailable ({error}); using message objects")
            return False

    def _load_calibration(self) -> Calibration:
        try:
            calibration = load_calibration(self._params["calibration_file"])
            calibration.require([*self._params["camera_names"], self._params["lidar_name"]])
        except CalibrationError as error:
            raise NodeSetupError(str(error)) from None
        if calibration.ego_frame != self._params["ego_frame"]:
            self.get_logger().warning(
                f"calibration is relative to {calibration.ego_frame!r} but ego_frame is "
                f"{self._params['ego_frame']!r}; outputs are labelled {self._params['ego_frame']!r}"
            )
        return calibration

    def _build_predictor(self) -> Predictor:
        p = self._params
        options = {
            "device": p["device"], "precision": p["precision"], "camera_names": tuple(p["camera_names"]),
            "temporal": p["temporal.enabled"], "keyframe_interval_s": p["temporal.keyframe_interval_s"],
            "num_lidar_keyframes": p["temporal.num_lidar_keyframes"], "max_gap_s": p["temporal.max_gap_s"],
            "max_pose_jump_m": p["temporal.max_pose_jump_m"],
        }
        try:
            if p["checkpoint"]:
                return Predictor.from_checkpoint(p["checkpoint"], **options)
            self.get_logger().warning(
                f"no checkpoint given: preset {p['preset']!r} with RANDOM weights (seed {p['seed']}); the "
                "occupancy is meaningless, set `checkpoint` for real output"
            )
            return Predictor.from_preset(p["preset"], seed=p["seed"], **options)
        except Exception as error:  # checkpoint, preset, device and import errors all stop the start-up
            raise NodeSetupError(f"cannot build the model: {type(error).__name__}: {error}") from None

    def _warm_up(self) -> None:
        """One inference on made-up inputs before any subscription exists: the first call's one-off costs
        (several normal frames on a CPU) would otherwise make the node drop the first sweeps as worker_busy."""
        try:
            elapsed_ms = self._predictor.warm_up()
        except Exception as error:  # a model that cannot run at all (device, memory) stops the start-up
            raise NodeSetupError(f"the warm-up inference failed: {type(error).__name__}: {error}") from None
        self.get_logger().info(f"model warmed up: first inference {elapsed_ms:.0f} ms")

    def _create_interfaces(self) -> None:
        p = self._params
        reliable = p["qos_reliability"] == "reliable"

        def sensor_qos(depth: int) -> QoSProfile:
            return QoSProfile(depth=depth,
                              reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                              history=qos_profile_sensor_data.history, durability=qos_profile_sensor_data.durability)

        compressed = p["image_transport"] == "compressed"
        self.input_topics: dict[str, str] = {}  # counter key -> resolved topic (start-up log, tools)

        def subscribe(kind: type, topic: str, callback: Callable[..., None], key: str,
                      depth: int = p["qos_depth"]) -> None:
            subscription = self.create_subscription(
                kind, topic, callback, sensor_qos(depth), event_callbacks=self._transport_events(key)
            )
            self.input_topics[key] = subscription.topic_name

        for name in self._cameras:
            image = camera_topic(p["topics.camera_image"], name) + ("/compressed" if compressed else "")
            subscribe(CompressedImage if compressed else Image, image,
                      lambda msg, name=name: self._on_image(name, msg), name)
            subscribe(CameraInfo, camera_topic(p["topics.camera_info"], name),
                      lambda msg, name=name: self._on_camera_info(name, msg), f"{name}/camera_info")
        subscribe(PointCloud2, p["topics.pointcloud"], self._on_pointcloud, "pointcloud")
        subscribe(Odometry, p["topics.odometry"], self._on_odometry, "odometry", p["odom.qos_depth"])

        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self._pub_voxels = self.create_publisher(PointCloud2, "~/output/occupied_voxels", out_qos)
        self._pub_markers = self.create_publisher(MarkerArray, "~/output/markers", out_qos)
        self._pub_dense = self.create_publisher(Image, "~/output/dense_grid", out_qos)
        self._pub_grid = self.create_publisher(OccupancyGrid, "~/output/occupancy_grid", out_qos)
        self._pub_debug = {stage: self.create_publisher(Float64, f"~/debug/{stage}_ms", out_qos)
                           for stage in (*DEBUG_STAGES, "processing_time")}
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)

    def _transport_events(self, key: str) -> SubscriptionEventCallbacks:
        """Counts what the middleware reports lost on an input (`lost:<key>`: best-effort samples that never
        arrived whole) and warns once about a writer whose QoS cannot match (e.g. best effort vs reliable)."""
        seen = {"lost": 0}

        def on_lost(info: QoSMessageLostInfo) -> None:
            new = int(info.total_count) - seen["lost"]
            seen["lost"] = int(info.total_count)
            if new > 0:
                self._count(f"lost:{key}", new)
                self.get_logger().warning(
                    f"transport lost {new} message(s) on {self.input_topics.get(key, key)} "
                    f"({info.total_count} so far)", throttle_duration_sec=5.0)

        def on_incompatible(info: QoSRequestedIncompatibleQoSInfo) -> None:
            self._count(f"incompatible_qos:{key}")
            self.get_logger().error(
                f"a writer on {self.input_topics.get(key, key)} offers QoS this subscription cannot match "
                f"(policy id {info.last_policy_kind}); set qos_reliability to match it (now "
                f"{self._params['qos_reliability']})", throttle_duration_sec=10.0)

        return SubscriptionEventCallbacks(message_lost=on_lost, incompatible_qos=on_incompatible)

    # ------------------------------------------------------------------------------------------ callbacks

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[key] += amount

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        self._count(f"rejected:{topic}:{reason}")
        self.get_logger().warning(f"rejected {topic} message ({reason}): {detail}", throttle_duration_sec=1.0)

    def _frame_ok(self, topic: str, frame_id: str, expected: str) -> bool:
        if self._params["check_frame_ids"] and frame_id != expected:
            self._reject(topic, "frame_id", f"header.frame_id {frame_id!r}, calibration expects {expected!r}")
            return False
        return True

    def _on_camera_info(self, name: str, msg: CameraInfo) -> None:
        self._count(f"in:{name}/camera_info")
        intrinsics = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        problem = conversions.intrinsics_problem(intrinsics, int(msg.width), int(msg.height))
        if problem:
            self._reject(f"{name}/camera_info", "intrinsics", f"{problem}: K = {intrinsics.tolist()}")
            return
        with self._lock:
            self._camera_models[name] = CameraModel(intrinsics, int(msg.width), int(msg.height))

    def _on_image(self, name: str, msg: Image | CompressedImage) -> None:
        self._count(f"in:{name}")
        self._last_image_monotonic = time.monotonic()
        if not self._frame_ok(name, msg.header.frame_id, self._calibration[name].frame_id):
            return
        try:
            if self._params["image_transport"] == "raw":
                conversions.check_image(msg)
                model = self._camera_models.get(name)
                if model is not None:
                    conversions.check_image_size(msg, model.width, model.height)
            else:
                conversions.check_compressed_image(msg)
        except ConversionError as error:
            self._reject(name, error.reason, str(error))
            return
        self._offer(lambda: self._sync.add_camera(name, _stamp_ns(msg.header.stamp), msg))

    def _on_pointcloud(self, msg: PointCloud2) -> None:
        self._count("in:pointcloud")
        self._last_sweep_monotonic = time.monotonic()
        if not self._frame_ok(
            "pointcloud", msg.header.frame_id, self._calibration[self._params["lidar_name"]].frame_id
        ):
            return
        try:
            cloud = conversions.pointcloud2_to_xyzir(msg)
        except ConversionError as error:
            self._reject("pointcloud", error.reason, str(error))
            return
        if cloud.dropped_non_finite:
            self._count("lidar_non_finite_points", cloud.dropped_non_finite)
        if cloud.points.shape[0] < self._params["min_lidar_points"]:
            self._reject("pointcloud", "too_few_points",
                         f"{cloud.points.shape[0]} finite points ({cloud.dropped_non_finite} NaN/Inf dropped), "
                         f"need {self._params['min_lidar_points']}")
            return
        sweep = _Sweep(msg.header.stamp, cloud.points)
        self._offer(lambda: self._sync.add_lidar(_stamp_ns(msg.header.stamp), sweep))

    def _on_odometry(self, msg: Odometry) -> None:
        self._count("in:odometry")
        child = msg.child_frame_id
        if self._params["check_frame_ids"] and child and child != self._params["ego_frame"]:
            self._reject("odometry", "frame_id", f"child_frame_id {child!r}, expected {self._params['ego_frame']!r}")
            return
        try:
            translation, quaternion = conversions.odometry_pose(msg)
        except ConversionError as error:
            self._reject("odometry", error.reason, str(error))
            return
        with self._lock:
            outcome = self._odometry.add(_stamp_ns(msg.header.stamp), translation, quaternion)
        if outcome:
            self._count(f"odometry:{outcome}")

    def _offer(self, add: Callable[[], list[SyncGroup]]) -> None:
        """Runs one synchroniser update and hands the newest complete group to the worker."""
        with self._lock:
            groups = add()
            for key, value in self._sync.counters.items():
                self._counters[f"sync:{key}"] = value
        if not groups:
            return
        if len(groups) > 1:
            self._count("dropped:worker_busy", len(groups) - 1)
        with self._mailbox_cv:
            # a reset in a dropped group (this batch's or the one waiting in the mailbox) still clears the history
            reset = any(g.reset for g in groups)
            if self._mailbox is not None:
                self._count("dropped:worker_busy")
                reset = reset or self._mailbox.reset
            newest = groups[-1]
            if reset and not newest.reset:
                newest = replace(newest, reset=True)
            self._mailbox = newest
            self._mailbox_cv.notify()

    # -------------------------------------------------------------------------------------------- worker

    def _work(self) -> None:
        while True:
            with self._mailbox_cv:
                while self._mailbox is None and not self._stopping:
                    self._mailbox_cv.wait()
                group, self._mailbox = self._mailbox, None
                if self._stopping or group is None:  # the wait ends with a group, or on stopping
                    if group is not None:  # accounted for: every synced group is published or dropped
                        self._count("dropped:shutdown")
                    return
                self._busy = True
            try:
                self._process(group)
            except Exception as error:  # the node never dies on data: count, log, go on
                self._count("inference_failures")
                self.get_logger().error(f"processing the sweep at {group.stamp_ns / _NS:.3f} s failed: "
                                        f"{type(error).__name__}: {error}", throttle_duration_sec=1.0)
            finally:
                with self._mailbox_cv:
                    self._busy = False

    def _decode_images(self, group: SyncGroup) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
        """Images, intrinsics and the indices of missing cameras. A camera the sync found no image for, or
        whose image does not decode (rejected and counted), is missing while at most `sync.max_missing_cameras`
        are; it gets a black placeholder of its size and the intrinsics of its camera_info (or of a present
        camera), and the model zeroes its features. More missing cameras raise ConversionError (no output)."""
        with self._lock:
            models = [self._camera_models.get(name) for name in self._cameras]
        views: list[tuple[np.ndarray, np.ndarray] | None] = []  # (rgb, intrinsics) per camera
        missing: list[int] = []
        for index, (name, msg, model) in enumerate(zip(self._cameras, group.cameras, models, strict=True)):
            view = None
            if msg is not None:
                try:
                    view = self._decode_image(name, msg, model)
                except ConversionError as error:
                    if len(missing) >= self._max_missing_cameras:
                        raise
                    self._reject(name, error.reason, str(error))  # this camera only: degraded, not dropped
            if view is None:
                missing.append(index)
            views.append(view)
        images, intrinsics = conversions.fill_missing_views(views, models)  # never all missing (limit above)
        return images, intrinsics, missing

    def _decode_image(
        self, name: str, msg: Image | CompressedImage, model: CameraModel | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One camera's RGB image and its intrinsics, scaled from the camera_info size to the decoded one."""
        if model is None:
            raise ConversionError(f"{name}: no camera_info received and no intrinsics in the calibration",
                                  reason="no_camera_info")
        try:
            if self._params["image_transport"] == "raw":
                rgb = conversions.image_to_rgb(msg)
            else:
                height, width = self._input_size
                min_size = (width, height) if self._params["jpeg_draft"] else None
                rgb = conversions.compressed_image_to_rgb(msg, min_size=min_size)
            return rgb, conversions.intrinsics_scale(rgb.shape, model.width, model.height) @ model.intrinsics
        except ConversionError as error:
            raise ConversionError(f"{name}: {error}", reason=error.reason) from None

    def _process(self, group: SyncGroup) -> None:
        """Decodes one synchronised group, predicts and publishes (worker thread)."""
        start = time.perf_counter()
        try:
            images, intrinsics, missing = self._decode_images(group)
        except ConversionError as error:
            topic = str(error).split(":", 1)[0]
            self._reject(topic, error.reason, str(error))
            return
        decode_ms = (time.perf_counter() - start) * 1e3
        sweep: _Sweep = group.lidar
        with self._lock:
            pose = self._odometry.pose_at(group.stamp_ns)
            # Each camera is placed with the ego pose at its own image stamp (tens of ms from the lidar's), as
            # in training; the lidar-stamp pose stands in where odometry does not reach an image stamp.
            camera_poses = [None if stamp is None else self._odometry.pose_at(stamp)
                            for stamp in group.camera_stamps_ns]
        if group.reset:
            self._predictor.reset("sync_time_reset")
        if pose is None:
            self._count("no_odometry")
            self.get_logger().warning("no odometry near the sweep stamp: single-frame inference (no temporal "
                                      "fusion)", throttle_duration_sec=5.0)
            self._predictor.reset("no_odometry")
            pose = np.eye(4)
            camera_poses = [None] * len(camera_poses)  # single-frame: every sensor in the identity ego frame
        lidar = self._calibration[self._params["lidar_name"]]
        frame = SensorFrame(
            images=images if len({im.shape for im in images}) > 1 else np.stack(images),
            intrinsics=intrinsics,
            cam_to_ego=np.stack([self._calibration[name].sensor_to_ego for name in self._cameras]),
            lidar_points=sweep.points,
            lidar_to_ego=lidar.sensor_to_ego,
            ego_to_global=pose,
            stamp_s=group.stamp_ns / _NS,
            camera_names=self._cameras,
            camera_present=np.array([i not in missing for i in range(len(self._cameras))]),
            camera_ego_to_global=np.stack([pose if p is None else p for p in camera_poses]),
        )
        result = self._predictor.predict(frame)
        publish_start = time.perf_counter()
        self._publish(result.labels, sweep.stamp, known=result.observed_bev)
        timings = dict(result.timings_ms, decode=decode_ms, publish=(time.perf_counter() - publish_start) * 1e3)
        timings["processing_time"] = (time.perf_counter() - start) * 1e3
        self._publish_timings(timings)
        with self._lock:
            self._counters["published"] += 1
            for reason, count in self._predictor.resets.items():
                self._counters[f"history_resets:{reason}"] = count
            self._last_output_monotonic = time.monotonic()
            self._last_processing_ms = timings["processing_time"]
            self._last_missing = tuple(self._cameras[i] for i in missing)

    # ------------------------------------------------------------------------------------------ publishing

    def _publish(self, labels: np.ndarray, stamp: Time, *, known: np.ndarray | None = None) -> None:
        """All outputs of one frame; `known` (200, 200) marks the observed bird's-eye cells (None: all)."""
        header = Header(frame_id=self._params["ego_frame"])
        header.stamp = stamp
        self._pub_voxels.publish(conversions.occupancy_to_pointcloud2(labels, header=header))
        self._pub_dense.publish(conversions.dense_grid_to_image(labels, header=header))
        self._pub_grid.publish(conversions.occupancy_to_occupancy_grid(labels, header=header, known=known))
        if self._pub_markers.get_subscription_count() > 0:
            self._publish_markers(labels, header)

    def _publish_markers(self, labels: np.ndarray, header: Header) -> None:
        """MarkerArray, serialised straight to CDR with numpy where the installed layout allows it."""
        max_cubes, alpha = int(self._params["markers.max_cubes"]), float(self._params["markers.alpha"])
        if self._marker_cdr:
            indices, values, capped = conversions.marker_voxels(labels, max_cubes=max_cubes)
            self._pub_markers.publish(marker_cdr.marker_array_cdr(
                indices, values, sec=header.stamp.sec, nanosec=header.stamp.nanosec, frame_id=header.frame_id,
                alpha=alpha))
        else:
            markers, stats = conversions.occupancy_to_marker_array(labels, header=header, max_cubes=max_cubes,
                                                                   alpha=alpha)
            capped = stats.capped
            self._pub_markers.publish(markers)
        if capped:
            self._count("markers_capped_cubes", capped)
        self._count("published_markers")

    def _publish_timings(self, timings: dict[str, float]) -> None:
        for stage, publisher in self._pub_debug.items():
            if stage in timings:
                publisher.publish(Float64(data=float(timings[stage])))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            counters = dict(self._counters)
            last_output = self._last_output_monotonic
            processing = self._last_processing_ms
            missing = self._last_missing
        failures = counters.get("inference_failures", 0)
        lidar_age = node_status.lidar_dropout_age(
            now, last_image=self._last_image_monotonic, last_sweep=self._last_sweep_monotonic,
            started=self._started_monotonic, timeout_s=self._params["lidar_timeout_s"],
        )
        level, message = node_status.node_status(
            counters, missing=missing, new_failures=failures - self._reported_failures, lidar_age=lidar_age,
            output_age=None if last_output is None else now - last_output,
        )
        self._reported_failures = failures
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_name()}: occupancy", message=message,
                                  hardware_id=str(self._predictor.device))
        status.values = [
            KeyValue(key=key, value=value)
            for key, value in node_status.status_values(
                counters, processing_ms=processing, precision=self._predictor.precision, missing=missing,
                lidar_dropout=lidar_age is not None,
            )
        ]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diagnostics.publish(array)

    # ------------------------------------------------------------------------------------------- public

    @property
    def counters(self) -> dict[str, int]:
        """Snapshot of every counter (inputs, rejections, sync drops, failures, published frames)."""
        with self._lock:
            return dict(self._counters)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Waits until no group is waiting for the worker and none is being processed (tests, tools); False on
        timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._mailbox_cv:
                if self._mailbox is None and not self._busy:
                    return True
            time.sleep(0.005)
        return False

    def destroy_node(self) -> None:
        """Stops the worker thread, then destroys the node."""
        with self._mailbox_cv:
            self._stopping = True
            self._mailbox_cv.notify_all()
        worker = self._worker
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=30.0)
        super().destroy_node()


# --------------------------------------------------------------------------------------------- entry points


def run(args: argparse.Namespace) -> int:
    """`fusionocc node`: runs the node until Ctrl-C (arguments: `node_params.add_arguments`)."""
    return main(["fusionocc-node", *ros_arguments(args)])


def main(args: list[str] | None = None) -> int:
    """`ros2 run fusionocc occupancy_node [--ros-args ...]`: spins until Ctrl-C; 1 on a setup error."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)  # launch escalates to SIGTERM: stop as cleanly as on Ctrl-C

    log = logging.getLogger("fusionocc.occupancy_node")
    argv = list(sys.argv if args is None else args)
    for path in params_files(argv):
        problem = params_file_problem(path)
        if problem:
            print(f"fusionocc node: cannot start: {problem}", file=sys.stderr)
            return 1
    try:
        transport = apply_transport_profile("receiver")
    except FileNotFoundError as error:
        print(f"fusionocc node: cannot start: {error}", file=sys.stderr)
        return 1
    try:
        # rclpy's own SIGINT handler would invalidate the context at once and fail the frame in progress;
        # ours raises KeyboardInterrupt in spin, so the worker finishes and publishes before shutdown.
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as error:  # rcl's argument / params-file parser: one line, not its traceback
        print(f"fusionocc node: cannot start: {type(error).__name__}: {str(error).splitlines()[0]}",
              file=sys.stderr)
        return 1
    node = None
    code = 0
    try:
        logger = rclpy.logging.get_logger("occupancy_node")
        logger.info(f"transport: {transport.description}")
        if transport.warning:
            logger.warning(transport.warning)
        threads = configure_cpu_inference()  # threads from affinity / cgroup quota, 1 inter-op thread
        (logger.warning if threads.notes else logger.info)(f"cpu threads: {threads.summary()}")
        node = OccupancyNode()
        rclpy.spin(node)
    except NodeSetupError as error:
        log.error("cannot start: %s", error)
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()  # joins the worker: the frame in progress is finished and counted
            # one machine-readable line for whoever started the process (the demo, tests, scripts)
            print("fusionocc node counters: " + json.dumps(dict(sorted(node.counters.items()))), flush=True)
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
