"""The occupancy node over real rclpy: synthetic-world frames in, outputs equal to the Predictor's direct
prediction; bad messages rejected with counters while good frames keep producing outputs; invalid start-up
parameters stop it with a reason; run-time parameter changes take effect only once ROS accepted them; the RViz
config shows its outputs. The parameter table, YAML and command line: test_node_params.py."""

from __future__ import annotations

import os
import pathlib
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64, Header
from visualization_msgs.msg import MarkerArray

from fusionocc_core.occ3d import CAMERA_NAMES, FREE_LABEL, GRID_SHAPE, LIDAR_NAME
from fusionocc_core.predictor import Predictor, SensorFrame
from fusionocc_ros import conversions as conv
from fusionocc_ros.calibration import Calibration, SensorCalibration, load_calibration, save_calibration
from fusionocc_ros.node_params import PRIVATE_TOPICS
from fusionocc_ros.occupancy_node import NodeSetupError, OccupancyNode
from fusionocc_ros.odometry import pose_matrix

REPO = pathlib.Path(__file__).resolve().parents[2]
NS = "fusionocc_test"
FRAMES_PER_SCENE = (2, 1)  # keyframes used per scene: temporal fusion, then a new scene (history reset)

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors on a shared 2-core machine: torch's spinning worker threads cost 10x more than they
    save (measured 270 ms vs 16 ms per prepare under load), so this module runs torch single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



# ------------------------------------------------------------------------------------------------ data


@dataclass
class Frame:
    stamp_us: int
    lidar_points: np.ndarray  # (N, 5) lidar frame
    jpegs: list[bytes]  # per camera, CAMERA_NAMES order
    camera_stamps_us: list[int]
    camera_sizes: list[tuple[int, int]]  # (width, height)
    intrinsics: np.ndarray  # (6, 3, 3)
    ego_translation: np.ndarray
    ego_rotation: np.ndarray  # w, x, y, z
    camera_poses: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # ego pose per image stamp


@pytest.fixture(scope="module")
def world(synth_dataroot, tmp_path_factory):
    """Keyframes of the synthetic world and a calibration file written from its calibrated_sensor table."""
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(synth_dataroot), verbose=False)
    frames: list[Frame] = []
    sensors: dict[str, SensorCalibration] = {}
    for scene, limit in zip(nusc.scene, FRAMES_PER_SCENE, strict=False):
        token, count = scene["first_sample_token"], 0
        while token and count < limit:
            count += 1
            sample = nusc.get("sample", token)
            lidar_sd = nusc.get("sample_data", sample["data"][LIDAR_NAME])
            points = np.fromfile(synth_dataroot / lidar_sd["filename"], dtype=np.float32).reshape(-1, 5)
            pose = nusc.get("ego_pose", lidar_sd["ego_pose_token"])
            jpegs, stamps, sizes, intrinsics, camera_poses = [], [], [], [], []
            for name in (*CAMERA_NAMES, LIDAR_NAME):
                sd = nusc.get("sample_data", sample["data"][name])
                cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
                if name not in sensors:
                    sensors[name] = SensorCalibration(
                        name, name, np.array(cs["translation"]), np.array(cs["rotation"])
                    )
                if name == LIDAR_NAME:
                    continue
                jpegs.append((synth_dataroot / sd["filename"]).read_bytes())
                stamps.append(sd["timestamp"])
                camera_pose = nusc.get("ego_pose", sd["ego_pose_token"])
                camera_poses.append((np.array(camera_pose["translation"]), np.array(camera_pose["rotation"])))
                sizes.append((sd["width"], sd["height"]))
                intrinsics.append(np.array(cs["camera_intrinsic"]))
            frames.append(
                Frame(
                    lidar_sd["timestamp"],
                    points,
                    jpegs,
                    stamps,
                    sizes,
                    np.stack(intrinsics),
                    np.array(pose["translation"]),
                    np.array(pose["rotation"]),
                    camera_poses,
                )
            )
            token = sample["next"]
    path = tmp_path_factory.mktemp("calibration") / "calibration.yaml"
    save_calibration(Calibration(sensors=sensors), path)
    return SimpleNamespace(frames=frames, calibration_file=path, calibration=load_calibration(path))


