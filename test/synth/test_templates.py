"""Object templates, static looks and the probability tables the street is drawn from."""

from functools import partial
from itertools import pairwise

import numpy as np
import pytest

from fusionocc_core.synth import layout, templates
from fusionocc_core.synth.categories import CATEGORY_INDEX, CATEGORY_TO_OCC
from fusionocc_core.synth.materials import Material
from fusionocc_core.synth.templates import Look, Template, pick

MAKERS = {
    "car": templates.car,
    "truck": templates.truck,
    "bus": templates.bus,
    "trailer": templates.trailer,
    "construction": templates.construction,
    "motorcycle": partial(templates.motorcycle, rider=False),
    "motorcycle_rider": partial(templates.motorcycle, rider=True),
    "bicycle": partial(templates.bicycle, rider=False),
    "bicycle_rider": partial(templates.bicycle, rider=True),
    "pedestrian": templates.pedestrian,
    "construction_worker": templates.construction_worker,
    "cone": templates.cone,
    "barrier": templates.barrier,
    "trash_bin": templates.trash_bin,
    "bicycle_rack": templates.bicycle_rack,
    "debris": templates.debris,
    "litter": templates.litter,
}
TABLES = {
    "PARKED": templates.PARKED,
    "EGO_LANE": templates.EGO_LANE,
    "ONCOMING": templates.ONCOMING,
    "LOTS": layout.LOTS,
    "FURNITURE": layout.FURNITURE,
}
GROUND_AND_STATIC = (11, 12, 13, 14, 15, 16)  # Occ3D driveable surface .. vegetation


def _samples(make, count=40):
    rng = np.random.default_rng(3)
    return [make(rng) for _ in range(count)]


@pytest.mark.parametrize("name", MAKERS)
def test_parts_lie_inside_the_annotation_box(name):
    for template in _samples(MAKERS[name]):
        assert isinstance(template, Template)
        length, width, height = template.size
        assert template.length == length and template.width == width
        assert template.parts
        for part in template.parts:
            assert min(part.length, part.width, part.height) > 0, part
            assert abs(part.x) + part.length / 2 <= length / 2 + 1e-9, part
            assert abs(part.y) + part.width / 2 <= width / 2 + 1e-9, part
            assert part.bottom >= 0.0 and part.bottom + part.height <= height + 1e-9, part
            assert isinstance(part.material, Material)
            assert np.shape(part.color) == (3,) and np.min(part.color) >= 0.0 and np.max(part.color) <= 1.0


@pytest.mark.parametrize("name", MAKERS)
def test_agent_categories_are_annotated_objects(name):
    for template in _samples(MAKERS[name], 20):
        assert template.category in CATEGORY_INDEX
        assert template.category.split(".")[0] in ("vehicle", "human", "movable_object", "static_object")
        assert CATEGORY_TO_OCC[CATEGORY_INDEX[template.category]] not in GROUND_AND_STATIC


def test_static_looks_are_ground_or_static_classes():
    looks = [v for v in vars(templates).values() if isinstance(v, Look)]
    assert len(looks) >= 10
    for look in looks:
        assert look.category.split(".")[0] in ("flat", "static")
        assert CATEGORY_TO_OCC[CATEGORY_INDEX[look.category]] in GROUND_AND_STATIC
        assert isinstance(look.material, Material) and len(look.color) == 3


def test_construction_worker_is_a_pedestrian_in_high_visibility_clothes():
    worker = templates.construction_worker(np.random.default_rng(5))
    person = templates.pedestrian(np.random.default_rng(5))
    assert worker.category == "human.pedestrian.construction_worker"
    np.testing.assert_array_equal(worker.size, person.size)
    for mine, theirs in zip(worker.parts, person.parts, strict=True):
        expected = templates.HI_VIS if theirs.material == Material.CLOTH else theirs.color
        assert mine._replace(color=None) == theirs._replace(color=None)
        np.testing.assert_array_equal(mine.color, expected)


@pytest.mark.parametrize("name", TABLES)
def test_cumulative_probabilities_increase_to_one(name):
    below = [row[0] for row in TABLES[name]]
    assert below[0] > 0.0
    assert all(a < b for a, b in pairwise(below))
    assert below[-1] == 1.0


@pytest.mark.parametrize("name", TABLES)
def test_pick_is_the_if_ladder_on_the_same_draw(name):
    table = TABLES[name]
    lower = 0.0
    for below, entry in table:
        for draw in (lower, (lower + below) / 2, np.nextafter(below, 0.0)):
            assert pick(table, float(draw)) is entry
        lower = below
    with pytest.raises(ValueError, match="not below"):
        pick(table, 1.0)


@pytest.mark.parametrize("name", ["PARKED", "EGO_LANE", "ONCOMING"])
def test_attributes_fit_the_category(name):
    rng = np.random.default_rng(11)
    for _, spawn in TABLES[name]:
        if spawn is None:
            continue
        for _ in range(10):
            category = spawn.template(rng).category
            if category in ("vehicle.motorcycle", "vehicle.bicycle"):
                assert spawn.attribute.startswith("cycle.")
            elif category.startswith("vehicle."):
                assert spawn.attribute.startswith("vehicle.")
            else:
                assert spawn.attribute == ""
