"""Sustained overload: a 10 Hz rig stream played faster than a slow stub model infers, from a player process
of its own (as `ros2 bag play` would send it), with latency, drop counters and the node process's memory."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path

import numpy as np
import rclpy
from memory import rss_kb
from nav_msgs.msg import Odometry
from node_harness import NodeHarness
from rclpy.context import Context
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rig import RigFrame, rig_cloud_msg, rig_frames, rig_image_msg, rig_odometry_msg
from sensor_msgs.msg import PointCloud2
from stub_model import stub_model

# One counter per dropped sweep (a sweep missing two cameras counts once in sync:incomplete_sweeps, twice in
# the per-camera sync:dropped:incomplete:<camera> keys, which are therefore not summed here).
_SWEEP_DROPS = ("sync:incomplete_sweeps", "sync:dropped:late_lidar", "sync:dropped:duplicate_lidar",
                "sync:dropped:lidar_queue_full", "sync:dropped:superseded", "dropped:worker_busy",
                "rejected:pointcloud")


@dataclass
class OverloadFigures:
    """What a sustained overload run measured."""

    seconds: float
    rate: float
    sent: int  # sweeps published by the driver
    received: int  # sweeps the node received (best-effort transport may lose some)
    published: int  # occupancy outputs
    dropped: int  # sweeps dropped and counted (sync drops + worker busy)
    drop_reasons: dict[str, int]
    latency_p50_s: float
    latency_p99_s: float
    latency_max_s: float
    rss_start_kb: int
    rss_end_kb: int
    rss_growth_percent: float

    def line(self) -> str:
        mode = "as fast as possible" if self.rate <= 0 else f"{self.rate:g}x real time"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.drop_reasons.items()))
        return (
            f"overload {mode}, {self.seconds:.0f} s: {self.sent} sweeps sent, {self.received} received, "
            f"{self.published} published, {self.dropped} dropped and counted ({reasons}); latency p50 "
            f"{self.latency_p50_s * 1e3:.0f} ms, p99 {self.latency_p99_s * 1e3:.0f} ms, max "
            f"{self.latency_max_s * 1e3:.0f} ms; RSS after warm-up {self.rss_start_kb / 1024:.0f} -> "
            f"{self.rss_end_kb / 1024:.0f} MiB ({self.rss_growth_percent:+.1f} %)"
        )


def _stream_frame(template: RigFrame, index: int, period_s: float, count: int) -> RigFrame:
    """Frame `index` of an endless 10 Hz stream that loops over `count` templates, with stamps and a pose
    that keep moving forward."""
    shift = (index - index % count) * round(period_s * 1e9)
    return dataclasses.replace(
        template,
        stamp_ns=template.stamp_ns + shift,
        camera_stamps_ns=[s + shift for s in template.camera_stamps_ns],
        translation=np.array([5.0 * index * period_s, 0.0, 0.0]),
    )


def _publish_overload_stream(domain_id: int, seconds: float, rate: float, period_s: float,
                             results: Queue[dict[int, float]]) -> None:
    """Child process of `run_overload`: plays the rig stream into the node's inputs like `ros2 bag play` (a
    process of its own, so the player's Python does not compete with the node's for one GIL) and puts
    {sweep stamp: monotonic send time} on `results` (CLOCK_MONOTONIC is shared by the processes)."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("overload_player", context=context)
    base = f"/{NodeHarness.NAMESPACE}/occupancy_node"
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    templates = rig_frames(10, seed=1, period_s=period_s)
    sent_at: dict[int, float] = {}
    try:
        # Every publisher matched with the node's subscription before the clock starts (discovery takes
        # seconds, and a late match would turn the paced stream into a burst).
        publishers: dict[str, Publisher] = {
            "input/odometry": node.create_publisher(Odometry, f"{base}/input/odometry", qos),
            "input/pointcloud": node.create_publisher(PointCloud2, f"{base}/input/pointcloud", qos)}
        for camera in range(6):
            msg_type, topic, _ = rig_image_msg(templates[0], camera, "raw")
            publishers[topic] = node.create_publisher(msg_type, f"{base}/{topic}", qos)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
            time.sleep(0.01)
        start, index = time.monotonic(), 1
        while time.monotonic() - start < seconds:
            frame = _stream_frame(templates[index % len(templates)], index, period_s, len(templates))
            publishers["input/odometry"].publish(rig_odometry_msg(frame))
            publishers["input/pointcloud"].publish(rig_cloud_msg(frame))
            for camera in range(6):
                _, topic, msg = rig_image_msg(frame, camera, "raw")
                publishers[topic].publish(msg)
            sent_at[frame.stamp_ns] = time.monotonic()
            index += 1
            if rate > 0:
                time.sleep(max(0.0, start + (index - 1) * period_s / rate - time.monotonic()))
    finally:
        results.put(sent_at)
        node.destroy_node()
        context.try_shutdown()


