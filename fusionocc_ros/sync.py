"""Lidar-anchored time synchronisation of one lidar and N cameras (no ROS types; stamps + opaque payloads).

Each lidar sweep (the anchor, stamp t) is grouped with, for every camera, the image whose stamp is nearest to
t + (window_min + window_max) / 2 among those in [t + window_min, t + window_max]. nuScenes-like rigs fire the
cameras staggered over one sweep, so the six stamps of a frame differ by up to ~50 ms.

Why not message_filters' ApproximateTimeSynchronizer: it searches the product of all per-topic queues (cost
like queue_size^7 for 7 inputs). Here every topic keeps a bounded list sorted by stamp; a message costs one
bisect insertion plus, for each pending sweep (at most `lidar_queue_size`), one bisect per camera, whatever
the queue lengths.

A camera's choice for sweep t is final ("decided") when any of these holds:
1. the chosen image is at or after the window centre (a later image can only be farther away);
2. that camera has an image newer than the window centre's mirror of the chosen one (it is farther away);
3. the stream has moved on: some topic delivered a stamp >= t + window_max + arrival_slack, so (assuming each
   message arrives no later than `arrival_slack` after newer stamps of other topics) nothing else can come.
A sweep is emitted when every camera is decided and has an image; it is dropped as incomplete (reason
`incomplete:<camera>`) when a camera is decided without one, unless at most `max_missing_cameras` cameras
are missing: then it is emitted degraded (their entries None, counted as `degraded:<camera>`), so a dead
camera costs its own view and not the whole output. Other drop reasons are counted too:
`late_lidar` (a sweep not newer than the last emitted one), `duplicate_lidar`, `lidar_queue_full` (the oldest
pending sweep is evicted), `superseded` (an older pending sweep still undecided when a newer one is emitted),
`late_camera` (an image older than anything that can still be used). A stamp more than `reset_jump_s` before
the newest stamp of its topic (a bag loop, a restarted driver, simulated time reset) clears every queue and is
counted as `time_reset`; the next emitted group carries `reset=True`.
"""
from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fusionocc_core.errors import FusionOccError

_NS = 1_000_000_000


class SyncError(FusionOccError, ValueError):
    """Invalid synchroniser configuration or input (unknown camera)."""


@dataclass(frozen=True)
class SyncGroup:
    """One lidar sweep with one image per camera.

    Attributes:
        stamp_ns: the lidar sweep stamp [ns].
        lidar: the lidar payload as given to `add_lidar`.
        camera_stamps_ns: per camera (in `camera_names` order) the chosen image stamp [ns], None if missing.
        cameras: per camera the image payload, None if missing (a degraded group).
        reset: True for the first group after a time reset (temporal state should be cleared).
    """

    stamp_ns: int
    lidar: Any
    camera_stamps_ns: tuple[int | None, ...]
    cameras: tuple[Any, ...]
    reset: bool = False

    @property
    def missing(self) -> tuple[int, ...]:
        """Indices of the cameras without an image (empty for a complete group)."""
        return tuple(i for i, s in enumerate(self.camera_stamps_ns) if s is None)

    @property
    def max_offset_s(self) -> float:
        """Largest |camera stamp - lidar stamp| over the cameras present [s]."""
        return max((abs(s - self.stamp_ns) for s in self.camera_stamps_ns if s is not None), default=0) / _NS


@dataclass
class _Queue:
    """Messages of one topic sorted by stamp (bounded)."""

    capacity: int
    stamps: list[int] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)
    newest: int | None = None

    def insert(self, stamp: int, payload: Any) -> bool:
        """Inserts in stamp order; False (nothing stored) when full and older than everything held."""
        index = bisect.bisect_right(self.stamps, stamp)
        if len(self.stamps) >= self.capacity:
            if index == 0:
                return False
            del self.stamps[0], self.payloads[0]
            index -= 1
        self.stamps.insert(index, stamp)
        self.payloads.insert(index, payload)
        self.newest = stamp if self.newest is None else max(self.newest, stamp)
        return True

    def drop_before(self, stamp: int) -> None:
        index = bisect.bisect_left(self.stamps, stamp)
        del self.stamps[:index], self.payloads[:index]

    def clear(self) -> None:
        self.stamps.clear()
        self.payloads.clear()
        self.newest = None


