"""Sensor dropout: a camera (or the lidar) stops publishing.

Camera: with `sync.max_missing_cameras` >= 1 (default 2) the node keeps publishing from the remaining sensors
(the missing camera's features zeroed through the model's `camera_mask`), says so in /diagnostics (WARN,
`missing_cameras`, `sync:degraded:<camera>`) and recovers when the camera returns; with 0 it drops those
sweeps (counted). Lidar: the documented policy is to stop and report ERROR (`lidar_dropout`) while images
arrive without sweeps, and to resume when the lidar returns."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time

import pytest
import torch

pytest.importorskip("rclpy")

from node_harness import NodeHarness
from rig import rig_frames, stamp_ns_of, write_rig_calibration
from stub_model import stub_model

from fusionocc_core.occ3d import CAMERA_NAMES

DOMAIN = 100 + (os.getpid() + 7) % 100
MISSING = 2  # CAM_FRONT_RIGHT
OK, WARN, ERROR = "0", "1", "2"


@pytest.fixture
def calibration(tmp_path):
    path = tmp_path / "calibration.yaml"
    write_rig_calibration(path)
    return path


@pytest.fixture
def harness(calibration):
    h = NodeHarness(stub_model(), calibration, domain_id=DOMAIN)
    yield h
    h.close()


def test_camera_dropout_with_the_strict_policy_drops_counted_and_output_recovers(calibration):
    harness = NodeHarness(stub_model(), calibration, domain_id=DOMAIN, **{"sync.max_missing_cameras": 0})
    try:
        frames = rig_frames(6, seed=5)
        harness.send_frame(frames[0])
        harness.wait_output(frames[0].stamp_ns)
        cameras = [i for i in range(6) if i != MISSING]
        for frame in frames[1:4]:
            harness.send_frame(frame, cameras=cameras)
        for frame in frames[4:]:  # the camera returns
            harness.send_frame(frame)
            harness.wait_output(frame.stamp_ns)
        counters = harness.node.counters
    finally:
        harness.close()
    assert counters.get(f"sync:dropped:incomplete:{CAMERA_NAMES[MISSING]}", 0) >= 2, sorted(counters.items())
    assert counters.get("inference_failures", 0) == 0


def test_camera_dropout_keeps_publishing_degraded_flags_it_and_recovers(harness):
    frames = rig_frames(8, seed=6)
    harness.send_frame(frames[0])
    harness.wait_output(frames[0].stamp_ns)
    cameras = [i for i in range(6) if i != MISSING]
    harness.send_frame(frames[1], cameras=cameras)
    for previous, frame in itertools.pairwise(frames[1:5]):  # a sweep is emitted once the stream moves past it
        harness.send_frame(frame, cameras=cameras)
        harness.wait_output(previous.stamp_ns, timeout_s=10)
    during = harness.latest_diagnostics(after=time.monotonic())
    assert during["__level__"] == WARN and CAMERA_NAMES[MISSING] in during["__message__"], during
    assert during["missing_cameras"] == CAMERA_NAMES[MISSING]
    assert int(during[f"sync:degraded:{CAMERA_NAMES[MISSING]}"]) >= 3
    for previous, frame in itertools.pairwise(frames[4:]):  # the camera returns
        harness.send_frame(frame)
        harness.wait_output(previous.stamp_ns, timeout_s=10)
    after = harness.latest_diagnostics(after=time.monotonic())
    assert after["__level__"] == OK and after["missing_cameras"] == "", after
    counters = harness.node.counters
    assert counters.get("inference_failures", 0) == 0
    assert counters.get("sync:incomplete_sweeps", 0) == 0  # no sweep was lost to the dead camera


def test_degraded_frames_reach_the_model_with_the_missing_camera_masked(calibration):
    seen: list[torch.Tensor | None] = []
    model = stub_model()
    inner_predict = model.predict

    def predict(**inputs):
        seen.append(inputs.get("camera_mask"))
        return inner_predict(**inputs)

    model.predict = predict
    harness = NodeHarness(model, calibration, domain_id=DOMAIN)
    try:
        frames = rig_frames(4, seed=8)
        harness.send_frame(frames[0])
        harness.wait_output(frames[0].stamp_ns)
        harness.send_frame(frames[1], cameras=[i for i in range(6) if i != MISSING])
        harness.send_frame(frames[2])
        harness.wait_output(frames[1].stamp_ns, timeout_s=10)
        harness.send_frame(frames[3])
        harness.wait_output(frames[2].stamp_ns, timeout_s=10)
    finally:
        harness.close()
    assert len(seen) >= 3, [None if m is None else m.tolist() for m in seen]
    assert seen[0] is None  # every camera there: no mask
    others = [i for i in range(6) if i != MISSING]
    mask = seen[1]
    assert mask is not None and mask.shape == (1, 2, 6)
    assert mask[0, 0, MISSING] == 0 and bool((mask[0, :, others] == 1).all())  # current frame lacks it
    # (the previous-frame slot repeats the current frame here: no keyframe 0.5 s back in a 0.1 s rig stream)
    assert seen[2] is None or bool((seen[2][0, 0] == 1).all())  # the camera is back in the current frame


def test_lidar_dropout_stops_with_an_error_and_resumes(harness):
    frames = rig_frames(40, seed=7)
    harness.send_frame(frames[0])
    harness.wait_output(frames[0].stamp_ns)
    harness.node.wait_idle(10.0)  # the counter follows the outputs
    published = harness.node.counters["published"]
    deadline = time.monotonic() + 2.5  # > lidar_timeout_s (1 s) of images without sweeps
    index = 1
    while time.monotonic() < deadline and index < len(frames) - 3:
        harness.send_frame(frames[index], lidar=False)
        index += 1
        time.sleep(0.2)
    during = harness.latest_diagnostics(after=time.monotonic())
    assert during["__level__"] == ERROR and "lidar dropout" in during["__message__"], during
    assert during["lidar_dropout"] == "true"
    assert harness.node.counters["published"] == published  # nothing made up without the lidar
    for frame in frames[index:index + 2]:  # the lidar returns
        harness.send_frame(frame)
    harness.wait_output(frames[index].stamp_ns, timeout_s=10)
    after = harness.latest_diagnostics(after=time.monotonic())
    assert after["lidar_dropout"] == "false" and after["__level__"] != ERROR, after


def test_a_corrupt_jpeg_costs_its_camera_not_the_frame(calibration):
    """A compressed image is decoded in the worker: if it is corrupt, that camera is rejected (counted) and the
    frame is published degraded; with the strict policy the whole frame is dropped instead."""
    for allowed, published in ((2, True), (0, False)):
        harness = NodeHarness(stub_model(), calibration, domain_id=DOMAIN, image_transport="compressed",
                              **{"sync.max_missing_cameras": allowed})
        try:
            frames = rig_frames(4, seed=9)
            harness.send_frame(frames[0])
            harness.wait_output(frames[0].stamp_ns)
            jpegs = list(frames[1].jpegs)
            jpegs[MISSING] = jpegs[MISSING][:40] + b"\x00" * 200  # header kept, scan data destroyed
            harness.send_frame(dataclasses.replace(frames[1], jpegs=jpegs))
            harness.send_frame(frames[2])
            harness.wait_output(frames[2].stamp_ns, timeout_s=10)
            outputs = {stamp for _, stamp in ((a, stamp_ns_of(m)) for a, m in harness.outputs("dense"))}
            counters = harness.node.counters
        finally:
            harness.close()
        rejected = sum(v for k, v in counters.items() if k.startswith(f"rejected:{CAMERA_NAMES[MISSING]}:"))
        assert rejected == 1, sorted(counters.items())
        assert (frames[1].stamp_ns in outputs) == published
        assert counters.get("inference_failures", 0) == 0
