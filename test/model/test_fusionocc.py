"""The full model's contract: config serialisation, forward/predict shapes, modality switches, autocast."""

import dataclasses
import json

import pytest
import torch

from fusionocc_core.model.flops import example_inputs
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig
from fusionocc_core.model.presets import PRESETS, get_config


def _micro_config() -> FusionOccConfig:
    """The tiny preset at 64 x 96 input and narrower 3D widths: every module, a fraction of the CPU time."""
    tiny = get_config("tiny")
    camera = dataclasses.replace(tiny.camera, input_size=(64, 96), feature_channels=4)
    return dataclasses.replace(
        tiny,
        camera=camera,
        lidar_out_channels=4,
        lidar_stage_channels=(4, 4, 8, 8),
        encoder_channels=(4, 8, 8),
        fpn_channels=4,
        head_hidden_channels=8,
    )


@pytest.fixture(scope="module")
def model_and_inputs():
    torch.manual_seed(0)
    config = _micro_config()
    return FusionOcc(config).eval(), example_inputs(config, batch_size=1, num_points=2000)


@pytest.fixture(scope="module")
def outputs(model_and_inputs):
    model, inputs = model_and_inputs
    with torch.no_grad():
        return model.forward_with_aux(*inputs.as_tuple()), model.predict(*inputs.as_tuple())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_json(name):
    config = PRESETS[name]
    assert FusionOccConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_rejects_unknown_keys():
    data = get_config("tiny").to_dict()
    data["camera"]["swin_deep"] = 3
    with pytest.raises(ValueError, match="unknown config key.*swin_deep"):
        FusionOccConfig.from_dict(data)


def test_forward_predict_and_aux(outputs):
    out, labels = outputs
    assert out.logits.shape == (1, 200, 200, 16, 18)
    # the tiny preset's volumes live on the half-resolution grid (volume_stride 2); the logits do not
    assert out.camera_volumes.shape == (1, 8, 8, 100, 100) and out.lidar_volume.shape == (1, 4, 8, 100, 100)
    assert out.key_depth.shape == (6, 44, 4, 6) and out.key_seg_logits.shape == (6, 18, 4, 6)
    assert labels.dtype == torch.uint8 and labels.shape == (1, 200, 200, 16)
    assert torch.equal(labels, out.logits.argmax(-1).to(torch.uint8))


@pytest.mark.parametrize(("change", "message"), [
    ({"volume_stride": 3}, "volume_stride 3 must be >= 1 and divide"),
    ({"volume_stride": 1}, "camera grid_shape .* must be the volume grid"),
    ({"lidar_voxel_size": 0.05}, "lidar_voxel_size 0.05 gives .* must be 8x the volume grid"),
])
def test_config_rejects_inconsistent_volume_grids(change, message):
    with pytest.raises(ValueError, match=message):
        FusionOcc(dataclasses.replace(_micro_config(), **change))


def test_camera_voxel_size_must_match_the_volume_grid():
    config = _micro_config()
    camera = dataclasses.replace(config.camera, voxel_size=(0.4, 0.4, 0.4))
    with pytest.raises(ValueError, match="camera voxel_size .* must be 0.8 m"):
        FusionOcc(dataclasses.replace(config, camera=camera))


def test_modality_switches_zero_the_volume(model_and_inputs, outputs):
    model, inputs = model_and_inputs
    try:
        model.camera_enabled = False
        with torch.no_grad():
            lidar_only = model.forward_with_aux(*inputs.as_tuple())
        assert lidar_only.key_depth is None and lidar_only.camera_volumes.abs().sum() == 0
        assert torch.equal(lidar_only.lidar_volume, outputs[0].lidar_volume)
        model.camera_enabled, model.lidar_enabled = True, False
        # Camera-only; also: points outside the grid or none at all are fine.
        with torch.no_grad():
            camera_only = model.forward_with_aux(
                *inputs.as_tuple()[:6], torch.zeros(0, 6), inputs.sparse_depth
            )
        assert camera_only.lidar_volume.abs().sum() == 0
        assert torch.equal(camera_only.camera_volumes, outputs[0].camera_volumes)
    finally:
        model.camera_enabled = model.lidar_enabled = True


def test_no_points_in_range_gives_an_empty_lidar_volume(model_and_inputs):
    model, _ = model_and_inputs
    far = torch.tensor([[0.0, 100.0, 0.0, 0.0, 1.0, 0.0]])
    volume = model.encode_lidar(far, batch_size=2)
    assert volume.shape == (2, 4, 8, 100, 100) and volume.abs().sum() == 0
    with pytest.raises(ValueError, match=r"points must be \(P, 6\)"):
        model.encode_lidar(torch.zeros(4, 5), batch_size=1)


def test_bfloat16_autocast_on_cpu(model_and_inputs, outputs):
    model, inputs = model_and_inputs
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_with_aux(*inputs.as_tuple())
    assert out.lidar_volume.dtype == torch.bfloat16  # cast after the fp32 sparse encoder
    torch.testing.assert_close(out.lidar_volume.float(), outputs[0].lidar_volume, rtol=1e-2, atol=1e-2)
    assert torch.isfinite(out.logits.float()).all()


def test_camera_mask_removes_a_missing_camera_from_the_camera_volume(model_and_inputs, outputs):
    """Sensor dropout: a masked camera's image no longer matters, an all-ones mask changes nothing."""
    model, inputs = model_and_inputs
    args = list(inputs.as_tuple())
    b, t, n = args[0].shape[:3]
    with torch.no_grad():
        ones = model.forward_with_aux(*args, torch.ones(b, t, n))
        torch.testing.assert_close(ones.camera_volumes, outputs[0].camera_volumes, rtol=0, atol=0)
        mask = torch.ones(b, t, n)
        mask[:, :, 2] = 0
        masked = model.forward_with_aux(*args, mask)
        other = list(args)
        other[0] = args[0].clone()
        other[0][:, :, 2] = torch.randn_like(other[0][:, :, 2]) * 3  # a different (garbage) image for camera 2
        masked_other = model.forward_with_aux(*other, mask)
        unmasked_other = model.forward_with_aux(*other)
    torch.testing.assert_close(masked.camera_volumes, masked_other.camera_volumes, rtol=0, atol=0)
    assert not torch.equal(masked.camera_volumes, ones.camera_volumes)  # camera 2 did contribute before
    assert not torch.equal(unmasked_other.camera_volumes, ones.camera_volumes)  # and its image mattered
    with pytest.raises(ValueError, match="camera_mask"):
        model.forward_with_aux(*args, torch.ones(b, n))
