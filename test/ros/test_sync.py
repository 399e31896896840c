"""LidarAnchoredSync on nuScenes-like stamp patterns, against a brute-force reference."""
from __future__ import annotations

import numpy as np
import pytest

from fusionocc_ros.sync import LidarAnchoredSync, SyncError

CAMS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")
MS = 1_000_000
T0 = 1_532_402_927_000_000_000
# Real nuScenes: the six cameras fire 0..43 ms BEFORE the LIDAR_TOP stamp of the same frame.
NUSCENES_OFFSETS_MS = {"CAM_FRONT_LEFT": -43, "CAM_FRONT": -35, "CAM_FRONT_RIGHT": -28, "CAM_BACK_LEFT": -1,
                       "CAM_BACK": -10, "CAM_BACK_RIGHT": -20}


def _stream(seconds: float = 3.0, offsets_ms=NUSCENES_OFFSETS_MS, *, skip=()):
    """(stamp_ns, topic) events: lidar at 20 Hz, cameras at 12 Hz with fixed per-camera offsets."""
    events = [(T0 + j * 50 * MS, "lidar") for j in range(int(seconds * 20))]
    for name, offset in offsets_ms.items():
        for m in range(int(seconds * 12)):
            stamp = T0 + round(m * 1e9 / 12) + offset * MS
            if (name, m) not in skip:
                events.append((stamp, name))
    return sorted(events)


def _reference(events, window_min_ms, window_max_ms):
    """Brute force: for every sweep and camera, the image nearest the window centre, or None."""
    stamps = {name: np.array([s for s, t in events if t == name]) for name in CAMS}
    groups = {}
    for stamp, topic in events:
        if topic != "lidar":
            continue
        low, high = stamp + window_min_ms * MS, stamp + window_max_ms * MS
        centre = (low + high) // 2
        chosen = []
        for name in CAMS:
            cands = stamps[name][(stamps[name] >= low) & (stamps[name] <= high)]
            chosen.append(None if cands.size == 0 else int(cands[np.argmin(np.abs(cands - centre))]))
        groups[stamp] = tuple(chosen)
    return groups


def _feed(sync, events):
    out = []
    for stamp, topic in events:
        payload = (topic, stamp)
        if topic == "lidar":
            out += sync.add_lidar(stamp, payload)
        else:
            out += sync.add_camera(topic, stamp, payload)
    return out


@pytest.mark.parametrize("window", [(-50, 50), (-60, 10)])
def test_nuscenes_stagger_every_sweep_grouped_like_brute_force(window):
    events = _stream()
    sync = LidarAnchoredSync(CAMS, window_min_s=window[0] / 1e3, window_max_s=window[1] / 1e3)
    groups = _feed(sync, events)
    reference = _reference(events, *window)
    complete = {s: g for s, g in reference.items() if None not in g}
    # The last sweeps may still wait for evidence that no better image comes.
    assert len(groups) >= len(complete) - 2
    for group in groups:
        assert group.camera_stamps_ns == complete[group.stamp_ns]
        assert group.lidar == ("lidar", group.stamp_ns)
        assert list(group.cameras) == list(zip(CAMS, group.camera_stamps_ns, strict=True))
        assert not group.reset
    assert [g.stamp_ns for g in groups] == sorted(g.stamp_ns for g in groups)
    assert sync.counters["synced"] == len(groups)