class StubModel(torch.nn.Module):
    """Stands in for FusionOcc until `build_model("tiny")` exists: labels depend on every input."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(camera=SimpleNamespace(input_size=(64, 176)))
        self.mix = torch.nn.Parameter(torch.randn(8, generator=torch.Generator().manual_seed(0)))

    def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
        images = inputs["images"][0].mean(dim=(2, 3, 4)).flatten()  # (2 * N,)
        points = inputs["points"]
        feature = torch.stack(
            [
                images.mean(),
                images.std(),
                points[:, 1].mean(),
                points[:, 2].mean(),
                points[:, 5].max(),
                inputs["sparse_depth"].sum() / 1e4,
                inputs["cam_to_key_ego"][0, 1, :, :3, 3].sum(),
                torch.tensor(points.shape[0] / 1e4),
            ]
        )
        x = torch.linspace(-1, 1, GRID_SHAPE[0])
        field = (
            x[:, None, None] * self.mix[:4].sum()
            + x[None, :, None] * (feature * self.mix).sum()
            + torch.linspace(0, 1, GRID_SHAPE[2])[None, None, :]
        )
        return (torch.floor(field.abs() * 7) % 18).to(torch.uint8)[None]


@pytest.fixture
def model():
    """The tiny FusionOcc preset with seeded random weights (recording its calls), else a stub."""
    try:
        from fusionocc_core.model.presets import build_model
    except ImportError:
        return Recording(StubModel())
    torch.manual_seed(0)
    return Recording(build_model("tiny").eval())


class Recording(torch.nn.Module):
    """Wraps a model and records every `predict` call's inputs and output (one inference per frame)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config, self.calls = inner, inner.config, []

    def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
        output = self.inner.predict(**inputs)
        self.calls.append(({k: v.clone() for k, v in inputs.items()}, output.clone()))
        return output


def _predictor(model) -> Predictor:
    return Predictor(model, device="cpu")


def _sensor_frame(frame: Frame, calibration: Calibration, *, camera_poses: bool = True) -> SensorFrame:
    """The node's view of a frame, built independently: JPEG decode, calibration, poses as the node does (each
    camera with the ego pose at its image stamp; `camera_poses=False`: the sweep's pose for every camera)."""
    images = [
        conv.compressed_image_to_rgb(SimpleNamespace(data=jpeg, format="jpeg"), min_size=None)
        for jpeg in frame.jpegs
    ]
    quaternion = frame.ego_rotation / np.linalg.norm(frame.ego_rotation)
    return SensorFrame(
        images=np.stack(images),
        intrinsics=frame.intrinsics,
        cam_to_ego=np.stack([calibration[name].sensor_to_ego for name in CAMERA_NAMES]),
        lidar_points=frame.lidar_points,
        lidar_to_ego=calibration[LIDAR_NAME].sensor_to_ego,
        ego_to_global=pose_matrix(frame.ego_translation, quaternion),
        stamp_s=(frame.stamp_us * 1000) / 1e9,
        camera_names=CAMERA_NAMES,
        camera_ego_to_global=np.stack([pose_matrix(t, r / np.linalg.norm(r)) for t, r in frame.camera_poses])
        if camera_poses and frame.camera_poses else None,
    )


# ------------------------------------------------------------------------------------------------ rclpy


def _stamp(header: Header, stamp_us: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_us * 1000, 1_000_000_000)


