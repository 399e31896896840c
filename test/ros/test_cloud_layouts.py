"""The PointCloud2 layouts: derived field lists match the documented ones, and the node's message builders (real
sensor_msgs from the PyPI wheels) and the converter's bag messages describe the same layout."""

from __future__ import annotations

import numpy as np
import pytest

from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE
from fusionocc_ros.bag_messages import MessageBuilder, lidar_payload, occ_payload, typestore
from fusionocc_ros.cloud_layouts import (
    LIDAR_FIELDS,
    LIDAR_POINT_STEP,
    LIDAR_RECORD,
    OCC_FIELDS,
    OCC_POINT_STEP,
    OCC_RECORD,
    pointfields,
)


def test_fields_are_the_documented_layouts() -> None:
    # PointField datatypes: 7 FLOAT32, 4 UINT16, 2 UINT8.
    assert LIDAR_FIELDS == (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7), ("ring", 16, 4))
    assert OCC_FIELDS == (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("label", 16, 2))
    assert (LIDAR_POINT_STEP, OCC_POINT_STEP) == (20, 20)
    assert LIDAR_RECORD.itemsize == OCC_RECORD.itemsize == 20


def test_pointfields_sorts_by_offset_and_refuses_unknown_types() -> None:
    record = np.dtype({"names": ["b", "a"], "formats": ["<f4", "u1"], "offsets": [4, 0], "itemsize": 8})
    assert pointfields(record) == (("a", 0, 2), ("b", 4, 7))
    with pytest.raises(KeyError):
        pointfields(np.dtype([("c", "<c8")]))


def test_node_messages_and_bag_messages_describe_the_same_layout() -> None:
    from fusionocc_ros.conversions import occupancy_to_pointcloud2, xyzir_to_pointcloud2

    grid = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    grid[3, 4, 5] = 4
    points = np.array([[1.0, 2.0, 3.0, 0.5, 7.0]], np.float32)
    builder = MessageBuilder(typestore("jazzy"))
    for node_msg, bag_msg in (
        (xyzir_to_pointcloud2(points), builder.cloud(1, "LIDAR_TOP", LIDAR_FIELDS, lidar_payload(points),
                                                     LIDAR_POINT_STEP)),
        (occupancy_to_pointcloud2(grid), builder.cloud(1, "base_link", OCC_FIELDS, occ_payload(grid),
                                                       OCC_POINT_STEP)),
    ):
        described = [[(f.name, f.offset, f.datatype, f.count) for f in m.fields] for m in (node_msg, bag_msg)]
        assert described[0] == described[1]
        assert (node_msg.point_step, node_msg.row_step) == (bag_msg.point_step, bag_msg.row_step)
        assert bytes(node_msg.data) == bytes(bag_msg.data)
