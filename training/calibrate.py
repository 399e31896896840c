"""Post-hoc logit adjustment of a checkpoint trained with class weights (`class_weights: enet`).

A loss with class weights w teaches the model to score class c as if it were w_c times more frequent than it
is: on the synthetic world the tiny model predicts 3x more car voxels than there are (recall 0.84, precision
0.24) and marks 3 % of the free space occupied. Subtracting tau * log(w_c) from the logits undoes that prior
(tau = 1 recovers the unweighted posterior; Menon et al. 2021, "Long-tail learning via logit adjustment");
a smaller tau keeps some of the bias towards rare classes, which IoU rewards. This command picks tau on a
split the model was trained on (`train` by default, so the validation split stays held out), folds the
offsets into the head's last bias (`OccHead.add_class_offsets`: same file format, no runtime cost) and writes
a new checkpoint that records what was done.

One shared tau moves every class by the same share of its prior, which suits most classes but not all (on the
synthetic world it wipes out barrier). `--per-class` then refines each class's offset on its own (coordinate
ascent over a grid of shifts, free held fixed as the reference, on the same split's cached logits).

    fusionocc adjust-logits --checkpoint run/model_final.pth --infos data/fusionocc_infos.pkl --out adj.pth

(`fusionocc calibrate` is a deprecated alias of this command, kept for one release. It has nothing to do with
sensor calibration: that is `fusionocc rig` and the node's calibration YAML.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
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
from fusionocc_core.data.infos import InfoIndexError
from fusionocc_core.errors import FusionOccError
from fusionocc_core.metrics import OccupancyMetric, OccupancyScores
from fusionocc_core.occ3d import FREE_LABEL
from training.evaluate import MODEL_INPUTS, split_loader

# tau = 0 (the model as trained) to 1.5 (past the unweighted posterior) in steps of 1/8.
DEFAULT_TAUS: tuple[float, ...] = tuple(i / 8 for i in range(13))
# per-class refinement: shifts of one class's offset tried in each round, -2 to 2 in steps of 1/4
DEFAULT_SHIFTS: tuple[float, ...] = tuple(i / 4 for i in range(-8, 9))


class LogitAdjustmentError(FusionOccError, RuntimeError):
    """The checkpoint or the data cannot be calibrated (the message names why)."""


@dataclass(frozen=True)
class TauScores:
    """Both protocols' scores of the logits adjusted by one tau."""

    tau: float
    camera_mask: OccupancyScores
    no_mask: OccupancyScores

    def headline(self, protocol: str) -> float:
        """The mIoU of `protocol` ("camera mask" or "no mask")."""
        return (self.camera_mask if protocol == "camera mask" else self.no_mask).miou


