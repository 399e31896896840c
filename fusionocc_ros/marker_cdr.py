"""MarkerArray of occupancy cubes serialised straight to CDR bytes with numpy.

Building a `visualization_msgs/MarkerArray` through rclpy message objects costs one `geometry_msgs/Point`
Python object per cube (about 1.4 us each, 70 ms for 50k cubes). rclpy publishers also accept the serialised
message as `bytes` (`publish_raw`), so this module writes the CDR stream directly: the handful of per-class
header fields with `struct`, the cube centres as one float64 array. The layout written is the Marker of ROS 2
Iron and later (Jazzy, Kilted: with `texture_resource`, `texture`, `uv_coordinates`, `mesh_file`).
`cdr_layout_matches()` checks it byte for byte against `rclpy.serialization.serialize_message` on the installed
message package; callers fall back to message objects when it does not match (e.g. Humble's shorter Marker).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from fusionocc_core.occ3d import CLASS_COLORS, CLASS_NAMES, FREE_LABEL, GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE

_CUBE_LIST, _ADD, _DELETEALL = 6, 0, 3  # visualization_msgs/Marker constants


class _CdrWriter:
    """Little-endian CDR (XCDR1) writer; alignment is relative to the end of the 4-byte encapsulation header."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [b"\x00\x01\x00\x00"]
        self.offset = 0

    def _align(self, size: int) -> None:
        pad = -self.offset % size
        if pad:
            self.parts.append(b"\x00" * pad)
            self.offset += pad

    def raw(self, data: bytes, alignment: int) -> None:
        self._align(alignment)
        self.parts.append(data)
        self.offset += len(data)

    def pack(self, fmt: str, *values: float | int, alignment: int) -> None:
        self.raw(struct.pack("<" + fmt, *values), alignment)

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.pack("I", len(data), alignment=4)
        self.raw(data, 1)

    def header(self, sec: int, nanosec: int, frame_id: str) -> None:
        self.pack("iI", sec, nanosec, alignment=4)
        self.string(frame_id)

    def segment(self, data: bytes) -> None:
        """Bytes serialised at this offset modulo 8 (their padding included)."""
        self.parts.append(data)
        self.offset += len(data)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _marker_fields_before_points(writer: _CdrWriter, frame_id: str, ns: str, marker_id: int, action: int,
                                 edge: float, rgba: tuple[float, float, float, float]) -> None:
    """Header.frame_id (after the stamp) up to frame_locked."""
    writer.string(frame_id)
    writer.string(ns)
    writer.pack("iii", marker_id, _CUBE_LIST if action == _ADD else 0, action, alignment=4)
    writer.pack("7d", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, alignment=8)  # pose: origin, identity orientation
    writer.pack("3d", edge, edge, edge, alignment=8)  # scale
    writer.pack("4f", *rgba, alignment=4)  # color
    writer.pack("iI", 0, 0, alignment=4)  # lifetime: forever
    writer.pack("?", False, alignment=1)  # frame_locked


def _marker_fields_after_points(writer: _CdrWriter) -> None:
    """colors (none: one colour per class marker) to the end of the Marker."""
    writer.pack("I", 0, alignment=4)  # colors
    writer.string("")  # texture_resource
    writer.header(0, 0, "")  # texture: sensor_msgs/CompressedImage header
    writer.string("")  # texture.format
    writer.pack("I", 0, alignment=4)  # texture.data
    writer.pack("I", 0, alignment=4)  # uv_coordinates
    writer.string("")  # text
    writer.string("")  # mesh_resource
    writer.string("")  # mesh_file.filename
    writer.pack("I", 0, alignment=4)  # mesh_file.data
    writer.pack("?", False, alignment=1)  # mesh_use_embedded_materials


# The fixed parts of a marker, serialised once per (fields, offset mod 8): CDR padding depends only on the
# offset modulo the largest alignment (8). ~30 struct.pack calls per marker otherwise dominate a 10k-cube array.
_SEGMENTS: dict[tuple[Any, ...], bytes] = {}


def _segment(key: tuple[Any, ...], offset: int, write: Callable[[_CdrWriter], None]) -> bytes:
    cached = _SEGMENTS.get((*key, offset % 8))
    if cached is None:
        scratch = _CdrWriter()
        scratch.parts, scratch.offset = [], offset % 8
        write(scratch)
        cached = b"".join(scratch.parts)
        if len(_SEGMENTS) > 4096:  # frame ids / namespaces change rarely; bound it anyway
            _SEGMENTS.clear()
        _SEGMENTS[(*key, offset % 8)] = cached
    return cached


