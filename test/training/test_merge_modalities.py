"""merge-modalities: the fused model computes exactly the lidar-only model's output until fine-tuning moves the
zeroed camera weights, carries the camera-only model's camera branch, and trains from it through --init-from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fusionocc_core.model.checkpoint import load_checkpoint_with_extra, save_checkpoint
from fusionocc_core.model.flops import example_inputs
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig
from fusionocc_core.model.presets import get_config
from fusionocc_ros.cli import main as cli_main
from training.config import load_config
from training.merge_modalities import FUSED_INPUT_WEIGHTS, MergeError, merge_modality_models
from training.train import TrainError, initialise_weights


def _micro(**switches: bool) -> FusionOccConfig:
    """The tiny preset at 64 x 96 input with narrow 3D widths (as test_fusionocc), one modality switched off."""
    tiny = get_config("tiny")
    return dataclasses.replace(
        tiny, camera=dataclasses.replace(tiny.camera, input_size=(64, 96), feature_channels=4),
        lidar_out_channels=4, lidar_stage_channels=(4, 4, 8, 8), encoder_channels=(4, 8, 8), fpn_channels=4,
        head_hidden_channels=8, **switches,
    )


def _trained_pair() -> tuple[FusionOcc, FusionOcc]:
    """A camera-only and a lidar-only model with different random weights and BatchNorm statistics."""
    models = []
    for seed, switches in ((1, {"lidar_enabled": False}), (2, {"camera_enabled": False})):
        torch.manual_seed(seed)
        model = FusionOcc(_micro(**switches))
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        models.append(model.eval())
    return models[0], models[1]


def test_merged_model_starts_as_the_lidar_model_with_the_camera_branch_of_the_camera_model():
    camera, lidar = _trained_pair()
    fused = merge_modality_models(camera, lidar)
    assert fused.camera_enabled and fused.lidar_enabled
    inputs = example_inputs(fused.config, batch_size=1, num_points=2000).as_tuple()
    with torch.no_grad():
        want = lidar(*inputs)
        out = fused.forward_with_aux(*inputs)
    assert out.camera_volumes.abs().max() > 0  # the cameras are seen ...
    torch.testing.assert_close(out.logits, want, rtol=0, atol=1e-5)  # ... and change nothing yet
    for key, value in camera.state_dict().items():
        if key.startswith("camera."):
            torch.testing.assert_close(fused.state_dict()[key], value, rtol=0, atol=0)
    for key in FUSED_INPUT_WEIGHTS:  # the lidar channels keep the lidar model's weights
        lidar_channels = slice(fused.config.num_frames * fused.config.camera.feature_channels, None)
        torch.testing.assert_close(fused.state_dict()[key][:, lidar_channels],
                                   lidar.state_dict()[key][:, lidar_channels], rtol=0, atol=0)
    with pytest.raises(MergeError, match="--camera must be a camera-only"):
        merge_modality_models(lidar, lidar)
    with pytest.raises(MergeError, match="--lidar must be a lidar-only"):
        merge_modality_models(camera, camera)
    other = FusionOcc(dataclasses.replace(_micro(camera_enabled=False), head_hidden_channels=16))
    with pytest.raises(MergeError, match="different presets"):
        merge_modality_models(camera, other)


def test_cli_writes_a_checkpoint_that_training_initialises_from(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]):
    camera, lidar = _trained_pair()
    save_checkpoint(tmp_path / "camera.pth", camera)
    save_checkpoint(tmp_path / "lidar.pth", lidar)
    out = tmp_path / "fused.pth"
    assert cli_main(["merge-modalities", "--camera", str(tmp_path / "camera.pth"), "--lidar",
                     str(tmp_path / "lidar.pth"), "--out", str(out)]) == 0
    fused, extra = load_checkpoint_with_extra(out)
    assert extra["merged_from"]["lidar"] == str(tmp_path / "lidar.pth")
    # Training builds a fresh fused model and takes every weight from the merged file.
    fresh = FusionOcc(_micro())
    initialise_weights(fresh, load_config(None, {"init_from": str(out)}), log=lambda *_: None)
    for key, value in fused.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)
    wider = FusionOcc(dataclasses.replace(_micro(), head_hidden_channels=16))
    with pytest.raises(TrainError, match="trained with another preset"):
        initialise_weights(wider, load_config(None, {"init_from": str(out)}), log=lambda *_: None)
    # The wrong way round is a clear error, not a silently odd model.
    assert cli_main(["merge-modalities", "--camera", str(tmp_path / "lidar.pth"), "--lidar",
                     str(tmp_path / "camera.pth"), "--out", str(tmp_path / "x.pth")]) == 2
    assert "camera-only" in capsys.readouterr().err and not (tmp_path / "x.pth").exists()
