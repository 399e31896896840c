"""The two PointCloud2 layouts fusionocc writes, each defined once as a numpy record dtype; the PointField list
and point_step are derived from it, so payload and message description cannot disagree.

- `LIDAR_RECORD`: x, y, z, intensity FLOAT32 at 0, 4, 8, 12, ring UINT16 at 16 (a nuScenes `.pcd.bin`'s
  columns; ring = laser index 0..31), step 20. The bags' /LIDAR_TOP and `xyzir_to_pointcloud2`.
- `OCC_RECORD`: x, y, z, rgb FLOAT32 at 0, 4, 8, 12 (rgb = the packed 0x00RRGGBB class colour RViz reads),
  label UINT8 at 16 (Occ3D class id), step 20. The node's /occupancy and the bags' /occ_gt.

Both little endian, height 1. Importing this module imports no message package.
"""

from __future__ import annotations

import numpy as np

# sensor_msgs/PointField datatype constants -> numpy base type (decoders add the message's byte order).
POINTFIELD_DTYPES: dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_DATATYPE_OF = {base: datatype for datatype, base in POINTFIELD_DTYPES.items()}

LIDAR_RECORD = np.dtype(
    {
        "names": ["x", "y", "z", "intensity", "ring"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": 20,
    }
)
OCC_RECORD = np.dtype(
    {
        "names": ["x", "y", "z", "rgb", "label"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "u1"],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": 20,
    }
)


def pointfields(record: np.dtype) -> tuple[tuple[str, int, int], ...]:
    """(name, offset, PointField datatype) of each field of a record dtype, in offset order."""
    assert record.fields is not None
    fields = sorted(((name, offset, dtype) for name, (dtype, offset, *_) in record.fields.items()),
                    key=lambda field: field[1])
    return tuple((name, offset, _DATATYPE_OF[f"{dtype.kind}{dtype.itemsize}"]) for name, offset, dtype in fields)


LIDAR_FIELDS = pointfields(LIDAR_RECORD)
OCC_FIELDS = pointfields(OCC_RECORD)
LIDAR_POINT_STEP = LIDAR_RECORD.itemsize
OCC_POINT_STEP = OCC_RECORD.itemsize