def prior_offsets(class_weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """-log(w): the per-class logit offsets that undo the prior of a loss weighted by w (tau = 1).

    Raises:
        LogitAdjustmentError: a weight that is not finite and positive.
    """
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.dim() != 1 or not bool(torch.isfinite(weights).all()) or bool((weights <= 0).any()):
        raise LogitAdjustmentError(f"class weights must be finite positive numbers, got {weights.tolist()}")
    return -torch.log(weights)


@torch.no_grad()
def sweep_taus(model: torch.nn.Module, batches: Iterable[dict[str, Any]], offsets: torch.Tensor,
               taus: Sequence[float], *, device: torch.device | str = "cpu", total: int | None = None,
               progress: bool = True, cache: LogitCache | None = None) -> list[TauScores]:
    """Scores `argmax(logits + tau * offsets)` for every tau, both protocols, running the model once per batch.

    Args:
        model: a FusionOcc in eval mode (its forward returns (B, X, Y, Z, classes) logits).
        batches: collated `OccupancyDataset` batches with labels.
        offsets: (classes,) direction of the adjustment, e.g. `prior_offsets(w)`.
        taus: the scales to try.
        cache: when given, every batch's logits and labels are added to it (for `refine_class_offsets`).
    """
    offsets = offsets.to(device)
    metrics = [(OccupancyMetric(use_camera_mask=True), OccupancyMetric(use_camera_mask=False)) for _ in taus]
    for batch in tqdm(batches, desc="adjust-logits", unit="batch", total=total, disable=not progress):
        logits = model(*(batch[k].to(device) for k in MODEL_INPUTS))
        gt = batch["voxel_semantics"].to(device)
        mask = batch["mask_camera"].to(device)
        for tau, (with_mask, without) in zip(taus, metrics, strict=True):
            pred = (logits + tau * offsets).argmax(-1)
            with_mask.update(pred, gt, mask)
            without.update(pred, gt)
        if cache is not None:
            cache.add(logits, gt, mask)
    return [TauScores(tau, m.compute(), n.compute()) for tau, (m, n) in zip(taus, metrics, strict=True)]


def choose_tau(scores: Sequence[TauScores], protocol: str = "camera mask") -> TauScores:
    """The tau with the best mIoU of `protocol`; on a tie the smallest (closest to the model as trained).

    Raises:
        LogitAdjustmentError: no tau scored (empty split, or every class absent).
    """
    scored = [s for s in scores if s.headline(protocol) == s.headline(protocol)]  # drop NaN
    if not scored:
        raise LogitAdjustmentError("nothing was scored: the split tau is chosen on has no labelled voxels")
    best = max(s.headline(protocol) for s in scored)
    return min((s for s in scored if s.headline(protocol) == best), key=lambda s: s.tau)


class LogitCache:
    """Logits and labels of the voxels a protocol scores (camera-visible ones, or all), on the CPU in float32:
    18 x 4 bytes per voxel (about 11 MB per nuScenes-sized sample with the camera mask, 46 MB without).

    With `keep_unobserved` (camera-mask protocol only) the voxels outside the mask are kept apart as well, so
    that `refine_class_offsets` can check what a shift does to the space no camera sees (46 MB per sample)."""

    def __init__(self, *, use_camera_mask: bool, keep_unobserved: bool = False) -> None:
        if keep_unobserved and not use_camera_mask:
            raise LogitAdjustmentError("keep_unobserved needs the camera-mask protocol (without it every voxel is "
                                   "scored already)")
        self.use_camera_mask = use_camera_mask
        self.keep_unobserved = keep_unobserved
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._hidden_logits: list[torch.Tensor] = []
        self._hidden_labels: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> None:
        """Caches one batch's (B, X, Y, Z, classes) logits and labels of the voxels the protocol scores."""
        keep = (mask > 0) if self.use_camera_mask else torch.ones_like(gt, dtype=torch.bool)
        self._logits.append(logits[keep].float().cpu())
        self._labels.append(gt[keep].to(torch.uint8).cpu())
        if self.keep_unobserved:
            self._hidden_logits.append(logits[~keep].float().cpu())
            self._hidden_labels.append(gt[~keep].to(torch.uint8).cpu())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, classes) float32 logits and (V,) int64 labels of every cached voxel the protocol scores."""
        if not self._labels:
            raise LogitAdjustmentError("nothing was cached: the split tau is chosen on has no scored voxels")
        return torch.cat(self._logits), torch.cat(self._labels).long()

    def unobserved(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The same for the voxels outside the camera mask when they were kept (`keep_unobserved`), else None."""
        if not self.keep_unobserved or not self._hidden_labels:
            return None
        return torch.cat(self._hidden_logits), torch.cat(self._hidden_labels).long()


def _confusion(pred: torch.Tensor, labels: torch.Tensor) -> OccupancyMetric:
    """Confusion matrix of cached voxels; the cache already holds only the voxels its protocol scores, so no
    mask here."""
    metric = OccupancyMetric(use_camera_mask=False)
    metric.update(pred, labels)
    return metric


