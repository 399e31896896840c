"""OccupancyDataset on the synthetic world: contract shapes, geometry through every augmentation, collate."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionocc_core.data.collate import collate
from fusionocc_core.data.dataset import DatasetConfig, DatasetError, OccupancyDataset
from fusionocc_core.occ3d import GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE
from fusionocc_ros.cli import main as cli_main

INPUT = (128, 352)


@pytest.fixture(scope="module")
def infos(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(out), "--no-progress"]) == 0
    return out / "fusionocc_infos.pkl"


def _flipped_sample(dataset: OccupancyDataset, idx: int, want: tuple[bool, bool]) -> dict:
    """Draws training samples until the BEV flips are the wanted ones (deterministic via torch's seed)."""
    torch.manual_seed(0)
    for _ in range(64):
        sample = dataset[idx]
        if tuple(bool(v < 0) for v in torch.diagonal(sample["bda"])[:2]) == want:
            return sample
    raise AssertionError(f"no sample with flips {want}")


def test_shapes_and_dtypes(infos: Path) -> None:
    ds = OccupancyDataset(infos, input_size=INPUT, train=False, split="val")
    s = ds[1]
    expected = {
        "images": ((2, 6, 3, *INPUT), torch.float32),
        "intrinsics": ((2, 6, 3, 3), torch.float32),
        "cam_to_key_ego": ((2, 6, 4, 4), torch.float32),
        "post_rots": ((2, 6, 3, 3), torch.float32),
        "post_trans": ((2, 6, 3), torch.float32),
        "bda": ((3, 3), torch.float32),
        "sparse_depth": ((6, *INPUT), torch.float32),
        "voxel_semantics": (GRID_SHAPE, torch.uint8),
        "mask_camera": (GRID_SHAPE, torch.bool),
        "mask_lidar": (GRID_SHAPE, torch.bool),
        "imgseg": ((6, INPUT[0] // 16, INPUT[1] // 16), torch.uint8),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(s[key].shape) == shape and s[key].dtype == dtype, key
    assert s["points"].ndim == 2 and s["points"].shape[1] == 5 and len(s["points"]) > 1000
    lo, hi = torch.tensor(POINT_CLOUD_RANGE[:3]), torch.tensor(POINT_CLOUD_RANGE[3:])
    assert torch.all((s["points"][:, :3] >= lo) & (s["points"][:, :3] < hi))
    assert set(np.round(s["points"][:, 4].unique().numpy(), 3)) == {
        0.0,
        0.5,
    }  # frame 1 of its scene: 2 sweeps
    assert (s["sparse_depth"] > 0).any() and float(s["sparse_depth"].max()) < 45.0
    assert torch.equal(s["bda"], torch.eye(3))
    # Evaluation is reproducible (fixed thinning), images are normalised.
    assert torch.equal(ds[1]["points"], s["points"])
    assert -3.0 < float(s["images"].mean()) < 3.0
    # The first keyframe of a scene uses itself as the previous camera frame.
    first = ds[0]
    assert torch.equal(first["cam_to_key_ego"][0], first["cam_to_key_ego"][1])
    assert pickle.loads(pickle.dumps(ds)).samples[0]["token"] == ds.samples[0]["token"]  # worker-safe


@pytest.mark.parametrize("flips", [(False, False), (True, False), (False, True), (True, True)])
def test_points_land_on_their_pixels_and_labels_flip_with_them(infos: Path, flips: tuple[bool, bool]) -> None:
    ds = OccupancyDataset(infos, input_size=INPUT, train=True, split="train")
    s = _flipped_sample(ds, 2, flips)
    pts = s["points"].double()
    current = pts[pts[:, 4] == 0, :3]  # the current sweep (time lag 0), flipped by bda
    bda4 = torch.eye(4, dtype=torch.float64)
    bda4[:3, :3] = s["bda"].double()
    hits = 0
    for cam in range(6):
        # The model's view: camera -> ego, then bda; invert to bring flipped points into the camera.
        cam_to_ego = bda4 @ s["cam_to_key_ego"][0, cam].double()
        ego_to_cam = torch.linalg.inv(cam_to_ego)
        pc = current @ ego_to_cam[:3, :3].T + ego_to_cam[:3, 3]
        z = pc[:, 2]
        uv = (pc @ s["intrinsics"][0, cam].double().T)[:, :2] / z[:, None].clamp(min=1e-6)
        uv = uv @ s["post_rots"][0, cam, :2, :2].double().T + s["post_trans"][0, cam, :2].double()
        col, row = uv[:, 0].round().long(), uv[:, 1].round().long()  # the original's depth-pixel rule
        ok = (z >= 1.0) & (z < 45.0) & (col >= 0) & (col < INPUT[1]) & (row >= 0) & (row < INPUT[0])
        depth_at = s["sparse_depth"][cam][row[ok], col[ok]].double()
        assert torch.all(depth_at > 0), "a projected point found no sparse depth at its pixel"
        assert torch.all(depth_at <= z[ok] + 1e-3), "sparse depth is farther than a point on that pixel"
        hits += int(torch.isclose(depth_at, z[ok], atol=1e-3).sum())
    assert hits > 500
    # Labels moved with the points: lidar returns sit in occupied voxels of the flipped volume.
    lo = torch.tensor(POINT_CLOUD_RANGE[:3], dtype=torch.float64)
    idx = ((current - lo) / VOXEL_SIZE).floor().long().clamp(min=0)
    idx = torch.minimum(idx, torch.tensor(GRID_SHAPE) - 1)
    sem = s["voxel_semantics"]
    occupied = (sem[idx[:, 0], idx[:, 1], idx[:, 2]] != 17).double().mean()
    wrong = torch.flip(sem, dims=[0]) if not flips[0] else torch.flip(sem, dims=[1])
    occupied_wrong = (wrong[idx[:, 0], idx[:, 1], idx[:, 2]] != 17).double().mean()
    assert occupied > 0.85 and occupied > occupied_wrong + 0.1


def test_collate_and_missing_files(infos: Path, tmp_path: Path) -> None:
    ds = OccupancyDataset(
        infos,
        input_size=INPUT,
        train=False,
        split="train",
        config=DatasetConfig(thin_points=False, with_imgseg=False),
    )
    a, b = ds[0], ds[1]
    batch = collate([a, b])
    assert batch["images"].shape == (2, 2, 6, 3, *INPUT) and batch["token"] == [a["token"], b["token"]]
    assert batch["points"].shape == (len(a["points"]) + len(b["points"]), 6)
    np.testing.assert_array_equal(batch["points"][:, 0].unique().numpy(), [0.0, 1.0])
    assert torch.equal(batch["points"][len(a["points"]) :, 1:], b["points"])
    assert "imgseg" not in a
    with pytest.raises(ValueError, match="empty batch"):
        collate([])
    with pytest.raises(DatasetError, match="split 'test'.*has splits"):
        OccupancyDataset(infos, input_size=INPUT, train=False, split="test")
    moved = tmp_path / "infos.pkl"
    shutil.copy(infos, moved)
    (tmp_path / "imgseg").mkdir()
    with pytest.raises(DatasetError, match="imgseg map .* is missing; run `fusionocc prepare"):
        OccupancyDataset(moved, input_size=INPUT, train=False)[0]


def test_class_counts_equal_a_bincount_of_the_label_files(infos: Path) -> None:
    ds = OccupancyDataset(infos, input_size=INPUT, train=True, split="train",
                          config=DatasetConfig(with_imgseg=False))
    every, visible = np.zeros(18, np.int64), np.zeros(18, np.int64)
    for info in ds.samples:
        with np.load(ds.dataroot / info["occ_path"]) as data:
            every += np.bincount(data["semantics"].ravel(), minlength=18)
            visible += np.bincount(data["semantics"][data["mask_camera"] > 0], minlength=18)
    np.testing.assert_array_equal(ds.class_counts(), every)
    np.testing.assert_array_equal(ds.class_counts(use_camera_mask=True), visible)
    assert visible.sum() < every.sum() and every.sum() == len(ds.samples) * 200 * 200 * 16


def test_dataloader_workers_draw_their_own_augmentations(infos: Path) -> None:
    """Worker-safe: the dataset crosses into worker processes, and workers do not repeat each other's draws."""
    from torch.utils.data import DataLoader

    ds = OccupancyDataset(
        infos, input_size=INPUT, train=True, split="train", config=DatasetConfig(with_imgseg=False)
    )
    torch.manual_seed(3)
    loader = DataLoader(torch.utils.data.Subset(ds, [0] * 4), batch_size=1, num_workers=2, collate_fn=collate)
    draws = [
        (tuple(b["post_trans"][0, 0, 0].tolist()), tuple(torch.diagonal(b["bda"][0]).tolist()))
        for b in loader
    ]
    assert len(draws) == 4 and len(set(draws)) == 4  # same sample, four different augmentations


def test_evaluation_images_are_pils_resize_and_bottom_crop(infos: Path) -> None:
    """The original resizes with PIL (antialiased bicubic): evaluation images match PIL's resize + bottom crop
    to within rounding, as the streaming Predictor's do (test_predictor checks those are identical)."""
    from PIL import Image

    from fusionocc_core.data.augment import IMAGENET_MEAN, IMAGENET_STD

    ds = OccupancyDataset(infos, input_size=INPUT, train=False, split="val",
                          config=DatasetConfig(with_imgseg=False))
    info = ds.samples[0]
    cam = info["cams"]["CAM_FRONT"]
    with Image.open(Path(ds.dataroot) / cam["path"]) as img:
        scale = INPUT[1] / img.width
        size = (int(img.width * scale), int(img.height * scale))
        pil = np.asarray(img.convert("RGB").resize(size, Image.BICUBIC), dtype=np.float32)
    expected = pil[size[1] - INPUT[0]:, (size[0] - INPUT[1]) // 2:][: INPUT[0], : INPUT[1]]
    got = ds[0]["images"][0, 1].numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN  # key frame, CAM_FRONT
    assert np.abs(got - expected).mean() < 0.5
