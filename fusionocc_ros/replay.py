"""Publish a rosbag2 through rclpy, in real time x rate or as fast as possible (no `ros2 bag` needed).

The bag is read with `rosbags` and every message is published as its raw CDR bytes (rclpy's serialized
publishing): nothing is deserialized or converted, so any bag whose message types have Python packages
installed replays at disk speed. Publishers offer the QoS recorded in the bag (`/tf_static` transient local);
topics whose message package is not installed (e.g. tf2_msgs, which has no PyPI wheel) are skipped with a
warning. Optional /clock (rosgraph_msgs/Clock) for nodes running with use_sim_time, looping, topic selection
and a start offset.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionocc_ros.bag_layout import CLOCK_TOPIC, TF_STATIC_TOPIC
from fusionocc_ros.errors import ReplayError

_CLOCK_PERIOD_S = 0.025  # /clock is also published while waiting, at 40 Hz
_DEFAULT_DEPTH = 10

PublishedCallback = Callable[[str, int, float], None]  # (topic, bag time [ns], time.monotonic() [s])


@dataclass
class ReplayReport:
    """What a replay published.

    Attributes:
        published: topic -> messages published (over all loops).
        skipped_topics: topic -> reason it was not published (message package not installed).
        loops: complete passes through the bag.
        seconds: wall time from the first message to the end [s].
        bag_seconds: bag time covered by one pass [s].
    """

    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    loops: int = 0
    seconds: float = 0.0
    bag_seconds: float = 0.0

    @property
    def messages(self) -> int:
        """Total number of messages published."""
        return sum(self.published.values())


def message_class(msgtype: str) -> Any:
    """The rclpy message class of a ROS 2 type name such as "sensor_msgs/msg/CompressedImage".

    Raises:
        ReplayError: the package is not installed or has no such message.
    """
    package, _, name = msgtype.rpartition("/")
    module_name = package.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ReplayError(f"{msgtype}: Python package {module_name} is not installed") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ReplayError(f"{msgtype}: {module_name} has no message {name}") from None


def _qos_profile(topic: str, offered: Sequence[Any], depth_override: int | None) -> Any:
    """rclpy QoS from the bag's offered profiles (first one), reliable keep-last 10 when none."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    transient = topic == TF_STATIC_TOPIC
    reliable = True
    depth = _DEFAULT_DEPTH if not transient else 1
    if offered:
        profile = offered[0]
        transient = profile.durability.name == "TRANSIENT_LOCAL"
        reliable = profile.reliability.name != "BEST_EFFORT"
        if profile.history.name == "KEEP_LAST" and profile.depth > 0:
            depth = int(profile.depth)
    if depth_override is not None:
        depth = depth_override
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE,
    )


def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    if not path.exists():
        raise ReplayError(f"{path} does not exist.")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as error:
        raise ReplayError(f"{path} is not a readable rosbag2: {error}") from None
    return reader


