"""2D cross-modal fusion of image features and the one-hot sparse lidar depth (FusionOcc's CrossModalFusion,
plus the image/depth input convolutions and the residual block after it, which the original keeps in
CrossModalLSS as img_reduce_conv / depth_encoder / further_fuse).

Channel step: each path's global average goes through Linear + Sigmoid, and each path is re-weighted by the
OTHER path's channel weights; both are concatenated and mixed by a 3x3 conv-BN-ReLU. Spatial step: each half
of
the mixed map is averaged over channels and turned into a per-pixel gate by 1x1 convs 1 -> mid/2 -> 1 with
ReLU
(ReLU, not sigmoid, after the last conv, as the original); residual gating f_c + z_d * f_c and f_d + z_c *
f_d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core.model.resnet import BasicBlock


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (with bias, as the original) + BN + ReLU; indices 0, 1 carry the weights."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def spatial_gate(mid_channels: int) -> nn.Sequential:
    """1x1 convs 1 -> mid/2 -> 1, each followed by ReLU: a non-negative per-pixel gate.

    The last conv's bias starts at 1 (gate open) instead of PyTorch's small random value: with the final ReLU a
    gate whose output starts at zero everywhere never gets a gradient, which silently turned the whole fusion
    step (gates and mixing conv) into a pass-through for some seeds of narrow presets. Initialisation only;
    loaded weights are unaffected."""
    last = nn.Conv2d(mid_channels // 2, 1, 1)
    assert last.bias is not None
    nn.init.constant_(last.bias, 1.0)
    return nn.Sequential(
        nn.Conv2d(1, mid_channels // 2, 1),
        nn.ReLU(inplace=True),
        last,
        nn.ReLU(inplace=True),
    )


class CrossModalFusion(nn.Module):
    """Image features (BN, C_img, h, w) + depth one-hot (BN, D, h, w) -> fused features (BN, 2 * mid, h, w).

    Args:
        image_channels: Neck output channels (256).
        depth_channels: Depth bins D (88).
        mid_channels: Width of each path (128); the output has twice this.
    """

    def __init__(self, image_channels: int, depth_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.mid_channels = mid_channels
        self.image_reduce = conv_bn_relu(image_channels, mid_channels)
        self.depth_encoder = nn.Sequential(
            *conv_bn_relu(depth_channels, mid_channels), *conv_bn_relu(mid_channels, mid_channels)
        )
        self.channel_gate_image = nn.Sequential(nn.Linear(mid_channels, mid_channels), nn.Sigmoid())
        self.channel_gate_depth = nn.Sequential(nn.Linear(mid_channels, mid_channels), nn.Sigmoid())
        self.fuse_conv = conv_bn_relu(2 * mid_channels, 2 * mid_channels)
        self.spatial_gate_image = spatial_gate(mid_channels)
        self.spatial_gate_depth = spatial_gate(mid_channels)
        self.out_block = BasicBlock(2 * mid_channels, 2 * mid_channels)

    def forward(self, image_feat: torch.Tensor, depth_one_hot: torch.Tensor) -> torch.Tensor:
        f_c = self.image_reduce(image_feat)  # (BN, mid, h, w)
        f_d = self.depth_encoder(depth_one_hot)  # (BN, mid, h, w)
        bn, c = f_c.shape[:2]
        w_c = self.channel_gate_image(F.adaptive_avg_pool2d(f_c, 1).reshape(bn, c)).reshape(bn, c, 1, 1)
        w_d = self.channel_gate_depth(F.adaptive_avg_pool2d(f_d, 1).reshape(bn, c)).reshape(bn, c, 1, 1)
        mixed = self.fuse_conv(torch.cat([w_d * f_c, w_c * f_d], dim=1))  # (BN, 2 mid, h, w)
        z_c = self.spatial_gate_image(mixed[:, :c].mean(dim=1, keepdim=True))  # (BN, 1, h, w)
        z_d = self.spatial_gate_depth(mixed[:, c:].mean(dim=1, keepdim=True))
        fused = torch.cat([z_d * f_c + f_c, z_c * f_d + f_d], dim=1)  # (BN, 2 mid, h, w)
        return self.out_block(fused)
