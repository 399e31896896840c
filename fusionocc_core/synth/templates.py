"""What the street is made of: colour palettes, the looks of static geometry and the object templates.

A template is one random object (a car, a pedestrian, a cone) in its own frame: x forward, y left, origin on
the ground under the box centre. The agent mixes say which templates share a place and how often; `pick`
reads one with a single uniform draw, so the random stream is the same as that of an if-ladder on the draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple, TypeVar

import numpy as np

from fusionocc_core.synth.materials import Material as M

T = TypeVar("T")
Color = tuple[float, float, float] | np.ndarray  # RGB albedo in [0, 1]

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
CARGO_PAINTS = np.array([(0.9, 0.9, 0.88), (0.7, 0.7, 0.72), (0.2, 0.35, 0.6)])
BUS_PAINTS = np.array([(0.9, 0.75, 0.1), (0.75, 0.12, 0.1), (0.15, 0.3, 0.65), (0.9, 0.9, 0.9)])
TRAILER_PAINTS = np.array([(0.85, 0.85, 0.85), (0.6, 0.62, 0.65), (0.55, 0.15, 0.1)])
SKIN = np.array([(0.85, 0.67, 0.55), (0.55, 0.38, 0.28), (0.95, 0.8, 0.7)])
BARRIER_PAINTS = np.array([(0.9, 0.15, 0.1), (0.95, 0.45, 0.05), (0.8, 0.8, 0.78)])
BIN_PAINTS = np.array([(0.1, 0.3, 0.15), (0.25, 0.25, 0.27), (0.1, 0.2, 0.45)])
SIGN_PAINTS = np.array([(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.95, 0.8, 0.1)])
CONSTRUCTION_YELLOW = np.array([0.95, 0.7, 0.1])
HI_VIS = (0.95, 0.55, 0.05)  # construction workers' clothes
CROWN_GREEN = np.array([0.12, 0.32, 0.08])  # tree crowns, scaled per tree


class Look(NamedTuple):
    """How a box is labelled and shaded."""

    category: str  # nuScenes lidarseg category (sets the Occ3D class too)
    material: M
    color: Color


# Static geometry with a fixed colour; buildings, tree crowns and sign plates draw theirs per box.
BASE_TERRAIN = Look("flat.terrain", M.GRASS, (0.33, 0.42, 0.2))
ROAD = Look("flat.driveable_surface", M.ASPHALT, (0.3, 0.3, 0.31))
SIDEWALK = Look("flat.sidewalk", M.PAVEMENT, (0.62, 0.6, 0.57))
GRASS = Look("flat.terrain", M.GRASS, (0.3, 0.45, 0.15))
GRAVEL = Look("flat.other", M.GRAVEL, (0.5, 0.46, 0.4))
GARDEN_WALL = Look("static.manmade", M.CONCRETE, (0.6, 0.58, 0.55))
HEDGE = Look("static.vegetation", M.FOLIAGE, (0.15, 0.35, 0.1))
TRUNK = Look("static.vegetation", M.BARK, (0.3, 0.22, 0.15))
LAMP = Look("static.manmade", M.PLAIN, (0.4, 0.4, 0.42))
SIGN_POST = Look("static.manmade", M.PLAIN, (0.5, 0.5, 0.5))


class Part(NamedTuple):
    """One box of a template, in the object's frame [m]."""

    x: float  # centre, forward
    y: float  # centre, left
    bottom: float
    length: float
    width: float
    height: float
    material: M
    color: Color


class Template(NamedTuple):
    """One object: its annotation box (length, width, height) [m] and the parts it is drawn with."""

    category: str
    size: np.ndarray
    parts: list[Part]

    @property
    def length(self) -> float:
        return float(self.size[0])

    @property
    def width(self) -> float:
        return float(self.size[1])


def car(rng: np.random.Generator) -> Template:
    """A car: body with a cabin set back on top."""
    length, width, height = rng.uniform(3.9, 4.9), rng.uniform(1.75, 2.0), rng.uniform(1.42, 1.75)
    paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    body_top = 0.55 * height + 0.1
    return Template(
        "vehicle.car",
        np.array([length, width, height]),
        [
            Part(0.0, 0.0, 0.15, length, width, body_top - 0.15, M.PAINT, paint),
            Part(-0.08 * length, 0.0, body_top, 0.55 * length, 0.9 * width, height - body_top, M.CABIN, paint),
        ],
    )


def truck(rng: np.random.Generator) -> Template:
    """A truck: cab in front of a cargo box."""
    length, width, height = rng.uniform(6.0, 9.0), rng.uniform(2.3, 2.55), rng.uniform(2.9, 3.7)
    cab = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    cargo = CARGO_PAINTS[rng.integers(len(CARGO_PAINTS))]
    cab_len = 2.2
    return Template(
        "vehicle.truck",
        np.array([length, width, height]),
        [
            Part(length / 2 - cab_len / 2, 0.0, 0.35, cab_len, width, 0.85 * height - 0.35, M.CABIN, cab),
            Part(-cab_len / 2 - 0.1, 0.0, 0.8, length - cab_len - 0.2, width, height - 0.8, M.PAINT, cargo),
        ],
    )


