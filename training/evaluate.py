"""Occ3D mIoU of a checkpoint or of saved predictions over one split, with and without the camera mask.

Both protocols are always computed and reported (per-class table, mIoU, geometry IoU): the camera-mask one
(Occ3D standard) and the no-mask one (where every voxel counts, the protocol of FusionOcc's published 56.62).
--no-camera-mask only makes the no-mask score the headline. Predictions come from a model checkpoint run over
the split (--checkpoint) or from a folder of `<sample_token>.npz` files holding `semantics` (--pred-dir).
--by-visibility adds the no-mask scores over each region of `VISIBILITY_REGIONS` (what saw the voxel, from the
Occ3D masks): where a model gains or loses against another, e.g. fusion against lidar-only.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from fusionocc_core.cli_options import (
    DeviceError,
    add_device,
    add_infos,
    add_no_progress,
    add_workers,
    resolve_device,
)
from fusionocc_core.data.dataset import DatasetError
from fusionocc_core.data.files import DataFileError, read_occ
from fusionocc_core.data.infos import InfoIndexError, load_infos
from fusionocc_core.errors import FusionOccError
from fusionocc_core.metrics import (
    VISIBILITY_REGIONS,
    ArrayLike,
    OccupancyMetric,
    OccupancyScores,
    format_table,
    visibility_regions,
)
from fusionocc_core.occ3d import GRID_SHAPE

if TYPE_CHECKING:  # annotations only; the functions import the model where they use it
    from fusionocc_core.model.fusionocc import FusionOcc

# The tensors of a collated batch that the model's forward contract takes.
MODEL_INPUTS = (
    "images",
    "intrinsics",
    "cam_to_key_ego",
    "post_rots",
    "post_trans",
    "bda",
    "points",
    "sparse_depth",
)


class EvaluationError(FusionOccError, RuntimeError):
    """Inputs of an evaluation are missing or inconsistent (the message names them)."""


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of both protocols over one split."""

    camera_mask: OccupancyScores
    no_mask: OccupancyScores
    split: str | None
    source: str  # checkpoint path or prediction folder
    primary: str  # "camera mask" or "no mask": the headline protocol
    regions: dict[str, OccupancyScores] | None = None  # no-mask scores per visibility region (--by-visibility)

    @property
    def headline(self) -> OccupancyScores:
        """The scores of the primary protocol."""
        return self.camera_mask if self.primary == "camera mask" else self.no_mask

    def to_dict(self) -> dict[str, Any]:
        """Both protocols' scores as JSON-ready values."""
        return {
            "source": self.source,
            "split": self.split,
            "primary_protocol": self.primary,
            "miou": self.headline.to_dict()["miou"],
            "camera_mask": self.camera_mask.to_dict(),
            "no_mask": self.no_mask.to_dict(),
            **({} if self.regions is None else {"visibility_regions": {
                name: {**scores.to_dict(), "protocol": f"no mask, {name} voxels",
                       "voxels": int(scores.confusion.sum())}
                for name, scores in self.regions.items()}}),
        }

    def format(self) -> str:
        """The per-class table of both protocols and the headline mIoU line."""
        head = self.headline
        return (
            f"{format_table(self.camera_mask, self.no_mask)}\n\n"
            f"mIoU ({self.primary}, {head.num_samples} samples of split {self.split}): "
            f"{100 * head.miou:.2f}  [IoU in %; '-' = class absent from GT and prediction]"
            + ("" if self.regions is None else "\n\n" + self.format_regions())
        )

    def format_regions(self) -> str:
        """The no-mask table split by what saw each voxel, with each region's share of the voxels."""
        assert self.regions is not None
        counts = {name: int(s.confusion.sum()) for name, s in self.regions.items()}
        total = max(sum(counts.values()), 1)
        shares = ", ".join(f"{name} {100 * n / total:.1f} %" for name, n in counts.items())
        return (f"no mask by what saw each voxel (Occ3D masks; share of the voxels: {shares})\n"
                + format_table(*self.regions.values(), headers=tuple(self.regions)))