def test_keyframe_groups_match_the_dataset_sample_with_a_rig_specific_window():
    events = _stream()
    groups = _feed(LidarAnchoredSync(CAMS, window_min_s=-0.06, window_max_s=0.01), events)
    keyframes = [g for g in groups if (g.stamp_ns - T0) % (500 * MS) == 0]
    assert len(keyframes) >= 5
    for group in keyframes:  # every camera is the one fired 0..43 ms before this sweep, as in the sample
        offsets = [(s - group.stamp_ns) // MS for s in group.camera_stamps_ns]
        assert offsets == [NUSCENES_OFFSETS_MS[name] for name in CAMS]


def test_cameras_after_the_sweep_are_emitted_without_waiting():
    offsets = {name: 7 * i for i, name in enumerate(CAMS)}  # 0..35 ms after the sweep
    sync = LidarAnchoredSync(CAMS, window_min_s=-0.01, window_max_s=0.06)
    lidar = T0
    assert sync.add_lidar(lidar, "sweep") == []
    emitted = []
    for name in CAMS:
        emitted += sync.add_camera(name, lidar + offsets[name] * MS, name)
    # Window centre +25 ms: images at/after it are final at once, earlier ones (0..21 ms) could still be
    # beaten by a later image until the stream clock passes the window end (+60 ms).
    assert emitted == []
    emitted = sync.add_lidar(lidar + 50 * MS, "next")  # clock +50 ms: not yet past +60 ms
    assert emitted == []
    emitted = sync.add_camera("CAM_FRONT", lidar + 83 * MS, "later")
    assert len(emitted) == 1 and emitted[0].cameras == CAMS


def test_a_dead_camera_gives_degraded_groups_for_every_sweep_and_recovers():
    dead = {("CAM_FRONT_RIGHT", m) for m in range(12, 24)}  # 1 s without CAM_FRONT_RIGHT
    events = _stream(skip=dead)
    sync = LidarAnchoredSync(CAMS, window_min_s=-0.05, window_max_s=0.05, max_missing_cameras=1)
    groups = _feed(sync, events)
    reference = _reference(events, -50, 50)
    settled = {s: g for s, g in reference.items() if s < events[-1][0] - 200 * MS}  # not at the stream's end
    degraded = {s for s, g in settled.items() if g.count(None) == 1}
    assert degraded and not any(g.count(None) > 1 for g in settled.values())
    assert {g.stamp_ns for g in groups if g.missing} == degraded  # nothing lost to the dead camera
    assert settled.keys() <= {g.stamp_ns for g in groups}
    assert sync.counters["degraded:CAM_FRONT_RIGHT"] == len(degraded)
    assert sync.counters["incomplete_sweeps"] == 0
    for group in groups:
        assert group.camera_stamps_ns == reference[group.stamp_ns]
        assert group.missing == ((CAMS.index("CAM_FRONT_RIGHT"),) if group.stamp_ns in degraded else ())
        assert all((c is None) == (s is None) for c, s in zip(group.cameras, group.camera_stamps_ns, strict=True))
    assert groups[-1].missing == ()  # the camera is back


def test_more_missing_cameras_than_allowed_still_drop_the_sweep():
    dead = {(name, m) for name in ("CAM_FRONT", "CAM_BACK") for m in range(12, 24)}
    events = _stream(skip=dead)
    sync = LidarAnchoredSync(CAMS, window_min_s=-0.05, window_max_s=0.05, max_missing_cameras=1)
    groups = _feed(sync, events)
    reference = _reference(events, -50, 50)
    lost = {s for s, g in reference.items() if g.count(None) >= 2 and s < events[-1][0] - 200 * MS}
    assert lost and not lost & {g.stamp_ns for g in groups}
    assert sync.counters["incomplete_sweeps"] == len(lost)


@pytest.mark.parametrize("value", [-1, len(CAMS)])
def test_max_missing_cameras_must_leave_one_camera(value):
    with pytest.raises(SyncError, match="max_missing_cameras"):
        LidarAnchoredSync(CAMS, max_missing_cameras=value)


def test_a_dropped_camera_frame_drops_only_the_sweeps_that_needed_it():
    skip = {("CAM_BACK", 12)}  # CAM_BACK frame at 1.0 s - 10 ms missing
    events = _stream(skip=skip)
    sync = LidarAnchoredSync(CAMS, window_min_s=-0.05, window_max_s=0.05)
    groups = _feed(sync, events)
    reference = _reference(events, -50, 50)
    lost = {s for s, g in reference.items() if g[CAMS.index("CAM_BACK")] is None}
    assert lost, "the skipped frame must leave some sweep without CAM_BACK"
    assert sync.counters["dropped:incomplete:CAM_BACK"] == len(lost)
    assert sync.counters["incomplete_sweeps"] == len(lost)  # once per sweep, whatever cameras it lacks
    assert not lost & {g.stamp_ns for g in groups}
    for group in groups:
        assert group.camera_stamps_ns == reference[group.stamp_ns]


def test_out_of_order_arrival_with_slack_gives_the_same_groups():
    events = _stream()
    rng = np.random.default_rng(3)
    # Images arrive 0-30 ms after their stamp (lidar immediately), so arrival order differs from stamp order;
    # each topic stays in order.
    latency = {name: rng.uniform(0, 30) for name in CAMS}
    arrival = sorted(events, key=lambda e: e[0] + (0 if e[1] == "lidar" else latency[e[1]] * MS))
    assert arrival != events
    in_order = _feed(LidarAnchoredSync(CAMS, window_min_s=-0.05, window_max_s=0.05), events)
    shuffled_sync = LidarAnchoredSync(CAMS, window_min_s=-0.05, window_max_s=0.05, arrival_slack_s=0.035)
    shuffled = _feed(shuffled_sync, arrival)
    by_stamp = {g.stamp_ns: g.camera_stamps_ns for g in in_order}
    assert len(shuffled) >= len(in_order) - 2
    for group in shuffled:
        assert group.camera_stamps_ns == by_stamp[group.stamp_ns]


def test_late_and_duplicate_lidar_are_dropped_and_counted():
    events = _stream(1.0)
    sync = LidarAnchoredSync(CAMS)
    groups = _feed(sync, events)
    newest = groups[-1].stamp_ns
    assert sync.add_lidar(newest - 50 * MS, "late") == []
    assert sync.counters["dropped:late_lidar"] == 1
    pending = T0 + 2000 * MS
    sync.add_lidar(pending, "a")
    sync.add_lidar(pending, "b")
    assert sync.counters["dropped:duplicate_lidar"] == 1


def test_time_going_backwards_resets_and_flags_the_next_group():
    events = _stream(1.0)
    sync = LidarAnchoredSync(CAMS)
    first = _feed(sync, events)
    assert first and not any(g.reset for g in first)
    looped = [(s - T0 + T0 - 3_600 * 1_000_000_000, t) for s, t in events]  # a bag loop one hour back
    second = _feed(sync, looped)
    assert sync.counters["time_reset"] == 1
    assert second and second[0].reset and not any(g.reset for g in second[1:])
    assert len(second) == len(first)


def test_queues_stay_bounded_and_lidar_overflow_is_counted():
    sync = LidarAnchoredSync(CAMS, camera_queue_size=3, lidar_queue_size=2, window_min_s=0.5,
                             window_max_s=0.6)
    for j in range(10):  # lidar only, windows in the future: nothing can be decided
        sync.add_lidar(T0 + j * 50 * MS, j)
    assert sync.pending_sweeps == 2
    assert sync.counters["dropped:lidar_queue_full"] == 8
    for m in range(10):
        sync.add_camera("CAM_FRONT", T0 + m * 83 * MS, m)
    assert max(len(q.stamps) for q in sync._cameras) <= 3
    sync.add_lidar(T0 + 5000 * MS, "far later")  # evicts one more; the stream moved on past the other
    assert sync.counters["dropped:lidar_queue_full"] == 9
    assert sync.counters["dropped:incomplete:CAM_FRONT_LEFT"] == 1 and sync.pending_sweeps == 1


def test_late_camera_is_counted_and_bad_configuration_is_rejected():
    sync = LidarAnchoredSync(CAMS)
    _feed(sync, _stream(1.0))
    sync.add_camera("CAM_FRONT", T0, "ancient")
    assert sync.counters["dropped:late_camera"] == 1
    with pytest.raises(SyncError, match="unknown camera 'CAM_TOP'"):
        sync.add_camera("CAM_TOP", T0, None)
    with pytest.raises(SyncError, match="must not exceed"):
        LidarAnchoredSync(CAMS, window_min_s=0.1, window_max_s=0.0)
    with pytest.raises(SyncError, match="unique"):
        LidarAnchoredSync(("A", "A"))