def _marker(writer: _CdrWriter, *, sec: int, nanosec: int, frame_id: str, ns: str, marker_id: int, action: int,
            edge: float, rgba: tuple[float, float, float, float], centres: np.ndarray) -> None:
    writer.pack("iI", sec, nanosec, alignment=4)  # header.stamp
    writer.segment(_segment(("before", frame_id, ns, marker_id, action, edge, rgba), writer.offset,
                            lambda w: _marker_fields_before_points(w, frame_id, ns, marker_id, action, edge, rgba)))
    writer.pack("I", centres.shape[0], alignment=4)  # points
    if centres.shape[0]:
        writer.raw(np.ascontiguousarray(centres, dtype="<f8").tobytes(), 8)
    writer.segment(_segment(("after",), writer.offset, _marker_fields_after_points))


def marker_array_cdr(indices: np.ndarray, values: np.ndarray, *, sec: int, nanosec: int, frame_id: str,
                     namespace: str = "occupancy", alpha: float = 1.0, cube_scale: float = 1.0) -> bytes:
    """CDR bytes of the occupancy MarkerArray: a DELETEALL, then one CUBE_LIST per present class.

    Args:
        indices: (M, 3) voxel indices [x, y, z] of the cubes to draw (already capped by the caller).
        values: (M,) uint8 class ids of those voxels (never free).
        sec, nanosec: header stamp of every marker.
        frame_id: header frame of every marker.
        namespace: marker namespace prefix (`<namespace>/<class name>` per class).
        alpha: cube opacity.
        cube_scale: cube edge as a fraction of the voxel size.

    Returns:
        The serialised message, ready for `Publisher.publish(bytes)`.
    """
    order = np.argsort(values, kind="stable")
    values = values[order]
    origin = np.asarray(POINT_CLOUD_RANGE[:3], dtype=np.float64)
    # float32 centres, as in the PointCloud2 output, so both outputs name the very same coordinates
    centres = (origin + VOXEL_SIZE * (indices[order] + 0.5)).astype(np.float32).astype(np.float64)  # (M, 3) [m]
    classes, starts = np.unique(values, return_index=True)
    ends = [*starts[1:].tolist(), int(values.size)] if classes.size else []
    writer = _CdrWriter()
    writer.pack("I", 1 + classes.size, alignment=4)
    _marker(writer, sec=sec, nanosec=nanosec, frame_id=frame_id, ns=namespace, marker_id=0, action=_DELETEALL,
            edge=0.0, rgba=(0.0, 0.0, 0.0, 0.0), centres=np.zeros((0, 3)))
    edge = float(VOXEL_SIZE * cube_scale)
    for label, start, end in zip(classes.tolist(), starts.tolist(), ends, strict=True):
        red, green, blue = (CLASS_COLORS[label] / 255.0).tolist()
        _marker(writer, sec=sec, nanosec=nanosec, frame_id=frame_id, ns=f"{namespace}/{CLASS_NAMES[label]}",
                marker_id=int(label), action=_ADD, edge=edge, rgba=(red, green, blue, float(alpha)),
                centres=centres[start:end])
    return writer.bytes()


def cdr_layout_matches() -> bool:
    """True when `marker_array_cdr` deserialises, with the installed visualization_msgs, to exactly the message
    `conversions.occupancy_to_marker_array` builds from objects (padding bytes are not compared: rclpy leaves
    them uninitialised)."""
    from builtin_interfaces.msg import Time
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from fusionocc_ros.conversions import occupancy_to_marker_array

    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    labels[3, 4, 5], labels[10, 0, 1], labels[7, 7, 7] = 4, 4, 15
    indices = np.argwhere(labels != FREE_LABEL)
    data = marker_array_cdr(indices, labels[tuple(indices.T)], sec=12, nanosec=345, frame_id="base_link")
    expected, _ = occupancy_to_marker_array(labels, header=Header(stamp=Time(sec=12, nanosec=345),
                                                                  frame_id="base_link"))
    try:
        # the round trip rounds the object message's float64 colours to the float32 of the wire format
        return deserialize_message(data, MarkerArray) == deserialize_message(serialize_message(expected),
                                                                             MarkerArray)
    except Exception:  # a layout mismatch can fail to deserialise at all
        return False
