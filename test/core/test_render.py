"""Renders: BEV picks the top class with the right orientation, the 3D view hides free and occluded voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionocc_core.occ3d import CLASS_COLORS, GRID_SHAPE
from fusionocc_core.render import BACKGROUND, ViewConfig, _exposed, bev_image, render_comparison, voxel_view
from fusionocc_ros.cli import main as cli_main


def _empty() -> np.ndarray:
    return np.full(GRID_SHAPE, 17, dtype=np.uint8)


def test_bev_top_class_and_orientation() -> None:
    vol = _empty()
    vol[199, 100, 0] = 11  # front edge, road at the bottom...
    vol[199, 100, 3] = 4  # ...under a car: the car is on top
    vol[50, 199, 15] = 7  # pedestrian at the left edge, highest level
    img = bev_image(vol, shade_height=False)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, 99], CLASS_COLORS[4])  # +x up: row 0; y index 100 -> column 99
    np.testing.assert_array_equal(img[149, 0], CLASS_COLORS[7])  # +y left: column 0
    assert np.all(img[100, 100] == BACKGROUND)
    shaded = bev_image(vol)
    assert np.all(shaded[0, 99] < CLASS_COLORS[4].astype(int) + 1) and np.any(
        shaded[0, 99] != CLASS_COLORS[4]
    )


def test_exposed_drops_interior() -> None:
    occ = np.zeros((5, 5, 5), dtype=bool)
    occ[1:4, 1:4, 1:4] = True
    exposed = _exposed(occ)
    assert exposed.sum() == 26 and not exposed[2, 2, 2]


def test_voxel_view_draws_only_occupied_and_nearest() -> None:
    empty = voxel_view(_empty())
    assert np.all(empty == BACKGROUND)
    vol = _empty()
    vol[100, 100, 5] = 4
    one = voxel_view(vol, config=ViewConfig(pixels_per_voxel=6.0))
    drawn = np.any(one != BACKGROUND, axis=-1)
    assert 25 < drawn.sum() < 120  # one cube of ~6 px edges
    colours = {tuple(c) for c in one[drawn]}
    # Every drawn pixel is the car colour under one of the three face shades.
    expected = {tuple((CLASS_COLORS[4] * s).astype(np.uint8)) for s in (0.78, 0.62, 1.0)}
    assert colours <= expected and len(colours) == 3
    # A road voxel right below the car is hidden from straight above.
    vol[100, 100, 4] = 11
    top = voxel_view(vol, config=ViewConfig(elevation_deg=90.0 - 1e-3, pixels_per_voxel=6.0))
    top_colours = {tuple(c) for c in top[np.any(top != BACKGROUND, axis=-1)]}
    assert tuple(CLASS_COLORS[4]) in top_colours and tuple(CLASS_COLORS[11]) not in top_colours


def test_comparison_layout_and_errors() -> None:
    vol = _empty()
    vol[90:110, 90:110, 0] = 11
    alone = render_comparison(vol)
    both = render_comparison(vol, vol, images=[np.zeros((90, 160, 3), np.uint8)] * 6)
    assert both.shape[0] > 2 * alone.shape[0] and both.dtype == np.uint8
    with pytest.raises(ValueError, match=r"shape \(200, 200, 16\)"):
        bev_image(np.zeros((200, 200, 8), np.uint8))
    with pytest.raises(ValueError, match="labels must be 0..17"):
        bev_image(np.full(GRID_SHAPE, 30, np.uint8))


def test_cli(synth_dataroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = sorted((synth_dataroot / "gts").rglob("labels.npz"))[0]
    out = tmp_path / "r.png"
    assert cli_main(["render", str(gt), "--out", str(out), "--camera-mask"]) == 0
    assert Image.open(out).size[0] > 400
    np.save(tmp_path / "pred.npy", _empty())
    assert cli_main(["render", str(tmp_path / "pred.npy"), "--gt", str(gt), "--out", str(out)]) == 0
    assert cli_main(["render", str(tmp_path / "pred.npy"), "--out", str(out), "--camera-mask"]) == 2
    assert "needs a mask_camera" in capsys.readouterr().err
    assert cli_main(["render", str(tmp_path / "missing.npz"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    # With an info index, a saved prediction <token>.npz finds its ground truth and camera images.
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(tmp_path), "--no-imgseg",
                     "--no-progress"]) == 0
    token = gt.parent.name
    np.savez(tmp_path / f"{token}.npz", semantics=_empty())
    infos = str(tmp_path / "fusionocc_infos.pkl")
    assert cli_main(["render", str(tmp_path / f"{token}.npz"), "--infos", infos, "--out", str(out)]) == 0
    with_images = Image.open(out).size
    assert with_images[1] > 1200  # camera rows + prediction row + ground-truth row
    assert cli_main(["render", str(tmp_path / "pred.npy"), "--infos", infos, "--out", str(out)]) == 2
    assert "is not in" in capsys.readouterr().err
