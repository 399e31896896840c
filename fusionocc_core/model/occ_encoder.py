"""3D occupancy encoder on the fused volume: residual 3D encoder (three levels) + 3D FPN back to full size.

Original: `img_bev_encoder_backbone` (BEVDet's CustomResNet3D, blocks [1, 2, 3], channels [64, 128, 256],
strides [1, 2, 2]) and `img_bev_encoder_neck` (LSSFPN3D: x2 and x4 trilinear upsampling with
align_corners=True, concat, 1x1x1 Conv3d + BN + ReLU). BatchNorm3d uses torch defaults (eps 1e-5).
The first block of every level has a 3x3x3 conv + BN projection on its shortcut, even at stride 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core.model.conv3d import Conv3d


class BasicBlock3d(nn.Module):
    """3x3x3 conv-BN-ReLU, 3x3x3 conv-BN, + shortcut (identity or 3x3x3 conv-BN projection), ReLU.

    Args:
        in_channels: input width.
        out_channels: output width.
        stride: stride of the first conv and of the projection.
        project_shortcut: use a 3x3x3 conv + BN on the shortcut (required when shapes change).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, project_shortcut: bool = False
    ) -> None:
        super().__init__()
        if not project_shortcut and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"BasicBlock3d {in_channels}->{out_channels} stride {stride} needs project_shortcut"
            )
        self.conv1 = Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if project_shortcut:
            self.shortcut = nn.Sequential(
                Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity, inplace=True)


class OccEncoder3d(nn.Module):
    """Residual 3D encoder returning one feature volume per level.

    Args:
        in_channels: width of the fused input volume (camera frames + lidar).
        num_blocks: blocks per level.
        channels: width per level.
        strides: stride of each level's first block.
    """

    def __init__(
        self,
        in_channels: int = 96,
        num_blocks: tuple[int, ...] = (1, 2, 3),
        channels: tuple[int, ...] = (64, 128, 256),
        strides: tuple[int, ...] = (1, 2, 2),
    ) -> None:
        super().__init__()
        if not len(num_blocks) == len(channels) == len(strides):
            raise ValueError(
                f"num_blocks {num_blocks}, channels {channels}, strides {strides} differ in length"
            )
        levels = []
        width = in_channels
        for blocks, out_width, stride in zip(num_blocks, channels, strides, strict=True):
            level = [BasicBlock3d(width, out_width, stride, project_shortcut=True)]
            level += [BasicBlock3d(out_width, out_width) for _ in range(blocks - 1)]
            levels.append(nn.Sequential(*level))
            width = out_width
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, Z, Y, X) -> per level (B, C_i, Z/s, Y/s, X/s), s the cumulative stride (1, 2, 4)."""
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class OccFPN3d(nn.Module):
    """Upsamples the deeper levels to the first level's size (trilinear, align_corners=True as the original),
    concatenates and projects with a 1x1x1 Conv3d + BN + ReLU.

    Args:
        in_channels: sum of the level widths (448 in the published model).
        out_channels: output width (64).
    """

    def __init__(self, in_channels: int = 448, out_channels: int = 64) -> None:
        super().__init__()
        self.conv = Conv3d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(out_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        # The original scales by fixed factors (x2, x4); with strides (1, 2, 2) that is level 0's size.
        upsampled = [features[0]] + [
            F.interpolate(f, size=size, mode="trilinear", align_corners=True) for f in features[1:]
        ]
        x = torch.cat(upsampled, dim=1)  # (B, sum C, Z, Y, X)
        return F.relu(self.bn(self.conv(x)), inplace=True)