def refine_class_offsets(cache: LogitCache, offsets: torch.Tensor, shifts: Sequence[float] = DEFAULT_SHIFTS,
                         rounds: int = 2, *, progress: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
    """Coordinate ascent on the per-class logit offsets: for each class but free (the reference), the shift
    from `shifts` that gives the best mIoU of the cached voxels with the others fixed; `rounds` passes.
    A shift is taken only when it strictly improves the mIoU (ties keep the offset as it was).

    When the cache kept the voxels outside the camera mask (`keep_unobserved`), a shift is also refused if it
    would bring the no-mask mIoU (all voxels) below where it started: the camera-mask loss never supervises
    unobserved space, and an offset chosen on visible voxels alone can trade it away. The guard sees only what the
    no-mask mIoU sees: a rare class painted where the model already erred (free inside a solid building) costs
    almost nothing there and passes.

    Class c's prediction changes only against the best other class, so each class needs one pass over all
    logits (the runner-up without c) and then one cheap comparison per shift: c wins a voxel where its
    adjusted logit is strictly above every other adjusted logit (argmax breaks exact ties to the lower id;
    the reported mIoU of the result is computed with argmax).

    Returns:
        The refined (classes,) offsets and a record: mIoU [%] before and after (argmax), one entry per accepted
        shift (round, class, shift, mIoU [%] after it); with the guard also the no-mask mIoU [%] before and
        after and how many better shifts it refused.
    """
    logits, labels = cache.tensors()
    hidden = cache.unobserved()
    offsets = offsets.detach().float().cpu().clone()
    if offsets.shape != (logits.shape[1],):
        raise LogitAdjustmentError(f"offsets {tuple(offsets.shape)} do not match the {logits.shape[1]} classes")

    def without(values: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class c's adjusted logit and the best other class (value, id) per voxel."""
        adjusted = values + offsets
        own = adjusted[:, c].clone()
        adjusted[:, c] = float("-inf")
        return (own, *adjusted.max(dim=-1))

    def shifted(parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor], c: int, shift: float) -> torch.Tensor:
        own, other, other_class = parts
        return torch.where(own + shift > other, c, other_class)

    def no_mask(seen: OccupancyMetric, hidden_pred: torch.Tensor, hidden_labels: torch.Tensor) -> float:
        """No-mask mIoU: the scored voxels' confusion matrix (already counted) plus the unobserved voxels'."""
        metric = _confusion(hidden_pred, hidden_labels)
        metric.confusion += seen.confusion
        return metric.compute().miou

    seen_start = _confusion((logits + offsets).argmax(-1), labels)
    start = best = seen_start.compute().miou
    # The no-mask mIoU no shift may bring the result below (none without the unobserved voxels).
    floor = -math.inf if hidden is None else no_mask(seen_start, (hidden[0] + offsets).argmax(-1), hidden[1])
    accepted: list[dict[str, float]] = []
    refused = 0
    classes = [c for c in range(logits.shape[1]) if c != FREE_LABEL]
    for round_index in range(1, rounds + 1):
        for c in tqdm(classes, desc=f"per-class round {round_index}", disable=not progress):
            seen = without(logits, c)
            unseen = None if hidden is None else (without(hidden[0], c), hidden[1])
            chosen, chosen_miou = 0.0, best
            for shift in shifts:
                if shift == 0:
                    continue
                scored = _confusion(shifted(seen, c, shift), labels)
                miou = scored.compute().miou
                if miou > chosen_miou:
                    if unseen is not None and no_mask(scored, shifted(unseen[0], c, shift), unseen[1]) < floor:
                        refused += 1
                        continue
                    chosen, chosen_miou = shift, miou
            if chosen != 0.0:
                offsets[c] += chosen
                best = chosen_miou
                accepted.append({"round": round_index, "class": c, "shift": chosen, "miou": 100 * best})
    seen_final = _confusion((logits + offsets).argmax(-1), labels)
    record = {"shifts_tried": list(shifts), "rounds": rounds, "miou_before": 100 * start,
              "miou": 100 * seen_final.compute().miou, "accepted": accepted}
    if hidden is not None:
        after = no_mask(seen_final, (hidden[0] + offsets).argmax(-1), hidden[1])
        record["guard"] = {"miou_no_mask_before": 100 * floor, "miou_no_mask": 100 * after, "refused": refused}
    return offsets, record


def format_sweep(scores: Sequence[TauScores], chosen: TauScores) -> str:
    """A table of the mIoU per tau, the chosen one marked."""
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
        raise LogitAdjustmentError(f"{infos} has no train samples to count the class weights from")
    return enet_class_weights(train.class_counts(use_camera_mask=True, progress=progress))


def parse_taus(text: str) -> tuple[float, ...]:
    """'0,0.5,1' or 'start:stop:step' (stop included)."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = round((stop - start) / step) + 1
            return tuple(round(start + i * step, 6) for i in range(count))
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--taus takes comma-separated numbers or start:stop:step with step > 0, got '{text}'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fusionocc adjust-logits`."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint trained with class weights")
    add_infos(parser, required=True, help="info index written by `fusionocc prepare`")
    parser.add_argument("--out", type=Path, required=True, help="where to write the adjusted checkpoint")
    parser.add_argument("--split", default="train",
                        help="split tau is chosen on (default: train, so that val stays held out)")
    parser.add_argument("--dataroot", type=Path, default=None, help="dataroot, if moved since `prepare`")
    parser.add_argument("--taus", type=parse_taus, default=DEFAULT_TAUS,
                        help="scales to try: '0,0.5,1' or 'start:stop:step' (default 0:1.5:0.125)")
    parser.add_argument("--no-camera-mask", action="store_true",
                        help="choose tau by the no-mask mIoU (default: camera mask)")
    parser.add_argument("--per-class", action="store_true",
                        help="after tau, refine each class's offset on its own on the same split (coordinate "
                             "ascent; caches the split's logits: ~11 MB per sample with the camera mask)")
    parser.add_argument("--guard-unobserved", action="store_true",
                        help="with --per-class: refuse shifts that would bring the no-mask mIoU below its start, "
                             "so the space no camera sees is not traded for the camera-mask score (also caches the "
                             "unobserved voxels: ~46 MB per sample)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples of the split")
    parser.add_argument("--half", action="store_true", help="store the weights in float16 (shipping)")
    parser.add_argument("--json", type=Path, default=None, help="also write the sweep as JSON here")
    add_device(parser, what="device the split is scored on")
    add_workers(parser, what="data-loading processes", deprecated=("--num-workers",))
    add_no_progress(parser, deprecated=("--quiet",))


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    """Chooses tau (and with --per-class refines the offsets) and writes the adjusted checkpoint.

    Returns:
        The record stored in the new checkpoint as `logit_adjustment` (also written to --json).

    Raises:
        LogitAdjustmentError: bad option combination, unusable checkpoint or device, an empty split.
    """
    from fusionocc_core.model.checkpoint import (
        CheckpointError,
        load_checkpoint_with_extra,
        save_checkpoint,
    )

    if args.out.resolve() == args.checkpoint.resolve():
        raise LogitAdjustmentError("--out must differ from --checkpoint (the original stays as it was)")
    if args.guard_unobserved and (not args.per_class or args.no_camera_mask):
        raise LogitAdjustmentError("--guard-unobserved guards the --per-class refinement of the camera-mask protocol; "
                               "it needs --per-class and no --no-camera-mask")
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        raise LogitAdjustmentError(str(error)) from None
    try:
        model, extra = load_checkpoint_with_extra(args.checkpoint, device)
    except CheckpointError as error:
        raise LogitAdjustmentError(str(error)) from None
    if "logit_adjustment" in extra:
        raise LogitAdjustmentError(f"{args.checkpoint} is already logit-adjusted (tau "
                               f"{extra['logit_adjustment'].get('tau')}); adjust the original one")
    if "class_weights" in extra:
        weights, source = torch.tensor(extra["class_weights"]), "stored in the checkpoint"
    else:
        weights = training_class_weights(args.infos, args.dataroot, progress=not args.no_progress)
        source = "recomputed: ENet weights of the train split's camera-visible labels"
    print(f"class weights ({source}): " + " ".join(f"{w:.2f}" for w in weights.tolist()))
    offsets = prior_offsets(weights)
    loader = split_loader(args.infos, model, split=args.split, dataroot=args.dataroot, limit=args.limit,
                          num_workers=args.workers, device=device)
    samples = len(loader)  # batches of one sample
    if samples == 0:
        raise LogitAdjustmentError(f"split '{args.split}' of {args.infos} has no samples")
    protocol = "no mask" if args.no_camera_mask else "camera mask"
    cache = None
    if args.per_class:
        cache = LogitCache(use_camera_mask=not args.no_camera_mask, keep_unobserved=args.guard_unobserved)
    scores = sweep_taus(model, loader, offsets, args.taus, device=device, total=len(loader),
                        progress=not args.no_progress, cache=cache)
    chosen = choose_tau(scores, protocol)
    print(format_sweep(scores, chosen))
    final = chosen.tau * offsets.cpu()
    per_class = None
    if cache is not None:
        final, per_class = refine_class_offsets(cache, final, progress=not args.no_progress)
        del cache
        print(f"per-class refinement: {protocol} mIoU {per_class['miou_before']:.2f} -> {per_class['miou']:.2f} "
              f"on {args.split} ({len(per_class['accepted'])} shifts accepted: "
              + ", ".join(f"class {a['class']} {a['shift']:+g}" for a in per_class["accepted"]) + ")")
        if "guard" in per_class:
            guard = per_class["guard"]
            print(f"guard: no-mask mIoU {guard['miou_no_mask_before']:.2f} -> {guard['miou_no_mask']:.2f} on "
                  f"{args.split}; {guard['refused']} better camera-mask shifts refused for lowering it")
    model.head.add_class_offsets(final.to(device))
    record = {
        "tau": chosen.tau,
        "offsets": final.tolist(),
        "per_class": per_class,
        "class_weights": weights.tolist(),
        "class_weights_source": source,
        "split": args.split,
        "samples": samples,
        "protocol": protocol,
        "sweep": [{"tau": s.tau, "miou_mask": 100 * s.camera_mask.miou, "miou_nomask": 100 * s.no_mask.miou,
                   "geo_iou_mask": 100 * s.camera_mask.geometry_iou} for s in scores],
        "source": str(args.checkpoint),
    }
    kept = {k: v for k, v in extra.items() if k != "val"}  # the old val scores no longer describe the model
    save_checkpoint(args.out, model, half=args.half, logit_adjustment=record, **kept)
    refined = "" if per_class is None else f", {per_class['miou']:.2f} refined per class"
    print(f"tau {chosen.tau:g} ({protocol} mIoU {100 * chosen.headline(protocol):.2f} on {samples} "
          f"{args.split} samples, {100 * scores[0].headline(protocol):.2f} at tau 0{refined}) folded into the "
          f"head; written to {args.out}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))
    return record


def run(args: argparse.Namespace) -> int:
    """`fusionocc adjust-logits`: 0 when the adjusted checkpoint is written, 2 on an error (one line)."""
    try:
        calibrate(args)
    except (LogitAdjustmentError, InfoIndexError, DatasetError) as error:
        print(f"fusionocc adjust-logits: {error}", file=sys.stderr)
        return 2
    return 0
