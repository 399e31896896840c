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
    normal: np.ndarray  # (R, 3) unit outward normal of the face hit (zero for a miss)

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
            Hits with distances, box indices and outward face normals (zero for misses).
        """
        n = len(directions)
        if n == 0:
            return Hits(np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 3)))
        o = np.empty((n, 3), dtype=np.float32)
        o[:] = np.asarray(origins, dtype=np.float64) - self.anchor
        d = np.ascontiguousarray(directions, dtype=np.float32)
        dists = None
        if max_distance is not None:
            dists = np.empty(n, dtype=np.float32)
            dists[:] = max_distance
        res = self._scene.run(o, d, dists=dists, output=1)
        tri = res["primID"]
        hit = tri >= 0
        box = np.where(hit, tri // 12, -1).astype(np.int64)
        distance = np.full(n, np.inf)
        distance[hit] = res["tfar"][hit]
        return Hits(distance, box, self._face_normals(box, tri, hit))

    def _face_normals(self, box: np.ndarray, tri: np.ndarray, hit: np.ndarray) -> np.ndarray:
        """Outward normals from the face index (exact, cheaper than normalising Embree's Ng)."""
        normal = np.zeros((len(box), 3))
        idx = np.nonzero(hit)[0]
        face = (tri[idx] % 12) // 2  # -x, +x, -y, +y, -z, +z
        axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
        yaw = self.boxes.yaws[box[idx]]
        c, s = np.cos(yaw) * sign, np.sin(yaw) * sign
        normal[idx, 0] = np.where(axis == 0, c, np.where(axis == 1, -s, 0.0))
        normal[idx, 1] = np.where(axis == 0, s, np.where(axis == 1, c, 0.0))
        normal[idx, 2] = np.where(axis == 2, sign, 0.0)
        return normal
