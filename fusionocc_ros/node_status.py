"""What the occupancy node reports on /diagnostics: one level and one message decided from its counters and
clocks, and the key/value pairs shown next to them.

Plain functions without ROS types, so that every level can be tested without DDS; the node turns the result
into a `diagnostic_msgs/DiagnosticStatus`. Later rules override earlier ones, most severe last:

- OK "running";
- WARN when the last published frame was degraded (cameras missing, their views zeroed);
- WARN when inference failed since the previous report, otherwise WARN when sweeps arrive but nothing was
  published for `STALL_S`;
- ERROR on a lidar dropout: images keep arriving but no sweep came for `lidar_timeout_s` (each output is
  anchored on a sweep, so the node publishes nothing until the lidar returns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum

STALL_S = 5.0  # sweeps arriving this long without an output is a stall
IMAGES_ARRIVING_S = 1.0  # images count as still arriving while the newest is at most this old


class Level(IntEnum):
    """The levels of `diagnostic_msgs/DiagnosticStatus` (the message holds one as a single byte)."""

    OK = 0
    WARN = 1
    ERROR = 2


def lidar_dropout_age(
    now: float, *, last_image: float | None, last_sweep: float | None, started: float, timeout_s: float
) -> float | None:
    """Seconds without a sweep while images still arrive, once that exceeds `timeout_s`; None otherwise.

    Args:
        now: the current monotonic time [s].
        last_image: arrival of the newest image [s, monotonic], None before the first.
        last_sweep: arrival of the newest sweep [s, monotonic], None before the first (the age then counts
            from `started`).
        started: when the node started [s, monotonic].
        timeout_s: the `lidar_timeout_s` parameter.
    """
    if last_image is None or now - last_image > IMAGES_ARRIVING_S:
        return None  # no images either: the whole rig is quiet, which is not a lidar dropout
    age = now - (last_sweep if last_sweep is not None else started)
    return age if age > timeout_s else None


def node_status(
    counters: Mapping[str, int],
    *,
    missing: Sequence[str],
    new_failures: int,
    lidar_age: float | None,
    output_age: float | None,
) -> tuple[Level, str]:
    """The level and message of the node's diagnostic status (rules in the module docstring).

    Args:
        counters: the node's counters (`in:pointcloud` tells whether sweeps arrive at all).
        missing: cameras missing from the last published frame.
        new_failures: inference failures since the previous report.
        lidar_age: `lidar_dropout_age`'s result.
        output_age: seconds since the last published frame, None when none was published yet.

    Returns:
        (level, message); the message names the cause.
    """
    level, message = Level.OK, "running"
    if missing:
        level, message = Level.WARN, f"degraded: no image from {', '.join(missing)} (view zeroed)"
    if new_failures > 0:
        level, message = Level.WARN, f"{new_failures} inference failure(s)"
    elif counters.get("in:pointcloud", 0) and (output_age is None or output_age > STALL_S):
        level, message = Level.WARN, f"lidar arrives but no occupancy was published for {STALL_S:g} s"
    if lidar_age is not None:
        level = Level.ERROR
        message = (f"lidar dropout: no PointCloud2 for {lidar_age:.1f} s while images arrive; occupancy is "
                   "paused until the lidar returns (each output is anchored on, and needs, a sweep)")
    return level, message


def status_values(
    counters: Mapping[str, int],
    *,
    processing_ms: float,
    precision: str,
    missing: Sequence[str],
    lidar_dropout: bool,
) -> list[tuple[str, str]]:
    """The key/value pairs of the status: every counter (sorted by key), then the last processing time, the
    inference precision, the cameras missing from the last frame and whether the lidar is in dropout."""
    values = [(key, str(value)) for key, value in sorted(counters.items())]
    values += [
        ("last_processing_time_ms", f"{processing_ms:.1f}"),
        ("precision", precision),
        ("missing_cameras", ", ".join(missing)),
        ("lidar_dropout", str(lidar_dropout).lower()),
    ]
    return values
