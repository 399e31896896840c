"""The synthetic world: a curved road frame, static boxes and moving agents, evaluated at any time.

Everything is an oriented box that rotates about +z only (the ground is flat), with one Occ3D class, one
nuScenes lidarseg category and one material per box. Agents (annotated objects) are made of several boxes
("parts") that move rigidly with the agent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionocc_core.synth.transforms import rot_z


@dataclass(frozen=True)
class BoxSet:
    """Oriented boxes as a structure of arrays (N boxes).

    Attributes:
        centers: (N, 3) box centres [m].
        sizes: (N, 3) extents along the box's own x (length), y (width), z (height) [m].
        yaws: (N,) rotation about +z [rad].
        occ_class: (N,) Occ3D class id.
        category: (N,) nuScenes lidarseg category index.
        material: (N,) material id (see `materials.py`).
        color: (N, 3) base albedo in [0, 1].
        instance: (N,) agent index, -1 for static geometry.
        tex: (N, 2) per-box texture parameters (road: arc length offset and lane width).
    """

    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    occ_class: np.ndarray
    category: np.ndarray
    material: np.ndarray
    color: np.ndarray
    instance: np.ndarray
    tex: np.ndarray

    def __len__(self) -> int:
        return len(self.centers)

    @staticmethod
    def concat(sets: list[BoxSet]) -> BoxSet:
        """Concatenates box sets in order."""
        return BoxSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in BoxSet.__dataclass_fields__))

    def take(self, index: np.ndarray) -> BoxSet:
        """The boxes selected by an index or boolean mask."""
        return BoxSet(*(getattr(self, f)[index] for f in BoxSet.__dataclass_fields__))

    def transformed(self, rotation_yaw: float, translation: np.ndarray) -> BoxSet:
        """The boxes moved by a yaw rotation then a translation (e.g. global -> ego with the inverse pose)."""
        centers = self.centers @ rot_z(rotation_yaw).T + translation
        return BoxSet(
            centers,
            self.sizes,
            self.yaws + rotation_yaw,
            self.occ_class,
            self.category,
            self.material,
            self.color,
            self.instance,
            self.tex,
        )

    def to_local(self, points: np.ndarray, box_index: np.ndarray) -> np.ndarray:
        """Coordinates of points (M, 3) in the frames of boxes `box_index` (M,)."""
        d = points - self.centers[box_index]
        c, s = np.cos(self.yaws[box_index]), np.sin(self.yaws[box_index])
        return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], -1)


@dataclass(frozen=True)
class Road:
    """Road centre line sampled by arc length; heading(s) = h0 + bend * tanh((s - s_bend) / bend_length)."""

    s: np.ndarray  # (S,) arc length samples [m]
    xy: np.ndarray  # (S, 2) global position of the centre line [m]
    heading: np.ndarray  # (S,) [rad]

    @staticmethod
    def build(
        *,
        origin: np.ndarray,
        heading0: float,
        bend: float,
        s_bend: float,
        bend_length: float,
        s_min: float,
        s_max: float,
        step: float = 0.25,
    ) -> Road:
        """Integrates the heading profile into a centre line covering [s_min, s_max]."""
        s = np.arange(s_min, s_max + step, step)
        heading = heading0 + bend * np.tanh((s - s_bend) / bend_length)
        d = np.stack([np.cos(heading), np.sin(heading)], -1) * step
        xy = np.cumsum(d, 0) - d[0]
        i0 = int(np.argmin(np.abs(s)))
        xy = xy - xy[i0] + origin  # s = 0 lies at `origin`
        return Road(s, xy, heading)

    def frame(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global (x, y) and heading of road coordinates (arc length s, lateral offset d, left positive)."""
        s = np.asarray(s, dtype=np.float64)
        heading = np.interp(s, self.s, self.heading)
        x = np.interp(s, self.s, self.xy[:, 0]) - np.sin(heading) * d
        y = np.interp(s, self.s, self.xy[:, 1]) + np.cos(heading) * d
        return np.stack([x, y], -1), heading