def bus(rng: np.random.Generator) -> Template:
    """A rigid bus: one body with a window band."""
    length, width, height = rng.uniform(10.5, 12.5), 2.55, rng.uniform(3.0, 3.4)
    paint = BUS_PAINTS[rng.integers(len(BUS_PAINTS))]
    return Template(
        "vehicle.bus.rigid",
        np.array([length, width, height]),
        [Part(0.0, 0.0, 0.3, length, width, height - 0.3, M.BUS, paint)],
    )


def trailer(rng: np.random.Generator) -> Template:
    """A parked trailer: box on a hitch and an axle."""
    length, width, height = rng.uniform(7.0, 11.0), 2.5, rng.uniform(3.3, 3.9)
    paint = TRAILER_PAINTS[rng.integers(len(TRAILER_PAINTS))]
    return Template(
        "vehicle.trailer",
        np.array([length, width, height]),
        [
            Part(0.0, 0.0, 1.0, length, width, height - 1.0, M.PAINT, paint),
            Part(length / 2 - 1.5, 0.0, 0.0, 0.3, 1.6, 1.0, M.PLAIN, (0.2, 0.2, 0.2)),
            Part(-length / 2 + 1.2, 0.0, 0.3, 2.0, 2.2, 0.7, M.PLAIN, (0.1, 0.1, 0.1)),
        ],
    )


def construction(rng: np.random.Generator) -> Template:
    """A construction vehicle: chassis, body, offset cabin and a short arm."""
    length, width, height = rng.uniform(4.5, 6.0), rng.uniform(2.1, 2.3), rng.uniform(2.8, 3.3)
    yellow = CONSTRUCTION_YELLOW
    return Template(
        "vehicle.construction",
        np.array([length, width, height]),
        [
            Part(0.0, 0.0, 0.0, length, width, 0.9, M.PAINT, (0.15, 0.15, 0.15)),
            Part(-0.15 * length, 0.0, 0.9, 0.6 * length, 0.95 * width, 1.3, M.PAINT, yellow),
            Part(-0.1 * length, 0.25 * width, 2.2, 0.3 * length, 0.45 * width, height - 2.2, M.CABIN, yellow),
            Part(0.3 * length, -0.15 * width, 1.6, 0.4 * length, 0.35, 0.5, M.PAINT, yellow),
        ],
    )


def motorcycle(rng: np.random.Generator, *, rider: bool) -> Template:
    """A motorcycle, ridden or parked (the rider belongs to the motorcycle's box, as in nuScenes)."""
    length, width = rng.uniform(1.9, 2.3), rng.uniform(0.7, 0.9)
    height = rng.uniform(1.55, 1.75) if rider else rng.uniform(1.1, 1.3)
    paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    parts = [
        Part(0.0, 0.0, 0.05, length, 0.35, 0.85, M.PAINT, paint),
        Part(0.35 * length, 0.0, 0.9, 0.15, width, 0.12, M.PLAIN, (0.2, 0.2, 0.2)),
    ]
    if rider:
        clothes = CLOTHES[rng.integers(len(CLOTHES))]
        parts.append(Part(-0.1 * length, 0.0, 0.8, 0.5, 0.55, height - 0.8, M.CLOTH, clothes))
    return Template("vehicle.motorcycle", np.array([length, width, height]), parts)


def bicycle(rng: np.random.Generator, *, rider: bool) -> Template:
    """A bicycle, ridden or parked."""
    length, width = rng.uniform(1.6, 1.85), rng.uniform(0.5, 0.65)
    height = rng.uniform(1.6, 1.8) if rider else rng.uniform(1.0, 1.1)
    paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))]
    parts = [
        Part(0.0, 0.0, 0.0, length, 0.12, 0.95, M.PLAIN, paint),
        Part(0.35 * length, 0.0, 0.9, 0.1, width, 0.1, M.PLAIN, (0.15, 0.15, 0.15)),
    ]
    if rider:
        clothes = CLOTHES[rng.integers(len(CLOTHES))]
        parts.append(Part(-0.1 * length, 0.0, 0.85, 0.45, 0.5, height - 0.85, M.CLOTH, clothes))
    return Template("vehicle.bicycle", np.array([length, width, height]), parts)


def pedestrian(rng: np.random.Generator) -> Template:
    """An adult or (one in ten) a child: legs, torso, head."""
    height, width, length = rng.uniform(1.55, 1.9), rng.uniform(0.55, 0.7), rng.uniform(0.45, 0.65)
    child = rng.random() < 0.1
    if child:
        height *= 0.7
    top, legs = CLOTHES[rng.integers(len(CLOTHES))], CLOTHES[rng.integers(len(CLOTHES))] * 0.6
    skin = SKIN[rng.integers(len(SKIN))]
    return Template(
        "human.pedestrian.child" if child else "human.pedestrian.adult",
        np.array([length, width, height]),
        [
            Part(0.0, 0.0, 0.0, 0.6 * length, 0.6 * width, 0.47 * height, M.CLOTH, legs),
            Part(0.0, 0.0, 0.47 * height, length, width, 0.38 * height, M.CLOTH, top),
            Part(0.0, 0.0, 0.85 * height, 0.22, 0.2, 0.15 * height, M.PLAIN, skin),
        ],
    )


