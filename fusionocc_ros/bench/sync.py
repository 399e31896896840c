"""Suite `sync`: LidarAnchoredSync against a straightforward linear search over the candidate queues, and
against a re-implementation of message_filters' product-of-queues search."""
from __future__ import annotations

import itertools
from functools import partial

import numpy as np

from fusionocc_ros.bench.common import Row, SuiteResult, time_call

NUSCENES_CAMERA_OFFSETS_MS = (-33.0, -25.0, -17.0, 17.0, 25.0, 33.0)  # stagger of the six cameras in a sweep

Event = tuple[str, int]  # (topic, stamp_ns)
Group = tuple[int, tuple[int | None, ...]]  # (lidar stamp, camera stamps) [ns]


def nuscenes_timed_stream(seconds: float, *, drop: float, reorder: float, seed: int) -> list[Event]:
    """(topic, stamp_ns) in arrival order: lidar at 20 Hz, six cameras at 12 Hz staggered across the sweep,
    a fraction `drop` of messages lost and a fraction `reorder` swapped with their successor."""
    from fusionocc_core.occ3d import CAMERA_NAMES

    rng = np.random.default_rng(seed)
    events = [("lidar", int(t * 1e9)) for t in np.arange(0.0, seconds, 0.05)]
    for name, offset in zip(CAMERA_NAMES, NUSCENES_CAMERA_OFFSETS_MS, strict=True):
        events += [(name, int((t + offset / 1e3) * 1e9)) for t in np.arange(0.1, seconds, 1 / 12)]
    events.sort(key=lambda event: event[1])
    events = [event for event in events if rng.random() >= drop]
    for i in range(len(events) - 1):
        if rng.random() < reorder:
            events[i], events[i + 1] = events[i + 1], events[i]
    return events


class LinearSearchSync:
    """The straightforward design: per-topic lists; on every message, every pending sweep scans every camera list
    for its nearest image in the window. Same grouping rule as LidarAnchoredSync, cost O(queue length)."""

    def __init__(self, cameras: tuple[str, ...], *, window_s: float, slack_s: float, queue_size: int) -> None:
        self.cameras, self.queue_size = cameras, queue_size
        self.window, self.slack = int(window_s * 1e9), int(slack_s * 1e9)
        self.queues: dict[str, list[int]] = {name: [] for name in cameras}
        self.pending: list[int] = []
        self.clock = -(2**62)
        self.last = -(2**62)

    def add(self, topic: str, stamp: int) -> list[tuple[int, tuple[int, ...]]]:
        self.clock = max(self.clock, stamp)
        if topic == "lidar":
            if stamp > self.last:
                self.pending = (self.pending + [stamp])[-self.queue_size:]
        else:
            self.queues[topic] = (self.queues[topic] + [stamp])[-self.queue_size:]
        groups = []
        for anchor in list(self.pending):
            if self.clock < anchor + self.window + self.slack:
                continue
            chosen = []
            for name in self.cameras:
                best = None
                for candidate in self.queues[name]:
                    if abs(candidate - anchor) <= self.window and (best is None or
                                                                  abs(candidate - anchor) < abs(best - anchor)):
                        best = candidate
                if best is not None:
                    chosen.append(best)
            self.pending.remove(anchor)
            if len(chosen) == len(self.cameras) and anchor > self.last:
                groups.append((anchor, tuple(chosen)))
                self.last = anchor
        return groups


class ProductSearchSync:
    """message_filters' Python ApproximateTimeSynchronizer design: on every message, search the product of all
    per-topic queues for a combination whose stamps lie within `slop`; emit the tightest one. Cost ~ Q^topics."""

    def __init__(self, topics: tuple[str, ...], *, slop_s: float, queue_size: int) -> None:
        self.topics, self.queue_size, self.slop = topics, queue_size, int(slop_s * 1e9)
        self.queues: dict[str, list[int]] = {name: [] for name in topics}

    def add(self, topic: str, stamp: int) -> list[tuple[int, tuple[int, ...]]]:
        self.queues[topic] = sorted(self.queues[topic] + [stamp])[-self.queue_size:]
        best, best_spread = None, None
        for combo in itertools.product(*(self.queues[name] for name in self.topics)):
            spread = max(combo) - min(combo)
            if spread <= self.slop and (best_spread is None or spread < best_spread):
                best, best_spread = combo, spread
        if best is None:
            return []
        for name, chosen in zip(self.topics, best, strict=True):
            self.queues[name] = [s for s in self.queues[name] if s > chosen]
        return [(best[0], best[1:])]


