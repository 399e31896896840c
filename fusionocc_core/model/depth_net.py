"""BEVDepth-style depth / context / segmentation net of FusionOcc (the original's DepthSegNet).

A BatchNorm1d + three MLPs turn 27 camera-parameter values into squeeze-excitation gates of three branches
that
each start with a 3x3 reduce conv: depth (2 BasicBlocks, ASPP, 1x1 -> D logits), context (3x3 -> C/2) and
segmentation (3x3 -> C/2 + BasicBlock, 1x1 head -> classes). The lifted feature is cat(segmentation, context).
"""

from __future__ import annotations

import torch
from torch import nn

from fusionocc_core.model.resnet import BasicBlock

NUM_CAMERA_PARAMS = 27


def camera_params(
    intrinsics: torch.Tensor,
    post_rots: torch.Tensor,
    post_trans: torch.Tensor,
    bda: torch.Tensor,
    cam_to_key_ego: torch.Tensor,
) -> torch.Tensor:
    """The 27 values of BEVDepth's get_mlp_input, in its order.

    fx, fy, cx, cy, post_rot[0,0], post_rot[0,1], post_tran[0], post_rot[1,0], post_rot[1,1], post_tran[1],
    bda[0,0], bda[0,1], bda[1,0], bda[1,1], bda[2,2], then the top 3x4 of cam_to_key_ego row-major (12).
    FusionOcc passes the KEY frame's cam_to_key_ego for every frame, with the frame's own intrinsics and aug.

    Args:
        intrinsics: (B, N, 3, 3).
        post_rots: (B, N, 3, 3).
        post_trans: (B, N, 3).
        bda: (B, 3, 3).
        cam_to_key_ego: (B, N, 4, 4).

    Returns:
        (B, N, 27).
    """
    b, n = intrinsics.shape[:2]
    bda = bda.view(b, 1, 3, 3).expand(b, n, 3, 3)
    values = torch.stack(
        [
            intrinsics[..., 0, 0],
            intrinsics[..., 1, 1],
            intrinsics[..., 0, 2],
            intrinsics[..., 1, 2],
            post_rots[..., 0, 0],
            post_rots[..., 0, 1],
            post_trans[..., 0],
            post_rots[..., 1, 0],
            post_rots[..., 1, 1],
            post_trans[..., 1],
            bda[..., 0, 0],
            bda[..., 0, 1],
            bda[..., 1, 0],
            bda[..., 1, 1],
            bda[..., 2, 2],
        ],
        dim=-1,
    )  # (B, N, 15)
    return torch.cat([values, cam_to_key_ego[..., :3, :].reshape(b, n, 12)], dim=-1)


class Mlp(nn.Module):
    """Linear-ReLU-Linear."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SELayer(nn.Module):
    """x * sigmoid(conv_expand(relu(conv_reduce(gate_input)))) with 1x1 convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels, 1)
        self.act1 = nn.ReLU()
        self.conv_expand = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, gate_input: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv_expand(self.act1(self.conv_reduce(gate_input))))


class ASPPBranch(nn.Module):
    """Atrous conv (no bias) + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (dilations 1, 6, 12, 18 + image pooling), 1x1 back to in_channels, then
    Dropout(0.5) as the original (active in training mode only)."""

    def __init__(self, in_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(in_channels, mid_channels, 1, 1)
        self.aspp2 = ASPPBranch(in_channels, mid_channels, 3, 6)
        self.aspp3 = ASPPBranch(in_channels, mid_channels, 3, 12)
        self.aspp4 = ASPPBranch(in_channels, mid_channels, 3, 18)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(in_channels, mid_channels, 1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(),
        )
        self.conv1 = nn.Conv2d(5 * mid_channels, in_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_avg_pool(x).expand(-1, -1, x.shape[2], x.shape[3])  # 1x1 -> h x w broadcast
        x = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled], dim=1)
        return self.dropout(self.relu(self.bn1(self.conv1(x))))


class DepthSegNet(nn.Module):
    """Fused image features + camera parameters -> depth logits, lifted features, segmentation logits.

    Args:
        in_channels: Channels of the fused 2D features (2 * fusion mid = 256).
        mid_channels: Branch width (128).
        depth_channels: Depth bins D (88).
        feature_channels: Lifted feature channels (32): feature_channels // 2 segmentation + rest context.
        num_classes: Image segmentation classes (18).
        aspp_mid_channels: ASPP branch width (96).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        depth_channels: int,
        feature_channels: int,
        num_classes: int,
        aspp_mid_channels: int,
    ) -> None:
        super().__init__()
        self.seg_channels = feature_channels // 2
        self.context_channels = feature_channels - self.seg_channels
        self.reduce_conv_depth = _reduce_conv(in_channels, mid_channels)
        self.reduce_conv_seg = _reduce_conv(in_channels, mid_channels)
        self.reduce_conv_context = _reduce_conv(in_channels, mid_channels)
        self.camera_param_bn = nn.BatchNorm1d(NUM_CAMERA_PARAMS)
        self.depth_mlp = Mlp(NUM_CAMERA_PARAMS, mid_channels, mid_channels)
        self.depth_se = SELayer(mid_channels)
        self.depth_conv = nn.Sequential(
            BasicBlock(mid_channels, mid_channels),
            BasicBlock(mid_channels, mid_channels),
            ASPP(mid_channels, aspp_mid_channels),
            nn.Conv2d(mid_channels, depth_channels, 1),
        )
        self.context_mlp = Mlp(NUM_CAMERA_PARAMS, mid_channels, mid_channels)
        self.context_se = SELayer(mid_channels)
        self.context_conv = nn.Conv2d(mid_channels, self.context_channels, 3, padding=1)
        self.seg_mlp = Mlp(NUM_CAMERA_PARAMS, mid_channels, mid_channels)
        self.seg_se = SELayer(mid_channels)
        self.seg_conv = nn.Sequential(
            nn.Conv2d(mid_channels, self.seg_channels, 3, padding=1),
            BasicBlock(self.seg_channels, self.seg_channels),
        )
        self.seg_out = nn.Conv2d(self.seg_channels, num_classes, 1)

    def forward(
        self, x: torch.Tensor, camera_param_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (BN, C, h, w), camera_param_values (BN, 27) -> depth logits (BN, D, h, w),
        features (BN, feature_channels, h, w) = cat(seg, context), segmentation logits (BN, classes, h, w)."""
        params = self.camera_param_bn(camera_param_values.reshape(-1, NUM_CAMERA_PARAMS))  # (BN, 27)
        seg = self.seg_se(self.reduce_conv_seg(x), self.seg_mlp(params)[..., None, None])
        seg_feature = self.seg_conv(seg)
        seg_logits = self.seg_out(seg_feature)
        context = self.context_se(self.reduce_conv_context(x), self.context_mlp(params)[..., None, None])
        context_feature = self.context_conv(context)
        depth = self.depth_se(self.reduce_conv_depth(x), self.depth_mlp(params)[..., None, None])
        depth_logits = self.depth_conv(depth)
        return depth_logits, torch.cat([seg_feature, context_feature], dim=1), seg_logits


def _reduce_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
