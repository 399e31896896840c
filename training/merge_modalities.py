"""A fused model assembled from a camera-only and a lidar-only model of the same preset, to fine-tune.

FusionOcc itself does not train its camera branch from scratch: it starts from a trained camera-only model
(BEVDet-Occ). Here both single-modality runs give their part: the lidar branch, 3D encoder, FPN and head come
from the lidar-only model, the camera branch from the camera-only model, and the 3D encoder's weights on the
camera channels of the fused input are zeroed. The result computes exactly what the lidar-only model computes
(the tests check it), so fine-tuning starts from the lidar-only score and can learn what the cameras add.

    fusionocc merge-modalities --camera camera/model_final.pth --lidar lidar/model_final.pth --out fused.pth
    fusionocc train ... --modality fusion --init-from fused.pth
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from fusionocc_core.errors import FusionOccError
from fusionocc_core.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from fusionocc_core.model.fusionocc import FusionOcc

# The weights that read the fused input (camera volumes first, then the lidar volume).
FUSED_INPUT_WEIGHTS = ("occ_encoder.levels.0.0.conv1.weight", "occ_encoder.levels.0.0.shortcut.0.weight")


class MergeError(FusionOccError, ValueError):
    """The two models cannot be merged (the message says why)."""


def merge_modality_models(camera: FusionOcc, lidar: FusionOcc) -> FusionOcc:
    """The fused model of `camera`'s camera branch and everything else of `lidar` (module docstring).

    Raises:
        MergeError: the models are not camera-only and lidar-only models of the same architecture.
    """
    if not camera.config.camera_enabled or camera.config.lidar_enabled:
        raise MergeError("--camera must be a camera-only model (trained with modality camera)")
    if not lidar.config.lidar_enabled or lidar.config.camera_enabled:
        raise MergeError("--lidar must be a lidar-only model (trained with modality lidar)")
    fused_config = replace(lidar.config, camera_enabled=True, lidar_enabled=True)
    if replace(camera.config, camera_enabled=True, lidar_enabled=True) != fused_config:
        raise MergeError("the camera-only and lidar-only models were built with different presets")
    fused = FusionOcc(fused_config)
    state = {k: v.clone() for k, v in lidar.state_dict().items()}
    state.update({k: v.clone() for k, v in camera.state_dict().items() if k.startswith("camera.")})
    camera_channels = fused_config.num_frames * fused_config.camera.feature_channels
    for key in FUSED_INPUT_WEIGHTS:
        state[key][:, :camera_channels] = 0.0
    fused.load_state_dict(state, strict=True)
    return fused.eval()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fusionocc merge-modalities`."""
    parser.add_argument("--camera", type=Path, required=True, help="camera-only checkpoint (model_final.pth)")
    parser.add_argument("--lidar", type=Path, required=True, help="lidar-only checkpoint (model_final.pth)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the fused checkpoint")


def run(args: argparse.Namespace) -> int:
    """`fusionocc merge-modalities`: 0 when the fused checkpoint is written, 2 on an error (one line)."""
    try:
        camera = load_checkpoint(args.camera)
        lidar = load_checkpoint(args.lidar)
        fused = merge_modality_models(camera, lidar)
    except (CheckpointError, MergeError) as error:
        print(f"fusionocc merge-modalities: {error}", file=sys.stderr)
        return 2
    save_checkpoint(args.out, fused, merged_from={"camera": str(args.camera), "lidar": str(args.lidar)})
    print(f"fused model (camera branch of {args.camera}, the rest of {args.lidar}, camera inputs of the 3D "
          f"encoder zeroed) written to {args.out}")
    return 0
