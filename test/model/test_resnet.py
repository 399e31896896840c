"""ResNet backbone: stage shapes and torchvision-compatible parameter names / counts."""

from __future__ import annotations

import pytest
import torch

from fusionocc_core.model.resnet import ResNet


def test_resnet18_returns_stride_16_and_32_maps() -> None:
    torch.manual_seed(0)
    model = ResNet("resnet18").eval()
    c3, c4 = model(torch.randn(2, 3, 64, 96))
    assert c3.shape == (2, 256, 4, 6) and c4.shape == (2, 512, 2, 3)
    assert model.out_channels == (256, 512)


@pytest.mark.parametrize(
    "name, params, out",
    [
        ("resnet18", 11_176_512, (256, 512)),  # torchvision 11,689,512 minus fc (513,000)
        ("resnet34", 21_284_672, (256, 512)),  # 21,797,672 - 513,000
        ("resnet50", 23_508_032, (1024, 2048)),  # 25,557,032 - 2,049,000
    ],
)
def test_parameter_counts_match_torchvision_without_fc(name: str, params: int, out: tuple[int, int]) -> None:
    with torch.device("meta"):
        model = ResNet(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.out_channels == out


def test_torchvision_key_names() -> None:
    with torch.device("meta"):
        keys = set(ResNet("resnet50").state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer4.2.conv3.weight",
        "layer3.5.bn2.num_batches_tracked",
    ):
        assert key in keys
    assert not any(k.startswith("fc.") for k in keys)


def test_unknown_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="resnet101"):
        ResNet("resnet101")


def test_half_width_halves_every_channel_and_keeps_the_names() -> None:
    with torch.device("meta"):
        full, half = ResNet("resnet18").state_dict(), ResNet("resnet18", width=32).state_dict()
    assert list(full) == list(half)
    for key, weight in full.items():
        if weight.dim() == 4:  # conv: (Cout, Cin, k, k); the stem's 3 input channels stay
            cin = weight.shape[1] if key == "conv1.weight" else weight.shape[1] // 2
            assert tuple(half[key].shape) == (weight.shape[0] // 2, cin, *weight.shape[2:]), key
    c3, c4 = ResNet("resnet18", width=32).eval()(torch.randn(1, 3, 64, 96))
    assert c3.shape == (1, 128, 4, 6) and c4.shape == (1, 256, 2, 3)
    with pytest.raises(ValueError, match="width must be positive"):
        ResNet("resnet18", width=0)
