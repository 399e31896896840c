"""check-data names each broken piece of a dataroot and the command that fixes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusionocc_core.data.check import check_dataroot, check_occ_file
from fusionocc_ros.cli import main as cli_main


@pytest.fixture
def dataroot(synth_dataroot: Path, tmp_path: Path) -> Path:
    """A writable copy of the synthetic world without sweeps (not needed by FusionOcc)."""
    root = tmp_path / "data"
    shutil.copytree(synth_dataroot, root, ignore=shutil.ignore_patterns("sweeps"))
    return root


def _failures(root: Path, **kwargs) -> list[str]:
    report = check_dataroot(root, progress=False, **kwargs)
    return [f"{f.topic}: {f.message} | fix: {f.fix}" for f in report.findings if not f.ok]


def test_prepared_dataroot_passes(dataroot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _failures(dataroot) == [
        f"info index: info index {dataroot}/fusionocc_infos.pkl does not exist | fix: run "
        f"`fusionocc prepare {dataroot} --out {dataroot}`"
    ]
    assert cli_main(["prepare", str(dataroot), "--no-progress"]) == 0
    assert cli_main(["check-data", str(dataroot), "--no-progress", "--deep"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_every_broken_piece_is_named(dataroot: Path) -> None:
    assert cli_main(["prepare", str(dataroot), "--no-progress"]) == 0
    cam_file = sorted((dataroot / "samples" / "CAM_BACK").iterdir())[0]
    cam_file.unlink()
    seg = sorted((dataroot / "lidarseg" / "v1.0-mini").iterdir())
    seg[0].unlink()
    seg[1].write_bytes(b"\x00" * 10)
    gts = sorted((dataroot / "gts").rglob("labels.npz"))
    gts[0].unlink()
    np.savez(
        gts[1],
        semantics=np.zeros((200, 200, 8), np.uint8),
        mask_lidar=np.zeros((200, 200, 16), np.uint8),
        mask_camera=np.zeros((200, 200, 16), np.uint8),
    )
    sorted((dataroot / "imgseg").rglob("*.npy"))[0].unlink()
    failures = "\n".join(_failures(dataroot, deep=True))
    assert f"samples/CAM_BACK: 1 keyframe files missing, e.g. samples/CAM_BACK/{cam_file.name}" in failures
    assert "lidarseg: 1 of 8 files missing" in failures and "download nuScenes-lidarseg" in failures
    assert "lidarseg: 1 files with a label count != point count" in failures
    assert "gts: 1 of 8 keyframes lack labels" in failures and "gts.tar.gz" in failures
    assert "semantics has shape (200, 200, 8), expected (200, 200, 16)" in failures
    assert "imgseg: 1 of 8 maps missing" in failures and f"fusionocc prepare {dataroot}" in failures


def test_tables_missing_or_malformed(dataroot: Path, tmp_path: Path) -> None:
    (dataroot / "v1.0-mini" / "ego_pose.json").unlink()
    (dataroot / "v1.0-mini" / "scene.json").write_text("{broken")
    failures = "\n".join(_failures(dataroot))
    assert "lacks ego_pose.json" in failures and "scene.json (JSONDecodeError)" in failures
    assert "metadata archive" in failures
    (tmp_path / "empty").mkdir()
    assert "no v1.0-* table folder" in _failures(tmp_path / "empty")[0]
    assert "is not a folder" in _failures(tmp_path / "nowhere")[0]


def test_occ_file_validation(tmp_path: Path) -> None:
    good = {k: np.zeros((200, 200, 16), np.uint8) for k in ("semantics", "mask_lidar", "mask_camera")}
    np.savez(tmp_path / "good.npz", **good)
    assert check_occ_file(tmp_path / "good.npz") is None
    np.savez(tmp_path / "labels.npz", **{**good, "semantics": np.full((200, 200, 16), 20, np.uint8)})
    assert "labels up to 20" in check_occ_file(tmp_path / "labels.npz")
    np.savez(tmp_path / "dtype.npz", **{**good, "mask_camera": np.zeros((200, 200, 16), bool)})
    assert "dtype bool" in check_occ_file(tmp_path / "dtype.npz")
    (tmp_path / "junk.npz").write_text(json.dumps({}))
    assert "unreadable" in check_occ_file(tmp_path / "junk.npz")
