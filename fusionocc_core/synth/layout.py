"""Procedural street layout: one random, seeded `World` per scene.

Road frame: arc length s along the centre line, lateral offset d (left positive). Across the street, from the
centre out on each side: travel lane, parking strip, curb + sidewalk, verge (grass or gravel), then buildings,
walls with hedges, or small parks. Traffic drives on the right: the ego lane is d = -lane_width / 2,
heading +s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusionocc_core.synth.categories import CATEGORY_INDEX, CATEGORY_TO_OCC
from fusionocc_core.synth.materials import Material as M
from fusionocc_core.synth.world import AgentSet, BoxSet, Road, World

GROUND_BOTTOM = -0.28  # bottom of every ground slab [m]; one voxel layer of ground in the Occ3D grid
SEGMENT = 2.0  # length of the ground strip segments that follow the curve [m]
ZONE_TAPER = 6.0  # length of the cone taper ahead of the construction zone [m]

CAR_PAINTS = np.array(
    [
        (0.85, 0.85, 0.85),
        (0.08, 0.08, 0.09),
        (0.55, 0.56, 0.58),
        (0.62, 0.08, 0.07),
        (0.1, 0.2, 0.5),
        (0.9, 0.9, 0.88),
        (0.25, 0.3, 0.28),
        (0.45, 0.35, 0.25),
        (0.05, 0.35, 0.55),
        (0.75, 0.6, 0.2),
    ]
)
FACADES = np.array(
    [
        (0.72, 0.62, 0.5),
        (0.6, 0.32, 0.25),
        (0.8, 0.78, 0.72),
        (0.55, 0.55, 0.56),
        (0.85, 0.8, 0.65),
        (0.45, 0.4, 0.38),
        (0.68, 0.7, 0.74),
        (0.75, 0.55, 0.4),
    ]
)
CLOTHES = np.array(
    [
        (0.1, 0.1, 0.12),
        (0.2, 0.25, 0.45),
        (0.6, 0.1, 0.1),
        (0.8, 0.8, 0.78),
        (0.3, 0.45, 0.3),
        (0.75, 0.6, 0.3),
        (0.45, 0.45, 0.5),
        (0.9, 0.45, 0.1),
    ]
)


@dataclass
class _Boxes:
    """Accumulates boxes given in road coordinates (or already global) before they become a `BoxSet`."""

    rows: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        xy: np.ndarray,
        z0: np.ndarray | float,
        size: np.ndarray,
        yaw: np.ndarray,
        category: str,
        material: M,
        color: np.ndarray,
        *,
        instance: int = -1,
        tex: np.ndarray | None = None,
    ) -> None:
        """Adds boxes with ground centres xy (N, 2), bottoms z0 and sizes (N, 3) (length, width, height)."""
        xy = np.atleast_2d(xy)
        n = len(xy)
        size = np.broadcast_to(np.asarray(size, dtype=np.float64), (n, 3))
        z = np.broadcast_to(np.asarray(z0, dtype=np.float64), (n,)) + size[:, 2] / 2
        cat = CATEGORY_INDEX[category]
        row = np.concatenate(
            [
                xy,
                z[:, None],
                size,
                np.broadcast_to(yaw, (n,))[:, None],
                np.full((n, 1), CATEGORY_TO_OCC[cat]),
                np.full((n, 1), cat),
                np.full((n, 1), int(material)),
                np.broadcast_to(np.asarray(color, dtype=np.float64), (n, 3)),
                np.full((n, 1), instance),
                np.zeros((n, 2)) if tex is None else np.broadcast_to(tex, (n, 2)),
            ],
            1,
        )
        self.rows.append(row)

    def build(self) -> BoxSet:
        a = np.concatenate(self.rows, 0) if self.rows else np.zeros((0, 16))
        return BoxSet(
            centers=a[:, 0:3].astype(np.float64),
            sizes=a[:, 3:6].astype(np.float64),
            yaws=a[:, 6].astype(np.float64),
            occ_class=a[:, 7].astype(np.uint8),
            category=a[:, 8].astype(np.uint8),
            material=a[:, 9].astype(np.uint8),
            color=a[:, 10:13].astype(np.float32),
            instance=a[:, 13].astype(np.int32),
            tex=a[:, 14:16].astype(np.float32),
        )


@dataclass
class _Agents:
    """Accumulates agents and their parts (parts in the agent frame, x forward, origin on the ground)."""

    rows: list[tuple] = field(default_factory=list)
    parts: _Boxes = field(default_factory=_Boxes)

    def add(
        self,
        template: tuple[str, np.ndarray, list[tuple]],
        *,
        attribute: str,
        s0: float,
        vs: float = 0.0,
        d0: float,
        vd: float = 0.0,
        yaw_rel: float = 0.0,
    ) -> None:
        """Adds one agent from a template (category, size, parts) with its road-frame motion."""
        category, size, parts = template
        index = len(self.rows)
        self.rows.append((CATEGORY_INDEX[category], attribute, size, s0, vs, d0, vd, yaw_rel))
        for x, y, z0, length, width, height, material, color in parts:
            self.parts.add(
                np.array([[x, y]]),
                z0,
                np.array([length, width, height]),
                0.0,
                category,
                material,
                np.asarray(color),
                instance=index,
            )

    def build(self) -> AgentSet:
        r = self.rows
        return AgentSet(
            category=np.array([x[0] for x in r], dtype=np.uint8),
            attribute=np.array([x[1] for x in r], dtype=object),
            size=np.array([x[2] for x in r], dtype=np.float64).reshape(-1, 3),
            s0=np.array([x[3] for x in r], dtype=np.float64),
            vs=np.array([x[4] for x in r], dtype=np.float64),
            d0=np.array([x[5] for x in r], dtype=np.float64),
            vd=np.array([x[6] for x in r], dtype=np.float64),
            yaw_rel=np.array([x[7] for x in r], dtype=np.float64),
            parts=self.parts.build(),
        )


# ---- object templates: (category, size (l, w, h), parts [(x, y, z0, l, w, h, material, colour)]) ----


def _car(rng: np.random.Generator) -> tuple:
    length, width, height = rng.uniform(3.9, 4.9), rng.uniform(1.75, 2.0), rng.uniform(1.42, 1.75)
    paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    body_top = 0.55 * height + 0.1
    return (
        "vehicle.car",
        np.array([length, width, height]),
        [
            (0.0, 0.0, 0.15, length, width, body_top - 0.15, M.PAINT, paint),
            (-0.08 * length, 0.0, body_top, 0.55 * length, 0.9 * width, height - body_top, M.CABIN, paint),
        ],
    )


def _truck(rng: np.random.Generator) -> tuple:
    length, width, height = rng.uniform(6.0, 9.0), rng.uniform(2.3, 2.55), rng.uniform(2.9, 3.7)
    cab = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    cargo = np.array([(0.9, 0.9, 0.88), (0.7, 0.7, 0.72), (0.2, 0.35, 0.6)])[rng.integers(3)]
    cab_len = 2.2
    return (
        "vehicle.truck",
        np.array([length, width, height]),
        [
            (length / 2 - cab_len / 2, 0.0, 0.35, cab_len, width, 0.85 * height - 0.35, M.CABIN, cab),
            (-cab_len / 2 - 0.1, 0.0, 0.8, length - cab_len - 0.2, width, height - 0.8, M.PAINT, cargo),
        ],
    )


def _bus(rng: np.random.Generator) -> tuple:
    length, width, height = rng.uniform(10.5, 12.5), 2.55, rng.uniform(3.0, 3.4)
    paint = np.array([(0.9, 0.75, 0.1), (0.75, 0.12, 0.1), (0.15, 0.3, 0.65), (0.9, 0.9, 0.9)])[
        rng.integers(4)
    ]
    return (
        "vehicle.bus.rigid",
        np.array([length, width, height]),
        [(0.0, 0.0, 0.3, length, width, height - 0.3, M.BUS, paint)],
    )


def _trailer(rng: np.random.Generator) -> tuple:
    length, width, height = rng.uniform(7.0, 11.0), 2.5, rng.uniform(3.3, 3.9)
    paint = np.array([(0.85, 0.85, 0.85), (0.6, 0.62, 0.65), (0.55, 0.15, 0.1)])[rng.integers(3)]
    return (
        "vehicle.trailer",
        np.array([length, width, height]),
        [
            (0.0, 0.0, 1.0, length, width, height - 1.0, M.PAINT, paint),
            (length / 2 - 1.5, 0.0, 0.0, 0.3, 1.6, 1.0, M.PLAIN, (0.2, 0.2, 0.2)),
            (-length / 2 + 1.2, 0.0, 0.3, 2.0, 2.2, 0.7, M.PLAIN, (0.1, 0.1, 0.1)),
        ],
    )


def _construction(rng: np.random.Generator) -> tuple:
    length, width, height = rng.uniform(4.5, 6.0), rng.uniform(2.1, 2.3), rng.uniform(2.8, 3.3)
    yellow = np.array([0.95, 0.7, 0.1])
    return (
        "vehicle.construction",
        np.array([length, width, height]),
        [
            (0.0, 0.0, 0.0, length, width, 0.9, M.PAINT, (0.15, 0.15, 0.15)),
            (-0.15 * length, 0.0, 0.9, 0.6 * length, 0.95 * width, 1.3, M.PAINT, yellow),
            (-0.1 * length, 0.25 * width, 2.2, 0.3 * length, 0.45 * width, height - 2.2, M.CABIN, yellow),
            (0.3 * length, -0.15 * width, 1.6, 0.4 * length, 0.35, 0.5, M.PAINT, yellow),
        ],
    )


def _motorcycle(rng: np.random.Generator, *, rider: bool) -> tuple:
    length, width = rng.uniform(1.9, 2.3), rng.uniform(0.7, 0.9)
    height = rng.uniform(1.55, 1.75) if rider else rng.uniform(1.1, 1.3)
    paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    parts = [
        (0.0, 0.0, 0.05, length, 0.35, 0.85, M.PAINT, paint),
        (0.35 * length, 0.0, 0.9, 0.15, width, 0.12, M.PLAIN, (0.2, 0.2, 0.2)),
    ]
    if rider:
        parts.append(
            (-0.1 * length, 0.0, 0.8, 0.5, 0.55, height - 0.8, M.CLOTH, CLOTHES[rng.integers(len(CLOTHES))])
        )
    return ("vehicle.motorcycle", np.array([length, width, height]), parts)


def _bicycle(rng: np.random.Generator, *, rider: bool) -> tuple:
    length, width = rng.uniform(1.6, 1.85), rng.uniform(0.5, 0.65)
    height = rng.uniform(1.6, 1.8) if rider else rng.uniform(1.0, 1.1)
    paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    parts = [
        (0.0, 0.0, 0.0, length, 0.12, 0.95, M.PLAIN, paint),
        (0.35 * length, 0.0, 0.9, 0.1, width, 0.1, M.PLAIN, (0.15, 0.15, 0.15)),
    ]
    if rider:
        parts.append(
            (-0.1 * length, 0.0, 0.85, 0.45, 0.5, height - 0.85, M.CLOTH, CLOTHES[rng.integers(len(CLOTHES))])
        )
    return ("vehicle.bicycle", np.array([length, width, height]), parts)


def _pedestrian(rng: np.random.Generator) -> tuple:
    height, width, length = rng.uniform(1.55, 1.9), rng.uniform(0.55, 0.7), rng.uniform(0.45, 0.65)
    child = rng.random() < 0.1
    if child:
        height *= 0.7
    top, legs = CLOTHES[rng.integers(len(CLOTHES))], CLOTHES[rng.integers(len(CLOTHES))] * 0.6
    skin = np.array([(0.85, 0.67, 0.55), (0.55, 0.38, 0.28), (0.95, 0.8, 0.7)])[rng.integers(3)]
    category = "human.pedestrian.child" if child else "human.pedestrian.adult"
    return (
        category,
        np.array([length, width, height]),
        [
            (0.0, 0.0, 0.0, 0.6 * length, 0.6 * width, 0.47 * height, M.CLOTH, legs),
            (0.0, 0.0, 0.47 * height, length, width, 0.38 * height, M.CLOTH, top),
            (0.0, 0.0, 0.85 * height, 0.22, 0.2, 0.15 * height, M.PLAIN, skin),
        ],
    )


def _cone(rng: np.random.Generator) -> tuple:
    height = rng.uniform(0.7, 0.9)
    return (
        "movable_object.trafficcone",
        np.array([0.4, 0.4, height]),
        [
            (0.0, 0.0, 0.0, 0.4, 0.4, 0.06, M.PLAIN, (0.1, 0.1, 0.1)),
            (0.0, 0.0, 0.06, 0.24, 0.24, height - 0.06, M.STRIPES, (0.95, 0.35, 0.05)),
        ],
    )


def _barrier(rng: np.random.Generator) -> tuple:
    length, width, height = rng.uniform(1.8, 2.6), rng.uniform(0.3, 0.4), rng.uniform(0.9, 1.1)
    color = np.array([(0.9, 0.15, 0.1), (0.95, 0.45, 0.05), (0.8, 0.8, 0.78)])[rng.integers(3)]
    return (
        "movable_object.barrier",
        np.array([length, width, height]),
        [(0.0, 0.0, 0.0, length, width, height, M.STRIPES, color)],
    )


def _trash_bin(rng: np.random.Generator) -> tuple:
    color = np.array([(0.1, 0.3, 0.15), (0.25, 0.25, 0.27), (0.1, 0.2, 0.45)])[rng.integers(3)]
    return (
        "movable_object.pushable_pullable",
        np.array([0.65, 0.6, 1.05]),
        [(0.0, 0.0, 0.0, 0.65, 0.6, 1.05, M.PLAIN, color)],
    )


def _bicycle_rack(rng: np.random.Generator) -> tuple:
    return (
        "static_object.bicycle_rack",
        np.array([2.6, 0.4, 0.85]),
        [(0.0, 0.0, 0.0, 2.6, 0.15, 0.85, M.PLAIN, (0.55, 0.57, 0.6))],
    )


def _debris(rng: np.random.Generator) -> tuple:
    size = np.array([rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.45)])
    return ("movable_object.debris", size, [(0.0, 0.0, 0.0, *size, M.PLAIN, (0.45, 0.38, 0.3))])


# ---- the street ----


@dataclass(frozen=True)
class _Street:
    lane: float  # travel lane width [m]
    parking: float  # parking strip width [m]
    sidewalk: float  # sidewalk width [m]
    verge: float  # verge width [m]

    @property
    def half_road(self) -> float:
        return self.lane + self.parking


def build_world(rng: np.random.Generator, *, duration: float) -> World:
    """Builds one random street scene for an ego drive of `duration` seconds.

    Args:
        rng: the scene's random generator (the whole world follows from it).
        duration: how long the ego drives [s]; the world extends well beyond both ends of the drive.

    Returns:
        The world, with the ego starting at arc length 0.
    """
    street = _Street(
        lane=rng.uniform(3.2, 3.8),
        parking=rng.uniform(2.7, 3.0),
        sidewalk=rng.uniform(3.4, 4.5),
        verge=rng.uniform(2.0, 7.0),
    )
    ego_speed = rng.uniform(4.5, 9.0)
    drive = ego_speed * duration
    s_min, s_max = -110.0, drive + 130.0
    oncoming_speed = rng.uniform(6.0, 11.0)
    bend = rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.5)
    road = Road.build(
        origin=rng.uniform(380.0, 420.0, 2),
        heading0=rng.uniform(-np.pi, np.pi),
        bend=bend,
        s_bend=rng.uniform(0.2, 0.8) * drive,
        bend_length=rng.uniform(30.0, 60.0),
        s_min=s_min - 60.0 - oncoming_speed * duration,
        s_max=s_max + oncoming_speed * duration + 60.0,
    )
    static, agents = _Boxes(), _Agents()
    _ground(static, road, street, rng, s_min, s_max)
    for side in (-1.0, 1.0):
        _buildings(static, road, street, rng, side, s_min, s_max)
        _sidewalk_furniture(static, agents, road, street, rng, side, s_min, s_max)
    zone_side = rng.choice([-1.0, 1.0])
    zone_s = rng.uniform(15.0, max(20.0, drive + 20.0))
    for side in (-1.0, 1.0):
        _parking(
            agents,
            street,
            rng,
            side,
            s_min,
            s_max,
            zone=(zone_s, zone_s + 22.0) if side == zone_side else None,
        )
        _pedestrians(agents, street, rng, side, s_min, s_max + 20)
    _traffic(
        agents,
        street,
        rng,
        ego_speed=ego_speed,
        oncoming_speed=oncoming_speed,
        s_min=s_min,
        s_max=s_max + oncoming_speed * duration,
    )
    elevation, azimuth = np.deg2rad(rng.uniform(35, 60)), rng.uniform(-np.pi, np.pi)
    sun = np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    agent_set = agents.build()
    description = (
        f"Synthetic street, {'left' if bend > 0 else 'right'} bend of {abs(np.rad2deg(2 * bend)):.0f} deg, "
        f"ego at {ego_speed * 3.6:.0f} km/h, {len(agent_set)} objects, construction zone"
    )
    return World(
        road=road,
        static=static.build(),
        agents=agent_set,
        ego_s0=0.0,
        ego_speed=ego_speed,
        ego_d=-street.lane / 2,
        sun=sun,
        road_half_width=street.half_road,
        extent=(s_min, s_max),
        description=description,
    )


def _strip(
    boxes: _Boxes,
    road: Road,
    s: np.ndarray,
    d: float,
    width: float,
    top: float,
    category: str,
    material: M,
    color: tuple,
    tex: np.ndarray | None = None,
) -> None:
    """Ground slab segments centred at arc lengths s, lateral offset d, following the curve."""
    xy, heading = road.frame(s, np.full_like(s, d))
    size = np.stack(
        [np.full_like(s, SEGMENT * 1.15), np.full_like(s, width), np.full_like(s, top - GROUND_BOTTOM)], -1
    )
    boxes.add(xy, GROUND_BOTTOM, size, heading, category, material, np.asarray(color), tex=tex)


def _ground(
    boxes: _Boxes, road: Road, street: _Street, rng: np.random.Generator, s_min: float, s_max: float
) -> None:
    s = np.arange(s_min, s_max, SEGMENT) + SEGMENT / 2
    # Base terrain far out, below everything else.
    big = np.arange(s_min, s_max, 20.0) + 10.0
    xy, heading = road.frame(big, np.zeros_like(big))
    boxes.add(
        xy,
        GROUND_BOTTOM,
        np.array([23.0, 220.0, -0.05 - GROUND_BOTTOM]),
        heading,
        "flat.terrain",
        M.GRASS,
        np.array([0.33, 0.42, 0.2]),
    )
    tex = np.stack([s, np.full_like(s, street.lane)], -1)
    _strip(
        boxes,
        road,
        s,
        0.0,
        2 * street.half_road,
        0.0,
        "flat.driveable_surface",
        M.ASPHALT,
        (0.3, 0.3, 0.31),
        tex,
    )
    for side in (-1.0, 1.0):
        d_walk = side * (street.half_road + street.sidewalk / 2)
        _strip(boxes, road, s, d_walk, street.sidewalk, 0.12, "flat.sidewalk", M.PAVEMENT, (0.62, 0.6, 0.57))
        # Verge: runs of grass or gravel (driveways, lots) along s.
        kinds = np.repeat(rng.random(len(s) // 6 + 1) < 0.65, 6)[: len(s)]
        d_verge = side * (street.half_road + street.sidewalk + street.verge / 2)
        _strip(boxes, road, s[kinds], d_verge, street.verge, 0.03, "flat.terrain", M.GRASS, (0.3, 0.45, 0.15))
        _strip(boxes, road, s[~kinds], d_verge, street.verge, 0.02, "flat.other", M.GRAVEL, (0.5, 0.46, 0.4))


def _buildings(
    boxes: _Boxes,
    road: Road,
    street: _Street,
    rng: np.random.Generator,
    side: float,
    s_min: float,
    s_max: float,
) -> None:
    edge = street.half_road + street.sidewalk + street.verge
    s = s_min
    while s < s_max:
        length = rng.uniform(8.0, 26.0)
        kind = rng.random()
        mid = np.array([s + length / 2])
        if kind < 0.7:  # building
            depth, height = rng.uniform(8.0, 18.0), rng.uniform(4.5, 22.0)
            d = side * (edge + rng.uniform(0.3, 2.0) + depth / 2)
            xy, heading = road.frame(mid, np.array([d]))
            boxes.add(
                xy,
                0.0,
                np.array([length, depth, height]),
                heading,
                "static.manmade",
                M.FACADE,
                FACADES[rng.integers(len(FACADES))] * rng.uniform(0.85, 1.1),
            )
        elif kind < 0.85:  # wall with a hedge in front
            xy, heading = road.frame(mid, np.array([side * (edge + 1.8)]))
            boxes.add(
                xy,
                0.0,
                np.array([length, 0.3, rng.uniform(1.5, 2.6)]),
                heading,
                "static.manmade",
                M.CONCRETE,
                np.array([0.6, 0.58, 0.55]),
            )
            xy, heading = road.frame(mid, np.array([side * (edge + 0.8)]))
            boxes.add(
                xy,
                0.0,
                np.array([length - 1.0, 1.0, rng.uniform(0.9, 1.6)]),
                heading,
                "static.vegetation",
                M.FOLIAGE,
                np.array([0.15, 0.35, 0.1]),
            )
        else:  # small park with trees
            for offset in rng.uniform(0.0, length, 3):
                _tree(boxes, road, rng, s + offset, side * (edge + rng.uniform(2.0, 8.0)))
        s += length + rng.uniform(0.5, 6.0)


def _tree(boxes: _Boxes, road: Road, rng: np.random.Generator, s: float, d: float) -> None:
    xy, _ = road.frame(np.array([s]), np.array([d]))
    trunk_h, crown = rng.uniform(1.8, 3.0), rng.uniform(2.5, 4.5)
    yaw = rng.uniform(0, np.pi / 2)
    boxes.add(
        xy,
        0.0,
        np.array([0.35, 0.35, trunk_h + 0.5]),
        yaw,
        "static.vegetation",
        M.BARK,
        np.array([0.3, 0.22, 0.15]),
    )
    green = np.array([0.12, 0.32, 0.08]) * rng.uniform(0.8, 1.3)
    boxes.add(xy, trunk_h, np.array([crown, crown, crown * 0.8]), yaw, "static.vegetation", M.FOLIAGE, green)
    boxes.add(
        xy,
        trunk_h + 0.3 * crown,
        np.array([0.7 * crown, 0.7 * crown, crown * 0.75]),
        yaw + np.pi / 4,
        "static.vegetation",
        M.FOLIAGE,
        green * 1.1,
    )


def _sidewalk_furniture(
    boxes: _Boxes,
    agents: _Agents,
    road: Road,
    street: _Street,
    rng: np.random.Generator,
    side: float,
    s_min: float,
    s_max: float,
) -> None:
    """Trees, street lamps, signs, bins and bicycle racks on the outer band of the sidewalk."""
    d_out = side * (street.half_road + street.sidewalk - 0.6)
    yaw_rel = 0.0 if side < 0 else np.pi
    for s in np.arange(s_min + 3.0, s_max - 3.0, 6.0):
        kind = rng.random()
        if kind < 0.35:
            _tree(boxes, road, rng, s, d_out)
        elif kind < 0.5:  # street lamp with an arm over the road
            xy, heading = road.frame(np.array([s]), np.array([d_out]))
            boxes.add(
                xy,
                0.12,
                np.array([0.22, 0.22, 7.0]),
                heading,
                "static.manmade",
                M.PLAIN,
                np.array([0.4, 0.4, 0.42]),
            )
            xy, heading = road.frame(np.array([s]), np.array([d_out - side * 0.9]))
            boxes.add(
                xy,
                6.9,
                np.array([0.3, 1.8, 0.2]),
                heading,
                "static.manmade",
                M.PLAIN,
                np.array([0.4, 0.4, 0.42]),
            )
        elif kind < 0.58:  # traffic sign
            xy, heading = road.frame(np.array([s]), np.array([d_out]))
            boxes.add(
                xy,
                0.12,
                np.array([0.1, 0.1, 2.6]),
                heading,
                "static.manmade",
                M.PLAIN,
                np.array([0.5, 0.5, 0.5]),
            )
            color = np.array([(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.95, 0.8, 0.1)])[rng.integers(3)]
            boxes.add(xy, 2.0, np.array([0.06, 0.7, 0.7]), heading, "static.manmade", M.PLAIN, color)
        elif kind < 0.68:
            agents.add(_trash_bin(rng), attribute="", s0=s, d0=d_out, yaw_rel=yaw_rel)
        elif kind < 0.74:  # bicycle rack with parked bicycles
            agents.add(_bicycle_rack(rng), attribute="", s0=s, d0=d_out, yaw_rel=yaw_rel)
            for k in range(rng.integers(1, 3)):  # parked along the rack, on its outer side
                agents.add(
                    _bicycle(rng, rider=False),
                    attribute="cycle.without_rider",
                    s0=s - 0.9 + 1.8 * k,
                    d0=d_out + side * 0.55,
                    yaw_rel=yaw_rel,
                )


def _parking(
    agents: _Agents,
    street: _Street,
    rng: np.random.Generator,
    side: float,
    s_min: float,
    s_max: float,
    zone: tuple[float, float] | None,
) -> None:
    """Parked vehicles along the parking strip; on one side a construction zone with cones and barriers."""
    d = side * (street.lane + street.parking / 2)
    yaw_rel = 0.0 if side < 0 else np.pi
    s = s_min + rng.uniform(0.0, 5.0)
    while s < s_max:
        if zone is not None and zone[0] - ZONE_TAPER - 1.0 <= s < zone[1]:
            s = _construction_zone(agents, street, rng, side, zone)
            continue
        kind = rng.random()
        if kind < 0.3:
            s += rng.uniform(3.0, 9.0)
            continue
        if kind < 0.72:
            template = _car(rng)
        elif kind < 0.8:
            template = _truck(rng)
        elif kind < 0.84:
            template = _trailer(rng)
        elif kind < 0.86:
            template = _bus(rng)
        elif kind < 0.93:
            template = _motorcycle(rng, rider=False)
        else:
            template = _debris(rng) if rng.random() < 0.3 else _trash_bin(rng)
        length = template[1][0]
        if zone is not None and s < zone[0] - ZONE_TAPER - 1.0 < s + length + 0.5:
            s = zone[0] - ZONE_TAPER - 1.0  # keep the cone taper free
            continue
        category = template[0]
        attribute = (
            "vehicle.parked"
            if category.startswith("vehicle.") and "motorcycle" not in category
            else "cycle.without_rider"
            if "motorcycle" in category
            else ""
        )
        agents.add(
            template,
            attribute=attribute,
            s0=s + length / 2,
            d0=d + rng.normal(0, 0.1),
            yaw_rel=yaw_rel + rng.normal(0, 0.03),
        )
        s += length + rng.uniform(0.8, 2.5)


def _construction_zone(
    agents: _Agents, street: _Street, rng: np.random.Generator, side: float, zone: tuple[float, float]
) -> float:
    """Barriers along the lane edge behind a taper of cones, a construction vehicle and a worker in the
    parking strip; returns the arc length where the zone ends."""
    edge = side * (street.lane + 0.25)
    s = zone[0]
    while s < zone[1]:
        template = _barrier(rng)
        agents.add(template, attribute="", s0=s + template[1][0] / 2, d0=edge, yaw_rel=0.0)
        s += template[1][0] + 0.2
    end = s
    for s in np.arange(zone[0] - ZONE_TAPER, zone[0], 1.5):  # taper of cones ahead of the zone
        agents.add(
            _cone(rng), attribute="", s0=float(s), d0=edge + side * (zone[0] - s) / ZONE_TAPER, yaw_rel=0.0
        )
    template = _construction(rng)
    agents.add(
        template,
        attribute="vehicle.parked",
        s0=(zone[0] + end) / 2 + 2.0,
        d0=side * (street.lane + 0.55 + template[1][1] / 2),
        yaw_rel=0.0 if side < 0 else np.pi,
    )
    worker = _pedestrian(rng)
    worker = (
        "human.pedestrian.construction_worker",
        worker[1],
        [p[:7] + ((0.95, 0.55, 0.05),) if p[6] == M.CLOTH else p for p in worker[2]],
    )
    agents.add(
        worker,
        attribute="pedestrian.standing",
        s0=zone[0] + 2.0,
        d0=side * (street.lane + street.parking - 0.5),
        yaw_rel=rng.uniform(-np.pi, np.pi),
    )
    return end + 1.0


def _pedestrians(
    agents: _Agents, street: _Street, rng: np.random.Generator, side: float, s_min: float, s_max: float
) -> None:
    """People on the sidewalk: two walking lanes (one per direction, one speed each so nobody walks through
    anybody) next to the road, and people standing between them and the street furniture."""
    lanes = (
        (street.half_road + 0.55, rng.uniform(1.0, 1.5)),
        (street.half_road + 1.3, -rng.uniform(1.0, 1.5)),
        (street.half_road + street.sidewalk - 1.35, 0.0),
    )
    for d, speed in lanes:
        s = s_min + np.cumsum(rng.uniform(3.0, 30.0, 64))
        for s0 in s[s < s_max]:
            if speed == 0.0:
                agents.add(
                    _pedestrian(rng),
                    attribute="pedestrian.standing",
                    s0=float(s0),
                    d0=side * d,
                    yaw_rel=side * np.pi / 2 + rng.normal(0.0, 0.2),
                )
            else:
                agents.add(
                    _pedestrian(rng), attribute="pedestrian.moving", s0=float(s0), vs=speed, d0=side * d
                )


def _traffic(
    agents: _Agents,
    street: _Street,
    rng: np.random.Generator,
    *,
    ego_speed: float,
    oncoming_speed: float,
    s_min: float,
    s_max: float,
) -> None:
    """Vehicles in both travel lanes. Each lane moves at one speed, so vehicles never run into each other."""
    d_ego, d_oncoming = -street.lane / 2, street.lane / 2
    # Ego lane: a few vehicles ahead and one behind, at the ego's speed.
    s = rng.uniform(9.0, 16.0)
    for _ in range(rng.integers(1, 4)):
        kind = rng.random()
        template = (
            _car(rng)
            if kind < 0.6
            else _truck(rng)
            if kind < 0.75
            else _motorcycle(rng, rider=True)
            if kind < 0.88
            else _bicycle(rng, rider=True)
        )
        length = template[1][0]
        attribute = (
            "cycle.with_rider"
            if template[0] in ("vehicle.motorcycle", "vehicle.bicycle")
            else "vehicle.moving"
        )
        agents.add(
            template, attribute=attribute, s0=s + length / 2, vs=ego_speed, d0=d_ego + rng.normal(0, 0.1)
        )
        s += length + rng.uniform(8.0, 25.0)
    follower = _car(rng)
    agents.add(
        follower,
        attribute="vehicle.moving",
        s0=-rng.uniform(9.0, 16.0) - follower[1][0] / 2,
        vs=ego_speed,
        d0=d_ego,
    )
    # Oncoming lane.
    s = s_min
    while s < s_max:
        kind = rng.random()
        template = (
            _car(rng)
            if kind < 0.68
            else _truck(rng)
            if kind < 0.8
            else _bus(rng)
            if kind < 0.88
            else _motorcycle(rng, rider=True)
            if kind < 0.95
            else _construction(rng)
        )
        length = template[1][0]
        attribute = "cycle.with_rider" if template[0] == "vehicle.motorcycle" else "vehicle.moving"
        agents.add(
            template,
            attribute=attribute,
            s0=s + length / 2,
            vs=-oncoming_speed,
            d0=d_oncoming + rng.normal(0, 0.1),
        )
        s += length + rng.uniform(10.0, 35.0)
