"""ROS 2 message <-> numpy conversions of the occupancy node's outputs, and the one import point for the
sensor-side conversions (`fusionocc_ros.sensor_messages`, re-exported here), so `conversions.X` names every
message conversion the node uses. Failures raise `ConversionError` naming the problem; importing this module
imports no message package.

Output layouts (all in the ego frame, Occ3D grid from `fusionocc_core.occ3d`: x, y in [-40, 40) m,
z in [-1, 5.4) m, voxel 0.4 m, labels indexed [x, y, z]):

- Occupied voxels: `sensor_msgs/PointCloud2`, one point per non-free voxel at the voxel centre, fields
  `x`, `y`, `z` (FLOAT32, offsets 0, 4, 8), `rgb` (FLOAT32 at 12 holding the packed 0x00RRGGBB class colour as
  RViz expects) and `label` (UINT8 at 16, Occ3D class id 0..16); point_step 20, little endian, height 1.
- Dense grid: `sensor_msgs/Image`, height 200 (x index), width 200 (y index), encoding `8UC16` (16 uint8
  channels = the z column), step 3200, data = the (200, 200, 16) uint8 label array in C order, so
  `np.frombuffer(msg.data, np.uint8).reshape(200, 200, 16)` gives `labels[x, y, z]` back. Voxel (i, j, k)
  has its centre at (-40 + 0.4 (i + 0.5), -40 + 0.4 (j + 0.5), -1 + 0.4 (k + 0.5)) m in `header.frame_id`.
  An Image (not `std_msgs/UInt8MultiArray`) because it carries a header: the lidar stamp and the frame.
- Bird's-eye obstacles: `nav_msgs/OccupancyGrid`, 200 x 200 cells of 0.4 m, origin (-40, -40, 0) with
  identity orientation, cell (column x, row y) = `data[y * 200 + x]`: 100 where the voxel column holds any
  class that is neither free nor ground (driveable_surface, other_flat, sidewalk, terrain), 0 otherwise,
  -1 where unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fusionocc_core.occ3d import CLASS_COLORS, CLASS_NAMES, FREE_LABEL, GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE
from fusionocc_ros.cloud_layouts import OCC_FIELDS, OCC_POINT_STEP, OCC_RECORD
from fusionocc_ros.sensor_messages import (  # the sensor side, re-exported: one import point for the node
    MAX_COMPRESSED_PIXELS,
    SUPPORTED_IMAGE_ENCODINGS,
    CameraModel,
    ConversionError,
    DecodedCloud,
    as_uint8,
    build_pointcloud2,
    byte_array,
    check_compressed_image,
    check_image,
    check_image_size,
    compressed_image_to_rgb,
    field_dtypes,
    fill_missing_views,
    image_to_rgb,
    intrinsics_problem,
    intrinsics_scale,
    odometry_pose,
    pointcloud2_to_xyzir,
    rgb_to_image,
    xyzir_to_pointcloud2,
)

if TYPE_CHECKING:  # annotations only: the module must import without the ROS message packages
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

GROUND_LABELS: tuple[int, ...] = (11, 12, 13, 14)  # driveable_surface, other_flat, sidewalk, terrain
DENSE_GRID_ENCODING = f"8UC{GRID_SHAPE[2]}"

__all__ = [
    "DENSE_GRID_ENCODING",
    "GROUND_LABELS",
    "MAX_COMPRESSED_PIXELS",
    "SUPPORTED_IMAGE_ENCODINGS",
    "CameraModel",
    "ConversionError",
    "DecodedCloud",
    "MarkerStats",
    "bev_obstacles",
    "check_compressed_image",
    "check_image",
    "check_image_size",
    "compressed_image_to_rgb",
    "dense_grid_to_image",
    "fill_missing_views",
    "image_to_dense_grid",
    "image_to_rgb",
    "intrinsics_problem",
    "intrinsics_scale",
    "marker_voxels",
    "occupancy_grid_to_bev",
    "occupancy_to_marker_array",
    "occupancy_to_occupancy_grid",
    "occupancy_to_pointcloud2",
    "occupied_voxels",
    "odometry_pose",
    "packed_rgb_floats",
    "pointcloud2_to_occupancy",
    "pointcloud2_to_xyzir",
    "rgb_to_image",
    "xyzir_to_pointcloud2",
]


# ----------------------------------------------------------------------------------------------------------
# Occupancy outputs
# ----------------------------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != GRID_SHAPE:
        raise ConversionError(f"occupancy labels must have shape {GRID_SHAPE}, got {labels.shape}")
    if labels.dtype != np.uint8:
        raise ConversionError(f"occupancy labels must be uint8, got {labels.dtype}")
    if labels.size and int(labels.max()) > FREE_LABEL:
        raise ConversionError(f"occupancy label {int(labels.max())} is not a class id 0..{FREE_LABEL}")
    return labels


def occupied_voxels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) [x, y, z] indices of the non-free voxels of a checked (200, 200, 16) grid in C order, and their
    (M,) labels. One flat scan and integer division (np.argwhere's per-dimension nonzero pass costs ~1 ms of
    fixed overhead on the 640k-voxel grid, most of the time of a 10k-voxel output)."""
    flat_labels = labels.reshape(-1)
    flat = np.flatnonzero(flat_labels != FREE_LABEL)
    _, ny, nz = labels.shape
    indices = np.empty((flat.size, 3), dtype=np.int64)
    indices[:, 2] = flat % nz
    rest = flat // nz
    indices[:, 1] = rest % ny
    indices[:, 0] = rest // ny
    return indices, flat_labels[flat]


