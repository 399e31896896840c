"""The node's /diagnostics decision (fusionocc_ros.node_status) without ROS: every level is reachable, the
message names the cause, more severe causes win, and the lidar-dropout clock."""

from __future__ import annotations

import pytest

from fusionocc_ros.node_status import (
    STALL_S,
    Level,
    lidar_dropout_age,
    node_status,
    status_values,
)

QUIET = dict(missing=(), new_failures=0, lidar_age=None, output_age=None)
FLOWING = {"in:pointcloud": 10, "published": 10}


def test_ok_while_frames_flow_and_before_any_input():
    assert node_status(FLOWING, **{**QUIET, "output_age": 0.1}) == (Level.OK, "running")
    assert node_status({}, **QUIET) == (Level.OK, "running")  # nothing arrives: nothing to complain about


def test_degraded_frame_warns_and_names_the_missing_cameras():
    level, message = node_status(FLOWING, **{**QUIET, "missing": ("CAM_BACK", "CAM_FRONT"), "output_age": 0.1})
    assert level is Level.WARN
    assert "degraded" in message and "CAM_BACK, CAM_FRONT" in message


def test_new_inference_failures_warn_with_their_count_over_a_degraded_frame():
    level, message = node_status(FLOWING, **{**QUIET, "missing": ("CAM_BACK",), "new_failures": 3,
                                             "output_age": 0.1})
    assert level is Level.WARN and message == "3 inference failure(s)"


@pytest.mark.parametrize("output_age", [None, STALL_S + 0.1])
def test_sweeps_without_output_warn_as_a_stall(output_age):
    level, message = node_status(FLOWING, **{**QUIET, "output_age": output_age})
    assert level is Level.WARN and "no occupancy was published for 5 s" in message


def test_no_stall_without_sweeps_or_within_the_stall_time():
    assert node_status({"in:CAM_FRONT": 5}, **QUIET)[0] is Level.OK
    assert node_status(FLOWING, **{**QUIET, "output_age": STALL_S - 0.1})[0] is Level.OK


def test_lidar_dropout_is_an_error_over_every_warning():
    level, message = node_status(FLOWING, missing=("CAM_BACK",), new_failures=2, lidar_age=2.5, output_age=9.0)
    assert level is Level.ERROR
    assert message.startswith("lidar dropout: no PointCloud2 for 2.5 s") and "paused" in message


def test_levels_are_the_diagnostic_status_bytes():
    diagnostic_msgs = pytest.importorskip("diagnostic_msgs.msg")
    status = diagnostic_msgs.DiagnosticStatus
    assert [bytes([level]) for level in Level] == [status.OK, status.WARN, status.ERROR]


def test_lidar_dropout_age_needs_recent_images_and_a_sweep_older_than_the_timeout():
    def age(now, image, sweep, started=0.0):
        return lidar_dropout_age(now, last_image=image, last_sweep=sweep, started=started, timeout_s=1.0)

    assert age(10.0, None, None) is None  # no images either: a quiet rig, not a dropout
    assert age(10.0, 8.5, 1.0) is None  # images stopped too
    assert age(10.0, 9.5, 9.2) is None  # a sweep within the timeout
    assert age(10.0, 9.5, 8.0) == pytest.approx(2.0)
    assert age(10.0, 9.9, None, started=7.0) == pytest.approx(3.0)  # never a sweep: counted from the start


def test_status_values_list_the_counters_sorted_then_the_state():
    values = status_values({"published": 4, "in:odometry": 9}, processing_ms=12.345, precision="fp16",
                           missing=("CAM_BACK", "CAM_FRONT"), lidar_dropout=True)
    assert values == [
        ("in:odometry", "9"),
        ("published", "4"),
        ("last_processing_time_ms", "12.3"),
        ("precision", "fp16"),
        ("missing_cameras", "CAM_BACK, CAM_FRONT"),
        ("lidar_dropout", "true"),
    ]
    assert status_values({}, processing_ms=float("nan"), precision="fp32", missing=(), lidar_dropout=False)[-1] \
        == ("lidar_dropout", "false")
