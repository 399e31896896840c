"""Independent slow reference decoders (`struct` per pixel / per point) and the validity rules the fuzz oracle
checks the product's conversions against.

The messages are duck-typed: rclpy messages or `types.SimpleNamespace` objects with the same fields.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sensor_msgs.msg import Image, PointCloud2

# encoding -> (channels, bytes per channel, R, G, B channel indices or None for mono)
IMAGE_LAYOUT: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "8UC1": (1, 1, None),
    "8UC3": (3, 1, (2, 1, 0)),
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "mono16": (1, 2, None),
}

# sensor_msgs/PointField datatype -> struct format
POINTFIELD_FORMATS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}


def image_problems(msg: Image) -> set[str]:
    """Reasons (ConversionError.reason values) a sensor_msgs/Image is invalid; empty when it is valid."""
    encoding = str(msg.encoding)
    if encoding not in IMAGE_LAYOUT:
        return {"encoding"}
    channels, depth, _ = IMAGE_LAYOUT[encoding]
    problems = set()
    if msg.height <= 0 or msg.width <= 0 or msg.step < msg.width * channels * depth:
        problems.add("layout")
    if len(msg.data) < msg.height * msg.step:
        problems.add("truncated")
    return problems


def reference_image_to_rgb(msg: Image) -> np.ndarray:
    """Slow per-pixel decode of a valid Image (struct.unpack_from at each pixel's byte offset)."""
    channels, depth, order = IMAGE_LAYOUT[str(msg.encoding)]
    data = bytes(msg.data)
    code = ("B" if depth == 1 else "H") * channels
    fmt = (">" if msg.is_bigendian else "<") + code
    out = np.zeros((msg.height, msg.width, 3), np.uint8)
    for row in range(msg.height):
        for col in range(msg.width):
            values = struct.unpack_from(fmt, data, row * msg.step + col * channels * depth)
            if depth == 2:
                values = tuple(v >> 8 for v in values)
            out[row, col] = [values[0]] * 3 if order is None else [values[i] for i in order]
    return out


def cloud_problems(msg: PointCloud2) -> set[str]:
    """Reasons a sensor_msgs/PointCloud2 is invalid for `pointcloud2_to_xyzir`; empty when valid."""
    problems = set()
    names = set()
    for f in msg.fields:
        if f.datatype not in POINTFIELD_FORMATS:
            problems.add("fields")
            continue
        size = struct.calcsize(POINTFIELD_FORMATS[f.datatype])
        if f.offset < 0 or f.offset + size * max(f.count, 1) > msg.point_step:
            problems.add("layout")
        names.add(f.name)
    if not {"x", "y", "z", "intensity"} <= names:
        problems.add("fields")
    if problems or msg.height * msg.width == 0:
        return problems
    if msg.point_step <= 0 or msg.row_step < msg.width * msg.point_step:
        return {"layout"}
    if len(msg.data) < (msg.height - 1) * msg.row_step + msg.width * msg.point_step:
        return {"truncated"}
    return set()


def reference_cloud(msg: PointCloud2) -> tuple[np.ndarray, int]:
    """Slow per-point decode of a valid PointCloud2: ((N, 5) finite [x, y, z, intensity, ring], dropped)."""
    data = bytes(msg.data)
    endian = ">" if msg.is_bigendian else "<"
    layout = {f.name: (f.offset, endian + POINTFIELD_FORMATS[f.datatype]) for f in msg.fields}
    rows, dropped = [], 0
    for r in range(msg.height if msg.width else 0):
        for c in range(msg.width):
            base = r * msg.row_step + c * msg.point_step
            values = [
                float(np.float32(struct.unpack_from(layout[n][1], data, base + layout[n][0])[0]))
                if n in layout
                else 0.0
                for n in ("x", "y", "z", "intensity", "ring")
            ]
            if all(np.isfinite(values[:4])):
                rows.append(values)
            else:
                dropped += 1
    return np.asarray(rows, np.float32).reshape(-1, 5), dropped
