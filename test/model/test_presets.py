"""Every preset builds; the tiny preset trains on CPU (forward + backward reaching every parameter)."""

import pytest
import torch

from fusionocc_core.model.flops import example_inputs
from fusionocc_core.model.losses import FusionOccLoss
from fusionocc_core.model.presets import PRESETS, build_model, get_config

EXPECTED_PARAMETERS = {"official": 109_090_524, "fast": 49_257_892, "tiny": 4_306_334, "tiny_v1": 12_293_252}


@pytest.mark.parametrize("name", [*sorted(PRESETS), "tiny_v1"])
def test_every_preset_builds(name):
    with torch.device("meta"):  # no memory, no init cost: structure and sizes only
        model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMETERS[name]
    assert model.config == get_config(name)


def test_official_is_the_published_configuration():
    config = get_config("official")
    assert config.camera.backbone == "swin" and config.camera.swin_depths == (2, 2, 18, 2)
    assert config.camera.swin_embed_dim == 128 and config.camera.input_size == (512, 1408)
    assert config.fused_channels == 96 and config.encoder_channels == (64, 128, 256)
    assert config.lidar_stage_channels == (16, 32, 48, 64) and config.fpn_channels == 64
    fast = get_config("fast")
    assert fast.camera.backbone == "resnet50" and fast.camera.input_size == (256, 704)
    assert fast.encoder_channels == config.encoder_channels and fast.fpn_channels == config.fpn_channels


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(KeyError, match="fast.*official.*tiny"):
        build_model("huge")


def test_building_under_a_seed_is_deterministic():
    torch.manual_seed(3)
    first = build_model("tiny").state_dict()
    torch.manual_seed(3)
    second = build_model("tiny").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_tiny_trains_on_cpu_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    config = get_config("tiny")
    model = build_model("tiny").train()
    inputs = example_inputs(config, batch_size=1, num_points=3000)
    out = model.forward_with_aux(*inputs.as_tuple())
    labels = torch.randint(0, 18, out.logits.shape[:-1])
    seg_labels = torch.randint(0, 18, (1, 6, *config.camera.input_size))
    losses = FusionOccLoss(depth_bins=config.camera.depth_bins)(
        out.logits,
        labels,
        key_depth=out.key_depth,
        sparse_depth=inputs.sparse_depth,
        key_seg_logits=out.key_seg_logits,
        seg_labels=seg_labels,
    )
    assert set(losses) == {"loss_occ", "loss_depth", "loss_seg"}
    sum(losses.values()).backward()
    without_grad = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)
    ]
    assert without_grad == []


def test_static_flops_order_the_presets():
    from fusionocc_core.model.flops import count_static_flops

    flops = {name: count_static_flops(config) for name, config in PRESETS.items()}
    assert (
        flops["official"]["total_static"] > flops["fast"]["total_static"] > flops["tiny"]["total_static"] > 0
    )
    assert flops["official"]["volume_3d"] == flops["fast"]["volume_3d"]  # same 3D widths
    # Level-0 first conv of the official 3D encoder alone: 2 * 96 * 64 * 27 * 640,000 voxels.
    assert flops["official"]["volume_3d"] > 2 * 96 * 64 * 27 * 640_000
