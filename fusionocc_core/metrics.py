"""Occ3D occupancy metrics: an 18 x 18 confusion matrix over a split, per-class IoU, mIoU, geometry IoU.

Protocol (Occ3D-nuScenes): rows of the matrix are ground truth, columns prediction. With the camera mask
(the Occ3D standard) only voxels with mask_camera == 1 count; without it every voxel counts.
IoU_c = TP / (TP + FP + FN) per class, NaN when the class appears neither in the ground truth nor in the
prediction; mIoU is the mean over classes 0..16 ignoring NaN. Free (17) is left out of the mean but stays in
the matrix, so free/occupied confusion lowers the class IoUs. Geometry IoU scores occupied (any class but
free) against free.

FusionOcc's published 56.62 mIoU is a no-mask number; mask-evaluated numbers are not comparable with it, so
every score here carries the protocol it was computed with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fusionocc_core.occ3d import CLASS_NAMES, FREE_LABEL, NUM_CLASSES

ArrayLike = np.ndarray | torch.Tensor


def protocol_name(use_camera_mask: bool) -> str:
    """Human-readable protocol label used in tables and JSON."""
    return "camera mask" if use_camera_mask else "no mask"


@dataclass(frozen=True)
class OccupancyScores:
    """Scores of one protocol over a split.

    Attributes:
        iou: per-class IoU in [0, 1] for the 18 classes (index = class id), NaN where the class is absent.
        miou: mean IoU over classes 0..16 ignoring NaN (NaN if all are absent).
        geometry_iou: IoU of occupied (class != free) against free.
        use_camera_mask: True for the Occ3D camera-mask protocol, False when every voxel counts.
        num_samples: number of `update` calls' samples accumulated.
        confusion: (18, 18) int64 matrix, rows ground truth, columns prediction.
    """

    iou: tuple[float, ...]
    miou: float
    geometry_iou: float
    use_camera_mask: bool
    num_samples: int
    confusion: np.ndarray = field(repr=False)

    @property
    def protocol(self) -> str:
        return protocol_name(self.use_camera_mask)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN IoUs become None (JSON has no NaN), IoUs in percent."""

        def pct(value: float) -> float | None:
            return None if math.isnan(value) else round(100.0 * value, 4)

        return {
            "protocol": self.protocol,
            "use_camera_mask": self.use_camera_mask,
            "num_samples": self.num_samples,
            "miou": pct(self.miou),
            "geometry_iou": pct(self.geometry_iou),
            "iou_per_class": {name: pct(v) for name, v in zip(CLASS_NAMES, self.iou, strict=True)},
            "confusion_matrix": self.confusion.tolist(),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def scores_from_confusion(
    confusion: np.ndarray, *, use_camera_mask: bool, num_samples: int = 0
) -> OccupancyScores:
    """Computes the scores of an (18, 18) confusion matrix (rows ground truth, columns prediction)."""
    hist = np.asarray(confusion, dtype=np.int64)
    if hist.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"confusion matrix must be {NUM_CLASSES}x{NUM_CLASSES}, got {hist.shape}")
    tp = np.diag(hist).astype(np.float64)
    denom = hist.sum(0) + hist.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    semantic = iou[:FREE_LABEL]
    miou = float(np.nanmean(semantic)) if np.any(~np.isnan(semantic)) else math.nan
    occ_tp = hist[:FREE_LABEL, :FREE_LABEL].sum()
    occ_fp = hist[FREE_LABEL, :FREE_LABEL].sum()  # free in GT, predicted occupied
    occ_fn = hist[:FREE_LABEL, FREE_LABEL].sum()  # occupied in GT, predicted free
    geo_denom = occ_tp + occ_fp + occ_fn
    geometry_iou = float(occ_tp / geo_denom) if geo_denom > 0 else math.nan
    return OccupancyScores(
        iou=tuple(float(v) for v in iou),
        miou=miou,
        geometry_iou=geometry_iou,
        use_camera_mask=use_camera_mask,
        num_samples=num_samples,
        confusion=hist.copy(),
    )