class Harness:
    """The node under test plus a driver node that publishes its inputs and records its outputs."""

    def __init__(self, model, calibration_file: pathlib.Path, **overrides) -> None:
        from rclpy.parameter import Parameter

        self.context = Context()
        rclpy.init(context=self.context, domain_id=1 + (os.getpid() + 37) % 200)
        params = {"calibration_file": str(calibration_file), "jpeg_draft": False, **PRIVATE_TOPICS, **overrides}
        self.node = OccupancyNode(
            predictor=_predictor(model),
            context=self.context,
            namespace=NS,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.driver = rclpy.create_node("driver", context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.driver)
        self.received: dict[str, list] = {}
        self.lock = threading.Lock()
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        base = f"/{NS}/occupancy_node"
        for key, msg_type, topic in (
            ("voxels", PointCloud2, f"{base}/output/occupied_voxels"),
            ("dense", Image, f"{base}/output/dense_grid"),
            ("grid", OccupancyGrid, f"{base}/output/occupancy_grid"),
            ("time", Float64, f"{base}/debug/processing_time_ms"),
            ("inference", Float64, f"{base}/debug/inference_ms"),
            ("diagnostics", DiagnosticArray, "/diagnostics"),
        ):
            self.driver.create_subscription(msg_type, topic, lambda m, k=key: self._record(k, m), qos)
        self.publishers: dict[str, object] = {}
        self.transport = overrides.get("image_transport", "compressed")
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def subscribe_markers(self) -> None:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.driver.create_subscription(
            MarkerArray, f"/{NS}/occupancy_node/output/markers", lambda m: self._record("markers", m), qos
        )

    def _record(self, key: str, msg) -> None:
        with self.lock:
            self.received.setdefault(key, []).append(msg)

    def publish(self, msg_type, topic: str, msg) -> None:
        if topic not in self.publishers:
            qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
            self.publishers[topic] = self.driver.create_publisher(
                msg_type, f"/{NS}/occupancy_node/{topic}", qos
            )
            deadline = time.monotonic() + 5.0  # wait for discovery so nothing is lost
            while self.publishers[topic].get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        self.publishers[topic].publish(msg)

    def wait_for(self, key: str, predicate, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                for msg in self.received.get(key, []):
                    if predicate(msg):
                        return msg
            if self.node.counters.get("inference_failures"):
                break
            time.sleep(0.01)
        raise AssertionError(
            f"no matching {key} message within {timeout_s} s; counters: {self.node.counters}"
        )

    def send_frame(self, frame: Frame, *, camera_info: bool = True, before_images=None) -> None:
        before = self.node.counters
        for i, name in enumerate(CAMERA_NAMES):
            if camera_info:
                info = CameraInfo(width=frame.camera_sizes[i][0], height=frame.camera_sizes[i][1])
                info.header.frame_id = name
                info.k = frame.intrinsics[i].reshape(-1).tolist()
                self.publish(CameraInfo, f"input/{name}/camera_info", info)
        # Topics are not ordered against each other: let the camera infos land before their images, as a camera
        # driver's latched info would have (otherwise a camera can count as missing for the first frame).
        deadline = time.monotonic() + 10.0
        while camera_info and time.monotonic() < deadline and any(
            self.node.counters.get(f"in:{name}/camera_info", 0) <= before.get(f"in:{name}/camera_info", 0)
            for name in CAMERA_NAMES
        ):
            time.sleep(0.002)
        # An ego pose at the sweep and at every image stamp (as `fusionocc convert` writes /odom), one at a time
        # so that none is lost from the sensor-data QoS queue.
        poses = {frame.stamp_us: (frame.ego_translation, frame.ego_rotation)}
        poses.update(zip(frame.camera_stamps_us, frame.camera_poses, strict=False))
        for stamp_us, (p, q) in sorted(poses.items()):
            odom = Odometry(child_frame_id="base_link")
            odom.header.frame_id = "map"
            _stamp(odom.header, stamp_us)
            odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = map(float, p)
            o = odom.pose.pose.orientation
            o.w, o.x, o.y, o.z = map(float, q)
            count = self.node.counters.get("in:odometry", 0)
            self.publish(Odometry, "input/odometry", odom)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and self.node.counters.get("in:odometry", 0) <= count:
                time.sleep(0.002)
        header = Header(frame_id=LIDAR_NAME)
        _stamp(header, frame.stamp_us)
        self.publish(
            PointCloud2, "input/pointcloud", conv.xyzir_to_pointcloud2(frame.lidar_points, header=header)
        )
        if before_images:
            before_images()
        for i, name in enumerate(CAMERA_NAMES):
            self.publish_image(frame, i, name)

    def image_msg(self, frame: Frame, index: int, name: str):
        header = Header(frame_id=name)
        _stamp(header, frame.camera_stamps_us[index])
        if self.transport == "compressed":
            msg = CompressedImage(header=header, format="jpeg")
            msg.data = __import__("array").array("B", frame.jpegs[index])
            return CompressedImage, f"input/{name}/image/compressed", msg
        rgb = conv.compressed_image_to_rgb(SimpleNamespace(data=frame.jpegs[index], format="jpeg"))
        return Image, f"input/{name}/image", conv.rgb_to_image(rgb, header=header)

    def publish_image(self, frame: Frame, index: int, name: str, mutate=None) -> None:
        msg_type, topic, msg = self.image_msg(frame, index, name)
        if mutate is not None:
            mutate(msg)
        self.publish(msg_type, topic, msg)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()
        self.context.try_shutdown()
        self.thread.join(timeout=5)


def _stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000 + msg.header.stamp.nanosec // 1000


# ------------------------------------------------------------------------------------------------ tests


def test_every_synchronised_frame_is_published_equal_to_the_direct_prediction(world, model):
    harness = Harness(model, world.calibration_file)
    harness.subscribe_markers()
    try:
        for frame in world.frames:
            harness.send_frame(frame)
            harness.wait_for("dense", lambda m, s=frame.stamp_us: _stamp_of(m) == s)
        for frame in world.frames:
            for key in ("voxels", "grid", "markers"):
                harness.wait_for(
                    key,
                    lambda m, s=frame.stamp_us, k=key: _stamp_of(m.markers[-1] if k == "markers" else m) == s,
                    timeout_s=10,
                )
        deadline = time.monotonic() + 10  # the per-frame timings are published after the outputs
        while time.monotonic() < deadline and len(harness.received.get("time", [])) < len(world.frames):
            time.sleep(0.01)
        harness.node.wait_idle(10.0)  # "published" is counted just after the outputs go out
        counters = harness.node.counters
    finally:
        harness.close()

    assert counters["published"] == len(world.frames) == counters["sync:synced"]
    assert not any(key.startswith("rejected") for key in counters), counters
    # The node ran the model once per frame; a Predictor fed the same data directly must build exactly the
    # tensors the node's model call got, and the node must publish exactly the labels the model returned.
    assert len(model.calls) == len(world.frames)
    direct = _predictor(model.inner)
    by_stamp = {
        key: {_stamp_of(m.markers[-1] if key == "markers" else m): m for m in harness.received[key]}
        for key in ("dense", "voxels", "grid", "markers")
    }
    lidar_pose_only = _predictor(model.inner)
    for frame, (inputs, output) in zip(world.frames, model.calls, strict=True):
        tensors, _ = direct.prepare(_sensor_frame(frame, world.calibration))
        for name, tensor in tensors.as_kwargs().items():
            torch.testing.assert_close(inputs[name], tensor, rtol=0, atol=0, msg=name)
        # The cameras fire up to ~42 ms after the sweep while the ego moves: placing them with the sweep's pose
        # (what the node did before) would move their features by up to a few decimetres.
        stale, _ = lidar_pose_only.prepare(_sensor_frame(frame, world.calibration, camera_poses=False))
        shift = (inputs["cam_to_key_ego"][0, 0, :, :3, 3] - stale.cam_to_key_ego[0, 0, :, :3, 3]).norm(dim=-1)
        assert shift.max() > 0.05, shift
        expected = output[0].numpy()
        dense = by_stamp["dense"][frame.stamp_us]
        assert dense.header.frame_id == "base_link"
        np.testing.assert_array_equal(conv.image_to_dense_grid(dense), expected)
        np.testing.assert_array_equal(
            conv.pointcloud2_to_occupancy(by_stamp["voxels"][frame.stamp_us]), expected
        )
        np.testing.assert_array_equal(
            conv.occupancy_grid_to_bev(by_stamp["grid"][frame.stamp_us]), conv.bev_obstacles(expected)
        )
        markers = by_stamp["markers"][frame.stamp_us].markers
        reference, _ = conv.occupancy_to_marker_array(expected, header=dense.header)
        assert [(m.id, m.ns, len(m.points)) for m in markers] == [
            (m.id, m.ns, len(m.points)) for m in reference.markers
        ]
        assert all(p == q for m, r in zip(markers, reference.markers, strict=True)
                   for p, q in zip(m.points, r.points, strict=True))
        assert sum(len(m.points) for m in markers[1:]) == min(int((expected != FREE_LABEL).sum()), 40_000)
    assert len(harness.received["time"]) >= len(world.frames)
    assert all(m.data > 0 for m in harness.received["time"])


def test_unknown_unobserved_marks_the_cells_no_lidar_ray_crossed_in_the_occupancy_grid(world, model):
    """occupancy_grid.unknown_unobserved: the grid is -1 wherever the fused sweeps saw nothing, elsewhere the
    obstacle grid of the published labels; the other outputs are unchanged."""
    harness = Harness(model, world.calibration_file, **{"occupancy_grid.unknown_unobserved": True})
    try:
        for frame in world.frames[:2]:
            harness.send_frame(frame)
            harness.wait_for("grid", lambda m, s=frame.stamp_us: _stamp_of(m) == s)
        harness.wait_for("dense", lambda m, s=world.frames[1].stamp_us: _stamp_of(m) == s)
    finally:
        harness.close()
    direct = _predictor(model.inner)
    direct.observe_bev = True
    for frame in world.frames[:2]:
        expected = direct.predict(_sensor_frame(frame, world.calibration))
        grid = next(m for m in harness.received["grid"] if _stamp_of(m) == frame.stamp_us)
        bev = conv.occupancy_grid_to_bev(grid)
        assert expected.observed_bev is not None
        np.testing.assert_array_equal(bev, conv.bev_obstacles(expected.labels, known=expected.observed_bev))
        unknown = (bev == -1).mean()
        assert 0.01 < unknown < 0.9, unknown  # a street: buildings and their shadows unseen, the road seen


def test_bad_messages_are_rejected_and_counted_while_good_frames_keep_flowing(world):
    harness = Harness(StubModel(), world.calibration_file, image_transport="raw")
    frames = world.frames[:3]

    def bad_lidar(frame: Frame):
        def publish():
            header = Header(frame_id=LIDAR_NAME)
            _stamp(header, frame.stamp_us)
            no_intensity = conv.xyzir_to_pointcloud2(frame.lidar_points, header=header)
            no_intensity.fields = [f for f in no_intensity.fields if f.name != "intensity"]
            harness.publish(PointCloud2, "input/pointcloud", no_intensity)
            nan_points = frame.lidar_points.copy()
            nan_points[:, 0] = np.nan
            harness.publish(
                PointCloud2, "input/pointcloud", conv.xyzir_to_pointcloud2(nan_points, header=header)
            )
            wrong_frame = conv.xyzir_to_pointcloud2(frame.lidar_points, header=Header(frame_id="velodyne"))
            harness.publish(PointCloud2, "input/pointcloud", wrong_frame)

        return publish

    def bad_images(frame: Frame):
        def publish():
            harness.publish_image(frame, 1, "CAM_FRONT", lambda m: setattr(m, "encoding", "yuv422"))
            harness.publish_image(frame, 1, "CAM_FRONT", lambda m: setattr(m, "data", m.data[:1000]))
            harness.publish_image(frame, 4, "CAM_BACK", lambda m: setattr(m.header, "frame_id", "camera"))
            harness.publish_image(
                frame,
                0,
                "CAM_FRONT_LEFT",
                lambda m: (setattr(m, "width", m.width // 2), setattr(m, "step", m.step // 2)),
            )

        return publish

    try:
        harness.send_frame(frames[0])
        harness.wait_for("dense", lambda m: _stamp_of(m) == frames[0].stamp_us)
        # A sweep with some NaN points is still used; the NaN points are dropped and counted.
        partly_nan = Frame(**{**frames[1].__dict__, "lidar_points": frames[1].lidar_points.copy()})
        partly_nan.lidar_points[:50, 2] = np.nan
        harness.send_frame(
            partly_nan, before_images=lambda: (bad_lidar(frames[1])(), bad_images(frames[1])())
        )
        harness.wait_for("dense", lambda m: _stamp_of(m) == frames[1].stamp_us)
        harness.send_frame(frames[2])
        harness.wait_for("dense", lambda m: _stamp_of(m) == frames[2].stamp_us)
        harness.wait_for(
            "diagnostics",
            lambda m: any(
                kv.key == "rejected:CAM_FRONT:encoding" and kv.value == "1" for kv in m.status[0].values
            ),
            10,
        )
        harness.node.wait_idle(10.0)
        counters = harness.node.counters
    finally:
        harness.close()
    assert counters["published"] == 3
    assert counters["rejected:pointcloud:fields"] == 1
    assert counters["rejected:pointcloud:too_few_points"] == 1
    assert counters["rejected:pointcloud:frame_id"] == 1
    assert counters["lidar_non_finite_points"] == len(frames[1].lidar_points) + 50
    assert counters["rejected:CAM_FRONT:encoding"] == 1
    assert counters["rejected:CAM_FRONT:truncated"] == 1
    assert counters["rejected:CAM_BACK:frame_id"] == 1
    assert counters["rejected:CAM_FRONT_LEFT:size"] == 1
    assert counters.get("inference_failures", 0) == 0
    assert counters.get("published_markers", 0) == 0  # nobody subscribed to the markers


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"sync.window_min_s": 0.1, "sync.window_max_s": 0.0}, "must not exceed"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"calibration_file": "/nonexistent.yaml"}, "does not exist"),
        ({"calibration_file": ""}, "calibration_file is required"),
        ({"camera_names": ["CAM_FRONT", "CAM_TOP"]}, "lacks sensor.*CAM_TOP"),
        ({"sync.window_max_s": 5.0}, "sync.window_max_s"),
    ],
)
def test_invalid_parameters_stop_the_node_with_a_reason(world, overrides, match):
    from rclpy.parameter import Parameter

    context = Context()
    rclpy.init(context=context, domain_id=1 + (os.getpid() + 91) % 200)
    params = {"calibration_file": str(world.calibration_file), **overrides}
    try:
        with pytest.raises(NodeSetupError, match=match):
            OccupancyNode(
                predictor=_predictor(StubModel()),
                context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
            )
    finally:
        context.try_shutdown()


