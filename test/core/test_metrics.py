"""OccupancyMetric against hand-computed confusion matrices (rows GT, columns prediction)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fusionocc_core.metrics import (
    VISIBILITY_REGIONS,
    OccupancyMetric,
    format_table,
    scores_from_confusion,
    visibility_regions,
)

# 7 voxels: car hit twice, car missed (free), free seen as car, free right, road right, others -> road.
GT = np.array([4, 4, 4, 17, 17, 11, 0], dtype=np.uint8)
PRED = np.array([4, 4, 17, 4, 17, 11, 11], dtype=np.uint8)


def test_hand_computed_no_mask() -> None:
    metric = OccupancyMetric(use_camera_mask=False)
    metric.update(PRED, GT, mask=np.zeros_like(GT))  # a no-mask metric ignores the mask
    scores = metric.compute()
    expected = np.zeros((18, 18), dtype=np.int64)
    for g, p in [(4, 4), (4, 4), (4, 17), (17, 4), (17, 17), (11, 11), (0, 11)]:
        expected[g, p] += 1
    np.testing.assert_array_equal(scores.confusion, expected)
    assert scores.iou[4] == pytest.approx(2 / 4)  # TP 2, FP 1 (free->car), FN 1 (car->free)
    assert scores.iou[11] == pytest.approx(1 / 2)  # TP 1, FP 1 (others->road)
    assert scores.iou[0] == 0.0  # in GT, never right
    assert scores.iou[17] == pytest.approx(1 / 3)  # free: kept in the matrix
    absent = [c for c in range(17) if c not in (0, 4, 11)]
    assert all(math.isnan(scores.iou[c]) for c in absent)
    assert scores.miou == pytest.approx((0.5 + 0.5 + 0.0) / 3)  # NaN classes and free excluded
    assert scores.geometry_iou == pytest.approx(4 / 6)  # occupied TP 4, FP 1, FN 1
    assert scores.num_samples == 1 and not scores.use_camera_mask


def test_camera_mask_drops_voxels() -> None:
    mask = np.array([1, 1, 1, 0, 1, 1, 0], dtype=np.uint8)  # hides free->car and others->road
    metric = OccupancyMetric(use_camera_mask=True)
    metric.update(PRED, GT, mask=mask)
    scores = metric.compute()
    assert scores.confusion.sum() == 5
    assert scores.iou[4] == pytest.approx(2 / 3)
    assert scores.iou[11] == pytest.approx(1.0)
    assert math.isnan(scores.iou[0])  # only appeared in a masked voxel
    assert scores.miou == pytest.approx((2 / 3 + 1.0) / 2)
    assert scores.geometry_iou == pytest.approx(3 / 4)
    assert scores.protocol == "camera mask"


def test_torch_matches_numpy_and_batch_counts() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 18, size=(2, 20, 20, 16), dtype=np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 18, size=gt.shape)).astype(np.uint8)
    mask = rng.random(gt.shape) < 0.5
    a, b = OccupancyMetric(), OccupancyMetric()
    a.update(pred, gt, mask)
    b.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert a.confusion.sum() == mask.sum() and a.num_samples == 2
    ref = np.zeros((18, 18), dtype=np.int64)
    np.add.at(ref, (gt[mask].astype(int), pred[mask].astype(int)), 1)
    np.testing.assert_array_equal(a.confusion, ref)


def test_merge_equals_single_pass() -> None:
    whole, first, second = (OccupancyMetric(use_camera_mask=False) for _ in range(3))
    whole.update(PRED, GT)
    first.update(PRED[:3], GT[:3])
    second.update(PRED[3:], GT[3:])
    merged = first.merge(second).compute()
    np.testing.assert_array_equal(merged.confusion, whole.compute().confusion)
    assert merged.num_samples == 2
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(OccupancyMetric(use_camera_mask=True))


def test_errors_are_named() -> None:
    with pytest.raises(ValueError, match="needs mask_camera"):
        OccupancyMetric(use_camera_mask=True).update(PRED, GT)
    with pytest.raises(ValueError, match="labels must be in 0..17"):
        OccupancyMetric(use_camera_mask=False).update(PRED, np.full_like(GT, 18))
    with pytest.raises(ValueError, match="differs from ground truth"):
        OccupancyMetric(use_camera_mask=False).update(PRED[:3], GT)


def test_empty_and_json_and_table() -> None:
    empty = OccupancyMetric().compute()
    assert math.isnan(empty.miou) and math.isnan(empty.geometry_iou)
    metric = OccupancyMetric(use_camera_mask=False)
    metric.update(PRED, GT)
    scores = metric.compute()
    data = json.loads(scores.to_json())
    assert data["protocol"] == "no mask"
    assert data["iou_per_class"]["bus"] is None  # NaN -> null
    assert data["iou_per_class"]["car"] == pytest.approx(50.0)
    assert data["miou"] == pytest.approx(100 / 3, abs=1e-3)
    again = scores_from_confusion(np.array(data["confusion_matrix"]), use_camera_mask=False)
    assert again.miou == pytest.approx(scores.miou)
    table = format_table(scores, empty)
    assert "no mask" in table and "camera mask" in table
    assert "33.33" in table and "(not in mIoU)" in table


def test_visibility_regions_partition_the_grid() -> None:
    rng = np.random.default_rng(0)
    camera, lidar = rng.random((6, 5, 4)) < 0.3, rng.random((6, 5, 4)) < 0.5
    for as_type in (np.asarray, torch.as_tensor):
        regions = visibility_regions(as_type(camera.astype(np.uint8)), as_type(lidar.astype(np.uint8)))
        assert tuple(regions) == VISIBILITY_REGIONS
        stacked = np.stack([np.asarray(r) for r in regions.values()]).astype(int)
        np.testing.assert_array_equal(stacked.sum(0), 1)  # every voxel in exactly one region
        np.testing.assert_array_equal(np.asarray(regions["camera-visible"]), camera)
        np.testing.assert_array_equal(np.asarray(regions["lidar only"]), lidar & ~camera)


def test_table_headers() -> None:
    scores = scores_from_confusion(np.eye(18, dtype=np.int64), use_camera_mask=False)
    table = format_table(scores, scores, headers=("seen", "unseen"))
    assert table.splitlines()[0].split()[1:] == ["seen", "unseen"]
    with pytest.raises(ValueError, match="1 headers for 2 score sets"):
        format_table(scores, scores, headers=("seen",))