def construction_worker(rng: np.random.Generator) -> Template:
    """A pedestrian in high-visibility clothes."""
    person = pedestrian(rng)
    parts = [p._replace(color=HI_VIS) if p.material == M.CLOTH else p for p in person.parts]
    return Template("human.pedestrian.construction_worker", person.size, parts)


def cone(rng: np.random.Generator) -> Template:
    """A traffic cone on its square foot."""
    height = rng.uniform(0.7, 0.9)
    return Template(
        "movable_object.trafficcone",
        np.array([0.4, 0.4, height]),
        [
            Part(0.0, 0.0, 0.0, 0.4, 0.4, 0.06, M.PLAIN, (0.1, 0.1, 0.1)),
            Part(0.0, 0.0, 0.06, 0.24, 0.24, height - 0.06, M.STRIPES, (0.95, 0.35, 0.05)),
        ],
    )


def barrier(rng: np.random.Generator) -> Template:
    """A striped temporary road barrier."""
    length, width, height = rng.uniform(1.8, 2.6), rng.uniform(0.3, 0.4), rng.uniform(0.9, 1.1)
    color = BARRIER_PAINTS[rng.integers(len(BARRIER_PAINTS))]
    return Template(
        "movable_object.barrier",
        np.array([length, width, height]),
        [Part(0.0, 0.0, 0.0, length, width, height, M.STRIPES, color)],
    )


def trash_bin(rng: np.random.Generator) -> Template:
    """A wheelie bin."""
    color = BIN_PAINTS[rng.integers(len(BIN_PAINTS))]
    return Template(
        "movable_object.pushable_pullable",
        np.array([0.65, 0.6, 1.05]),
        [Part(0.0, 0.0, 0.0, 0.65, 0.6, 1.05, M.PLAIN, color)],
    )


def bicycle_rack(rng: np.random.Generator) -> Template:
    """A bicycle rack: one low rail."""
    return Template(
        "static_object.bicycle_rack",
        np.array([2.6, 0.4, 0.85]),
        [Part(0.0, 0.0, 0.0, 2.6, 0.15, 0.85, M.PLAIN, (0.55, 0.57, 0.6))],
    )


def debris(rng: np.random.Generator) -> Template:
    """A low heap of debris."""
    length, width, height = rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.45)
    return Template(
        "movable_object.debris",
        np.array([length, width, height]),
        [Part(0.0, 0.0, 0.0, length, width, height, M.PLAIN, (0.45, 0.38, 0.3))],
    )


def litter(rng: np.random.Generator) -> Template:
    """Debris (three in ten) or a bin left in the parking strip."""
    return debris(rng) if rng.random() < 0.3 else trash_bin(rng)


# ---- mixes: (cumulative probability, entry) rows, read by `pick` with one uniform draw ----


class Spawn(NamedTuple):
    """An agent to place: its template and its nuScenes attribute ("" for objects without one)."""

    template: Callable[[np.random.Generator], Template]
    attribute: str


# The thresholds are written out, not summed, so that each comparison is exactly the one it always was.
PARKED: tuple[tuple[float, Spawn | None], ...] = (
    (0.3, None),  # a gap
    (0.72, Spawn(car, "vehicle.parked")),
    (0.8, Spawn(truck, "vehicle.parked")),
    (0.84, Spawn(trailer, "vehicle.parked")),
    (0.86, Spawn(bus, "vehicle.parked")),
    (0.93, Spawn(partial(motorcycle, rider=False), "cycle.without_rider")),
    (1.0, Spawn(litter, "")),
)
EGO_LANE: tuple[tuple[float, Spawn], ...] = (
    (0.6, Spawn(car, "vehicle.moving")),
    (0.75, Spawn(truck, "vehicle.moving")),
    (0.88, Spawn(partial(motorcycle, rider=True), "cycle.with_rider")),
    (1.0, Spawn(partial(bicycle, rider=True), "cycle.with_rider")),
)
ONCOMING: tuple[tuple[float, Spawn], ...] = (
    (0.68, Spawn(car, "vehicle.moving")),
    (0.8, Spawn(truck, "vehicle.moving")),
    (0.88, Spawn(bus, "vehicle.moving")),
    (0.95, Spawn(partial(motorcycle, rider=True), "cycle.with_rider")),
    (1.0, Spawn(construction, "vehicle.moving")),
)


def pick(table: Sequence[tuple[float, T]], draw: float) -> T:
    """The entry of the first row whose cumulative probability is above `draw`.

    Args:
        table: (cumulative probability, entry) rows, probabilities increasing to 1.
        draw: a uniform draw in [0, 1), e.g. `rng.random()`.

    Returns:
        The chosen entry.
    """
    for below, entry in table:
        if draw < below:
            return entry
    raise ValueError(f"draw {draw} is not below the table's last probability {table[-1][0]}")