def _voxel_centres(indices: np.ndarray) -> np.ndarray:
    """(M, 3) voxel indices -> (M, 3) float32 voxel centres [m] in the ego frame."""
    origin = np.asarray(POINT_CLOUD_RANGE[:3], dtype=np.float64)
    return (origin + VOXEL_SIZE * (indices + 0.5)).astype(np.float32)


def packed_rgb_floats(labels: np.ndarray) -> np.ndarray:
    """Class colours packed as 0x00RRGGBB uint32, reinterpreted as float32 (the PointCloud2 `rgb` field)."""
    colors = CLASS_COLORS[np.asarray(labels)].astype(np.uint32)
    return ((colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]).view(np.float32)


def occupancy_cloud_records(labels: np.ndarray) -> np.ndarray:
    """The occupied (non-free) voxels of a (200, 200, 16) label grid as (M,) 20-byte records x, y, z, rgb,
    label (voxel centres in the ego frame, [x, y, z] index order): the PointCloud2 payload of /occupancy
    and of the bags' /occ_gt."""
    indices, values = occupied_voxels(labels)  # (M, 3), C order
    centres = _voxel_centres(indices)
    payload = np.zeros(indices.shape[0], dtype=OCC_RECORD)
    payload["x"], payload["y"], payload["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    payload["rgb"] = packed_rgb_floats(values)
    payload["label"] = values
    return payload


def occupancy_to_pointcloud2(labels: np.ndarray, *, header: Header | None = None) -> PointCloud2:
    """Occupied (non-free) voxels of a (200, 200, 16) uint8 label grid as a PointCloud2 (layout in the module
    docstring), in [x, y, z] index order."""
    payload = occupancy_cloud_records(_check_labels(labels))
    return build_pointcloud2(OCC_FIELDS, payload, header=header, point_step=OCC_POINT_STEP)


def pointcloud2_to_occupancy(msg: PointCloud2) -> np.ndarray:
    """Inverse of `occupancy_to_pointcloud2`: a (200, 200, 16) uint8 grid, free where the cloud has no point.

    Raises:
        ConversionError: no x, y, z or label field, or a point outside the grid.
    """
    fields = field_dtypes(msg)
    missing = [name for name in ("x", "y", "z", "label") if name not in fields]
    if missing:
        raise ConversionError(f"occupancy PointCloud2 lacks field(s) {', '.join(missing)}")
    record = np.dtype(
        {
            "names": ["x", "y", "z", "label"],
            "formats": [fields[n][0] for n in ("x", "y", "z", "label")],
            "offsets": [fields[n][1] for n in ("x", "y", "z", "label")],
            "itemsize": int(msg.point_step),
        }
    )
    count = int(msg.width) * int(msg.height)
    data = as_uint8(msg.data)
    if data.size < count * int(msg.point_step):
        raise ConversionError(f"occupancy PointCloud2 data truncated: {data.size} bytes for {count} points")
    view = np.frombuffer(data, dtype=record, count=count)
    xyz = np.stack([view["x"], view["y"], view["z"]], axis=1).astype(np.float64)
    indices = np.floor((xyz - np.asarray(POINT_CLOUD_RANGE[:3])) / VOXEL_SIZE).astype(np.int64)
    if ((indices < 0) | (indices >= np.asarray(GRID_SHAPE))).any():
        raise ConversionError("occupancy PointCloud2 has points outside the Occ3D grid")
    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    labels[indices[:, 0], indices[:, 1], indices[:, 2]] = view["label"].astype(np.uint8)
    return labels


def dense_grid_to_image(labels: np.ndarray, *, header: Header | None = None) -> Image:
    """The full (200, 200, 16) label grid as a lossless `sensor_msgs/Image`, encoding 8UC16 (module doc)."""
    from sensor_msgs.msg import Image

    labels = _check_labels(labels)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = GRID_SHAPE[0], GRID_SHAPE[1]
    msg.encoding, msg.is_bigendian, msg.step = DENSE_GRID_ENCODING, 0, GRID_SHAPE[1] * GRID_SHAPE[2]
    msg.data = byte_array(np.ascontiguousarray(labels))
    return msg


def image_to_dense_grid(msg: Image) -> np.ndarray:
    """Inverse of `dense_grid_to_image`: the (200, 200, 16) uint8 labels indexed [x, y, z].

    Raises:
        ConversionError: wrong encoding, shape or step, or truncated data.
    """
    expected = (GRID_SHAPE[0], GRID_SHAPE[1], GRID_SHAPE[1] * GRID_SHAPE[2], DENSE_GRID_ENCODING)
    got = (int(msg.height), int(msg.width), int(msg.step), str(msg.encoding))
    if got != expected:
        raise ConversionError(
            f"dense grid image must be (height, width, step, encoding) = {expected}, got {got}"
        )
    data = as_uint8(msg.data)
    if data.size != int(np.prod(GRID_SHAPE)):
        raise ConversionError(
            f"dense grid image holds {data.size} bytes, expected {int(np.prod(GRID_SHAPE))}"
        )
    return data.reshape(GRID_SHAPE).copy()


def bev_obstacles(labels: np.ndarray, *, known: np.ndarray | None = None) -> np.ndarray:
    """(200, 200) int8 bird's-eye obstacle grid indexed [x, y]: 100 where the column holds a class that is
    neither free nor ground, 0 otherwise, -1 where `known` (an optional (200, 200) bool mask) is False."""
    labels = _check_labels(labels)
    obstacle_class = np.ones(FREE_LABEL + 1, dtype=bool)
    obstacle_class[[FREE_LABEL, *GROUND_LABELS]] = False
    grid = np.where(obstacle_class[labels].any(axis=2), 100, 0).astype(np.int8)
    if known is not None:
        known = np.asarray(known, dtype=bool)
        if known.shape != GRID_SHAPE[:2]:
            raise ConversionError(f"known mask must have shape {GRID_SHAPE[:2]}, got {known.shape}")
        grid[~known] = -1
    return grid


def occupancy_to_occupancy_grid(
    labels: np.ndarray, *, header: Header | None = None, known: np.ndarray | None = None
) -> OccupancyGrid:
    """The bird's-eye obstacle grid (`bev_obstacles`) as a `nav_msgs/OccupancyGrid` (row = y, column = x)."""
    from nav_msgs.msg import OccupancyGrid

    grid = bev_obstacles(labels, known=known)
    msg = OccupancyGrid()
    if header is not None:
        msg.header = header
        msg.info.map_load_time = header.stamp
    msg.info.resolution = float(VOXEL_SIZE)
    msg.info.width, msg.info.height = GRID_SHAPE[0], GRID_SHAPE[1]
    msg.info.origin.position.x = float(POINT_CLOUD_RANGE[0])
    msg.info.origin.position.y = float(POINT_CLOUD_RANGE[1])
    msg.info.origin.position.z = 0.0
    msg.info.origin.orientation.w = 1.0
    msg.data = byte_array(np.ascontiguousarray(grid.T), "b")  # OccupancyGrid is row-major in y
    return msg


def occupancy_grid_to_bev(msg: OccupancyGrid) -> np.ndarray:
    """Inverse of `occupancy_to_occupancy_grid`: the (200, 200) int8 grid indexed [x, y]."""
    width, height = int(msg.info.width), int(msg.info.height)
    data = (
        np.frombuffer(msg.data, dtype=np.int8)
        if not isinstance(msg.data, list)
        else np.asarray(msg.data, np.int8)
    )
    if data.size != width * height:
        raise ConversionError(f"OccupancyGrid data holds {data.size} cells, info says {width} x {height}")
    return data.reshape(height, width).T.copy()


def marker_voxels(labels: np.ndarray, *, max_cubes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The occupied voxels the markers draw: at most `max_cubes`, the columns nearest to the ego first.

    Returns:
        (M, 3) voxel indices in [x, y, z] order, their (M,) labels, and how many voxels the cap left out.
    """
    labels = _check_labels(labels)
    if max_cubes < 0:
        raise ConversionError(f"max_cubes must be >= 0, got {max_cubes}")
    indices, values = occupied_voxels(labels)
    capped = max(0, indices.shape[0] - max_cubes)
    if capped:
        ring = np.abs(indices[:, :2] - (GRID_SHAPE[0] - 1) / 2.0).max(axis=1)  # Chebyshev distance, columns
        keep = np.sort(np.argsort(ring, kind="stable")[:max_cubes])
        indices, values = indices[keep], values[keep]
    return indices, values, capped


@dataclass(frozen=True)
class MarkerStats:
    """What `occupancy_to_marker_array` drew: cubes drawn and cubes left out by the cap."""

    cubes: int
    capped: int


def occupancy_to_marker_array(
    labels: np.ndarray,
    *,
    header: Header | None = None,
    max_cubes: int = 40_000,
    alpha: float = 1.0,
    namespace: str = "occupancy",
    cube_scale: float = 1.0,
) -> tuple[MarkerArray, MarkerStats]:
    """RViz markers: a DELETEALL, then one CUBE_LIST per present class (id = class id,
    ns = `namespace/<name>`), voxel-sized cubes in class colours, free omitted.

    When more than `max_cubes` voxels are occupied, the ones nearest to the ego origin (in x, y) are kept,
    because large CUBE_LISTs stall RViz. The cube points are the only Python-level list here (the message type
    needs one `geometry_msgs/Point` per cube); the cap bounds that cost (about 1 us per cube).

    Args:
        labels: (200, 200, 16) uint8 labels.
        header: header for every marker.
        max_cubes: cap on the total number of cubes (>= 0).
        alpha: cube opacity in [0, 1].
        namespace: marker namespace prefix.
        cube_scale: cube edge as a fraction of the voxel size (0, 1].

    Returns:
        The MarkerArray and the counts of cubes drawn and left out.
    """
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    labels = _check_labels(labels)
    if max_cubes < 0:
        raise ConversionError(f"max_cubes must be >= 0, got {max_cubes}")
    if not 0.0 <= alpha <= 1.0 or not 0.0 < cube_scale <= 1.0:
        raise ConversionError(f"alpha must be in [0, 1] and cube_scale in (0, 1], got {alpha}, {cube_scale}")
    indices, values, capped = marker_voxels(labels, max_cubes=max_cubes)
    centres = _voxel_centres(indices).astype(np.float64)

    array_msg = MarkerArray()
    clear = Marker()
    if header is not None:
        clear.header = header
    clear.ns, clear.action = namespace, Marker.DELETEALL
    array_msg.markers.append(clear)
    order = np.argsort(values, kind="stable")
    values, centres = values[order], centres[order]
    classes, starts = np.unique(values, return_index=True)
    ends = [*starts[1:].tolist(), int(values.size)]
    for label, start, end in zip(classes.tolist(), starts.tolist(), ends, strict=True):
        marker = Marker()
        if header is not None:
            marker.header = header
        marker.ns, marker.id = f"{namespace}/{CLASS_NAMES[label]}", int(label)
        marker.type, marker.action = Marker.CUBE_LIST, Marker.ADD
        marker.pose.orientation.w = 1.0
        edge = float(VOXEL_SIZE * cube_scale)
        marker.scale.x = marker.scale.y = marker.scale.z = edge
        red, green, blue = (CLASS_COLORS[label] / 255.0).tolist()
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = red, green, blue, float(alpha)
        marker.points = [Point(x=x, y=y, z=z) for x, y, z in centres[start:end].tolist()]
        array_msg.markers.append(marker)
    return array_msg, MarkerStats(cubes=int(values.size), capped=capped)
