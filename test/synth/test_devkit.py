"""The synthetic dataset through the OFFICIAL nuScenes devkit: tables, links, timing, poses, renders,
lidarseg, Occ3D files."""

from collections import Counter

import matplotlib
import numpy as np
import pytest
from pyquaternion import Quaternion

matplotlib.use("Agg")

from nuscenes.nuscenes import NuScenes

from fusionocc_core.occ3d import CAMERA_NAMES, GRID_SHAPE, LIDAR_NAME
from fusionocc_core.synth.sensors import CAMERAS, LIDAR
from fusionocc_core.synth.truth import SceneTruth

CHANNELS = (*CAMERA_NAMES, LIDAR_NAME)


@pytest.fixture(scope="module")
def nusc(synth_dataroot):
    return NuScenes(version="v1.0-mini", dataroot=str(synth_dataroot), verbose=False)


def _chain(nusc, sd_token):
    """All sample_data of one channel of a scene, following prev to the start and next to the end."""
    record = nusc.get("sample_data", sd_token)
    while record["prev"]:
        record = nusc.get("sample_data", record["prev"])
    chain = [record]
    while record["next"]:
        record = nusc.get("sample_data", record["next"])
        chain.append(record)
    return chain


def test_scenes_samples_and_sample_data(nusc, synth_options):
    k = synth_options["keyframes_per_scene"]
    assert len(nusc.scene) == synth_options["num_scenes"]
    assert len(nusc.sample) == synth_options["num_scenes"] * k
    for scene in nusc.scene:
        assert scene["nbr_samples"] == k
        token, samples = scene["first_sample_token"], []
        while token:
            samples.append(nusc.get("sample", token))
            token = samples[-1]["next"]
        assert len(samples) == k and samples[-1]["token"] == scene["last_sample_token"]
        assert np.allclose(np.diff([s["timestamp"] for s in samples]), 500_000)
        for sample in samples:
            assert set(sample["data"]) == set(CHANNELS)
            assert sample["timestamp"] == nusc.get("sample_data", sample["data"][LIDAR_NAME])["timestamp"]
            assert len(sample["anns"]) > 10
    # 20 Hz lidar and 12 Hz cameras between keyframes.
    per_channel = Counter(sd["channel"] for sd in nusc.sample_data)
    assert per_channel[LIDAR_NAME] == synth_options["num_scenes"] * (10 * (k - 1) + 1)
    assert per_channel["CAM_FRONT"] == synth_options["num_scenes"] * (6 * (k - 1) + 1)


def test_prev_next_chains_and_rates(nusc, synth_options):
    for sample in (nusc.get("sample", s["first_sample_token"]) for s in nusc.scene):
        for channel in CHANNELS:
            chain = _chain(nusc, sample["data"][channel])
            stamps = np.array([r["timestamp"] for r in chain])
            expected = 50_000 if channel == LIDAR_NAME else 83_333
            assert np.all(np.abs(np.diff(stamps) - expected) <= 1), channel
            assert sum(r["is_key_frame"] for r in chain) == synth_options["keyframes_per_scene"]
            for record in chain:
                assert nusc.get("ego_pose", record["ego_pose_token"])["timestamp"] == record["timestamp"]
                assert (root := nusc.dataroot) and (
                    record["filename"].startswith("samples/") == record["is_key_frame"]
                )
                assert __import__("os").path.exists(f"{root}/{record['filename']}")


def test_camera_stamps_are_staggered_after_the_lidar(nusc):
    for sample in nusc.sample:
        lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])["timestamp"]
        offsets = {c: nusc.get("sample_data", sample["data"][c])["timestamp"] - lidar for c in CAMERA_NAMES}
        assert offsets["CAM_FRONT"] == 0
        assert all(0 <= o <= 50_000 for o in offsets.values())
        assert len(set(offsets.values())) == 6


def test_poses_and_calibration_match_the_generator(nusc, synth_options):
    width, height = synth_options["image_width"], synth_options["image_height"]
    for index, scene in enumerate(nusc.scene):
        truth = SceneTruth(
            seed=synth_options["seed"],
            scene_index=index,
            keyframes_per_scene=synth_options["keyframes_per_scene"],
        )
        t0 = nusc.get("sample", scene["first_sample_token"])["timestamp"]
        sample = nusc.get("sample", scene["last_sample_token"])
        for channel, token in sample["data"].items():
            sd = nusc.get("sample_data", token)
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            expected = truth.ego_pose((sd["timestamp"] - t0) / 1e6)
            np.testing.assert_allclose(pose["translation"], expected[:3, 3], atol=1e-6)
            np.testing.assert_allclose(
                Quaternion(pose["rotation"]).rotation_matrix, expected[:3, :3], atol=1e-7
            )
            calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            spec = LIDAR if channel == LIDAR_NAME else next(c for c in CAMERAS if c.name == channel)
            np.testing.assert_allclose(calib["translation"], spec.translation)
            np.testing.assert_allclose(
                Quaternion(calib["rotation"]).rotation_matrix, spec.rotation, atol=1e-7
            )
            if channel != LIDAR_NAME:
                np.testing.assert_allclose(calib["camera_intrinsic"], spec.intrinsics(width, height))
                assert (sd["width"], sd["height"]) == (width, height)


