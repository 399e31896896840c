"""FusionOcc camera branch: images of T frames -> lifted 3D feature volumes in the current key-ego frame.

Per frame and camera: image backbone (Swin or ResNet) -> FPN-LSS neck -> 2D cross-modal fusion with the key
frame's one-hot sparse lidar depth -> depth/context/segmentation net -> lift-splat into the 200 x 200 x 16
grid
-> one residual 3D block (`pre_process`). Behaviour follows the original (reference README facts 1-4):
- frames run previous-first (t = T-1 ... 0), the previous ones without gradients, and the volumes are
  concatenated in that order: cat([prev, key]) on channels;
- every frame is lifted straight into the key ego frame with its own cam_to_key_ego;
- every frame receives the KEY frame's sparse depth, and the camera-parameter MLP always gets the KEY frame's
  cam_to_key_ego (with the frame's own intrinsics and image augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fusionocc_core import occ3d
from fusionocc_core.model.conv3d import Conv3d
from fusionocc_core.model.cross_modal_fusion import CrossModalFusion
from fusionocc_core.model.depth_net import DepthSegNet, camera_params
from fusionocc_core.model.image_neck import FPNLSSNeck
from fusionocc_core.model.lidar_depth import depth_input_patches
from fusionocc_core.model.lift_splat import LiftSplat
from fusionocc_core.model.resnet import RESNET_LAYOUTS, ResNet
from fusionocc_core.model.swin import SwinTransformer

IMAGE_FEATURE_CACHE_SIZE = 4  # image batches whose features are kept: the previous frame may be a few calls back


@dataclass(frozen=True)
class CameraBranchConfig:
    """Camera branch hyper-parameters; defaults are the published FusionOcc (Swin-B) configuration."""

    backbone: str = "swin"  # "swin" or one of resnet.RESNET_LAYOUTS ("resnet18", "resnet34", "resnet50")
    resnet_width: int = 64  # a ResNet backbone's stem / layer1 channels (64 = torchvision's; tiny: 32)
    swin_embed_dim: int = 128  # Swin-B
    swin_depths: tuple[int, ...] = (2, 2, 18, 2)
    swin_num_heads: tuple[int, ...] = (4, 8, 16, 32)
    swin_window_size: int = 12
    swin_drop_path_rate: float = 0.1  # stochastic depth, training only
    use_checkpoint: bool = False  # recompute Swin blocks in backward to save memory (same numbers)
    neck_channels: int = 256  # FPN-LSS output channels
    input_size: tuple[int, int] = (512, 1408)  # network input (H, W) [px]
    downsample: int = 16  # feature stride of the lifted features
    fusion_mid_channels: int = 128  # width of each path in the cross-modal fusion; depth net width too
    aspp_mid_channels: int = 96
    feature_channels: int = 32  # lifted channels = channels of each frame's volume (seg half + context half)
    num_classes: int = occ3d.NUM_CLASSES  # image segmentation classes
    depth_bins: tuple[float, float, float] = (1.0, 45.0, 0.5)  # [m] lo, hi (exclusive), step -> D = 88
    grid_lower: tuple[float, float, float] = (occ3d.POINT_CLOUD_RANGE[0], occ3d.POINT_CLOUD_RANGE[1],
                                              occ3d.POINT_CLOUD_RANGE[2])  # [m]
    voxel_size: tuple[float, float, float] = (occ3d.VOXEL_SIZE,) * 3  # [m]
    grid_shape: tuple[int, int, int] = occ3d.GRID_SHAPE  # (X, Y, Z)
    # Fraction of feature-grid patches whose depth one-hot is zeroed in TRAINING mode only (robustness to
    # missing lidar). The original draws randint(0, 100) > 50 per patch (0.49) and, through a config flag,
    # would also do it at test time (spec quirk); we never drop in eval mode.
    depth_patch_dropout: float = 0.49
    cache_plans: bool = False  # reuse lift-splat pooling plans for value-identical geometry (static rig)

    def __post_init__(self) -> None:
        # Configs come back from checkpoints / YAML with lists; keep them hashable tuples.
        for name in (
            "swin_depths",
            "swin_num_heads",
            "input_size",
            "depth_bins",
            "grid_lower",
            "voxel_size",
            "grid_shape",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def num_depth_bins(self) -> int:
        return len(torch.arange(*self.depth_bins))

    @property
    def feature_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.downsample, self.input_size[1] // self.downsample


@dataclass
class CameraBranchOutput:
    """volumes: (B, T*C, Z, Y, X) after the 3D pre-process block, previous frame first (cat[prev, key]).
    raw_volumes: per-frame lifted volumes before that block, key first: [key, prev, ...], each (B, C, Z, Y,
    X).
    key_depth: (B*N, D, h, w) softmaxed depth of the key frame.
    key_seg_logits: (B*N, classes, h, w) image segmentation logits of the key frame."""

    volumes: torch.Tensor
    raw_volumes: list[torch.Tensor]
    key_depth: torch.Tensor
    key_seg_logits: torch.Tensor


class ResidualBlock3d(nn.Module):
    """3x3x3 conv-BN-ReLU, 3x3x3 conv-BN, + 3x3x3 conv-BN projection of the input, ReLU (the original's
    BasicBlock3D with its ConvModule downsample, as used by pre_process_net)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.downsample = nn.Sequential(
            Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def build_image_backbone(config: CameraBranchConfig) -> tuple[nn.Module, int]:
    """Backbone returning [stride 16, stride 32] maps, and the sum of their channels (the neck input)."""
    backbone: nn.Module
    if config.backbone == "swin":
        backbone = SwinTransformer(
            embed_dim=config.swin_embed_dim,
            depths=config.swin_depths,
            num_heads=config.swin_num_heads,
            window_size=config.swin_window_size,
            out_indices=(2, 3),
            drop_path_rate=config.swin_drop_path_rate,
            use_checkpoint=config.use_checkpoint,
        )
        return backbone, sum(backbone.out_channels)
    if config.backbone in RESNET_LAYOUTS:
        backbone = ResNet(config.backbone, width=config.resnet_width)
        return backbone, sum(backbone.out_channels)
    raise ValueError(
        f"Unknown camera backbone '{config.backbone}'; choose 'swin' or one of {sorted(RESNET_LAYOUTS)}."
    )


class CameraBranch(nn.Module):
    """Images of T frames x N cameras -> per-frame 3D volumes in the key ego frame (see module docstring)."""

    def __init__(self, config: CameraBranchConfig) -> None:
        super().__init__()
        if not 0.0 <= config.depth_patch_dropout < 1.0:
            raise ValueError(f"depth_patch_dropout {config.depth_patch_dropout} must be in [0, 1).")
        h, w = config.input_size
        if h % 32 or w % 32:
            raise ValueError(
                f"Camera input size {config.input_size} must be divisible by 32 (stride-32 maps "
                "are upsampled x2 onto the stride-16 maps)."
            )
        self.config = config
        self.backbone, neck_in = build_image_backbone(config)
        self.neck = FPNLSSNeck(neck_in, config.neck_channels)
        self.fusion = CrossModalFusion(
            config.neck_channels, config.num_depth_bins, config.fusion_mid_channels
        )
        self.depth_net = DepthSegNet(
            2 * config.fusion_mid_channels,
            config.fusion_mid_channels,
            config.num_depth_bins,
            config.feature_channels,
            config.num_classes,
            config.aspp_mid_channels,
        )
        self.lift_splat = LiftSplat(
            config.input_size,
            config.downsample,
            config.depth_bins,
            config.grid_lower,
            config.voxel_size,
            config.grid_shape,
            cache_plans=config.cache_plans,
        )
        self.pre_process = ResidualBlock3d(config.feature_channels, config.feature_channels)
        # Streaming inference sees each camera frame twice: as the key frame, then as the previous frame of a
        # later call. With `cache_image_features` on (the Predictor turns it on) the backbone + neck features
        # of the last few image batches are kept and reused when an identical batch comes again (checked
        # value by value): the previous frame's backbone pass is then free. Only without gradients.
        self.cache_image_features = False
        self._image_features: list[tuple[tuple[Any, ...], torch.Tensor, torch.Tensor]] = []

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        sparse_depth: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> CameraBranchOutput:
        """Run all frames.

        Args:
            images: (B, T, N, 3, H, W) normalised images; t = 0 is the key (current) frame.
            intrinsics: (B, T, N, 3, 3) K of the original images.
            cam_to_key_ego: (B, T, N, 4, 4) camera of frame t -> key-frame ego.
            post_rots: (B, T, N, 3, 3) image augmentation (pixel_in = post_rot @ (K @ X / z) + post_tran).
            post_trans: (B, T, N, 3).
            bda: (B, 3, 3) BEV augmentation.
            sparse_depth: (B, N, H, W) key-frame lidar depth per input pixel [m], 0 = none.
            camera_mask: optional (B, T, N); 0 marks a missing image whose features are zeroed (dropout).

        Returns:
            CameraBranchOutput.
        """
        b, t, n = images.shape[:3]
        self._check_shapes(images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, sparse_depth)
        if camera_mask is not None and tuple(camera_mask.shape) != (b, t, n):
            raise ValueError(f"CameraBranch: camera_mask has shape {tuple(camera_mask.shape)}, expected {(b, t, n)}.")
        depth_one_hot = depth_input_patches(
            sparse_depth.reshape(b * n, *sparse_depth.shape[2:]),
            self.config.downsample,
            self.config.depth_bins,
        )  # (BN, D, h, w)
        volumes: list[torch.Tensor] = []
        raw: list[torch.Tensor] = []
        key_depth = key_seg = None
        for frame in range(t - 1, -1, -1):  # previous frames first, as the original
            with torch.set_grad_enabled(torch.is_grad_enabled() and frame == 0):
                volume, depth, seg_logits = self.lift_frame(
                    images[:, frame],
                    intrinsics[:, frame],
                    cam_to_key_ego[:, frame],
                    post_rots[:, frame],
                    post_trans[:, frame],
                    bda,
                    depth_one_hot,
                    cam_to_key_ego[:, 0],
                    None if camera_mask is None else camera_mask[:, frame],
                )
                raw.insert(0, volume)
                volumes.append(self.pre_process(volume))
            if frame == 0:
                key_depth, key_seg = depth, seg_logits
        assert key_depth is not None and key_seg is not None
        return CameraBranchOutput(torch.cat(volumes, dim=1), raw, key_depth, key_seg)

    def lift_frame(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        depth_one_hot: torch.Tensor,
        key_cam_to_key_ego: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One frame: (B, N, 3, H, W) -> volume (B, C, Z, Y, X), depth (BN, D, h, w), seg logits (BN, K, h,
        w); `camera_mask` (B, N) zeroes the features of missing cameras."""
        b, n = images.shape[:2]
        image_feat = self.image_features(images.flatten(0, 1))  # (BN, C_neck, h, w)
        if self.training and self.config.depth_patch_dropout > 0:
            drop = torch.rand(
                depth_one_hot.shape[0], 1, *depth_one_hot.shape[2:], device=depth_one_hot.device
            )
            depth_one_hot = depth_one_hot.masked_fill(drop < self.config.depth_patch_dropout, 0.0)
        fused = self.fusion(image_feat, depth_one_hot)  # (BN, 2 mid, h, w)
        params = camera_params(intrinsics, post_rots, post_trans, bda, key_cam_to_key_ego)  # (B, N, 27)
        depth_logits, feat, seg_logits = self.depth_net(fused, params)
        depth = depth_logits.softmax(dim=1)  # (BN, D, h, w)
        if camera_mask is not None:  # a missing camera contributes nothing to the volume
            feat = feat * camera_mask.reshape(-1, 1, 1, 1).to(feat.dtype)
        h, w = depth.shape[-2:]
        volume = self.lift_splat(
            depth.view(b, n, -1, h, w),
            feat.view(b, n, -1, h, w),
            intrinsics,
            cam_to_key_ego,
            post_rots,
            post_trans,
            bda,
        )  # (B, C, Z, Y, X)
        return volume, depth, seg_logits

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone + neck: (BN, 3, H, W) -> (BN, C_neck, h, w); from the cache when it is on and holds the
        same images (see `cache_image_features`)."""
        if not self.cache_image_features or torch.is_grad_enabled():
            return self.neck(self.backbone(images))
        device = images.device.type
        autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        key = (tuple(images.shape), images.dtype, images.device, autocast)
        for cached_key, cached_images, features in self._image_features:
            if cached_key == key and torch.equal(cached_images, images):
                return features
        features = self.neck(self.backbone(images))
        self._image_features.append((key, images.clone(), features))
        del self._image_features[:-IMAGE_FEATURE_CACHE_SIZE]
        return features

    def clear_image_feature_cache(self) -> None:
        """Forgets the cached image features (after changing weights while the cache is on)."""
        self._image_features.clear()

    def train(self, mode: bool = True) -> CameraBranch:
        self.clear_image_feature_cache()
        return super().train(mode)

    def _check_shapes(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        sparse_depth: torch.Tensor,
    ) -> None:
        if images.ndim != 6 or images.shape[3] != 3:
            raise ValueError(f"CameraBranch: images must be (B, T, N, 3, H, W), got {tuple(images.shape)}.")
        b, t, n, _, h, w = images.shape
        if (h, w) != tuple(self.config.input_size):
            raise ValueError(
                f"CameraBranch: images are {h}x{w} but the branch was built for input_size "
                f"{self.config.input_size}."
            )
        expected = {
            "intrinsics": (intrinsics, (b, t, n, 3, 3)),
            "cam_to_key_ego": (cam_to_key_ego, (b, t, n, 4, 4)),
            "post_rots": (post_rots, (b, t, n, 3, 3)),
            "post_trans": (post_trans, (b, t, n, 3)),
            "bda": (bda, (b, 3, 3)),
            "sparse_depth": (sparse_depth, (b, n, h, w)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"CameraBranch: {name} has shape {tuple(tensor.shape)}, expected {shape}.")
