"""FPN-LSS image neck: upsample the stride-32 map x2 (bilinear, align_corners=True), concatenate it after the
stride-16 map, two 3x3 conv-BN-ReLU. Parameter names (`conv.0`, `conv.1`, `conv.3`, `conv.4`) match the
original
FPN_LSS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPNLSSNeck(nn.Module):
    """Fuses [stride-16 (B, C16, h, w), stride-32 (B, C32, h/2, w/2)] into (B, out_channels, h, w).

    Args:
        in_channels: C16 + C32 (512 + 1024 for Swin-B).
        out_channels: Output channels (256 in FusionOcc).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x16, x32 = feats
        # The original upsamples by a fixed factor 2; sizes must then agree (input sizes divisible by 32).
        x32 = F.interpolate(x32, scale_factor=2.0, mode="bilinear", align_corners=True)
        if x32.shape[-2:] != x16.shape[-2:]:
            raise ValueError(
                f"FPN-LSS: upsampled stride-32 map {tuple(x32.shape[-2:])} does not match the "
                f"stride-16 map {tuple(x16.shape[-2:])}; use input sizes divisible by 32."
            )
        return self.conv(torch.cat([x16, x32], dim=1))  # (B, out, h, w)
