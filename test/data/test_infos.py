"""Info index from the synthetic dataroot through the official devkit; splits; load errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from fusionocc_core.data.infos import (
    InfoBuildConfig,
    InfoIndexError,
    assign_splits,
    build_infos,
    load_infos,
    resolve_imgseg_root,
    save_infos,
)
from fusionocc_core.occ3d import CAMERA_NAMES


@pytest.fixture(scope="module")
def nusc(synth_dataroot: Path) -> NuScenes:
    return NuScenes("v1.0-mini", str(synth_dataroot), verbose=False)


def test_official_split_when_names_match() -> None:
    splits, source = assign_splits(["scene-0061", "scene-0103", "scene-0553"], "v1.0-mini")
    assert source == "nuscenes"
    assert splits == {"scene-0061": "train", "scene-0103": "val", "scene-0553": "train"}
    # scene-0001 is a trainval scene, not a mini one: a mini dataroot with it falls back to the hash split.
    assert assign_splits(["scene-0001", "scene-0061"], "v1.0-mini")[1] == "hash"


def test_hash_split_is_deterministic_and_never_empty() -> None:
    names = [f"scene-{i:04d}" for i in range(1, 21)]
    first, source = assign_splits(names, "v1.0-mini")
    again, _ = assign_splits(list(reversed(names)), "v1.0-mini")
    assert source == "hash" and first == again
    assert sum(v == "val" for v in first.values()) == 4
    two, _ = assign_splits(["a", "b"], "custom")
    assert sorted(two.values()) == ["train", "val"]
    assert assign_splits(["only"], "custom")[0] == {"only": "train"}


def test_listed_val_scenes_override_both_splits() -> None:
    names = ["scene-0061", "scene-0103", "scene-0553"]  # official mini names: listing still wins
    splits, source = assign_splits(names, "v1.0-mini", val_scenes=("scene-0553",))
    assert source == "listed"
    assert splits == {"scene-0061": "train", "scene-0103": "train", "scene-0553": "val"}
    # Growing the dataset keeps the listed scenes (and only them) in val, where the hash split would move them.
    grown = [f"scene-{i:04d}" for i in range(1, 31)]
    splits, _ = assign_splits(grown, "custom", val_scenes=("scene-0001", "scene-0003"))
    assert sorted(n for n, v in splits.items() if v == "val") == ["scene-0001", "scene-0003"]
    with pytest.raises(InfoIndexError, match="val scenes scene-0099 are not in the dataroot"):
        assign_splits(grown, "custom", val_scenes=("scene-0001", "scene-0099"))
    with pytest.raises(InfoIndexError, match="names every scene"):
        assign_splits(["a", "b"], "custom", val_scenes=("a", "b"))


def test_build_on_synthetic(nusc: NuScenes, synth_options: dict) -> None:
    index = build_infos(nusc, config=InfoBuildConfig(version="v1.0-mini"), progress=False)
    samples = index["samples"]
    per_scene = synth_options["keyframes_per_scene"]
    assert len(samples) == synth_options["num_scenes"] * per_scene
    assert index["split_source"] == "hash" and {s["split"] for s in samples} == {"train", "val"}
    for info in samples:
        assert len(info["lidar_history"]) == min(info["frame_index"], 7)
        assert (info["prev_camera"] is None) == (info["frame_index"] == 0)
        assert set(info["cams"]) == set(CAMERA_NAMES)
        assert info["lidar"]["lidarseg_path"] is not None
        assert (Path(index["dataroot"]) / info["occ_path"]).is_file()
        for name in CAMERA_NAMES:
            assert (Path(index["dataroot"]) / info["cams"][name]["path"]).is_file()
    # Poses and calibration equal the devkit's own matrices.
    info = samples[2]
    sd = nusc.get("sample_data", info["cams"]["CAM_BACK"]["sample_data_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cam = info["cams"]["CAM_BACK"]
    np.testing.assert_allclose(
        cam["sensor2ego"], transform_matrix(cs["translation"], Quaternion(cs["rotation"])), atol=1e-12
    )
    np.testing.assert_allclose(
        cam["ego2global"], transform_matrix(pose["translation"], Quaternion(pose["rotation"])), atol=1e-9
    )
    np.testing.assert_allclose(cam["intrinsics"], cs["camera_intrinsic"])
    assert samples[1]["lidar_history"] == [samples[0]["token"]]
    # lidarseg lookup: vehicle.car -> 4, noise -> 0.
    index_of = {c["name"]: c["index"] for c in nusc.category}
    assert index["lidarseg_to_occ"][index_of["vehicle.car"]] == 4
    assert index["lidarseg_to_occ"][index_of["noise"]] == 0


def test_save_load_round_trip_and_errors(nusc: NuScenes, tmp_path: Path) -> None:
    index = build_infos(nusc, config=InfoBuildConfig(version="v1.0-mini"), progress=False)
    path = save_infos(index, tmp_path / "infos.pkl")
    loaded = load_infos(path, dataroot=tmp_path)
    assert loaded["dataroot"] == str(tmp_path.resolve()) and len(loaded["samples"]) == len(index["samples"])
    assert resolve_imgseg_root(loaded) == tmp_path / "imgseg"
    with pytest.raises(InfoIndexError, match="does not exist; run `fusionocc prepare"):
        load_infos(tmp_path / "nope.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(InfoIndexError, match="unreadable"):
        load_infos(tmp_path / "junk.pkl")
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"infos": []}))
    with pytest.raises(InfoIndexError, match="not a FusionOcc info index"):
        load_infos(tmp_path / "other.pkl")
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({**index, "format_version": 0}))
    with pytest.raises(InfoIndexError, match="format version 0"):
        load_infos(tmp_path / "old.pkl")
