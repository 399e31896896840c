"""imgseg painting: box geometry, nearest-wins, and the projection chain against the devkit's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nuscenes.nuscenes import NuScenes

from fusionocc_core.data.imgseg import (
    ImgsegConfig,
    imgseg_for_sample,
    lidar_to_camera,
    load_keyframe_lidarseg,
    paint_imgseg,
    write_imgseg,
)
from fusionocc_core.data.infos import InfoBuildConfig, build_infos
from fusionocc_core.geometry import apply_transform, project_points


def test_one_point_paints_one_by_two_cells() -> None:
    out = paint_imgseg(np.array([[21.0, 37.0]]), np.array([5.0]), np.array([4]), width=64, height=48)
    assert out.shape == (6, 8)
    painted = np.argwhere(out != 17)
    # 8 px wide box [17, 25) covers the cell centre 20 (col 2);
    # 16 px tall box [29, 45) covers the centres 36 and 44 (rows 4, 5).
    np.testing.assert_array_equal(painted, [[4, 2], [5, 2]])
    assert np.all(out[out != 17] == 4)


def test_nearest_point_wins_and_filters() -> None:
    uv = np.array([[20.0, 20.0], [20.0, 20.0], [20.0, 20.0], [-5.0, 3.0], [30.0, 30.0]])
    depth = np.array([9.0, 3.0, 6.0, 5.0, 0.5])
    labels = np.array([1, 2, 3, 4, 5])
    out = paint_imgseg(uv, depth, labels, width=64, height=48)
    assert out[2, 2] == 2  # depth 3 beats 6 and 9 whatever the input order
    assert out[2, 2] == paint_imgseg(uv[::-1], depth[::-1], labels[::-1], width=64, height=48)[2, 2]
    assert 4 not in out and 5 not in out  # outside the image / nearer than 1 m


def test_projection_matches_devkit(synth_dataroot: Path) -> None:
    nusc = NuScenes("v1.0-mini", str(synth_dataroot), verbose=False)
    index = build_infos(nusc, config=InfoBuildConfig(version="v1.0-mini"), progress=False)
    info = index["samples"][1]
    xyz, labels = load_keyframe_lidarseg(Path(index["dataroot"]), info, index["lidarseg_to_occ"])
    cam = info["cams"]["CAM_FRONT"]
    ref_points, _, _ = nusc.explorer.map_pointcloud_to_image(
        info["lidar"]["sample_data_token"], cam["sample_data_token"]
    )
    uv, depth = project_points(
        apply_transform(lidar_to_camera(info["lidar"], cam), xyz.astype(np.float64)), cam["intrinsics"]
    )
    # The devkit keeps depth > 1 m and 1 px inside the borders.
    keep = (
        (depth > 1.0)
        & (uv[:, 0] > 1)
        & (uv[:, 0] < cam["width"] - 1)
        & (uv[:, 1] > 1)
        & (uv[:, 1] < cam["height"] - 1)
    )
    ours = uv[keep]
    assert len(ours) == ref_points.shape[1] > 100
    # The devkit works in float32: compare the sorted coordinates axis by axis (order-free, tolerant).
    np.testing.assert_allclose(np.sort(ours, axis=0), np.sort(ref_points[:2].T, axis=0), atol=1e-2)
    maps = imgseg_for_sample(xyz, labels, info, config=ImgsegConfig())
    assert maps.shape == (6, -(-cam["height"] // 8), -(-cam["width"] // 8)) and maps.dtype == np.uint8
    assert 0.05 < (maps != 17).mean() < 0.95


def test_write_resumes_and_workers_match_serial(synth_dataroot: Path, tmp_path: Path) -> None:
    nusc = NuScenes("v1.0-mini", str(synth_dataroot), verbose=False)
    index = build_infos(nusc, config=InfoBuildConfig(version="v1.0-mini"), progress=False)
    index["samples"] = index["samples"][:3]
    assert write_imgseg(index, tmp_path / "serial", progress=False) == 3
    assert write_imgseg(index, tmp_path / "serial", progress=False) == 0  # resumes: nothing left to do
    assert write_imgseg(index, tmp_path / "parallel", workers=2, progress=False) == 3
    for info in index["samples"]:
        serial = np.load(tmp_path / "serial" / info["imgseg_path"])
        np.testing.assert_array_equal(np.load(tmp_path / "parallel" / info["imgseg_path"]), serial)
    assert not list((tmp_path / "parallel").rglob("*.tmp.npy"))