def anchored_groups(events: list[Event], queue_size: int, *, window_s: float,
                    slack_s: float) -> tuple[list[Group], list[float]]:
    """LidarAnchoredSync over the stream: its groups and each group's delay [ms] (stream time from the lidar
    stamp to the message that completed the group)."""
    from fusionocc_core.occ3d import CAMERA_NAMES
    from fusionocc_ros.sync import LidarAnchoredSync

    sync = LidarAnchoredSync(CAMERA_NAMES, window_min_s=-window_s, window_max_s=window_s,
                             camera_queue_size=queue_size, lidar_queue_size=queue_size, arrival_slack_s=slack_s)
    groups: list[Group] = []
    delays: list[float] = []
    for topic, stamp in events:
        new = sync.add_lidar(stamp, None) if topic == "lidar" else sync.add_camera(topic, stamp, None)
        groups += [(g.stamp_ns, g.camera_stamps_ns) for g in new]
        delays += [(stamp - g.stamp_ns) / 1e6 for g in new]
    return groups, delays


def linear_groups(events: list[Event], queue_size: int, *, window_s: float,
                  slack_s: float) -> tuple[list[Group], list[float]]:
    """LinearSearchSync over the stream, like `anchored_groups`."""
    from fusionocc_core.occ3d import CAMERA_NAMES

    sync = LinearSearchSync(CAMERA_NAMES, window_s=window_s, slack_s=slack_s, queue_size=queue_size)
    groups: list[Group] = []
    delays: list[float] = []
    for topic, stamp in events:
        new = sync.add(topic, stamp)
        groups += new
        delays += [(stamp - anchor) / 1e6 for anchor, _ in new]
    return groups, delays


def product_groups(events: list[Event], queue_size: int, *, slop_s: float) -> list[tuple[int, tuple[int, ...]]]:
    """ProductSearchSync over the stream (lidar first among the topics)."""
    from fusionocc_core.occ3d import CAMERA_NAMES

    sync = ProductSearchSync(("lidar", *CAMERA_NAMES), slop_s=slop_s, queue_size=queue_size)
    return [group for topic, stamp in events for group in sync.add(topic, stamp)]


def suite_sync(quick: bool) -> SuiteResult:
    result = SuiteResult("sync")
    seconds = 20.0 if quick else 120.0
    events = nuscenes_timed_stream(seconds, drop=0.15, reorder=0.15, seed=1)
    window_s, slack_s = 0.05, 0.06
    anchored = partial(anchored_groups, window_s=window_s, slack_s=slack_s)
    linear = partial(linear_groups, window_s=window_s, slack_s=slack_s)
    product = partial(product_groups, slop_s=2 * window_s)
    for queue_size in (8, 64) if quick else (8, 64, 512):
        found, delays = anchored(events, queue_size)
        reference, reference_delays = linear(events, queue_size)
        base, _, _ = time_call(partial(linear, events, queue_size), repeats=1 if quick else 3, warmup=0)
        median, p95, _ = time_call(partial(anchored, events, queue_size), repeats=1 if quick else 3, warmup=0)
        per_message = 1e3 / len(events)  # ms -> us per message
        result.rows.append(Row(
            f"queue {queue_size}: us/msg (groups {len(found)} vs {len(reference)}, "
            f"delay {np.mean(delays):.0f} vs {np.mean(reference_delays):.0f} ms)",
            median * per_message, p95 * per_message, baseline_ms=base * per_message,
            extra={"messages": len(events), "groups": len(found), "baseline_groups": len(reference),
                   "same_groups": found == reference, "mean_delay_ms": float(np.mean(delays)),
                   "baseline_mean_delay_ms": float(np.mean(reference_delays))}))
    short = nuscenes_timed_stream(2.0 if quick else 10.0, drop=0.15, reorder=0.15, seed=1)
    for queue_size in (2, 3) if quick else (2, 3, 4):
        found, _ = anchored(short, queue_size)
        searched = product(short, queue_size)
        base, _, _ = time_call(partial(product, short, queue_size), repeats=1, warmup=0)
        median, p95, _ = time_call(partial(anchored, short, queue_size), repeats=1 if quick else 3, warmup=0)
        per_message = 1e3 / len(short)
        result.rows.append(Row(
            f"vs product search, queue {queue_size}: us/msg (groups {len(found)} vs {len(searched)})",
            median * per_message, p95 * per_message, baseline_ms=base * per_message,
            extra={"messages": len(short), "groups": len(found), "baseline_groups": len(searched)}))
    result.notes.append(f"{len(events)} messages, {seconds:.0f} s of a 7-topic nuScenes-timed stream, 15% dropped, "
                        "15% reordered; the 'ms' columns are microseconds per message here; delay = stream time "
                        "from the lidar stamp to the message that completed its group")
    return result
