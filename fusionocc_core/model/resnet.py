"""Plain ResNet-18/34/50 image backbone returning the stride-16 and stride-32 maps (layer3, layer4).

Parameter names follow torchvision/timm (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, ...), so
an
ImageNet ResNet state dict loads directly (its `fc.*` keys are not used: load with `strict=False` or drop
them).
Used by the light presets instead of Swin-B.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, + identity (projected when the shape changes), ReLU."""

    expansion = 1

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, torchvision v1.5 placement), 1x1 expand x4, + identity, ReLU."""

    expansion = 4

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk (no classifier) returning [layer3 (1/16), layer4 (1/32)] as (B, C, H, W).

    Args:
        depth_name: One of `RESNET_LAYOUTS` ("resnet18", "resnet34", "resnet50").
        in_channels: Image channels.
        width: channels of the stem and of layer1 (64 in torchvision's ResNets; the later layers double it).
            A narrower trunk (the tiny preset's 32) has about (width / 64)^2 of the parameters and FLOPs and
            no ImageNet weights.
    """

    def __init__(self, depth_name: str = "resnet50", in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        if depth_name not in RESNET_LAYOUTS:
            raise ValueError(f"Unknown ResNet '{depth_name}'; choose one of {sorted(RESNET_LAYOUTS)}.")
        if width < 1:
            raise ValueError(f"ResNet width must be positive, got {width}")
        block, layers = RESNET_LAYOUTS[depth_name]
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_channels = width
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, 2 * width, layers[1], 2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], 2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], 2)
        self.out_channels = (4 * width * block.expansion, 8 * width * block.expansion)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], channels: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_channels != channels * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, channels * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(channels * block.expansion),
            )
        layers = [block(self._in_channels, channels, stride, downsample)]
        self._in_channels = channels * block.expansion
        layers += [block(self._in_channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, C3, H/16, W/16), (B, C4, H/32, W/32)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        c3 = self.layer3(x)
        c4 = self.layer4(c3)
        return [c3, c4]