class OccupancyMetric:
    """Accumulates the Occ3D confusion matrix over a split for one protocol.

    Feed every sample with its camera mask; a no-mask metric ignores the mask, so one loop can update both
    protocols with the same arguments.

    Example:
        >>> metric = OccupancyMetric(use_camera_mask=True)
        >>> metric.update(pred, gt, mask=mask_camera)   # (..., 200, 200, 16) arrays or tensors
        >>> print(metric.compute().miou)
    """

    def __init__(self, *, use_camera_mask: bool = True) -> None:
        self.use_camera_mask = use_camera_mask
        self.confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
        self.num_samples = 0

    def reset(self) -> None:
        self.confusion[:] = 0
        self.num_samples = 0

    def update(self, pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> None:
        """Adds predictions against ground truth.

        Args:
            pred: predicted class ids 0..17, any shape; a leading batch axis counts several samples when the
                trailing shape is the 3D grid (ndim 4).
            gt: ground-truth class ids, same shape as pred.
            mask: camera visibility (non-zero = counted), same shape; required for the camera-mask protocol,
                ignored without it.

        Raises:
            ValueError: shapes differ, labels are outside 0..17, or the camera-mask protocol gets no mask.
        """
        if tuple(pred.shape) != tuple(gt.shape):
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from ground truth {tuple(gt.shape)}"
            )
        if self.use_camera_mask:
            if mask is None:
                raise ValueError(
                    "the camera-mask protocol needs mask_camera; use use_camera_mask=False otherwise"
                )
            if tuple(mask.shape) != tuple(gt.shape):
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} differs from ground truth {tuple(gt.shape)}"
                )
        if isinstance(pred, torch.Tensor) or isinstance(gt, torch.Tensor):
            self.confusion += self._torch_hist(pred, gt, mask if self.use_camera_mask else None)
        else:
            self.confusion += self._numpy_hist(
                np.asarray(pred), np.asarray(gt), None if not self.use_camera_mask else np.asarray(mask)
            )
        self.num_samples += int(pred.shape[0]) if len(pred.shape) == 4 else 1

    @staticmethod
    def _check_range(low: int, high: int, what: str) -> None:
        if low < 0 or high >= NUM_CLASSES:
            raise ValueError(f"{what} labels must be in 0..{NUM_CLASSES - 1}, got range [{low}, {high}]")

    def _numpy_hist(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        pred, gt = pred.reshape(-1).astype(np.int64), gt.reshape(-1).astype(np.int64)
        if mask is not None:
            keep = mask.reshape(-1) != 0
            pred, gt = pred[keep], gt[keep]
        if pred.size:
            self._check_range(int(pred.min()), int(pred.max()), "predicted")
            self._check_range(int(gt.min()), int(gt.max()), "ground-truth")
        return np.bincount(gt * NUM_CLASSES + pred, minlength=NUM_CLASSES**2).reshape(
            NUM_CLASSES, NUM_CLASSES
        )

    def _torch_hist(self, pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None) -> np.ndarray:
        pred_t = torch.as_tensor(pred).reshape(-1).long()
        gt_t = torch.as_tensor(gt, device=pred_t.device).reshape(-1).long()
        if mask is not None:
            keep = torch.as_tensor(mask, device=pred_t.device).reshape(-1) != 0
            pred_t, gt_t = pred_t[keep], gt_t[keep]
        if pred_t.numel():
            self._check_range(int(pred_t.min()), int(pred_t.max()), "predicted")
            self._check_range(int(gt_t.min()), int(gt_t.max()), "ground-truth")
        hist = torch.bincount(gt_t * NUM_CLASSES + pred_t, minlength=NUM_CLASSES**2)
        return hist.cpu().numpy().astype(np.int64).reshape(NUM_CLASSES, NUM_CLASSES)

    def merge(self, other: OccupancyMetric) -> OccupancyMetric:
        """Adds another metric's counts (same protocol) into this one and returns self."""
        if other.use_camera_mask != self.use_camera_mask:
            raise ValueError(
                f"cannot merge a '{protocol_name(other.use_camera_mask)}' metric into a "
                f"'{protocol_name(self.use_camera_mask)}' one"
            )
        self.confusion += other.confusion
        self.num_samples += other.num_samples
        return self

    def all_reduce(self, device: torch.device | str = "cpu") -> None:
        """Sums the matrix and sample count over all torch.distributed ranks (no-op when not distributed).

        Args:
            device: where the reduction tensor lives; "cuda" for NCCL process groups.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        flat = torch.from_numpy(np.append(self.confusion.reshape(-1), self.num_samples)).to(device)
        torch.distributed.all_reduce(flat)
        values = flat.cpu().numpy().astype(np.int64)
        self.confusion = values[:-1].reshape(NUM_CLASSES, NUM_CLASSES)
        self.num_samples = int(values[-1])

    def compute(self) -> OccupancyScores:
        return scores_from_confusion(
            self.confusion, use_camera_mask=self.use_camera_mask, num_samples=self.num_samples
        )


# What saw a voxel, from Occ3D's two masks; the three regions partition the grid.
VISIBILITY_REGIONS = ("camera-visible", "lidar only", "unobserved")


def visibility_regions(mask_camera: ArrayLike, mask_lidar: ArrayLike) -> dict[str, ArrayLike]:
    """Boolean masks of `VISIBILITY_REGIONS`: camera-visible (mask_camera), seen by the lidar but no camera
    (mask_lidar and not mask_camera), and unobserved (neither). Numpy arrays or torch tensors, same shape."""
    camera, lidar = mask_camera != 0, mask_lidar != 0
    return dict(zip(VISIBILITY_REGIONS, (camera, lidar & ~camera, ~(lidar | camera)), strict=True))


def format_table(*scores: OccupancyScores, headers: tuple[str, ...] | None = None) -> str:
    """Per-class IoU table [%] with one column per protocol, then mIoU and geometry IoU rows.

    Args:
        scores: one or more score sets (typically camera mask and no mask over the same split).
        headers: column titles (default: each score set's protocol).
    """
    if not scores:
        raise ValueError("format_table needs at least one OccupancyScores")
    if headers is not None and len(headers) != len(scores):
        raise ValueError(f"format_table got {len(headers)} headers for {len(scores)} score sets")
    width = max(len(n) for n in CLASS_NAMES) + 2
    cols = list(headers) if headers is not None else [s.protocol for s in scores]
    colw = max(12, *(len(c) + 2 for c in cols))

    def cell(value: float) -> str:
        return f"{'-' if math.isnan(value) else f'{100 * value:.2f}':>{colw}}"

    lines = [f"{'class':<{width}}" + "".join(f"{c:>{colw}}" for c in cols)]
    lines.append("-" * len(lines[0]))
    for cid, name in enumerate(CLASS_NAMES):
        suffix = "  (not in mIoU)" if cid == FREE_LABEL else ""
        lines.append(f"{name:<{width}}" + "".join(cell(s.iou[cid]) for s in scores) + suffix)
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mIoU (0..16)':<{width}}" + "".join(cell(s.miou) for s in scores))
    lines.append(f"{'geometry IoU':<{width}}" + "".join(cell(s.geometry_iou) for s in scores))
    lines.append(f"{'samples':<{width}}" + "".join(f"{s.num_samples:>{colw}}" for s in scores))
    return "\n".join(lines)