class _Scores:
    """The metrics of one evaluation: both protocols, and the visibility regions when asked for."""

    def __init__(self, by_visibility: bool) -> None:
        self.with_mask, self.without = OccupancyMetric(use_camera_mask=True), OccupancyMetric(use_camera_mask=False)
        # A region's metric uses the masked protocol with the region as its mask.
        self.regions = ({name: OccupancyMetric(use_camera_mask=True) for name in VISIBILITY_REGIONS}
                        if by_visibility else None)

    def update(self, pred: ArrayLike, gt: ArrayLike, mask_camera: ArrayLike,
               mask_lidar: ArrayLike | None = None) -> None:
        self.with_mask.update(pred, gt, mask_camera)
        self.without.update(pred, gt)
        if self.regions is not None:
            if mask_lidar is None:
                raise EvaluationError("scoring by visibility needs mask_lidar with every sample")
            for name, region in visibility_regions(mask_camera, mask_lidar).items():
                self.regions[name].update(pred, gt, region)

    def result(self, split: str | None, source: str, primary: str,
               device: torch.device | str | None = None) -> EvaluationResult:
        """The scores; with `device`, first summed over torch.distributed ranks."""
        metrics = [self.with_mask, self.without, *(self.regions or {}).values()]
        if device is not None:
            for metric in metrics:
                metric.all_reduce(device)
        regions = None if self.regions is None else {n: m.compute() for n, m in self.regions.items()}
        return EvaluationResult(self.with_mask.compute(), self.without.compute(), split, source, primary, regions)


def _load_gt(dataroot: Path, info: dict[str, Any], *, with_mask_lidar: bool) -> dict[str, np.ndarray]:
    path = dataroot / info["occ_path"]
    if not path.is_file():
        raise EvaluationError(f"ground truth {path} is missing; run `fusionocc check-data {dataroot}`")
    try:
        return read_occ(path, ("semantics", "mask_camera", "mask_lidar") if with_mask_lidar
                        else ("semantics", "mask_camera"))
    except DataFileError as error:
        raise EvaluationError(str(error)) from None