def test_rviz_config_shows_markers_cloud_six_images_and_tf_in_base_link():
    config = yaml.safe_load((REPO / "config" / "fusionocc.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    classes = [d["Class"] for d in displays]
    assert "rviz_default_plugins/MarkerArray" in classes and "rviz_default_plugins/PointCloud2" in classes
    assert "rviz_default_plugins/TF" in classes and classes.count("rviz_default_plugins/Image") == 6
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    enabled = {d.get("Topic", {}).get("Value", "") for d in displays if d.get("Enabled") and d.get("Value")}
    # the names the node publishes under, started by `fusionocc node` or by the launch file (no namespace)
    for output in ("markers", "occupied_voxels", "occupancy_grid"):
        assert f"/occupancy_node/output/{output}" in enabled
    for camera in CAMERA_NAMES:
        assert f"/{camera}/image_rect/compressed" in enabled


def test_main_returns_1_with_a_reason_instead_of_a_traceback(caplog):
    from fusionocc_ros.occupancy_node import main

    code = main(["occupancy_node", "--ros-args", "-p", "calibration_file:=/nonexistent/calibration.yaml",
                 "-p", "preset:=tiny"])
    assert code == 1
    assert any("does not exist" in record.getMessage() for record in caplog.records)


def _runtime_node(world, offset: int):
    from rclpy.parameter import Parameter

    context = Context()
    rclpy.init(context=context, domain_id=1 + (os.getpid() + offset) % 200)
    node = OccupancyNode(predictor=_predictor(StubModel()), context=context,
                         parameter_overrides=[Parameter("calibration_file", value=str(world.calibration_file))])
    return context, node


def test_a_reset_survives_when_its_group_is_dropped_from_the_mailbox(world):
    """A time reset (bag loop) flags one group; when the worker is busy and a newer group replaces it in the
    mailbox, the newer one must carry the reset, or the model fuses history from before the jump."""
    from fusionocc_ros.sync import SyncGroup

    context, node = _runtime_node(world, 117)

    def group(stamp_ns: int, reset: bool) -> SyncGroup:
        return SyncGroup(stamp_ns, None, (None,) * 6, (None,) * 6, reset=reset)

    try:
        # Holding the mailbox's (re-entrant) lock keeps the worker from taking a group between the offers.
        with node._mailbox_cv:
            node._offer(lambda: [group(1, reset=True)])
            node._offer(lambda: [group(2, reset=False)])
            assert node._mailbox is not None and node._mailbox.stamp_ns == 2 and node._mailbox.reset
            node._offer(lambda: [group(3, reset=False)])
            assert node._mailbox.stamp_ns == 3 and node._mailbox.reset  # carried over again, not lost
            node._mailbox = None  # the stand-in groups are never processed
        assert node._counters["dropped:worker_busy"] == 2
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_runtime_parameters_are_validated_and_read_only_ones_refused(world):
    from rclpy.parameter import Parameter

    context, node = _runtime_node(world, 113)
    try:
        ok, too_high, read_only = node.set_parameters([
            Parameter("markers.max_cubes", value=1000), Parameter("markers.alpha", value=2.0),
            Parameter("precision", value="fp16")])
        assert ok.successful and node.get_parameter("markers.max_cubes").value == 1000
        assert node._params["markers.max_cubes"] == 1000  # applied where the node reads it
        assert not too_high.successful and "markers.alpha" in too_high.reason
        assert node._params["markers.alpha"] == 1.0 and node.get_parameter("markers.alpha").value == 1.0
        assert not read_only.successful and "read-only" in read_only.reason
        assert node._params["precision"] == "fp32"
        descriptor = node.describe_parameter("sync.window_min_s")
        assert descriptor.read_only and descriptor.floating_point_range[0].from_value == -1.0
        assert "[s]" in descriptor.description
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_a_change_refused_by_a_later_callback_never_reaches_the_node(world):
    """Validation and application are separate: the node's on-set callback only judges, so a change it accepts
    but another on-set callback refuses is not applied; its own check alone applies nothing either."""
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.parameter import Parameter

    context, node = _runtime_node(world, 127)
    try:
        assert node._check_parameters([Parameter("markers.alpha", value=0.5)]).successful
        assert node._params["markers.alpha"] == 1.0  # judging is not applying
        refused = node._check_parameters([Parameter("markers.alpha", value=0.5),
                                          Parameter("precision", value="int8")])
        assert not refused.successful and "precision must be one of" in refused.reason

        vetoed = []

        def veto(parameters):
            vetoed.extend(p.name for p in parameters)
            return SetParametersResult(successful=False, reason="vetoed by another component")

        # rclpy calls the most recently added on-set callback first: the node's check, then the veto
        node.remove_on_set_parameters_callback(node._check_parameters)
        node.add_on_set_parameters_callback(veto)
        node.add_on_set_parameters_callback(node._check_parameters)
        (result,) = node.set_parameters([Parameter("markers.max_cubes", value=7)])
        assert not result.successful and result.reason == "vetoed by another component"
        assert vetoed == ["markers.max_cubes"]  # the node's check passed it on
        assert node._params["markers.max_cubes"] == 40_000 and node.get_parameter("markers.max_cubes").value == 40_000

        node.remove_on_set_parameters_callback(veto)
        (result,) = node.set_parameters([Parameter("markers.max_cubes", value=7)])
        assert result.successful and node._params["markers.max_cubes"] == 7
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_parameter_service_refuses_invalid_values_and_applies_valid_ones(world):
    """`ros2 param set` goes through the parameter services: the same refusal and application over DDS."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    context, node = _runtime_node(world, 131)
    caller = rclpy.create_node("param_caller", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(caller)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        client = AsyncParameterClient(caller, node.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=30.0)

        def set_remote(name, value):
            future = client.set_parameters([Parameter(name, value=value)])
            deadline = time.monotonic() + 30.0
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert future.done(), "no answer from the parameter service"
            return future.result().results

        (refused,) = set_remote("markers.alpha", 1.5)
        assert not refused.successful and "markers.alpha" in refused.reason
        assert node._params["markers.alpha"] == 1.0
        (applied,) = set_remote("markers.alpha", 0.25)
        assert applied.successful and node._params["markers.alpha"] == 0.25
    finally:
        executor.shutdown()
        caller.destroy_node()
        node.destroy_node()
        context.try_shutdown()
        thread.join(timeout=5)
