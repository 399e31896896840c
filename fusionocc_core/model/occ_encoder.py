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


def _align_corners_weights(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """(size_out, size_in) matrix of 1D linear interpolation with align_corners=True (F.interpolate's rule)."""
    if size_in == 1:
        return like.new_ones(size_out, 1)
    scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    position = torch.arange(size_out, dtype=torch.float64) * scale
    lower = position.floor().long().clamp(max=size_in - 2)
    frac = position - lower
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights[rows, lower] = 1 - frac
    weights[rows, lower + 1] += frac
    return weights.to(device=like.device, dtype=like.dtype)


def trilinear_upsample(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """`F.interpolate(x, size, mode="trilinear", align_corners=True)` as three 1D interpolations (trilinear
    interpolation is separable), each a small matrix product. Equal to F.interpolate to float rounding
    (test/model/test_occ_encoder.py) and, on CPU, several times faster: torch's trilinear kernel was the
    largest single cost of the tiny preset's FPN (about 90 ms per call on one thread for a 100 x 100 x 8
    output)."""
    b, c, d, h, w = x.shape
    wd = _align_corners_weights(d, size[0], x)
    wh = _align_corners_weights(h, size[1], x)
    ww = _align_corners_weights(w, size[2], x)
    x = torch.matmul(x, ww.t())  # (B, C, D, H, W') along the last axis
    x = torch.matmul(wh, x)  # (B, C, D, H', W'): (H', H) @ (..., H, W')
    return torch.matmul(wd, x.reshape(b, c, d, -1)).view(b, c, size[0], size[1], size[2])


class OccFPN3d(nn.Module):
    """Upsamples the deeper levels to the first level's size (trilinear, align_corners=True as the original),
    concatenates and projects with a 1x1x1 Conv3d + BN + ReLU.

    Computed in an equivalent, cheaper order: the 1x1x1 conv is a per-voxel linear map and trilinear upsampling
    is linear per channel, so they commute; each level is projected to the output width by its slice of the
    conv's weight first and upsampled after, and the levels are summed instead of concatenated. Upsampling
    `out_channels` instead of 384 channels (published widths) saves most of the FPN's time and memory; the
    weights and their layout are the original's (one Conv3d over the concatenated widths).

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
        weight = self.conv.weight.flatten(1)  # (C_out, sum C_i), the levels' slices in order
        if weight.shape[1] != sum(f.shape[1] for f in features):
            raise ValueError(f"OccFPN3d expects levels of {weight.shape[1]} channels in total, got "
                             f"{[f.shape[1] for f in features]}")
        out: torch.Tensor | None = None
        start = 0
        for level in features:
            b, c = level.shape[:2]
            part = torch.matmul(weight[:, start:start + c].to(level.dtype), level.flatten(2))  # (B, C_out, N)
            part = part.view(b, -1, *level.shape[2:])
            start += c
            if part.shape[2:] != size:
                # The original scales by fixed factors (x2, x4); with strides (1, 2, 2) that is level 0's size.
                part = trilinear_upsample(part, (size[0], size[1], size[2]))
            out = part if out is None else out + part
        assert out is not None
        return F.relu(self.bn(out), inplace=True)
