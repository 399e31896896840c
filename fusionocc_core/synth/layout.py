"""Procedural street layout: one random, seeded `World` per scene.

Road frame: arc length s along the centre line, lateral offset d (left positive). Across the street, from the
centre out on each side: travel lane, parking strip, curb + sidewalk, verge (grass or gravel), then buildings,
walls with hedges, or small parks. Traffic drives on the right: the ego lane is d = -lane_width / 2,
heading +s. The objects themselves (palettes, templates, how often each appears) are in `templates.py`.

The seed fixes every byte of a generated dataset and the dataset cache is keyed by `GENERATOR_VERSION`, so a
change here keeps the random draws the same in number, kind and order, or comes with a new generator version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from fusionocc_core.synth.categories import CATEGORY_INDEX, CATEGORY_TO_OCC
from fusionocc_core.synth.materials import Material as M
from fusionocc_core.synth.templates import (
    BASE_TERRAIN,
    CROWN_GREEN,
    EGO_LANE,
    FACADES,
    GARDEN_WALL,
    GRASS,
    GRAVEL,
    HEDGE,
    LAMP,
    ONCOMING,
    PARKED,
    ROAD,
    SIDEWALK,
    SIGN_PAINTS,
    SIGN_POST,
    TRUNK,
    Look,
    Template,
    barrier,
    bicycle,
    bicycle_rack,
    car,
    cone,
    construction,
    construction_worker,
    pedestrian,
    pick,
    trash_bin,
)
from fusionocc_core.synth.world import AgentSet, BoxSet, Road, World

GROUND_BOTTOM = -0.28  # bottom of every ground slab [m]; one voxel layer of ground in the Occ3D grid
SEGMENT = 2.0  # length of the ground strip segments that follow the curve [m]
ZONE_TAPER = 6.0  # length of the cone taper ahead of the construction zone [m]


@dataclass
class _Boxes:
    """Accumulates boxes given in road coordinates (or already global) before they become a `BoxSet`."""

    rows: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        xy: np.ndarray,
        z0: ArrayLike,
        size: ArrayLike,
        yaw: ArrayLike,
        look: Look,
        *,
        instance: int = -1,
        tex: np.ndarray | None = None,
    ) -> None:
        """Adds N boxes of one look.

        Args:
            xy: (N, 2) or (2,) ground centres [m].
            z0: bottoms, scalar or (N,) [m].
            size: (length, width, height), (3,) or (N, 3) [m].
            yaw: headings, scalar or (N,) [rad].
            look: category, material and colour of every box.
            instance: agent index, -1 for static geometry.
            tex: (N, 2) or (2,) texture parameters, zeros when None.
        """
        xy = np.atleast_2d(xy)
        n = len(xy)
        sizes = np.broadcast_to(np.asarray(size, dtype=np.float64), (n, 3))
        z = np.broadcast_to(np.asarray(z0, dtype=np.float64), (n,)) + sizes[:, 2] / 2
        cat = CATEGORY_INDEX[look.category]
        row = np.concatenate(
            [
                xy,
                z[:, None],
                sizes,
                np.broadcast_to(yaw, (n,))[:, None],
                np.full((n, 1), CATEGORY_TO_OCC[cat]),
                np.full((n, 1), cat),
                np.full((n, 1), int(look.material)),
                np.broadcast_to(np.asarray(look.color, dtype=np.float64), (n, 3)),
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
        template: Template,
        *,
        attribute: str,
        s0: float,
        vs: float = 0.0,
        d0: float,
        vd: float = 0.0,
        yaw_rel: float = 0.0,
    ) -> None:
        """Adds one agent from a template with its road-frame motion (start s0, d0 and speeds vs, vd)."""
        index = len(self.rows)
        category = template.category
        self.rows.append((CATEGORY_INDEX[category], attribute, template.size, s0, vs, d0, vd, yaw_rel))
        for part in template.parts:
            self.parts.add(
                np.array([[part.x, part.y]]),
                part.bottom,
                (part.length, part.width, part.height),
                0.0,
                Look(category, part.material, part.color),
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
        zone = (zone_s, zone_s + 22.0) if side == zone_side else None
        _parking(agents, street, rng, side, s_min, s_max, zone=zone)
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


# ---- ground and the lots behind the verge ----


def _strip(
    boxes: _Boxes,
    road: Road,
    s: np.ndarray,
    d: float,
    width: float,
    top: float,
    look: Look,
    tex: np.ndarray | None = None,
) -> None:
    """Ground slab segments centred at arc lengths s, lateral offset d, following the curve."""
    xy, heading = road.frame(s, np.full_like(s, d))
    size = np.stack(
        [np.full_like(s, SEGMENT * 1.15), np.full_like(s, width), np.full_like(s, top - GROUND_BOTTOM)], -1
    )
    boxes.add(xy, GROUND_BOTTOM, size, heading, look, tex=tex)


def _ground(
    boxes: _Boxes, road: Road, street: _Street, rng: np.random.Generator, s_min: float, s_max: float
) -> None:
    s = np.arange(s_min, s_max, SEGMENT) + SEGMENT / 2
    # Base terrain far out, below everything else.
    big = np.arange(s_min, s_max, 20.0) + 10.0
    xy, heading = road.frame(big, np.zeros_like(big))
    boxes.add(xy, GROUND_BOTTOM, (23.0, 220.0, -0.05 - GROUND_BOTTOM), heading, BASE_TERRAIN)
    tex = np.stack([s, np.full_like(s, street.lane)], -1)
    _strip(boxes, road, s, 0.0, 2 * street.half_road, 0.0, ROAD, tex)
    for side in (-1.0, 1.0):
        d_walk = side * (street.half_road + street.sidewalk / 2)
        _strip(boxes, road, s, d_walk, street.sidewalk, 0.12, SIDEWALK)
        # Verge: runs of grass or gravel (driveways, lots) along s.
        kinds = np.repeat(rng.random(len(s) // 6 + 1) < 0.65, 6)[: len(s)]
        d_verge = side * (street.half_road + street.sidewalk + street.verge / 2)
        _strip(boxes, road, s[kinds], d_verge, street.verge, 0.03, GRASS)
        _strip(boxes, road, s[~kinds], d_verge, street.verge, 0.02, GRAVEL)


def _building(
    boxes: _Boxes, road: Road, rng: np.random.Generator, side: float, s: float, length: float, edge: float
) -> None:
    """A building set back a little from the verge, `length` along the street from s."""
    depth, height = rng.uniform(8.0, 18.0), rng.uniform(4.5, 22.0)
    d = side * (edge + rng.uniform(0.3, 2.0) + depth / 2)
    xy, heading = road.frame(np.array([s + length / 2]), np.array([d]))
    facade = FACADES[rng.integers(len(FACADES))] * rng.uniform(0.85, 1.1)
    boxes.add(xy, 0.0, (length, depth, height), heading, Look("static.manmade", M.FACADE, facade))


def _garden_wall(
    boxes: _Boxes, road: Road, rng: np.random.Generator, side: float, s: float, length: float, edge: float
) -> None:
    """A wall with a hedge in front of it."""
    mid = np.array([s + length / 2])
    xy, heading = road.frame(mid, np.array([side * (edge + 1.8)]))
    boxes.add(xy, 0.0, (length, 0.3, rng.uniform(1.5, 2.6)), heading, GARDEN_WALL)
    xy, heading = road.frame(mid, np.array([side * (edge + 0.8)]))
    boxes.add(xy, 0.0, (length - 1.0, 1.0, rng.uniform(0.9, 1.6)), heading, HEDGE)


def _park(
    boxes: _Boxes, road: Road, rng: np.random.Generator, side: float, s: float, length: float, edge: float
) -> None:
    """A small park: three trees."""
    for offset in rng.uniform(0.0, length, 3):
        _tree(boxes, road, rng, s + offset, side * (edge + rng.uniform(2.0, 8.0)))


Lot = Callable[[_Boxes, Road, np.random.Generator, float, float, float, float], None]
LOTS: tuple[tuple[float, Lot], ...] = ((0.7, _building), (0.85, _garden_wall), (1.0, _park))


def _buildings(
    boxes: _Boxes,
    road: Road,
    street: _Street,
    rng: np.random.Generator,
    side: float,
    s_min: float,
    s_max: float,
) -> None:
    """Lots of random length, one after the other with small gaps, behind the verge."""
    edge = street.half_road + street.sidewalk + street.verge
    s = s_min
    while s < s_max:
        length = rng.uniform(8.0, 26.0)
        pick(LOTS, rng.random())(boxes, road, rng, side, s, length, edge)
        s += length + rng.uniform(0.5, 6.0)


def _tree(boxes: _Boxes, road: Road, rng: np.random.Generator, s: float, d: float) -> None:
    """A trunk under two crown boxes, the upper one turned by 45 degrees."""
    xy, _ = road.frame(np.array([s]), np.array([d]))
    trunk_h, crown = rng.uniform(1.8, 3.0), rng.uniform(2.5, 4.5)
    yaw = rng.uniform(0, np.pi / 2)
    boxes.add(xy, 0.0, (0.35, 0.35, trunk_h + 0.5), yaw, TRUNK)
    green = CROWN_GREEN * rng.uniform(0.8, 1.3)
    boxes.add(xy, trunk_h, (crown, crown, crown * 0.8), yaw, Look("static.vegetation", M.FOLIAGE, green))
    top = (0.7 * crown, 0.7 * crown, crown * 0.75)
    boxes.add(xy, trunk_h + 0.3 * crown, top, yaw + np.pi / 4, Look("static.vegetation", M.FOLIAGE, green * 1.1))


# ---- sidewalk furniture: one slot every 6 m on the outer band of the sidewalk ----


def _along_traffic(side: float) -> float:
    """Yaw relative to +s of objects aligned with the traffic on that side of the street."""
    return 0.0 if side < 0 else np.pi


def _street_tree(
    boxes: _Boxes, agents: _Agents, road: Road, rng: np.random.Generator, side: float, s: float, d: float
) -> None:
    _tree(boxes, road, rng, s, d)


def _lamp(
    boxes: _Boxes, agents: _Agents, road: Road, rng: np.random.Generator, side: float, s: float, d: float
) -> None:
    """A street lamp with an arm over the road."""
    xy, heading = road.frame(np.array([s]), np.array([d]))
    boxes.add(xy, 0.12, (0.22, 0.22, 7.0), heading, LAMP)
    xy, heading = road.frame(np.array([s]), np.array([d - side * 0.9]))
    boxes.add(xy, 6.9, (0.3, 1.8, 0.2), heading, LAMP)


def _sign(
    boxes: _Boxes, agents: _Agents, road: Road, rng: np.random.Generator, side: float, s: float, d: float
) -> None:
    """A traffic sign: post and plate."""
    xy, heading = road.frame(np.array([s]), np.array([d]))
    boxes.add(xy, 0.12, (0.1, 0.1, 2.6), heading, SIGN_POST)
    plate = SIGN_PAINTS[rng.integers(len(SIGN_PAINTS))]
    boxes.add(xy, 2.0, (0.06, 0.7, 0.7), heading, Look("static.manmade", M.PLAIN, plate))


def _bin(
    boxes: _Boxes, agents: _Agents, road: Road, rng: np.random.Generator, side: float, s: float, d: float
) -> None:
    agents.add(trash_bin(rng), attribute="", s0=s, d0=d, yaw_rel=_along_traffic(side))


def _rack(
    boxes: _Boxes, agents: _Agents, road: Road, rng: np.random.Generator, side: float, s: float, d: float
) -> None:
    """A bicycle rack with one or two bicycles parked along its outer side."""
    yaw_rel = _along_traffic(side)
    agents.add(bicycle_rack(rng), attribute="", s0=s, d0=d, yaw_rel=yaw_rel)
    for k in range(rng.integers(1, 3)):
        agents.add(
            bicycle(rng, rider=False),
            attribute="cycle.without_rider",
            s0=s - 0.9 + 1.8 * k,
            d0=d + side * 0.55,
            yaw_rel=yaw_rel,
        )


Furniture = Callable[[_Boxes, _Agents, Road, np.random.Generator, float, float, float], None]
FURNITURE: tuple[tuple[float, Furniture | None], ...] = (
    (0.35, _street_tree),
    (0.5, _lamp),
    (0.58, _sign),
    (0.68, _bin),
    (0.74, _rack),
    (1.0, None),  # an empty slot
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
    for s in np.arange(s_min + 3.0, s_max - 3.0, 6.0):
        place = pick(FURNITURE, rng.random())
        if place is not None:
            place(boxes, agents, road, rng, side, s, d_out)


# ---- agents: parked vehicles, the construction zone, pedestrians, traffic ----


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
    yaw_rel = _along_traffic(side)
    s = s_min + rng.uniform(0.0, 5.0)
    while s < s_max:
        if zone is not None and zone[0] - ZONE_TAPER - 1.0 <= s < zone[1]:
            s = _construction_zone(agents, street, rng, side, zone)
            continue
        spawn = pick(PARKED, rng.random())
        if spawn is None:
            s += rng.uniform(3.0, 9.0)
            continue
        template = spawn.template(rng)
        length = template.length
        if zone is not None and s < zone[0] - ZONE_TAPER - 1.0 < s + length + 0.5:
            s = zone[0] - ZONE_TAPER - 1.0  # keep the cone taper free
            continue
        agents.add(
            template,
            attribute=spawn.attribute,
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
        template = barrier(rng)
        agents.add(template, attribute="", s0=s + template.length / 2, d0=edge, yaw_rel=0.0)
        s += template.length + 0.2
    end = s
    for s_cone in np.arange(zone[0] - ZONE_TAPER, zone[0], 1.5):
        d_cone = edge + side * (zone[0] - s_cone) / ZONE_TAPER
        agents.add(cone(rng), attribute="", s0=float(s_cone), d0=d_cone, yaw_rel=0.0)
    vehicle = construction(rng)
    agents.add(
        vehicle,
        attribute="vehicle.parked",
        s0=(zone[0] + end) / 2 + 2.0,
        d0=side * (street.lane + 0.55 + vehicle.width / 2),
        yaw_rel=_along_traffic(side),
    )
    agents.add(
        construction_worker(rng),
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
                    pedestrian(rng),
                    attribute="pedestrian.standing",
                    s0=float(s0),
                    d0=side * d,
                    yaw_rel=side * np.pi / 2 + rng.normal(0.0, 0.2),
                )
            else:
                agents.add(pedestrian(rng), attribute="pedestrian.moving", s0=float(s0), vs=speed, d0=side * d)


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
        spawn = pick(EGO_LANE, rng.random())
        template = spawn.template(rng)
        s0 = s + template.length / 2
        agents.add(template, attribute=spawn.attribute, s0=s0, vs=ego_speed, d0=d_ego + rng.normal(0, 0.1))
        s += template.length + rng.uniform(8.0, 25.0)
    follower = car(rng)
    s0 = -rng.uniform(9.0, 16.0) - follower.length / 2
    agents.add(follower, attribute="vehicle.moving", s0=s0, vs=ego_speed, d0=d_ego)
    # Oncoming lane.
    s = s_min
    while s < s_max:
        spawn = pick(ONCOMING, rng.random())
        template = spawn.template(rng)
        s0 = s + template.length / 2
        d0 = d_oncoming + rng.normal(0, 0.1)
        agents.add(template, attribute=spawn.attribute, s0=s0, vs=-oncoming_speed, d0=d0)
        s += template.length + rng.uniform(10.0, 35.0)
