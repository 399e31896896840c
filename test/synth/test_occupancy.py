"""Occ3D ground truth from boxes: semantics, lidar ray marching and camera visibility on tiny scenes."""

import numpy as np

from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE
from fusionocc_core.synth.occupancy import mask_camera, mask_lidar, semantics, voxel_index
from fusionocc_core.synth.raycast import BoxScene
from fusionocc_core.synth.sensors import CAMERAS
from fusionocc_core.synth.world import BoxSet


def _boxes(centers, sizes, classes) -> BoxSet:
    n = len(centers)
    return BoxSet(
        np.asarray(centers, float),
        np.asarray(sizes, float),
        np.zeros(n),
        np.asarray(classes, np.uint8),
        np.zeros(n, np.uint8),
        np.zeros(n, np.uint8),
        np.zeros((n, 3), np.float32),
        np.full(n, -1, np.int32),
        np.zeros((n, 2), np.float32),
    )


def _cell(x, y, z):
    index, inside = voxel_index(np.array([[x, y, z]]))
    assert inside[0]
    return tuple(index[0])


def test_semantics_fills_boxes_and_objects_win_over_ground():
    road = [0.0, 0.0, -0.14]  # slab from -0.28 to 0: one voxel layer of ground
    car = [10.0, 0.0, 0.75]
    labels = semantics(_boxes([car, road], [[4.0, 2.0, 1.5], [80.0, 80.0, 0.28]], [4, 11]))
    assert labels.shape == GRID_SHAPE and labels.dtype == np.uint8
    assert labels[_cell(10.1, 0.1, 0.7)] == 4
    assert labels[_cell(10.1, 0.1, -0.1)] == 4  # the car's bottom layer shares voxels with the road: car wins
    assert labels[_cell(20.1, 0.1, -0.1)] == 11
    assert labels[_cell(20.1, 0.1, 1.0)] == FREE_LABEL
    assert labels[_cell(20.1, 0.1, -0.7)] == FREE_LABEL  # below the one-voxel ground layer
    car_voxels = np.argwhere(labels == 4)
    # 4 m x 2 m footprint = 10 x 5 voxels, grown by at most one voxel per side by the sub-voxel rule.
    extent = car_voxels.max(0) - car_voxels.min(0) + 1
    assert 10 <= extent[0] <= 12 and 5 <= extent[1] <= 7


def test_mask_lidar_marks_traversed_and_hit_voxels_only():
    origin = np.array([0.0, 0.0, 1.8])
    dirs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = mask_lidar(origin, dirs, np.array([5.0, np.inf]))
    assert mask[_cell(0.1, 0.1, 1.8)] == 1
    assert mask[_cell(4.9, 0.1, 1.8)] == 1  # just before the hit
    assert mask[_cell(5.1, 0.1, 1.8)] == 1  # the hit surface's voxel
    assert mask[_cell(6.5, 0.1, 1.8)] == 0  # behind the hit
    assert mask[_cell(0.1, 39.9, 1.8)] == 1  # a miss is traversed to the edge of the grid
    assert mask.sum() < 200


def test_mask_camera_sees_in_front_of_a_wall_not_behind_it():
    wall = _boxes([[15.0, 0.0, 3.0]], [[1.0, 60.0, 6.0]], [15])
    scene = BoxScene(wall)
    cams = [
        (c.rotation, np.array(c.translation), c.intrinsics(1600, 900), 1600, 900)
        for c in CAMERAS
        if c.name == "CAM_FRONT"
    ]
    mask = mask_camera(scene, ego_rotation=np.eye(3), ego_translation=np.zeros(3), cameras=cams)
    assert mask[_cell(8.0, 0.1, 1.0)] == 1
    assert mask[_cell(14.6, 0.1, 1.0)] == 1  # the wall's own front voxels are seen
    assert mask[_cell(18.0, 0.1, 1.0)] == 0  # occluded
    assert mask[_cell(-8.0, 0.1, 1.0)] == 0  # behind the front camera: outside its image
    assert mask[_cell(8.0, 30.0, 1.0)] == 0  # outside the field of view
