"""Replay of a converted bag through real rclpy: a subscriber in the same process records what arrives (order,
content, times) and the publish times reported by `on_published` are checked against the bag's timing.

The session uses its own ROS domain (from the pid) so parallel test runs do not hear each other.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_typestore

from fusionocc_core.occ3d import CAMERA_NAMES
from fusionocc_ros import bag_layout
from fusionocc_ros.bag_converter import ConvertOptions, convert_dataroot
from fusionocc_ros.errors import ReplayError
from fusionocc_ros.replay import main, message_class, replay_bag

DOMAIN_ID = 1 + (os.getpid() + 101) % 200
SENSOR_TOPICS = [
    bag_layout.LIDAR_TOPIC,
    *(bag_layout.image_topic(c) for c in CAMERA_NAMES),
]


@pytest.fixture(scope="module", autouse=True)
def ros_domain():
    previous = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)  # read by replay_bag's own rclpy context
    yield
    if previous is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = previous


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory, synth_dataroot: Path) -> Path:
    out = tmp_path_factory.mktemp("replay")
    return convert_dataroot(
        synth_dataroot,
        out,
        options=ConvertOptions(progress=False),
        scenes=["scene-0001"],
    )[0].path


class Recorder:
    """A subscriber node on its own context, spun in a thread; records (topic, stamp ns, monotonic, msg)."""

    def __init__(
        self,
        topics: dict[str, type],
        *,
        depth: int = 1000,
        transient: tuple[str, ...] = (),
    ) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node("replay_recorder", context=self.context)
        self.received: list[tuple[str, int, float, object]] = []
        self.lock = threading.Lock()
        for topic, msg_type in topics.items():
            qos = QoSProfile(
                depth=depth,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL
                if topic in transient
                else DurabilityPolicy.VOLATILE,
            )
            self.node.create_subscription(msg_type, topic, self._callback(topic), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _callback(self, topic: str):
        def record(msg) -> None:
            now = time.monotonic()
            stamp = msg.clock if topic == "/clock" else getattr(msg, "header", msg).stamp
            with self.lock:
                self.received.append((topic, stamp.sec * 1_000_000_000 + stamp.nanosec, now, msg))

        return record

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


def _bag_messages(path: Path, topics) -> list[tuple[str, int, bytes]]:
    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages(connections=connections)]


def _types(topics) -> dict[str, type]:
    layout = bag_layout.sensor_topics()
    return {t: message_class(layout[t]) for t in topics}


def test_replay_preserves_order_content_and_relative_timing(bag):
    expected = _bag_messages(bag, SENSOR_TOPICS)
    recorder = Recorder(_types(SENSOR_TOPICS))
    published: list[tuple[str, int, float]] = []
    rate = 2.0
    try:
        report = replay_bag(
            bag,
            rate=rate,
            topics=SENSOR_TOPICS,
            wait_for_subscribers=10.0,
            on_published=lambda topic, stamp, now: published.append((topic, stamp, now)),
        )
        recorder.wait_for(len(expected))
    finally:
        recorder.close()
    # Published in bag order, at bag time / rate after the first message.
    assert [(topic, stamp) for topic, stamp, _ in published] == [
        (topic, stamp) for topic, stamp, _ in expected
    ]
    bag_offsets = np.array([stamp - expected[0][1] for _, stamp, _ in expected]) * 1e-9 / rate
    wall_offsets = np.array([now - published[0][2] for _, _, now in published])
    lateness = wall_offsets - bag_offsets
    # (offsets count from the first publish *returning*: a few ms early is possible; a rate bug is 100s of ms)
    # Never early (load only delays); ignoring the rate would make messages up to 0.77 s early, half the rate
    # 0.77 s late. The upper bounds leave room for a loaded 2-core machine.
    assert lateness.min() > -0.02, lateness
    assert np.median(np.abs(lateness)) < 0.05 and lateness.max() < 0.5, lateness
    assert report.seconds == pytest.approx(bag_offsets[-1], abs=0.5)
    assert report.published == {t: sum(1 for m in expected if m[0] == t) for t in SENSOR_TOPICS}
    # Everything arrived, each topic in order, unchanged, stamps = header stamps, no earlier than published.
    assert len(recorder.received) == len(expected)
    for topic in SENSOR_TOPICS:
        got = [(stamp, now) for t, stamp, now, _ in recorder.received if t == topic]
        sent = [(stamp, now) for t, stamp, now in published if t == topic]
        assert [s for s, _ in got] == [s for s, _ in sent], topic
        assert all(g >= s - 1e-3 for (_, g), (_, s) in zip(got, sent, strict=True)), topic
    lidar = [msg for t, _, _, msg in recorder.received if t == bag_layout.LIDAR_TOPIC]
    first_lidar = next(raw for t, _, raw in expected if t == bag_layout.LIDAR_TOPIC)
    store = get_typestore(Stores.ROS2_JAZZY)
    original = store.deserialize_cdr(first_lidar, bag_layout.POINTCLOUD2_TYPE)
    assert bytes(lidar[0].data) == original.data.tobytes() and lidar[0].width == original.width
    received_span = recorder.received[-1][2] - recorder.received[0][2]
    assert received_span == pytest.approx(bag_offsets[-1], abs=0.5)


def test_fast_replay_delivers_everything_quicker_than_real_time(bag):
    topics = [
        bag_layout.LIDAR_TOPIC,
        bag_layout.ODOM_TOPIC,
        bag_layout.camera_info_topic("CAM_FRONT"),
    ]
    expected = _bag_messages(bag, topics)
    recorder = Recorder(_types(topics))
    try:
        report = replay_bag(bag, fast=True, topics=topics, wait_for_subscribers=10.0, qos_depth=1000)
        recorder.wait_for(len(expected))
    finally:
        recorder.close()
    bag_span = (expected[-1][1] - expected[0][1]) * 1e-9
    assert report.seconds < bag_span / 2
    for topic in topics:
        assert [s for t, s, _, _ in recorder.received if t == topic] == [
            s for t, s, _ in expected if t == topic
        ], topic


def test_clock_start_offset_and_loop(bag):
    topics = [bag_layout.LIDAR_TOPIC]
    expected = _bag_messages(bag, topics)
    start = expected[0][1]
    recorder = Recorder({**_types(topics), "/clock": message_class("rosgraph_msgs/msg/Clock")})
    stop = threading.Event()
    published: list[tuple[str, int]] = []
    after = [m for m in expected if m[1] >= start + 500_000_000]

    def on_published(topic: str, stamp: int, now: float) -> None:
        published.append((topic, stamp))
        if len(published) == 2 * len(after) + 1:
            stop.set()

    try:
        report = replay_bag(
            bag,
            rate=4.0,
            clock=True,
            loop=True,
            topics=topics,
            start_offset=0.5,
            wait_for_subscribers=10.0,
            stop_event=stop,
            on_published=on_published,
        )
        recorder.wait_for(2 * len(after) + 1, timeout=3.0)
    finally:
        recorder.close()
    assert report.loops == 2
    assert [s for _, s in published] == [s for _, s, _ in after] * 2 + [after[0][1]]
    clock = [stamp for topic, stamp, _, _ in recorder.received if topic == "/clock"]
    assert clock and clock[0] >= start + 500_000_000 and clock[-1] <= expected[-1][1]
    first_pass = clock[: clock.index(max(clock)) + 1]
    assert first_pass == sorted(first_pass)


def _latched_bag(path: Path) -> None:
    """A tiny bag: std_msgs/Header on /latched (transient local, t=0) and /data every 0.1 s for 1 s."""
    store = get_typestore(Stores.ROS2_JAZZY)
    zero = QosTime(sec=0, nsec=0)

    def qos(durability: QosDurability) -> Qos:
        return Qos(
            QosHistory.KEEP_LAST,
            1,
            QosReliability.RELIABLE,
            durability,
            zero,
            zero,
            QosLiveliness.AUTOMATIC,
            zero,
            False,
        )

    Header, Time = (
        store.types["std_msgs/msg/Header"],
        store.types["builtin_interfaces/msg/Time"],
    )
    with Writer(path, version=9) as writer:
        latched = writer.add_connection(
            "/latched",
            "std_msgs/msg/Header",
            typestore=store,
            offered_qos_profiles=[qos(QosDurability.TRANSIENT_LOCAL)],
        )
        data = writer.add_connection(
            "/data",
            "std_msgs/msg/Header",
            typestore=store,
            offered_qos_profiles=[qos(QosDurability.VOLATILE)],
        )
        writer.write(
            latched,
            10**9,
            store.serialize_cdr(
                Header(stamp=Time(sec=1, nanosec=0), frame_id="static"),
                "std_msgs/msg/Header",
            ),
        )
        for i in range(11):
            t = 10**9 + i * 100_000_000
            writer.write(
                data,
                t,
                store.serialize_cdr(
                    Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id=f"d{i}"),
                    "std_msgs/msg/Header",
                ),
            )


def test_transient_local_topic_survives_start_offset(tmp_path):
    from std_msgs.msg import Header

    _latched_bag(tmp_path / "latched")
    recorder = Recorder({"/latched": Header, "/data": Header}, transient=("/latched",))
    try:
        report = replay_bag(
            tmp_path / "latched",
            fast=True,
            start_offset=0.55,
            wait_for_subscribers=10.0,
        )
        recorder.wait_for(6)
    finally:
        recorder.close()
    assert report.published == {"/latched": 1, "/data": 5}
    assert sorted(msg.frame_id for _, _, _, msg in recorder.received) == [
        "d10",
        "d6",
        "d7",
        "d8",
        "d9",
        "static",
    ]


def test_errors_are_named(bag, tmp_path):
    with pytest.raises(ReplayError, match="/nope"):
        replay_bag(bag, topics=["/nope"])
    with pytest.raises(ReplayError, match="does not exist"):
        replay_bag(tmp_path / "missing")
    with pytest.raises(ReplayError, match="rate must be > 0"):
        replay_bag(bag, rate=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayError, match="not a readable rosbag2"):
        replay_bag(tmp_path / "empty")


def test_tf_topics_skipped_only_without_tf2_msgs(bag):
    report = replay_bag(bag, fast=True, topics=[bag_layout.TF_STATIC_TOPIC, bag_layout.ODOM_TOPIC])
    try:
        import tf2_msgs.msg  # noqa: F401
    except ImportError:
        assert set(report.skipped_topics) == {bag_layout.TF_STATIC_TOPIC}
        assert "tf2_msgs" in report.skipped_topics[bag_layout.TF_STATIC_TOPIC]
    else:
        assert report.published[bag_layout.TF_STATIC_TOPIC] == 1
    assert report.published[bag_layout.ODOM_TOPIC] > 10


def test_replay_console_script(bag, capsys):
    assert main([str(bag), "--fast", "--topics", bag_layout.LIDAR_TOPIC]) == 0
    assert "messages on 1 topics" in capsys.readouterr().out
    assert main([str(bag), "--topics", "/nope"]) == 1
    assert "no topic(s) /nope" in capsys.readouterr().err


def test_replay_on_a_given_node_leaves_it_as_it_was(bag):
    topics = [bag_layout.ODOM_TOPIC]
    expected = _bag_messages(bag, topics)
    recorder = Recorder(_types(topics))
    try:
        before = {p.topic_name for p in recorder.node.publishers}
        report = replay_bag(
            bag, fast=True, topics=topics, node=recorder.node, qos_depth=1000, wait_for_subscribers=10.0
        )
        recorder.wait_for(len(expected))
        after = {p.topic_name for p in recorder.node.publishers}
        assert recorder.context.ok()
    finally:
        recorder.close()
    assert report.published == {bag_layout.ODOM_TOPIC: len(expected)}
    assert [s for _, s, _, _ in recorder.received] == [s for _, s, _ in expected]
    assert after == before
