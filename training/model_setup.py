"""What a training run trains: the preset's model with the configured branches, its loss, the class weights,
the starting weights (`init_from`, `init_camera_from`) and the exported final model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from training.config import TrainConfig
from training.distributed import DistInfo, broadcast_from_main
from training.errors import TrainError

if TYPE_CHECKING:  # annotations only; the functions import these where they use them
    from fusionocc_core.data.dataset import OccupancyDataset
    from fusionocc_core.model.fusionocc import FusionOcc
    from fusionocc_core.model.losses import FusionOccLoss

# Batch keys the model's forward takes, in its argument order.
MODEL_INPUTS = ("images", "intrinsics", "cam_to_key_ego", "post_rots", "post_trans", "bda", "points",
                "sparse_depth")

Log = Callable[[str], None]


def build_model(config: TrainConfig) -> FusionOcc:
    """The preset's `FusionOcc` with the branches of `config.modality` on (a disabled one is not computed), at
    the config's input size when it sets one: the saved checkpoints then state the size the model was trained
    at, which is the size `eval`, the predictor and the node feed it (the weights do not depend on it)."""
    from fusionocc_core.model.fusionocc import FusionOcc
    from fusionocc_core.model.presets import get_config

    try:
        preset = get_config(config.model)
    except KeyError as error:
        raise TrainError(str(error.args[0])) from None
    if config.input_height and config.input_width:
        preset = replace(preset, camera=replace(preset.camera, input_size=(config.input_height, config.input_width)))
    return FusionOcc(replace(preset, camera_enabled=config.modality != "lidar",
                             lidar_enabled=config.modality != "camera"))


def build_loss(config: TrainConfig, model: FusionOcc, class_weights: torch.Tensor | None = None
               ) -> FusionOccLoss:
    """FusionOccLoss matching the model's camera feature stride and depth bins."""
    from fusionocc_core.model.losses import FusionOccLoss

    camera = model.config.camera
    return FusionOccLoss(downsample=camera.downsample, depth_bins=camera.depth_bins,
                         use_camera_mask=config.use_mask, class_weights=class_weights,
                         lovasz_weight=config.lovasz_weight, visible_weight=config.visible_weight)


def occupancy_class_weights(config: TrainConfig, train_set: OccupancyDataset, info: DistInfo, *,
                            progress: bool) -> torch.Tensor | None:
    """The occupancy class weights `config.class_weights` asks for; None for the original's plain CE.

    They come from the training split's labels (camera-visible voxels when training with the mask). Rank 0
    reads the labels and broadcasts the counts: the other ranks read nothing.
    """
    if config.class_weights == "none":
        return None
    from fusionocc_core.model.losses import enet_class_weights
    from fusionocc_core.occ3d import NUM_CLASSES

    if info.is_main:
        counts = torch.as_tensor(train_set.class_counts(use_camera_mask=config.use_mask, progress=progress))
    else:
        counts = torch.zeros(NUM_CLASSES, dtype=torch.int64)
    return enet_class_weights(broadcast_from_main(counts, info))


