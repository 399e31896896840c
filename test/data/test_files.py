"""The shared validators: what each file problem is called, which archive fixes it, and that the error
survives the trip back from a `prepare --workers` process."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fusionocc_core.data.files import (
    DataFileError,
    dataroot_of,
    fix_for,
    lidarseg_problem,
    points_problem,
    pose_problem,
)


def test_fix_names_the_archive_of_each_file_and_the_synthetic_world_its_generator(tmp_path: Path) -> None:
    root = Path("/data/nuscenes")
    assert dataroot_of(root / "lidarseg" / "v1.0-trainval" / "x_lidarseg.bin") == root
    assert dataroot_of(root / "v1.0-trainval" / "ego_pose.json") == root
    assert "blobs" in fix_for(root / "samples" / "CAM_FRONT" / "x.jpg")
    assert "blobs" in fix_for(root / "sweeps" / "LIDAR_TOP" / "x.pcd.bin")
    assert "nuScenes-lidarseg" in fix_for(root / "lidarseg" / "v1.0-trainval" / "x_lidarseg.bin")
    assert "metadata archive" in fix_for(root / "v1.0-trainval" / "ego_pose.json")
    assert "gts.tar.gz" in fix_for(root / "gts" / "scene-0001" / "t" / "labels.npz")
    (tmp_path / "SYNTH_COMPLETE").write_text("SynthConfig(...)")
    assert "`fusionocc synth`" in fix_for(tmp_path / "samples" / "CAM_FRONT" / "x.jpg")


def test_problems_name_sizes_exactly(tmp_path: Path) -> None:
    sweep = tmp_path / "x.pcd.bin"
    np.zeros((10, 5), np.float32).tofile(sweep)
    assert points_problem(sweep) is None
    sweep.write_bytes(sweep.read_bytes() + b"\x00")
    assert points_problem(sweep).startswith("201 bytes is not a whole number of 20-byte points")
    labels = tmp_path / "x_lidarseg.bin"
    labels.write_bytes(bytes(9))
    assert lidarseg_problem(labels, 10, sweep) == (
        "9 labels for the 10 points of x.pcd.bin: the label file is damaged"
    )
    assert pose_problem({"translation": [0, 0, 0], "rotation": [1, 0, 0, 0]}) is None
    assert "not a finite non-zero quaternion" in pose_problem({"translation": [0, 0, 0], "rotation": [0] * 4})


def test_error_pickles_with_its_fields() -> None:
    error = DataFileError(Path("/d/samples/x.jpg"), "not a readable image", "re-extract it")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.problem, copy.fix) == (error.path, error.problem, error.fix)
    assert str(copy) == "/d/samples/x.jpg: not a readable image; re-extract it"
