"""Sensor dropout (issue 9): a camera (or the lidar) stops publishing. Required behaviour: the node keeps
publishing from the remaining sensors (missing camera zeroed/masked), flags it in /diagnostics, and recovers
when the sensor returns. Today the synchroniser drops every group without the missing camera
(`sync:dropped:incomplete:<camera>`), so the degraded-mode tests are xfail(strict) until the node supports it; the
test that documents today's behaviour (nothing dies, drops counted, recovery) must pass."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("rclpy")

from fusionocc_core.occ3d import CAMERA_NAMES  # noqa: E402
from fusionocc_ros import reliability  # noqa: E402

DOMAIN = 100 + (os.getpid() + 7) % 100
MISSING = 2  # CAM_FRONT_RIGHT


@pytest.fixture()
def harness(tmp_path):
    path = tmp_path / "calibration.yaml"
    reliability.write_rig_calibration(path)
    h = reliability.NodeHarness(reliability.stub_model(), path, domain_id=DOMAIN)
    yield h
    h.close()


def _run(harness, frames, *, cameras=None, lidar=True):
    for frame in frames:
        harness.send_frame(frame, cameras=cameras, lidar=lidar)
        if lidar:
            harness.send_frame(frame, cameras=[], lidar=False)  # odometry: nudge the sync past the window


def test_camera_dropout_today_nothing_dies_drops_are_counted_and_output_recovers(harness):
    frames = reliability.rig_frames(6, seed=5)
    harness.send_frame(frames[0])
    harness.wait_output(frames[0].stamp_ns)
    cameras = [i for i in range(6) if i != MISSING]
    for frame in frames[1:4]:
        harness.send_frame(frame, cameras=cameras)
    for frame in frames[4:]:  # the camera returns
        harness.send_frame(frame)
        harness.wait_output(frame.stamp_ns)
    counters = harness.node.counters
    print(f"\ncamera {CAMERA_NAMES[MISSING]} missing for 3 sweeps: {counters.get('published')} published, "
          f"sync drops { {k: v for k, v in counters.items() if k.startswith('sync:dropped:incomplete')} }")
    assert counters.get(f"sync:dropped:incomplete:{CAMERA_NAMES[MISSING]}", 0) >= 2, sorted(counters.items())
    assert counters.get("inference_failures", 0) == 0


@pytest.mark.xfail(strict=True, reason="no degraded mode: LidarAnchoredSync drops groups missing a camera "
                   "(sync:dropped:incomplete); node/predictor must emit partial groups with a camera mask")
def test_camera_dropout_keeps_publishing_degraded_and_flags_it(harness):
    frames = reliability.rig_frames(5, seed=6)
    harness.send_frame(frames[0])
    harness.wait_output(frames[0].stamp_ns)
    cameras = [i for i in range(6) if i != MISSING]
    for frame in frames[1:]:
        harness.send_frame(frame, cameras=cameras)
    harness.wait_output(frames[-2].stamp_ns, timeout_s=10)
    diagnostics = harness.latest_diagnostics(after=0.0)
    assert any(CAMERA_NAMES[MISSING] in key for key in diagnostics if "degraded" in key or "missing" in key)


@pytest.mark.xfail(strict=True, reason="no lidar-dropout policy: without a PointCloud2 there is no sync "
                   "anchor, nothing is published and /diagnostics only says 'no occupancy for 5 s' when lidar "
                   "arrives; a policy (camera-only output anchored on CAM_FRONT, or an explicit stop + ERROR) "
                   "must be implemented and documented")
def test_lidar_dropout_has_a_documented_policy(harness):
    frames = reliability.rig_frames(4, seed=7)
    harness.send_frame(frames[0])
    harness.wait_output(frames[0].stamp_ns)
    for frame in frames[1:]:
        harness.send_frame(frame, lidar=False)
    harness.wait_output(frames[-1].camera_stamps_ns[0], timeout_s=10)