class LossModel(nn.Module):
    """Model + loss as one module whose forward takes a batch dict and returns the named losses.

    DDP must wrap the module whose forward runs the whole graph (its gradient hooks are armed in forward), and
    the model's training entry point is `forward_with_aux`, so this wrapper is what DDP sees.
    """

    def __init__(self, model: FusionOcc, loss: FusionOccLoss, *, camera_dropout: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.camera_dropout = camera_dropout

    def dropped_cameras(self, images: torch.Tensor) -> torch.Tensor | None:
        """`camera_mask` (B, T, N) for a training step: each sample's whole rig (both frames) zero with chance
        `camera_dropout`; None when nothing is dropped (evaluation mode, or no dropout)."""
        if not (self.training and self.camera_dropout > 0):
            return None
        b, t, n = images.shape[:3]
        keep = torch.rand(b, 1, 1, device=images.device) >= self.camera_dropout
        return keep.to(images.dtype).expand(b, t, n)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The named losses of a collated batch (`FusionOccLoss`'s terms)."""
        dropped = self.dropped_cameras(batch["images"])
        out = self.model.forward_with_aux(*(batch[k] for k in MODEL_INPUTS),
                                          **({} if dropped is None else {"camera_mask": dropped}))
        has_seg = "imgseg" in batch  # absent when the index has no imgseg maps (with_imgseg off)
        return self.loss(out.logits, batch["voxel_semantics"], batch.get("mask_camera"),
                         key_depth=out.key_depth, sparse_depth=batch["sparse_depth"],
                         key_seg_logits=out.key_seg_logits if has_seg else None,
                         seg_labels=batch.get("imgseg"))


def input_size(config: TrainConfig, model: FusionOcc) -> tuple[int, int]:
    """(H, W) from the config, or the model's own input size when the config leaves it at 0."""
    if config.input_height and config.input_width:
        return config.input_height, config.input_width
    size = getattr(getattr(getattr(model, "config", None), "camera", None), "input_size", None)
    if size is None:
        raise TrainError(f"model preset '{config.model}' does not state its input size; set input_height and "
                         f"input_width in the config")
    return int(size[0]), int(size[1])


def initialise_weights(model: FusionOcc, config: TrainConfig, log: Log) -> None:
    """Loads the starting weights the config names, if any.

    `init_from`: a published FusionOcc .pth or a fusionocc checkpoint (e.g. `fusionocc merge-modalities`),
    every weight (strict). `init_camera_from`: a BEVDet-Occ .pth, whatever fits (the camera branch), with the
    load report printed so real mismatches are visible.

    Raises:
        TrainError: the file cannot be read or (init_from) does not fit the model; the message has the report.
    """
    from fusionocc_core.model.checkpoint import (
        CheckpointError,
        load_checkpoint,
        load_original_checkpoint,
    )

    path, strict = (config.init_from, True) if config.init_from else (config.init_camera_from, False)
    if not path:
        return
    if strict:
        try:
            own = load_checkpoint(path)
        except CheckpointError:
            own = None  # not ours: the published format below (which names any other problem)
        if own is not None:
            try:
                model.load_state_dict(own.state_dict(), strict=True)
            except RuntimeError as error:
                raise TrainError(f"cannot initialise from {path}: it was trained with another preset: "
                                 f"{str(error).splitlines()[0]}") from None
            log(f"initialised every weight from {path} (fusionocc checkpoint)")
            return
    try:
        report = load_original_checkpoint(model, path, strict=strict)
    except CheckpointError as error:
        raise TrainError(f"cannot initialise from {path}: {error}") from None
    if strict:
        log(f"initialised every weight from {path}: {report}")
        return
    camera = [k for k in report.loaded if k.startswith("camera.")]
    log(f"camera branch initialised from {path} (non-strict): {len(camera)} camera tensors loaded\n{report}")
    if not camera:
        raise TrainError(f"{path} initialised no camera weight; is it a BEVDet-Occ/FusionOcc checkpoint of "
                         f"the same image backbone as preset '{config.model}'?\n{report}")


def export_model(path: Path, model: nn.Module, *, step: int, val: dict[str, float] | None,
                 class_weights: torch.Tensor | None = None) -> None:
    """Writes the (EMA) weights as a deployable `fusionocc-checkpoint` (what `fusionocc eval` and the node load).

    The occupancy class weights of the loss, if any, are stored too: `fusionocc adjust-logits` undoes the
    prior they taught the model.
    """
    from fusionocc_core.model.checkpoint import save_checkpoint
    from fusionocc_core.model.fusionocc import FusionOcc

    if not isinstance(model, FusionOcc):  # a test stand-in has no config to store
        return
    if class_weights is None:
        save_checkpoint(path, model, step=step, val=val)
    else:
        save_checkpoint(path, model, step=step, val=val, class_weights=[float(w) for w in class_weights])