def _load_prediction(pred_dir: Path, token: str) -> np.ndarray:
    path = pred_dir / f"{token}.npz"
    try:
        with np.load(path) as data:
            if "semantics" not in data:
                raise EvaluationError(f"{path} has no 'semantics' array (has {sorted(data.keys())})")
            pred = data["semantics"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise EvaluationError(f"{path} is not a readable .npz ({type(error).__name__}: {error}); write it "
                              f"again with `fusionocc eval --save-pred`") from None
    if pred.shape != GRID_SHAPE:
        raise EvaluationError(f"{path}: semantics has shape {pred.shape}, expected {GRID_SHAPE}")
    return pred


def _split_samples(index: dict[str, Any], split: str | None) -> list[dict[str, Any]]:
    samples = [i for i in index["samples"] if split is None or i["split"] == split]
    if not samples:
        splits = sorted({i["split"] for i in index["samples"]})
        raise EvaluationError(
            f"split '{split}' of {index.get('index_path')} is empty; the index has {splits}"
        )
    return samples


def evaluate_predictions(
    index: dict[str, Any],
    pred_dir: str | Path,
    *,
    split: str | None = "val",
    primary: str = "camera mask",
    progress: bool = True,
    by_visibility: bool = False,
) -> EvaluationResult:
    """Scores a folder of saved predictions (`<sample_token>.npz` with `semantics`) against the index's gts
    (with `by_visibility` also per visibility region).

    Raises:
        EvaluationError: the folder lacks predictions of the split (all missing ones are counted) or a file is
            malformed.
    """
    pred_dir = Path(pred_dir)
    samples = _split_samples(index, split)
    missing = [i["token"] for i in samples if not (pred_dir / f"{i['token']}.npz").is_file()]
    if missing:
        raise EvaluationError(
            f"{pred_dir} lacks predictions for {len(missing)} of {len(samples)} samples of split "
            f"'{split}', e.g. {missing[0]}.npz; write them with `fusionocc eval --checkpoint CKPT "
            f"--infos INFOS --save-pred {pred_dir}`"
        )
    dataroot = Path(index["dataroot"])
    scores = _Scores(by_visibility)
    for info in tqdm(samples, desc=f"eval {split}", unit="sample", disable=not progress):
        gt = _load_gt(dataroot, info, with_mask_lidar=by_visibility)
        pred = _load_prediction(pred_dir, info["token"])
        scores.update(pred, gt["semantics"], gt["mask_camera"], gt.get("mask_lidar"))
    return scores.result(split, str(pred_dir), primary)


def evaluate_model(
    predict: Callable[..., torch.Tensor],
    batches: Iterable[dict[str, Any]],
    *,
    device: torch.device | str = "cpu",
    split: str | None = "val",
    source: str = "model",
    primary: str = "camera mask",
    save_dir: str | Path | None = None,
    total: int | None = None,
    progress: bool = True,
    by_visibility: bool = False,
) -> EvaluationResult:
    """Runs `predict(**inputs) -> (B, 200, 200, 16)` labels over collated batches and scores them.

    Args:
        predict: e.g. `model.predict`, taking the tensors named in `MODEL_INPUTS`.
        batches: collated `OccupancyDataset` batches with labels (`voxel_semantics`, `mask_camera`).
        device: where the inputs go.
        split, source, primary: recorded in the result.
        save_dir: also write every prediction as `<token>.npz` (`semantics`), for --pred-dir and render.
        total: number of batches, for the progress bar.
        progress: tqdm bar.
        by_visibility: also score each visibility region (needs `mask_lidar` in the batches).
    """
    scores = _Scores(by_visibility)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    for batch in tqdm(batches, desc=f"eval {split}", unit="batch", total=total, disable=not progress):
        inputs = {key: batch[key].to(device, non_blocking=True) for key in MODEL_INPUTS}
        with torch.no_grad():
            pred = predict(**inputs)
        mask_lidar = batch["mask_lidar"].to(pred.device) if by_visibility else None
        scores.update(pred, batch["voxel_semantics"].to(pred.device), batch["mask_camera"].to(pred.device),
                      mask_lidar)
        if save_dir is not None:
            for token, labels in zip(batch["token"], pred.cpu().numpy().astype(np.uint8), strict=True):
                np.savez_compressed(Path(save_dir) / f"{token}.npz", semantics=labels)
    return scores.result(split, source, primary, device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fusionocc eval`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="FusionOcc checkpoint to run over the split")
    source.add_argument(
        "--pred-dir", type=Path, help="folder of <sample_token>.npz predictions (array 'semantics')"
    )
    add_infos(parser, required=True, help="info index written by `fusionocc prepare`")
    parser.add_argument(
        "--split", default="val", help="split to score: train, val, test or all (default: val)"
    )
    parser.add_argument(
        "--dataroot", type=Path, default=None, help="dataroot, if moved since `fusionocc prepare`"
    )
    parser.add_argument(
        "--no-camera-mask",
        action="store_true",
        help="headline the no-mask protocol (both protocols are always reported)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the scores of both protocols as JSON here"
    )
    add_device(parser, what="device for --checkpoint")
    add_workers(parser, what="data-loading processes", deprecated=("--num-workers",))
    parser.add_argument(
        "--save-pred",
        type=Path,
        default=None,
        help="with --checkpoint: also save predictions as <token>.npz in this folder",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="score only the first N samples (smoke tests)"
    )
    parser.add_argument(
        "--original",
        metavar="PRESET",
        default=None,
        help="the checkpoint is a published mmdet3d FusionOcc .pth: build this preset (the released weights: "
        "official) and convert the weights",
    )
    parser.add_argument(
        "--dropout",
        action="store_true",
        help="with --checkpoint: sensor-dropout study, the split scored once with every sensor, once per "
        "missing camera (its features zeroed, as the node's degraded mode) and once without the lidar "
        "(lidar volume and sparse depth zeroed: what a camera-only fallback would give)",
    )
    parser.add_argument(
        "--by-visibility",
        action="store_true",
        help="also score the no-mask protocol separately over camera-visible voxels, voxels only the lidar saw "
        "and unobserved ones (Occ3D's masks): where one model gains on another",
    )
    add_no_progress(parser, deprecated=("--quiet",))


def load_model(path: Path, device: str, *, original_preset: str | None = None) -> FusionOcc:
    """A FusionOcc in eval mode from our checkpoint format, or from an original .pth through a preset.

    Raises:
        EvaluationError: unreadable or non-fitting checkpoint, unknown preset (message from the loader).
    """
    from fusionocc_core.model.checkpoint import (
        CheckpointError,
        load_checkpoint,
        load_original_checkpoint,
    )
    from fusionocc_core.model.presets import build_model

    try:
        if original_preset is None:
            model = load_checkpoint(path, device)
        else:
            model = build_model(original_preset)
            print(load_original_checkpoint(model, path), file=sys.stderr)  # the load report
            model.to(device)
    except (CheckpointError, KeyError) as error:
        raise EvaluationError(str(error).strip("'\"")) from None
    return model.eval()


def dropout_conditions(camera_names: tuple[str, ...]) -> list[tuple[str, int | None, bool]]:
    """(name, missing camera index or None, lidar present) of the dropout study, the full rig first."""
    conditions: list[tuple[str, int | None, bool]] = [("all sensors", None, True)]
    conditions += [(f"no {name}", i, True) for i, name in enumerate(camera_names)]
    conditions.append(("no lidar (camera only)", None, False))
    return conditions


def dropout_predict(model: FusionOcc, camera: int | None, lidar: bool) -> Callable[..., torch.Tensor]:
    """`model.predict` with one camera masked in both frames (it has been silent for a while) or with the
    lidar gone (no points: its volume and the sparse depth input are zero)."""

    def predict(**inputs: torch.Tensor) -> torch.Tensor:
        if camera is not None:
            b, t, n = inputs["images"].shape[:3]
            mask = torch.ones(b, t, n, device=inputs["images"].device)
            mask[:, :, camera] = 0
            inputs = {**inputs, "camera_mask": mask}
        if not lidar:
            inputs = {**inputs, "points": inputs["points"][:0],
                      "sparse_depth": torch.zeros_like(inputs["sparse_depth"])}
            enabled = model.lidar_enabled
            model.lidar_enabled = False
            try:
                return model.predict(**inputs)
            finally:
                model.lidar_enabled = enabled
        return model.predict(**inputs)

    return predict


def format_dropout(rows: list[tuple[str, EvaluationResult]]) -> str:
    """Table of mIoU per dropout condition, with the change against the full rig."""
    base_mask, base_free = 100 * rows[0][1].camera_mask.miou, 100 * rows[0][1].no_mask.miou
    lines = [f"{'condition':28s} {'mIoU (camera mask)':>19s} {'change':>8s} {'mIoU (no mask)':>15s} {'change':>8s}"]
    for name, result in rows:
        m, f = 100 * result.camera_mask.miou, 100 * result.no_mask.miou
        lines.append(f"{name:28s} {m:19.2f} {m - base_mask:+8.2f} {f:15.2f} {f - base_free:+8.2f}")
    return "\n".join(lines)


def split_loader(index_path: Path, model: FusionOcc, *, split: str | None, dataroot: Path | None,
                 limit: int | None, num_workers: int, device: str) -> DataLoader:
    """Batches of one (test-time augmentation, no imgseg) over a split, at the model's input size; the first
    `limit` samples only when given."""
    from fusionocc_core.data.collate import collate
    from fusionocc_core.data.dataset import DatasetConfig, OccupancyDataset

    height, width = model.config.camera.input_size
    split_set = OccupancyDataset(index_path, input_size=(height, width), train=False, split=split,
                                 dataroot=dataroot, config=DatasetConfig(with_imgseg=False))
    dataset: Dataset = split_set
    if limit is not None:
        dataset = Subset(split_set, range(min(limit, len(split_set))))
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=collate,
                      pin_memory=str(device).startswith("cuda"))


def _run_checkpoint(
    args: argparse.Namespace, index_path: Path, split: str | None, primary: str
) -> EvaluationResult | list[tuple[str, EvaluationResult]]:
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device, original_preset=args.original)
    loader = split_loader(index_path, model, split=split, dataroot=args.dataroot, limit=args.limit,
                          num_workers=args.workers, device=device)
    if getattr(args, "dropout", False):
        from fusionocc_core.occ3d import CAMERA_NAMES

        rows = []
        for name, camera, lidar in dropout_conditions(CAMERA_NAMES):
            result = evaluate_model(dropout_predict(model, camera, lidar), loader, device=device, split=split,
                                    source=f"{args.checkpoint} ({name})", primary=primary, total=len(loader),
                                    progress=not args.no_progress)
            rows.append((name, result))
        return rows
    return evaluate_model(
        model.predict,
        loader,
        device=device,
        split=split,
        source=str(args.checkpoint),
        primary=primary,
        save_dir=args.save_pred,
        total=len(loader),
        progress=not args.no_progress,
        by_visibility=args.by_visibility,
    )


def run(args: argparse.Namespace) -> int:
    """`fusionocc eval`: 0 when the scores are printed, 2 on an error (one line)."""
    split = None if args.split == "all" else args.split
    primary = "no mask" if args.no_camera_mask else "camera mask"
    result: EvaluationResult | list[tuple[str, EvaluationResult]]
    try:
        if args.dropout and args.pred_dir is not None:
            raise EvaluationError("--dropout runs a model: use it with --checkpoint, not --pred-dir")
        if args.dropout and args.by_visibility:
            raise EvaluationError("--by-visibility scores one prediction set; run it without --dropout")
        if args.pred_dir is not None:
            index = load_infos(args.infos, dataroot=args.dataroot)
            if args.limit is not None:
                index["samples"] = _split_samples(index, split)[: args.limit]
            result = evaluate_predictions(index, args.pred_dir, split=split, primary=primary,
                                          progress=not args.no_progress, by_visibility=args.by_visibility)
        else:
            result = _run_checkpoint(args, args.infos, split, primary)
    except (EvaluationError, InfoIndexError, DatasetError, DeviceError) as error:
        print(f"fusionocc eval: {error}", file=sys.stderr)
        return 2
    if isinstance(result, list):  # --dropout
        print(format_dropout(result))
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({name: r.to_dict() for name, r in result}, indent=2))
            print(f"scores written to {args.out}")
        return 0
    print(result.format())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result.to_dict(), indent=2))
        print(f"scores written to {args.out}")
    return 0