@dataclass(frozen=True)
class AgentSet:
    """Annotated objects moving in road coordinates: s(t) = s0 + vs t, d(t) = d0 + vd t.

    Attributes:
        category: (A,) lidarseg category index of each agent.
        attribute: (A,) nuScenes attribute name of each agent ("" for none).
        size: (A, 3) annotation box length, width, height [m].
        s0, vs, d0, vd: (A,) road-frame start and velocity [m], [m/s].
        yaw_rel: (A,) heading relative to the road direction when not moving [rad].
        parts: the boxes of all agents in the agent frame (origin on the ground below the box centre,
            `instance` = agent index).
    """

    category: np.ndarray
    attribute: np.ndarray
    size: np.ndarray
    s0: np.ndarray
    vs: np.ndarray
    d0: np.ndarray
    vd: np.ndarray
    yaw_rel: np.ndarray
    parts: BoxSet

    def __len__(self) -> int:
        return len(self.category)

    def poses(self, road: Road, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Ground-level origins (A, 3) and yaws (A,) of all agents at time t [s]."""
        s, d = self.s0 + self.vs * t, self.d0 + self.vd * t
        xy, heading = road.frame(s, d)
        moving = np.hypot(self.vs, self.vd) > 1e-6
        yaw = heading + np.where(moving, np.arctan2(self.vd, self.vs), self.yaw_rel)
        return np.concatenate([xy, np.zeros((len(s), 1))], 1), yaw

    def boxes(self, road: Road, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Annotation boxes at time t: centres (A, 3) and yaws (A,)."""
        origin, yaw = self.poses(road, t)
        origin[:, 2] = self.size[:, 2] / 2
        return origin, yaw


@dataclass(frozen=True)
class World:
    """A whole scene: the road, static boxes, agents, the ego path and the sun."""

    road: Road
    static: BoxSet
    agents: AgentSet
    ego_s0: float  # ego arc length at t = 0 [m]
    ego_speed: float  # [m/s]
    ego_d: float  # ego lateral offset (its lane centre) [m]
    sun: np.ndarray  # (3,) unit vector towards the sun
    road_half_width: float  # drivable half width (lanes + parking strips) [m]
    extent: tuple[float, float]  # arc length range with built geometry [m]
    description: str

    def boxes_at(self, t: float) -> BoxSet:
        """All boxes (static then agent parts) at time t [s]."""
        origin, yaw = self.agents.poses(self.road, t)
        parts = self.agents.parts
        k = parts.instance
        c, s = np.cos(yaw[k]), np.sin(yaw[k])
        off = parts.centers
        centers = origin[k] + np.stack(
            [c * off[:, 0] - s * off[:, 1], s * off[:, 0] + c * off[:, 1], off[:, 2]], -1
        )
        moved = BoxSet(
            centers,
            parts.sizes,
            parts.yaws + yaw[k],
            parts.occ_class,
            parts.category,
            parts.material,
            parts.color,
            parts.instance,
            parts.tex,
        )
        return BoxSet.concat([self.static, moved])

    def ego_pose(self, t: float) -> tuple[np.ndarray, float]:
        """Ego (base_link) position (3,) on the ground and yaw at time t [s]; it drives along its lane."""
        xy, heading = self.road.frame(np.array([self.ego_s0 + self.ego_speed * t]), np.array([self.ego_d]))
        return np.array([xy[0, 0], xy[0, 1], 0.0]), float(heading[0])


def count_points_in_boxes(
    points: np.ndarray, centres: np.ndarray, sizes: np.ndarray, yaws: np.ndarray
) -> np.ndarray:
    """Number of points (N, 3) inside each box (centres (B, 3), sizes (B, 3) as length, width, height,
    yaws (B,)).

    Boxes are tested one at a time (vectorised over points) after a cheap bounding-circle pre-filter.
    """
    counts = np.zeros(len(centres), dtype=np.int64)
    for b in range(len(centres)):
        d = points - centres[b]
        near = np.nonzero(np.einsum("ij,ij->i", d[:, :2], d[:, :2]) <= np.sum(sizes[b, :2] ** 2) / 4)[0]
        c, s = np.cos(yaws[b]), np.sin(yaws[b])
        local = np.stack([c * d[near, 0] + s * d[near, 1], -s * d[near, 0] + c * d[near, 1], d[near, 2]], -1)
        counts[b] = int(np.all(np.abs(local) <= sizes[b] / 2, axis=1).sum())
    return counts