def replay_bag(
    path: Path | str,
    *,
    rate: float = 1.0,
    fast: bool = False,
    clock: bool = False,
    loop: bool = False,
    topics: Sequence[str] | None = None,
    start_offset: float = 0.0,
    delay: float = 0.0,
    wait_for_subscribers: float = 0.0,
    qos_depth: int | None = None,
    node: Any = None,
    domain_id: int | None = None,
    on_published: PublishedCallback | None = None,
    stop_event: threading.Event | None = None,
    flush_timeout: float = 2.0,
) -> ReplayReport:
    """Publishes a bag's messages as raw CDR through rclpy.

    Args:
        path: the bag directory (or a single-file bag that `rosbags` opens).
        rate: playback speed factor (2.0 = twice real time); ignored with `fast`.
        fast: publish as fast as possible, no waiting.
        clock: also publish rosgraph_msgs/Clock on /clock with the bag time.
        loop: start again after the last message until `stop_event` is set (or Ctrl-C).
        topics: topics to publish (default: all); unknown names raise ReplayError.
        start_offset: skip this much bag time from the start [s]; messages of transient-local topics
            (/tf_static) before that point are still published first.
        delay: wait this long after creating the publishers, before the first message [s].
        wait_for_subscribers: wait up to this long until every publisher has a subscriber [s].
        qos_depth: keep-last depth of every publisher instead of the bag's offered depth.
        node: an rclpy node to create the publishers on (default: a private context and node "replay");
            the publishers are destroyed again at the end, the node is left alone.
        domain_id: ROS domain of the private context (default: ROS_DOMAIN_ID); unused with `node`.
        on_published: called after each publish with (topic, bag time [ns], time.monotonic() [s]).
        stop_event: set it to stop between messages.
        flush_timeout: at the end, wait up to this long until reliable subscribers have acknowledged every
            message [s]: destroying a publisher right after a fast replay loses what is still in flight.

    Returns:
        Counts per topic, skipped topics, loops and timing.

    Raises:
        ReplayError: missing or unreadable bag, bad rate/offset, or topics the bag does not have.
    """
    if not fast and not rate > 0:
        raise ReplayError(f"rate must be > 0, got {rate}.")
    if start_offset < 0:
        raise ReplayError(f"start offset must be >= 0, got {start_offset}.")
    path = Path(path)
    reader = _open_reader(path)
    own_context = None
    created: list[Any] = []
    try:
        connections = list(reader.connections)
        available = sorted({c.topic for c in connections})
        if topics:
            unknown = [t for t in topics if t not in available]
            if unknown:
                raise ReplayError(
                    f"{path} has no topic(s) {', '.join(unknown)}; it has {', '.join(available)}."
                )
            connections = [c for c in connections if c.topic in set(topics)]
        report = ReplayReport()
        classes: dict[str, Any] = {}
        for connection in connections:
            try:
                classes[connection.msgtype] = message_class(connection.msgtype)
            except ReplayError as error:
                report.skipped_topics[connection.topic] = str(error)
        connections = [c for c in connections if c.msgtype in classes]
        if not connections:
            raise ReplayError(f"{path}: nothing to publish ({report.skipped_topics or 'no messages'}).")

        if node is None:
            import rclpy

            own_context = rclpy.Context()
            rclpy.init(context=own_context, domain_id=domain_id)
            node = rclpy.create_node("replay", context=own_context)
        for topic, reason in report.skipped_topics.items():
            node.get_logger().warning(f"not publishing {topic}: {reason}")
        publishers: dict[int, Any] = {}
        by_topic: dict[str, Any] = {}
        for connection in connections:
            if connection.topic not in by_topic:
                offered = getattr(connection.ext, "offered_qos_profiles", []) or []
                by_topic[connection.topic] = node.create_publisher(
                    classes[connection.msgtype],
                    connection.topic,
                    _qos_profile(connection.topic, offered, qos_depth),
                )
            publishers[connection.id] = by_topic[connection.topic]
        created.extend(by_topic.values())
        clock_publisher = None
        clock_class = None
        if clock:
            clock_class = message_class("rosgraph_msgs/msg/Clock")
            clock_publisher = node.create_publisher(clock_class, CLOCK_TOPIC, 10)
            created.append(clock_publisher)
        _wait_for(by_topic, wait_for_subscribers, stop_event)
        if delay > 0:
            time.sleep(delay)

        bag_start = reader.start_time
        first = bag_start + round(start_offset * 1e9)
        report.bag_seconds = max(0, reader.end_time - first) * 1e-9
        latched = [
            c
            for c in connections
            if getattr(c.ext, "offered_qos_profiles", None)
            and c.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
        ]
        if not latched:
            latched = [c for c in connections if c.topic == TF_STATIC_TOPIC]

        def publish_clock(bag_ns: int) -> None:
            if clock_publisher is not None and clock_class is not None:
                from builtin_interfaces.msg import Time

                clock_publisher.publish(
                    clock_class(clock=Time(sec=bag_ns // 1_000_000_000, nanosec=bag_ns % 1_000_000_000))
                )

        def publish(connection: Any, stamp: int, raw: Any) -> None:
            publishers[connection.id].publish(bytes(raw))
            report.published[connection.topic] = report.published.get(connection.topic, 0) + 1
            if on_published is not None:
                on_published(connection.topic, stamp, time.monotonic())

        wall_begin = time.monotonic()
        while True:
            if first > bag_start and latched:  # latched messages before the offset still count
                for connection, stamp, raw in reader.messages(connections=latched, stop=first):
                    publish(connection, stamp, raw)
            wall_zero = time.monotonic()
            for connection, stamp, raw in reader.messages(connections=connections, start=first):
                if stop_event is not None and stop_event.is_set():
                    break
                if not fast:
                    target = wall_zero + (stamp - first) * 1e-9 / rate
                    while (now := time.monotonic()) < target:
                        if stop_event is not None and stop_event.is_set():
                            break
                        if clock_publisher is not None:
                            publish_clock(first + int((now - wall_zero) * rate * 1e9))
                        time.sleep(min(target - now, _CLOCK_PERIOD_S))
                    if stop_event is not None and stop_event.is_set():
                        break
                publish_clock(stamp)
                publish(connection, stamp, raw)
            else:
                report.loops += 1
                if loop and not (stop_event is not None and stop_event.is_set()):
                    continue
            break
        report.seconds = time.monotonic() - wall_begin
        _flush(created, flush_timeout)
        return report
    finally:
        reader.close()
        if own_context is not None:
            if node is not None:
                node.destroy_node()
            own_context.try_shutdown()
        else:
            for publisher in created:
                node.destroy_publisher(publisher)


# rmw_fastrtps publishes asynchronously: publish() queues the message for a sender thread, and destroying the
# writer right after drops what is still queued. Acknowledgements flush what reliable readers receive, but a
# best-effort reader (the node's default) acknowledges nothing, whatever the writer's reliability: every replay
# lingers this long before it tears down (without it the last /odom was lost about one run in five).
LINGER_S = 0.5


def _flush(publishers: Sequence[Any], timeout: float) -> None:
    """Waits (up to `timeout` in all) until every matched reliable reader acknowledged the publishers' data, then
    at least `LINGER_S` for what best-effort readers are still to be sent."""
    from rclpy.duration import Duration

    start = time.monotonic()
    deadline = start + timeout
    for publisher in publishers:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
    time.sleep(max(0.0, min(LINGER_S - (time.monotonic() - start), deadline - time.monotonic())))


# A writer counts a subscriber as soon as it has matched the reader; the reader matches the writer a moment later
# (DDS discovery is symmetric, not simultaneous), and a best-effort reader drops what arrives before that: seen as
# the first image, camera_info and odometry lost between two processes.
MATCH_GRACE_S = 0.5


def _wait_for(publishers: dict[str, Any], timeout: float, stop_event: threading.Event | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.get_subscription_count() > 0 for p in publishers.values()):
            time.sleep(MATCH_GRACE_S)
            return
        if stop_event is not None and stop_event.is_set():
            return
        time.sleep(0.01)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `fusionocc replay` / `replay`."""
    parser.add_argument("bag", type=Path, help="rosbag2 directory (e.g. written by `fusionocc convert`)")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="playback speed factor (default: %(default)s)",
    )
    speed.add_argument("--fast", action="store_true", help="publish as fast as possible")
    parser.add_argument(
        "--clock",
        action="store_true",
        help="publish /clock (rosgraph_msgs/Clock) with bag time",
    )
    parser.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="publish only these topics")
    parser.add_argument(
        "--start-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="skip S seconds of bag time (latched /tf_static still published) [s]",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds after creating the publishers [s]",
    )
    parser.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds until every topic has a subscriber (then 0.5 s for the subscribers to "
        "match back) [s]",
    )


def run(args: argparse.Namespace) -> int:
    """Runs a replay from parsed arguments; returns 1 with a message on a named error."""
    from fusionocc_ros.transport import apply_transport_profile

    try:
        transport = apply_transport_profile("sender")  # before rclpy starts Fast DDS
    except FileNotFoundError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    print(f"transport: {transport.description}", file=sys.stderr, flush=True)
    try:
        report = replay_bag(
            args.bag,
            rate=args.rate,
            fast=args.fast,
            clock=args.clock,
            loop=args.loop,
            topics=args.topics,
            start_offset=args.start_offset,
            delay=args.delay,
            wait_for_subscribers=args.wait_for_subscribers,
        )
    except ReplayError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.bag}: {report.messages} messages on {len(report.published)} topics in {report.seconds:.2f} s "
        f"({report.loops} pass(es) of {report.bag_seconds:.2f} s bag time)"
        + (f"; skipped {', '.join(report.skipped_topics)}" if report.skipped_topics else "")
    )
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """Console script `replay`."""
    parser = argparse.ArgumentParser(prog="replay", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