def run_overload(calibration_file: str | Path, *, seconds: float, rate: float, delay_s: float, domain_id: int,
                 period_s: float = 0.1) -> OverloadFigures:
    """Publishes a 10 Hz rig stream at `rate` x real time (0 = as fast as possible) for `seconds`, from a
    separate process, into a node whose model takes `delay_s` per frame; samples the node process's VmRSS
    every 0.25 s (warm-up: the first quarter)."""
    harness = NodeHarness(stub_model(delay_s=delay_s), calibration_file, domain_id=domain_id,
                          keep_messages=False)
    samples: list[tuple[float, int]] = []
    try:
        first = rig_frames(1, seed=1, period_s=period_s)[0]
        harness.send_frame(first)  # camera infos (kept by the node) + discovery
        harness.wait_output(first.stamp_ns)
        before = dict(harness.node.counters)
        spawn = multiprocessing.get_context("spawn")  # never fork a process that runs DDS threads
        results: Queue[dict[int, float]] = spawn.Queue()
        player = spawn.Process(target=_publish_overload_stream, args=(domain_id, seconds, rate, period_s, results),
                               daemon=True)
        player.start()
        start = None
        while player.is_alive() and results.empty():
            if harness.node.counters.get("in:pointcloud", 0) > before.get("in:pointcloud", 0):
                start = start or time.monotonic()  # the stream has begun
                samples.append((time.monotonic() - start, rss_kb()))
            time.sleep(0.25)
        sent_at = results.get(timeout=60.0)
        player.join(timeout=30.0)
        harness.node.wait_idle(30.0)
        time.sleep(1.0)
        counters = {k: v - before.get(k, 0) for k, v in harness.node.counters.items()}
        outputs = harness.outputs("dense")
    finally:
        harness.close()
    latencies = sorted(arrival - sent_at[stamp] for arrival, stamp in outputs if stamp in sent_at)
    drops = {k: v for k, v in counters.items() if k.startswith(_SWEEP_DROPS) and v}
    after = [kb for t, kb in samples if t >= seconds / 4] or [kb for _, kb in samples] or [rss_kb()]
    warm = after[: max(1, len(after) // 10)]
    tail = after[-max(1, len(after) // 10):]
    start_kb, end_kb = int(np.median(warm)), int(np.median(tail))
    return OverloadFigures(
        seconds=seconds, rate=rate, sent=len(sent_at), received=counters.get("in:pointcloud", 0),
        published=counters.get("published", 0), dropped=sum(drops.values()), drop_reasons=drops,
        latency_p50_s=float(np.percentile(latencies, 50)) if latencies else float("nan"),
        latency_p99_s=float(np.percentile(latencies, 99)) if latencies else float("nan"),
        latency_max_s=latencies[-1] if latencies else float("nan"),
        rss_start_kb=start_kb, rss_end_kb=end_kb,
        rss_growth_percent=100.0 * (end_kb - start_kb) / max(start_kb, 1),
    )
