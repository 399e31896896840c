"""Ray casting against oriented boxes with Embree (embreex): 12 triangles per box, box = triangle // 12."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionocc_core.synth.world import BoxSet

try:
    from embreex import mesh_construction, rtcore_scene
except ImportError as error:  # pragma: no cover - embreex is a declared dependency
    raise ImportError("fusionocc_core.synth needs embreex (pip install embreex) for ray casting.") from error

# Unit cube corners and the 12 outward-facing triangles (counter-clockwise seen from outside).
_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
_FACES = np.array(
    [
        [0, 1, 3],
        [0, 3, 2],
        [4, 6, 7],
        [4, 7, 5],  # -x, +x
        [0, 4, 5],
        [0, 5, 1],
        [2, 3, 7],
        [2, 7, 6],  # -y, +y
        [0, 2, 6],
        [0, 6, 4],
        [1, 5, 7],
        [1, 7, 3],  # -z, +z
    ]
)


def box_corners(boxes: BoxSet) -> np.ndarray:
    """Corners of all boxes, shape (N, 8, 3)."""
    local = _CORNERS[None] * boxes.sizes[:, None, :]  # (N, 8, 3)
    c, s = np.cos(boxes.yaws)[:, None], np.sin(boxes.yaws)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], -1) + boxes.centers[:, None, :]


@dataclass(frozen=True)
class Hits:
    """First hits of a batch of rays (misses: distance inf, primitive -1)."""

    distance: np.ndarray  # (R,) [m] along unit directions
    primitive: np.ndarray  # (R,) box index or -1
    normal: np.ndarray  # (R, 3) unit geometric normal facing the ray origin side of the box

    @property
    def hit(self) -> np.ndarray:
        return self.primitive >= 0


class BoxScene:
    """An Embree scene of a `BoxSet`; cheap to build (milliseconds), so one per timestamp is fine.

    Coordinates are shifted by `anchor` before they go to Embree (float32) so that large global
    coordinates keep millimetre precision.
    """

    def __init__(self, boxes: BoxSet, *, anchor: np.ndarray | None = None) -> None:
        if len(boxes) == 0:
            raise ValueError("BoxScene needs at least one box.")
        self.boxes = boxes
        self.anchor = np.zeros(3) if anchor is None else np.asarray(anchor, dtype=np.float64)
        triangles = (box_corners(boxes) - self.anchor)[:, _FACES]  # (N, 12, 3, 3)
        self._scene = rtcore_scene.EmbreeScene()
        self._mesh = mesh_construction.TriangleMesh(
            self._scene, triangles.reshape(-1, 3, 3).astype(np.float32)
        )

    def cast(
        self, origins: np.ndarray, directions: np.ndarray, *, max_distance: np.ndarray | float | None = None
    ) -> Hits:
        """First hits of rays with unit `directions` (R, 3) from `origins` (R, 3) or (3,).

        Args:
            origins: ray origins in the scene's frame [m].
            directions: unit ray directions.
            max_distance: optional per-ray (or scalar) limit beyond which hits are ignored [m].

        Returns:
            Hits with distances, box indices and normals.
        """
        n = len(directions)
        o = np.ascontiguousarray(np.broadcast_to(origins - self.anchor, (n, 3)), dtype=np.float32)
        d = np.ascontiguousarray(directions, dtype=np.float32)
        dists = None
        if max_distance is not None:
            dists = np.ascontiguousarray(np.broadcast_to(max_distance, (n,)), dtype=np.float32)
        if n == 0:
            return Hits(np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 3)))
        res = self._scene.run(o, d, dists=dists, output=1)
        tri = res["primID"].astype(np.int64)
        hit = tri >= 0
        distance = np.where(hit, res["tfar"], np.inf).astype(np.float64)
        normal = np.asarray(res["Ng"], dtype=np.float64)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        flip = np.sum(normal * directions, axis=1) > 0  # face the viewer whatever the winding
        normal[flip] *= -1
        return Hits(distance, np.where(hit, tri // 12, -1), normal)
