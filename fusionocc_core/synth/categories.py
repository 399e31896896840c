"""nuScenes v1.0 category, attribute and visibility tables (with the lidarseg `index` fields).

The category order is the official nuScenes-lidarseg one: the position in `CATEGORIES` is the `index` that
`lidarseg/*.bin` files store, and the devkit's colormap uses the same order.
"""

from __future__ import annotations

import numpy as np

from fusionocc_core.occ3d import LIDARSEG_TO_OCC

# (name, description) in lidarseg index order 0..31.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("noise", "Any lidar return that does not correspond to a physical object, such as dust, vapor, noise."),
    ("animal", "All animals, e.g. cats, rats, dogs, deer, birds."),
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.construction_worker", "Construction worker"),
    ("human.pedestrian.personal_mobility", "A small electric or self-propelled vehicle, e.g. skateboard."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.stroller", "Strollers."),
    ("human.pedestrian.wheelchair", "Wheelchairs."),
    ("movable_object.barrier", "Temporary road barrier placed in the scene in order to redirect traffic."),
    ("movable_object.debris", "Movable object that is left on the driveable surface."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull, e.g. trash bins."),
    ("movable_object.trafficcone", "All types of traffic cone."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure the bicycles in a row."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds."),
    ("vehicle.bus.bendy", "Bendy bus subcategory. Annotate each section of the bendy bus individually."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.car", "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, wagons, vans."),
    ("vehicle.construction", "Vehicles primarily designed for construction. Typically very slow moving."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly."),
    ("vehicle.trailer", "Any vehicle trailer, both for trucks, cars and motorcycles."),
    ("vehicle.truck", "Vehicles primarily designed to haul cargo including pick-ups, lorrys, trucks."),
    (
        "flat.driveable_surface",
        "All paved or unpaved surfaces that a car can drive on with no concern of traffic rules.",
    ),
    (
        "flat.other",
        "All other forms of horizontal ground-level structures that do not belong to any other class.",
    ),
    ("flat.sidewalk", "Sidewalk, pedestrian walkways, bike paths, etc."),
    (
        "flat.terrain",
        "Natural horizontal surfaces such as ground level horizontal vegetation (< 20 cm tall), grass.",
    ),
    (
        "static.manmade",
        "Includes man-made structures but not limited to: buildings, walls, guard rails, poles.",
    ),
    ("static.other", "Points in the background that are not distinguishable, or objects that do not match."),
    (
        "static.vegetation",
        "Any vegetation in the frame that is higher than the ground, including bushes, trees.",
    ),
    ("vehicle.ego", "The vehicle on which the cameras, radar and lidar are mounted."),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(name for name, _ in CATEGORIES)
CATEGORY_INDEX: dict[str, int] = {name: i for i, name in enumerate(CATEGORY_NAMES)}

# lidarseg index -> Occ3D class id (0 "others" for everything without an occupancy class).
CATEGORY_TO_OCC = np.array([LIDARSEG_TO_OCC.get(name, 0) for name in CATEGORY_NAMES], dtype=np.uint8)

# The nuScenes attribute table (name, description).
ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("vehicle.moving", "Vehicle is moving."),
    (
        "vehicle.stopped",
        "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.",
    ),
    (
        "vehicle.parked",
        "Vehicle is stationary (usually for longer duration) with no immediate intent to move.",
    ),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)

# The nuScenes visibility table: token "1".."4" = fraction of the object visible in all six images.
VISIBILITY: tuple[tuple[str, str, str], ...] = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)


def visibility_token(fraction: np.ndarray) -> np.ndarray:
    """Visibility tokens ("1".."4") for visible fractions in [0, 1]."""
    return np.array(["1", "2", "3", "4"])[np.digitize(fraction, [0.4, 0.6, 0.8])]