def test_get_sample_data_boxes_are_the_annotations_in_the_sensor_frame(nusc):
    sample = nusc.sample[2]
    for channel in ("LIDAR_TOP", "CAM_FRONT"):
        _, boxes, _ = nusc.get_sample_data(sample["data"][channel])
        sd = nusc.get("sample_data", sample["data"][channel])
        calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        assert boxes
        for box in boxes:
            box.rotate(Quaternion(calib["rotation"]))
            box.translate(np.array(calib["translation"]))
            box.rotate(Quaternion(pose["rotation"]))
            box.translate(np.array(pose["translation"]))
            ann = nusc.get("sample_annotation", box.token)
            np.testing.assert_allclose(box.center, ann["translation"], atol=1e-6)


def test_annotations_instances_and_motion(nusc):
    moving = 0
    for instance in nusc.instance:
        chain = [nusc.get("sample_annotation", instance["first_annotation_token"])]
        while chain[-1]["next"]:
            chain.append(nusc.get("sample_annotation", chain[-1]["next"]))
        assert (
            len(chain) == instance["nbr_annotations"]
            and chain[-1]["token"] == instance["last_annotation_token"]
        )
        attributes = {nusc.get("attribute", a)["name"] for a in chain[0]["attribute_tokens"]}
        if "vehicle.moving" in attributes and len(chain) > 1:
            moving += np.linalg.norm(np.subtract(chain[-1]["translation"], chain[0]["translation"])) > 1.0
    assert moving > 0
    names = {a["category_name"] for a in nusc.sample_annotation}
    assert {"vehicle.car", "human.pedestrian.adult"} <= names
    assert all(a["visibility_token"] in {"1", "2", "3", "4"} for a in nusc.sample_annotation)
    assert sum(a["num_lidar_pts"] > 0 for a in nusc.sample_annotation) > len(nusc.sample_annotation) / 3


def test_lidarseg_loads_and_matches_the_points(nusc, synth_dataroot):
    assert len(nusc.lidarseg) == len(nusc.sample)
    assert nusc.lidarseg_idx2name_mapping[17] == "vehicle.car"
    sd_token = nusc.sample[0]["data"][LIDAR_NAME]
    labels = np.fromfile(synth_dataroot / nusc.get("lidarseg", sd_token)["filename"], dtype=np.uint8)
    points = np.fromfile(synth_dataroot / nusc.get("sample_data", sd_token)["filename"], dtype=np.float32)
    points = points.reshape(-1, 5)
    assert len(labels) == len(points) > 20_000
    assert labels.max() < len(nusc.category)
    assert set(points[:, 4].astype(int)) <= set(range(32))
    names = {nusc.lidarseg_idx2name_mapping[i] for i in np.unique(labels)}
    assert {"flat.driveable_surface", "static.manmade", "vehicle.car"} <= names


def test_devkit_renders_lidar_camera_and_lidarseg(nusc, tmp_path):
    sample = nusc.sample[1]
    nusc.render_sample_data(sample["data"][LIDAR_NAME], out_path=str(tmp_path / "lidar.png"), verbose=False)
    nusc.render_sample_data(sample["data"]["CAM_FRONT"], out_path=str(tmp_path / "cam.png"), verbose=False)
    nusc.render_sample_data(
        sample["data"][LIDAR_NAME], show_lidarseg=True, out_path=str(tmp_path / "seg.png"), verbose=False
    )
    for name in ("lidar.png", "cam.png", "seg.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    matplotlib.pyplot.close("all")


def test_occ3d_ground_truth_files(nusc, synth_dataroot):
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])
        gt = np.load(synth_dataroot / "gts" / scene["name"] / sample["token"] / "labels.npz")
        assert set(gt.files) == {"semantics", "mask_lidar", "mask_camera"}
        for key in gt.files:
            assert gt[key].shape == GRID_SHAPE and gt[key].dtype == np.uint8
        assert gt["semantics"].max() <= 17
        assert set(np.unique(gt["mask_lidar"])) == {0, 1} and set(np.unique(gt["mask_camera"])) == {0, 1}
        present = set(np.unique(gt["semantics"]))
        assert {4, 11, 13, 15, 16, 17} <= present
        occupied = gt["semantics"] != 17
        assert 0.02 < occupied.mean() < 0.4
        assert 0.05 < gt["mask_camera"].mean() < 0.6 and 0.05 < gt["mask_lidar"].mean() < 0.6
        road = gt["semantics"] == 11
        assert gt["mask_camera"][road].mean() > 0.25 and gt["mask_lidar"][road].mean() > 0.25
        # Building interiors are hidden from both sensors.
        manmade = gt["semantics"] == 15
        assert gt["mask_camera"][manmade].mean() < 0.3
