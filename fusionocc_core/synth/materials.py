"""Material ids shared by the world builder, the camera shader and the lidar (reflectivity)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Material(IntEnum):
    PLAIN = 0  # flat colour with mild noise (poles, bins, racks, plates)
    ASPHALT = 1  # dark grey noise with lane markings
    PAVEMENT = 2  # sidewalk tiles
    GRASS = 3  # terrain
    GRAVEL = 4  # other_flat: parking lots, driveways
    FACADE = 5  # building walls with windows, dark roofs
    FOLIAGE = 6  # tree crowns, hedges
    BARK = 7  # tree trunks
    PAINT = 8  # vehicle bodies with dark tyres at the bottom of the sides
    CABIN = 9  # vehicle cabins: glass on the sides, paint on the roof
    BUS = 10  # bus and tram bodies: window band on the sides
    STRIPES = 11  # cones and barriers: horizontal white bands
    CLOTH = 12  # pedestrians
    CONCRETE = 13  # walls, curbs


# Lidar reflectivity (intensity scale) per material id.
REFLECTIVITY = np.array(
    [0.35, 0.12, 0.25, 0.15, 0.2, 0.3, 0.2, 0.2, 0.5, 0.25, 0.45, 0.8, 0.2, 0.3], dtype=np.float32
)
