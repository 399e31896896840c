"""Post-hoc logit adjustment of a checkpoint trained with class weights (`class_weights: enet`).

A loss with class weights w teaches the model to score class c as if it were w_c times more frequent than it
is: on the synthetic world the tiny model predicts 3x more car voxels than there are (recall 0.84, precision
0.24) and marks 3 % of the free space occupied. Subtracting tau * log(w_c) from the logits undoes that prior
(tau = 1 recovers the unweighted posterior; Menon et al. 2021, "Long-tail learning via logit adjustment");
a smaller tau keeps some of the bias towards rare classes, which IoU rewards. This command picks tau on a
split the model was trained on (`train` by default, so the validation split stays held out), folds the
offsets into the head's last bias (`OccHead.add_class_offsets`: same file format, no runtime cost) and writes
a new checkpoint that records what was done.

    fusionocc calibrate --checkpoint run/model_final.pth --infos data/fusionocc_infos.pkl --out calibrated.pth
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fusionocc_core.data.dataset import DatasetError
from fusionocc_core.data.infos import InfoIndexError
from fusionocc_core.metrics import OccupancyMetric, OccupancyScores
from training.evaluate import MODEL_INPUTS, split_loader

# tau = 0 (the model as trained) to 1.5 (past the unweighted posterior) in steps of 1/8.
DEFAULT_TAUS: tuple[float, ...] = tuple(i / 8 for i in range(13))


class CalibrationError(RuntimeError):
    """The checkpoint or the data cannot be calibrated (the message names why)."""


@dataclass(frozen=True)
class TauScores:
    tau: float
    camera_mask: OccupancyScores
    no_mask: OccupancyScores

    def headline(self, protocol: str) -> float:
        return (self.camera_mask if protocol == "camera mask" else self.no_mask).miou


def prior_offsets(class_weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """-log(w): the per-class logit offsets that undo the prior of a loss weighted by w (tau = 1).

    Raises:
        CalibrationError: a weight that is not finite and positive.
    """
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.dim() != 1 or not bool(torch.isfinite(weights).all()) or bool((weights <= 0).any()):
        raise CalibrationError(f"class weights must be finite positive numbers, got {weights.tolist()}")
    return -torch.log(weights)


@torch.no_grad()
def sweep_taus(model: torch.nn.Module, batches: Iterable[dict[str, Any]], offsets: torch.Tensor,
               taus: Sequence[float], *, device: torch.device | str = "cpu", total: int | None = None,
               progress: bool = True) -> list[TauScores]:
    """Scores `argmax(logits + tau * offsets)` for every tau, both protocols, running the model once per batch.

    Args:
        model: a FusionOcc in eval mode (its forward returns (B, X, Y, Z, classes) logits).
        batches: collated `OccupancyDataset` batches with labels.
        offsets: (classes,) direction of the adjustment, e.g. `prior_offsets(w)`.
        taus: the scales to try.
    """
    offsets = offsets.to(device)
    metrics = [(OccupancyMetric(use_camera_mask=True), OccupancyMetric(use_camera_mask=False)) for _ in taus]
    for batch in tqdm(batches, desc="calibrate", unit="batch", total=total, disable=not progress):
        logits = model(*(batch[k].to(device) for k in MODEL_INPUTS))
        gt = batch["voxel_semantics"].to(device)
        mask = batch["mask_camera"].to(device)
        for tau, (with_mask, without) in zip(taus, metrics, strict=True):
            pred = (logits + tau * offsets).argmax(-1)
            with_mask.update(pred, gt, mask)
            without.update(pred, gt)
    return [TauScores(tau, m.compute(), n.compute()) for tau, (m, n) in zip(taus, metrics, strict=True)]


def choose_tau(scores: Sequence[TauScores], protocol: str = "camera mask") -> TauScores:
    """The tau with the best mIoU of `protocol`; on a tie the smallest (closest to the model as trained).

    Raises:
        CalibrationError: no tau scored (empty split, or every class absent).
    """
    scored = [s for s in scores if s.headline(protocol) == s.headline(protocol)]  # drop NaN
    if not scored:
        raise CalibrationError("nothing was scored: the calibration split has no labelled voxels")
    best = max(s.headline(protocol) for s in scored)
    return min((s for s in scored if s.headline(protocol) == best), key=lambda s: s.tau)


def format_sweep(scores: Sequence[TauScores], chosen: TauScores) -> str:
    lines = ["  tau   mIoU camera mask   mIoU no mask   geometry IoU (mask)", "-" * 62]
    for s in scores:
        mark = "  <- chosen" if s is chosen else ""
        lines.append(f"{s.tau:5.3f}   {100 * s.camera_mask.miou:16.2f}   {100 * s.no_mask.miou:12.2f}   "
                     f"{100 * s.camera_mask.geometry_iou:19.2f}{mark}")
    return "\n".join(lines)


def training_class_weights(infos: Path, dataroot: Path | None, *, progress: bool) -> torch.Tensor:
    """ENet weights of the training split's camera-visible labels: what `class_weights: enet` with
    `use_mask: true` computes at the start of training (for checkpoints that do not store their weights)."""
    from fusionocc_core.data.dataset import DatasetConfig, OccupancyDataset
    from fusionocc_core.model.losses import enet_class_weights

    train = OccupancyDataset(infos, input_size=(32, 32), train=False, split="train", dataroot=dataroot,
                             config=DatasetConfig(with_imgseg=False))
    if len(train) == 0:
        raise CalibrationError(f"{infos} has no train samples to count the class weights from")
    return enet_class_weights(train.class_counts(use_camera_mask=True, progress=progress))


def parse_taus(text: str) -> tuple[float, ...]:
    """'0,0.5,1' or 'start:stop:step' (stop included)."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            return tuple(round(start + i * step, 6) for i in range(count))
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--taus takes comma-separated numbers or start:stop:step with step > 0, got '{text}'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint trained with class weights")
    parser.add_argument("--infos", type=Path, required=True, help="info index written by `fusionocc prepare`")
    parser.add_argument("--out", type=Path, required=True, help="where to write the calibrated checkpoint")
    parser.add_argument("--split", default="train",
                        help="split tau is chosen on (default: train, so that val stays held out)")
    parser.add_argument("--dataroot", type=Path, default=None, help="dataroot, if moved since `prepare`")
    parser.add_argument("--taus", type=parse_taus, default=DEFAULT_TAUS,
                        help="scales to try: '0,0.5,1' or 'start:stop:step' (default 0:1.5:0.125)")
    parser.add_argument("--no-camera-mask", action="store_true",
                        help="choose tau by the no-mask mIoU (default: camera mask)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples of the split")
    parser.add_argument("--half", action="store_true", help="store the weights in float16 (shipping)")
    parser.add_argument("--json", type=Path, default=None, help="also write the sweep as JSON here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="data-loading processes (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from fusionocc_core.model.checkpoint import CheckpointError, load_checkpoint_with_extra, save_checkpoint

    if args.out.resolve() == args.checkpoint.resolve():
        raise CalibrationError("--out must differ from --checkpoint (the original stays as it was)")
    try:
        model, extra = load_checkpoint_with_extra(args.checkpoint, args.device)
    except CheckpointError as error:
        raise CalibrationError(str(error)) from None
    if "logit_adjustment" in extra:
        raise CalibrationError(f"{args.checkpoint} is already calibrated (tau "
                               f"{extra['logit_adjustment'].get('tau')}); calibrate the uncalibrated one")
    if "class_weights" in extra:
        weights, source = torch.tensor(extra["class_weights"]), "stored in the checkpoint"
    else:
        weights = training_class_weights(args.infos, args.dataroot, progress=not args.quiet)
        source = "recomputed: ENet weights of the train split's camera-visible labels"
    print(f"class weights ({source}): " + " ".join(f"{w:.2f}" for w in weights.tolist()))
    offsets = prior_offsets(weights)
    loader = split_loader(args.infos, model, split=args.split, dataroot=args.dataroot, limit=args.limit,
                          num_workers=args.num_workers, device=args.device)
    if len(loader.dataset) == 0:
        raise CalibrationError(f"split '{args.split}' of {args.infos} has no samples")
    protocol = "no mask" if args.no_camera_mask else "camera mask"
    scores = sweep_taus(model, loader, offsets, args.taus, device=args.device, total=len(loader),
                        progress=not args.quiet)
    chosen = choose_tau(scores, protocol)
    print(format_sweep(scores, chosen))
    model.head.add_class_offsets(chosen.tau * offsets)
    record = {
        "tau": chosen.tau,
        "offsets": (chosen.tau * offsets).tolist(),
        "class_weights": weights.tolist(),
        "class_weights_source": source,
        "split": args.split,
        "samples": len(loader.dataset),
        "protocol": protocol,
        "sweep": [{"tau": s.tau, "miou_mask": 100 * s.camera_mask.miou, "miou_nomask": 100 * s.no_mask.miou,
                   "geo_iou_mask": 100 * s.camera_mask.geometry_iou} for s in scores],
        "source": str(args.checkpoint),
    }
    kept = {k: v for k, v in extra.items() if k != "val"}  # the old val scores no longer describe the model
    save_checkpoint(args.out, model, half=args.half, logit_adjustment=record, **kept)
    print(f"tau {chosen.tau:g} ({protocol} mIoU {100 * chosen.headline(protocol):.2f} on {len(loader.dataset)} "
          f"{args.split} samples, {100 * scores[0].headline(protocol):.2f} at tau 0) folded into the head; "
          f"written to {args.out}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))
    return record


def run(args: argparse.Namespace) -> int:
    try:
        calibrate(args)
    except (CalibrationError, InfoIndexError, DatasetError) as error:
        print(f"fusionocc calibrate: {error}", file=sys.stderr)
        return 2
    return 0
