"""Suite `outputs`: PointCloud2 and MarkerArray building against a per-voxel Python loop."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from fusionocc_ros.bench.common import Row, SuiteResult, SuiteSkipped, time_call

if TYPE_CHECKING:
    from geometry_msgs.msg import Point


def _random_occupancy(occupied: int, seed: int) -> np.ndarray:
    from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE

    rng = np.random.default_rng(seed)
    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    flat = rng.choice(labels.size, size=occupied, replace=False)
    labels.reshape(-1)[flat] = rng.integers(0, FREE_LABEL, size=occupied, dtype=np.uint8)
    return labels


def loop_occupancy_to_pointcloud2(labels: np.ndarray) -> bytes:
    """The straightforward baseline: one Python iteration and one struct.pack per occupied voxel."""
    from fusionocc_core.occ3d import CLASS_COLORS, FREE_LABEL, POINT_CLOUD_RANGE, VOXEL_SIZE

    data = bytearray()
    for i, j, k in np.argwhere(labels != FREE_LABEL).tolist():  # only the occupied voxels: a fair baseline
        label = int(labels[i, j, k])
        r, g, b = (int(c) for c in CLASS_COLORS[label])
        rgb = struct.unpack("<f", struct.pack("<I", (r << 16) | (g << 8) | b))[0]
        x = POINT_CLOUD_RANGE[0] + VOXEL_SIZE * (i + 0.5)
        y = POINT_CLOUD_RANGE[1] + VOXEL_SIZE * (j + 0.5)
        z = POINT_CLOUD_RANGE[2] + VOXEL_SIZE * (k + 0.5)
        data += struct.pack("<ffffBxxx", x, y, z, rgb, label)
    return bytes(data)


def loop_occupancy_to_marker_points(labels: np.ndarray) -> dict[int, list[Point]]:
    """Baseline for the MarkerArray: per occupied voxel, a geometry_msgs/Point appended to its class's list."""
    from geometry_msgs.msg import Point

    from fusionocc_core.occ3d import FREE_LABEL, POINT_CLOUD_RANGE, VOXEL_SIZE

    per_class: dict[int, list[Point]] = {}
    for i, j, k in np.argwhere(labels != FREE_LABEL).tolist():
        per_class.setdefault(int(labels[i, j, k]), []).append(Point(
            x=POINT_CLOUD_RANGE[0] + VOXEL_SIZE * (i + 0.5),
            y=POINT_CLOUD_RANGE[1] + VOXEL_SIZE * (j + 0.5),
            z=POINT_CLOUD_RANGE[2] + VOXEL_SIZE * (k + 0.5)))
    return per_class


def _output_rows(occupied: int, *, repeats: int, baseline_repeats: int) -> list[Row]:
    """The three output rows for a grid with `occupied` random voxels, checked against the baseline first."""
    from fusionocc_ros.conversions import marker_voxels, occupancy_to_marker_array, occupancy_to_pointcloud2
    from fusionocc_ros.marker_cdr import marker_array_cdr

    labels = _random_occupancy(occupied, seed=occupied)
    cloud = occupancy_to_pointcloud2(labels)
    payload = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, 20)[:, :17]
    baseline_payload = np.frombuffer(loop_occupancy_to_pointcloud2(labels), np.uint8).reshape(-1, 20)[:, :17]
    if not np.array_equal(payload, baseline_payload):
        raise AssertionError("vectorised PointCloud2 differs from the per-voxel baseline")

    def cdr() -> bytes:  # what the node does
        indices, values, _ = marker_voxels(labels, max_cubes=labels.size)
        return marker_array_cdr(indices, values, sec=0, nanosec=0, frame_id="base_link")

    rows = []
    base, _, _ = time_call(lambda: loop_occupancy_to_pointcloud2(labels), repeats=baseline_repeats, warmup=0)
    median, p95, _ = time_call(lambda: occupancy_to_pointcloud2(labels), repeats=repeats)
    rows.append(Row(f"PointCloud2 {occupied // 1000}k voxels", median, p95, baseline_ms=base))
    base, _, _ = time_call(lambda: loop_occupancy_to_marker_points(labels), repeats=baseline_repeats, warmup=0)
    median, p95, _ = time_call(lambda: occupancy_to_marker_array(labels, max_cubes=labels.size), repeats=repeats)
    rows.append(Row(f"MarkerArray objects {occupied // 1000}k voxels", median, p95, baseline_ms=base))
    median, p95, _ = time_call(cdr, repeats=repeats)
    rows.append(Row(f"MarkerArray CDR bytes {occupied // 1000}k voxels", median, p95, baseline_ms=base))
    return rows


def suite_outputs(quick: bool) -> SuiteResult:
    from fusionocc_ros.marker_cdr import cdr_layout_matches

    try:
        layout_matches = cdr_layout_matches()  # imports rclpy and the message packages
    except ImportError as error:
        raise SuiteSkipped(f"needs the ROS message wheels: {error}") from error
    result = SuiteResult("outputs")
    if not layout_matches:
        raise AssertionError("marker_array_cdr does not match the installed visualization_msgs layout")
    sizes = (10_000, 50_000) if quick else (10_000, 50_000, 200_000)
    for occupied in sizes:
        result.rows += _output_rows(occupied, repeats=3 if quick else 10, baseline_repeats=1 if quick else 3)
    result.notes.append("targets: >= 20x faster than the per-voxel loop; PointCloud2 <= 5 ms at 50k voxels")
    return result
