"""The map table's semantic prior: a PNG of the drivable area in global coordinates at 0.1 m / px."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fusionocc_core.synth.world import World

MAP_RESOLUTION = 0.1  # [m / px], the devkit's default


def write_map(path: Path, world: World) -> None:
    """Rasterises the road surface of `world` into a PNG as the devkit's MapMask expects it.

    Pixel (row, col) covers global x = col * res, y = (height - row) * res, so the image spans from the global
    origin to just beyond the road.
    """
    s = world.road.s[(world.road.s >= world.extent[0]) & (world.road.s <= world.extent[1])]
    half = world.road_half_width
    left, _ = world.road.frame(s, np.full_like(s, half))
    right, _ = world.road.frame(s, np.full_like(s, -half))
    outline = np.concatenate([left, right[::-1]], 0)
    size = int(np.ceil(outline.max() / MAP_RESOLUTION)) + 50
    pixels = np.stack([outline[:, 0] / MAP_RESOLUTION, size - outline[:, 1] / MAP_RESOLUTION], -1)
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(pixels).astype(np.int32)], 255)  # type: ignore[call-overload]  # stubs want a colour tuple
    cv2.imwrite(str(path), mask)