class LidarAnchoredSync:
    """Groups each lidar sweep with the nearest image of every camera (see the module docstring).

    Args:
        camera_names: camera identifiers, in the order groups return them.
        window_min_s: earliest accepted camera stamp relative to the lidar stamp [s] (negative = before).
        window_max_s: latest accepted camera stamp relative to the lidar stamp [s].
        camera_queue_size: images kept per camera.
        lidar_queue_size: sweeps kept waiting for their images.
        arrival_slack_s: how much later than newer stamps of other topics a message may still arrive [s].
        reset_jump_s: a stamp this much older than its topic's newest stamp resets everything [s].
        max_missing_cameras: a sweep missing at most this many cameras (never all) is emitted degraded
            instead of dropped.

    Raises:
        SyncError: an empty or duplicated camera list, window_min_s > window_max_s, or sizes < 1.
    """

    def __init__(self, camera_names: Sequence[str], *, window_min_s: float = -0.05,
                 window_max_s: float = 0.05, camera_queue_size: int = 8, lidar_queue_size: int = 4,
                 arrival_slack_s: float = 0.0, reset_jump_s: float = 1.0, max_missing_cameras: int = 0) -> None:
        names = tuple(camera_names)
        if not names or len(set(names)) != len(names):
            raise SyncError(f"camera_names must be non-empty and unique, got {names}")
        if window_min_s > window_max_s:
            raise SyncError(f"window_min_s ({window_min_s}) must not exceed window_max_s ({window_max_s})")
        if camera_queue_size < 1 or lidar_queue_size < 1:
            raise SyncError(f"queue sizes must be >= 1, got camera {camera_queue_size}, "
                            f"lidar {lidar_queue_size}")
        if arrival_slack_s < 0 or reset_jump_s <= 0:
            raise SyncError(f"arrival_slack_s must be >= 0 and reset_jump_s > 0, got {arrival_slack_s}, "
                            f"{reset_jump_s}")
        if not 0 <= max_missing_cameras < len(names):
            raise SyncError(f"max_missing_cameras must be in [0, {len(names) - 1}], got {max_missing_cameras}")
        self.camera_names = names
        self._max_missing = max_missing_cameras
        self._index = {name: i for i, name in enumerate(names)}
        self._win_min = round(window_min_s * _NS)
        self._win_max = round(window_max_s * _NS)
        self._slack = round(arrival_slack_s * _NS)
        self._reset_jump = round(reset_jump_s * _NS)
        self._cameras = [_Queue(camera_queue_size) for _ in names]
        self._lidar = _Queue(lidar_queue_size)
        self._clock: int | None = None  # newest stamp of any topic
        self._last_emitted: int | None = None
        self._reset_pending = False
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------------------------------------------ input

    def add_camera(self, name: str, stamp_ns: int, payload: Any) -> list[SyncGroup]:
        """Adds one image; returns the groups this completes (oldest first)."""
        if name not in self._index:
            raise SyncError(f"unknown camera {name!r}; configured: {', '.join(self.camera_names)}")
        queue = self._cameras[self._index[name]]
        self._check_reset(queue, stamp_ns)
        self.counters[f"in:{name}"] += 1
        too_old = self._last_emitted is not None and stamp_ns < self._last_emitted + self._win_min
        if too_old or not queue.insert(stamp_ns, payload):
            self.counters["dropped:late_camera"] += 1
            return []
        return self._advance(stamp_ns)

    def add_lidar(self, stamp_ns: int, payload: Any) -> list[SyncGroup]:
        """Adds one lidar sweep; returns the groups this completes (oldest first)."""
        self._check_reset(self._lidar, stamp_ns)
        self.counters["in:lidar"] += 1
        if self._last_emitted is not None and stamp_ns <= self._last_emitted:
            self.counters["dropped:late_lidar"] += 1
            return []
        position = bisect.bisect_left(self._lidar.stamps, stamp_ns)
        if position < len(self._lidar.stamps) and self._lidar.stamps[position] == stamp_ns:
            self.counters["dropped:duplicate_lidar"] += 1
            return []
        if len(self._lidar.stamps) >= self._lidar.capacity:
            self.counters["dropped:lidar_queue_full"] += 1
        if not self._lidar.insert(stamp_ns, payload):  # older than every pending sweep of a full queue
            return []
        return self._advance(stamp_ns)

    def reset(self) -> None:
        """Forgets every queued message (counters are kept)."""
        for queue in (*self._cameras, self._lidar):
            queue.clear()
        self._clock = None
        self._last_emitted = None
        self._reset_pending = True

    @property
    def pending_sweeps(self) -> int:
        """Lidar sweeps waiting for their images."""
        return len(self._lidar.stamps)

    # ---------------------------------------------------------------------------------------------- helpers

    def _check_reset(self, queue: _Queue, stamp_ns: int) -> None:
        if queue.newest is not None and stamp_ns < queue.newest - self._reset_jump:
            self.counters["time_reset"] += 1
            self.reset()

    def _choose(self, camera: int, anchor: int) -> tuple[int | None, bool]:
        """(index of the chosen image or None, decided) for one camera and the sweep at `anchor`."""
        stamps = self._cameras[camera].stamps
        low, high = anchor + self._win_min, anchor + self._win_max
        centre = (low + high) // 2
        right = bisect.bisect_left(stamps, centre)
        best: int | None = None
        for index in (right - 1, right):
            if 0 <= index < len(stamps) and low <= stamps[index] <= high and (
                best is None or abs(stamps[index] - centre) < abs(stamps[best] - centre)
            ):
                best = index
        stream_moved_on = self._clock is not None and self._clock >= high + self._slack
        if best is None:
            newest = self._cameras[camera].newest
            return None, stream_moved_on or (newest is not None and newest > high)
        chosen = stamps[best]
        later_exists = best + 1 < len(stamps)  # sorted: the next one is farther from the centre than `best`
        return best, chosen >= centre or later_exists or stream_moved_on

    def _advance(self, stamp_ns: int) -> list[SyncGroup]:
        self._clock = stamp_ns if self._clock is None else max(self._clock, stamp_ns)
        emitted: list[SyncGroup] = []
        position = 0
        while position < len(self._lidar.stamps):
            anchor = self._lidar.stamps[position]
            choices = []
            for camera in range(len(self.camera_names)):
                choice = self._choose(camera, anchor)
                if not choice[1]:
                    break  # one undecided camera keeps the sweep waiting: no need to look at the others
                choices.append(choice)
            if len(choices) < len(self.camera_names):
                position += 1
                continue
            payload = self._lidar.payloads[position]
            missing = [self.camera_names[c] for c, (index, _) in enumerate(choices) if index is None]
            if len(missing) > self._max_missing:
                del self._lidar.stamps[position], self._lidar.payloads[position]
                self.counters["incomplete_sweeps"] += 1  # one per sweep; the per-camera keys say which camera
                for name in missing:
                    self.counters[f"dropped:incomplete:{name}"] += 1
                continue
            # Sweeps before this one that are still undecided can no longer be emitted in order.
            if position:
                self.counters["dropped:superseded"] += position
            del self._lidar.stamps[: position + 1], self._lidar.payloads[: position + 1]
            position = 0
            for name in missing:
                self.counters[f"degraded:{name}"] += 1
            emitted.append(SyncGroup(
                stamp_ns=anchor,
                lidar=payload,
                camera_stamps_ns=tuple(None if i is None else self._cameras[c].stamps[i]
                                       for c, (i, _) in enumerate(choices)),
                cameras=tuple(None if i is None else self._cameras[c].payloads[i] for c, (i, _) in enumerate(choices)),
                reset=self._reset_pending,
            ))
            self._reset_pending = False
            self._last_emitted = anchor
            self.counters["synced"] += 1
            for queue in self._cameras:  # images before the next window can never be chosen again
                queue.drop_before(anchor + self._win_min)
        return emitted
