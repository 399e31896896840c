"""Cross-checks between the written data and the generator's geometry, through the devkit's stored tables.

These fail if a calibration, an ego pose, a timestamp or a label is inconsistent with the others.
"""

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.geometry_utils import points_in_box
from pyquaternion import Quaternion
from scipy.spatial import cKDTree

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME, voxel_centers
from fusionocc_core.synth.categories import CATEGORY_TO_OCC
from fusionocc_core.synth.truth import SceneTruth


@pytest.fixture(scope="module")
def nusc(synth_dataroot):
    return NuScenes(version="v1.0-mini", dataroot=str(synth_dataroot), verbose=False)


def _pose(record) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    pose[:3, 3] = record["translation"]
    return pose


def _sensor_to_global(nusc, sd) -> np.ndarray:
    calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return _pose(nusc.get("ego_pose", sd["ego_pose_token"])) @ _pose(calib)


def _lidar_global(nusc, root, sd_token) -> tuple[np.ndarray, np.ndarray]:
    sd = nusc.get("sample_data", sd_token)
    points = np.fromfile(root / sd["filename"], dtype=np.float32).reshape(-1, 5)[:, :3].astype(np.float64)
    pose = _sensor_to_global(nusc, sd)
    return points @ pose[:3, :3].T + pose[:3, 3], points


def test_lidar_points_project_onto_pixels_of_their_class(nusc, synth_dataroot, synth_options):
    scene = nusc.scene[0]
    truth = SceneTruth(
        seed=synth_options["seed"], scene_index=0, keyframes_per_scene=synth_options["keyframes_per_scene"]
    )
    t0 = nusc.get("sample", scene["first_sample_token"])["timestamp"]
    sample = nusc.get("sample", nusc.get("sample", scene["first_sample_token"])["next"])
    lidar_token = sample["data"][LIDAR_NAME]
    points, _ = _lidar_global(nusc, synth_dataroot, lidar_token)
    labels = CATEGORY_TO_OCC[
        np.fromfile(synth_dataroot / nusc.get("lidarseg", lidar_token)["filename"], np.uint8)
    ]
    agree = seen_agree = seen_total = total = 0
    for channel in CAMERA_NAMES:
        sd = nusc.get("sample_data", sample["data"][channel])
        calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        world_to_cam = np.linalg.inv(_sensor_to_global(nusc, sd))  # with the camera's own ego pose
        cam = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        uvw = cam @ np.array(calib["camera_intrinsic"]).T
        front = cam[:, 2] > 1.0
        u = np.floor(uvw[:, 0] / np.where(front, uvw[:, 2], 1)).astype(int)
        v = np.floor(uvw[:, 1] / np.where(front, uvw[:, 2], 1)).astype(int)
        inside = front & (u >= 0) & (u < sd["width"]) & (v >= 0) & (v < sd["height"])
        render = truth.render(channel, (sd["timestamp"] - t0) / 1e6, width=sd["width"], height=sd["height"])
        pixel_class = render.occ_class[v[inside], u[inside]]
        match = pixel_class == labels[inside]
        # Points the camera itself sees (not hidden behind something closer to the camera).
        seen = np.abs(render.depth[v[inside], u[inside]] - np.linalg.norm(cam[inside], axis=1)) < 0.3
        agree += match.sum()
        total += inside.sum()
        seen_agree += (match & seen).sum()
        seen_total += seen.sum()
    assert total > 20_000
    assert agree / total > 0.85
    assert seen_total > 0.6 * total and seen_agree / seen_total > 0.97


def test_occupied_car_voxels_lie_inside_annotated_car_boxes(nusc, synth_dataroot):
    sample = nusc.sample[1]
    scene = nusc.get("scene", sample["scene_token"])
    semantics = np.load(synth_dataroot / "gts" / scene["name"] / sample["token"] / "labels.npz")["semantics"]
    centres = voxel_centers()[semantics == 4].astype(np.float64)  # car voxels, ego frame
    assert len(centres) > 100
    ego = _pose(nusc.get("ego_pose", nusc.get("sample_data", sample["data"][LIDAR_NAME])["ego_pose_token"]))
    centres_global = centres @ ego[:3, :3].T + ego[:3, 3]
    inside = np.zeros(len(centres), dtype=bool)
    for token in sample["anns"]:
        ann = nusc.get("sample_annotation", token)
        if ann["category_name"] == "vehicle.car":
            box = nusc.get_box(token)
            box.wlh = box.wlh + 0.6  # sub-voxel sampling marks voxels that touch the box
            inside |= points_in_box(box, centres_global.T)
    assert inside.mean() > 0.99
    # And the other way round: the centre of every annotated car near the ego is an occupied car voxel column.
    cars = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    cars = [a for a in cars if a["category_name"] == "vehicle.car"]
    ego_inv = np.linalg.inv(ego)
    labelled = 0
    for ann in cars:
        c = ego_inv[:3, :3] @ ann["translation"] + ego_inv[:3, 3]
        if np.all(np.abs(c[:2]) < 39):
            i, j = ((c[:2] + 40) / 0.4).astype(int)
            labelled += bool(np.any(semantics[i, j] == 4))
        else:
            labelled += 1
    assert labelled == len(cars)


def test_static_geometry_stays_put_in_the_global_frame(nusc, synth_dataroot):
    """Two lidar sweeps 0.2 s apart: above-ground points (mostly static: buildings, trees, parked cars)
    coincide in the global frame with each sweep's own ego pose, and clearly less so with the other
    sweep's pose."""
    for scene in nusc.scene:
        first = nusc.get("sample_data", nusc.get("sample", scene["first_sample_token"])["data"][LIDAR_NAME])
        later = first
        for _ in range(4):
            later = nusc.get("sample_data", later["next"])
        reference, local = _lidar_global(nusc, synth_dataroot, first["token"])
        tree = cKDTree(reference[local[:, 2] > -1.5])  # above the ground (lidar is 1.84 m up)
        points = (
            np.fromfile(synth_dataroot / later["filename"], np.float32).reshape(-1, 5)[:, :3].astype(float)
        )
        points = points[(points[:, 2] > -1.5) & (np.linalg.norm(points, axis=1) < 30)]
        matched = {}
        for name, pose_of in (("own", later), ("wrong", first)):
            pose = _sensor_to_global(nusc, pose_of)
            distance, _ = tree.query(points @ pose[:3, :3].T + pose[:3, 3])
            matched[name] = np.mean(distance < 0.3)
            if name == "own":
                assert np.median(distance) < 0.1
        assert matched["own"] > 0.8
        assert matched["own"] > matched["wrong"] + 0.1


def test_num_lidar_pts_counts_the_points_in_each_box(nusc, synth_dataroot):
    sample = nusc.sample[2]
    token = sample["data"][LIDAR_NAME]
    _, boxes, _ = nusc.get_sample_data(token)
    points = np.fromfile(synth_dataroot / nusc.get("sample_data", token)["filename"], np.float32).reshape(
        -1, 5
    )
    close = 0
    for box in boxes:
        expected = nusc.get("sample_annotation", box.token)["num_lidar_pts"]
        counted = points_in_box(box, points[:, :3].T).sum()
        close += abs(int(counted) - expected) <= 1
    assert close >= 0.98 * len(boxes)
    assert sum(nusc.get("sample_annotation", b.token)["num_lidar_pts"] > 0 for b in boxes) > 10
