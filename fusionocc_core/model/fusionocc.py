"""FusionOcc: surround cameras (key + previous frame) and multi-sweep lidar -> 3D semantic occupancy logits.

Data flow (shapes for the published configuration, B samples):
  camera branch   images (B, 2, 6, 3, H, W) -> volumes (B, 2*32, 16, 200, 200), previous frame first
  lidar branch    points (P, 6) -> 0.05 m voxels -> sparse encoder -> (B, 32, 16, 200, 200)
  fusion          cat([camera_prev, camera_key, lidar]) -> (B, 96, 16, 200, 200)
  3D encoder+FPN  -> (B, 64, 16, 200, 200)
  head            -> logits (B, 200, 200, 16, 18) indexed [b, x, y, z, class]

`volume_stride` s > 1 (the tiny preset, s = 2) runs every volume, the 3D encoder and FPN on a coarse grid of
(200 / s, 200 / s, 16 / s) voxels of 0.4 s m (camera lift-splat and the lidar encoder's output land there
directly; the lidar voxels are 0.05 s m so that the encoder's three stride-2 convs reach it), and the head
predicts the s^3 fine voxels of each coarse one (`OccHead(upsample=s)`): the same 200 x 200 x 16 logits for
about 1/s^3 of the 3D compute.

`camera_enabled` / `lidar_enabled` (config defaults, also plain attributes that may be switched at run time)
replace a modality's volume by zeros of the same shape: camera-only and lidar-only ablations of one trained
network, and sensor dropout during training. A disabled modality is not computed at all (its inputs only need
the right batch size; with DDP its parameters then get no gradient: use find_unused_parameters=True).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fusionocc_core import occ3d
from fusionocc_core.model.camera_branch import CameraBranch, CameraBranchConfig
from fusionocc_core.model.lidar_encoder import STAGE_CHANNELS, LidarEncoder
from fusionocc_core.model.occ_encoder import OccEncoder3d, OccFPN3d
from fusionocc_core.model.occ_head import OccHead
from fusionocc_core.model.voxelize import (
    LIDAR_VOXEL_SIZE,
    dynamic_voxelize,
    grid_shape_zyx,
)


@dataclass(frozen=True)
class FusionOccConfig:
    """Whole-model hyper-parameters; defaults are the published FusionOcc (Swin-B) configuration."""

    camera: CameraBranchConfig = field(default_factory=CameraBranchConfig)
    num_frames: int = 2  # camera frames: key + 1 previous keyframe
    lidar_in_channels: int = 5  # x, y, z, intensity, time lag
    lidar_out_channels: int = 32
    lidar_stage_channels: tuple[int, int, int, int] = STAGE_CHANNELS  # fixed in the original
    lidar_voxel_size: float = LIDAR_VOXEL_SIZE  # [m]; 3 stride-2 convs must land on the volumes' grid
    volume_stride: int = 1  # 3D volumes on a grid 1/s of the Occ3D grid per axis; the head upsamples (1: paper)
    encoder_blocks: tuple[int, ...] = (1, 2, 3)
    encoder_channels: tuple[int, ...] = (64, 128, 256)
    encoder_strides: tuple[int, ...] = (1, 2, 2)
    fpn_channels: int = 64  # 3D FPN output = head width
    head_hidden_channels: int = 128  # predicter hidden width (2 x fpn_channels in the original)
    num_classes: int = occ3d.NUM_CLASSES
    camera_enabled: bool = True
    lidar_enabled: bool = True

    @property
    def volume_grid_shape(self) -> tuple[int, int, int]:
        """(X, Y, Z) of the camera / lidar volumes and the 3D encoder's first level."""
        x, y, z = occ3d.GRID_SHAPE
        s = self.volume_stride
        return x // s, y // s, z // s

    @property
    def fused_channels(self) -> int:
        """Width of the fused volume: every camera frame's volume plus the lidar volume."""
        return self.num_frames * self.camera.feature_channels + self.lidar_out_channels

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML friendly; tuples stay tuples until serialised)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionOccConfig:
        """Inverse of `to_dict`; lists (from JSON/YAML) become tuples. Unknown keys raise ValueError."""
        data = dict(data)
        camera = data.pop("camera", {})
        if isinstance(camera, dict):
            camera = _dataclass_from_dict(CameraBranchConfig, camera)
        return _dataclass_from_dict(cls, {**data, "camera": camera})


def _dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: _tuples(v) for k, v in data.items()})


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


@dataclass
class FusionOccOutput:
    """logits (B, X, Y, Z, classes); key_depth (B*N, D, h, w) softmaxed, key_seg_logits (B*N, classes, h, w)
    of the key frame (None when the camera is disabled); the intermediate volumes, (B, C, Z, Y, X) each."""

    logits: torch.Tensor
    key_depth: torch.Tensor | None
    key_seg_logits: torch.Tensor | None
    camera_volumes: torch.Tensor
    lidar_volume: torch.Tensor
    occ_features: torch.Tensor


class FusionOcc(nn.Module):
    """The full camera + lidar occupancy network (see the module docstring).

    Args:
        config: the model's hyper-parameters.
    """

    def __init__(self, config: FusionOccConfig) -> None:
        super().__init__()
        stride = config.volume_stride
        if stride < 1 or any(n % stride for n in occ3d.GRID_SHAPE):
            raise ValueError(f"volume_stride {stride} must be >= 1 and divide the Occ3D grid {occ3d.GRID_SHAPE}")
        grid = config.volume_grid_shape
        if tuple(config.camera.grid_shape) != grid:
            raise ValueError(
                f"camera grid_shape {config.camera.grid_shape} must be the volume grid {grid} (the Occ3D grid "
                f"{occ3d.GRID_SHAPE} / volume_stride {stride})"
            )
        coarse_voxel = occ3d.VOXEL_SIZE * stride
        if any(abs(v - coarse_voxel) > 1e-6 for v in config.camera.voxel_size):
            raise ValueError(
                f"camera voxel_size {config.camera.voxel_size} must be {coarse_voxel:g} m (Occ3D's "
                f"{occ3d.VOXEL_SIZE} m x volume_stride {stride})"
            )
        sparse_shape = grid_shape_zyx(occ3d.POINT_CLOUD_RANGE, config.lidar_voxel_size)
        if tuple(s // 8 for s in sparse_shape) != grid[::-1] or any(s % 8 for s in sparse_shape):
            raise ValueError(
                f"lidar_voxel_size {config.lidar_voxel_size} gives a sparse grid {sparse_shape}; it must "
                f"be 8x the volume grid {grid[::-1]} (Z, Y, X)"
            )
        self.config = config
        self.camera_enabled = config.camera_enabled
        self.lidar_enabled = config.lidar_enabled
        self.camera = CameraBranch(config.camera)
        self.lidar_encoder = LidarEncoder(
            config.lidar_in_channels, config.lidar_out_channels, sparse_shape, config.lidar_stage_channels
        )
        self.occ_encoder = OccEncoder3d(
            config.fused_channels, config.encoder_blocks, config.encoder_channels, config.encoder_strides
        )
        self.occ_fpn = OccFPN3d(sum(config.encoder_channels), config.fpn_channels)
        self.head = OccHead(config.fpn_channels, config.head_hidden_channels, config.num_classes, upsample=stride)

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        points: torch.Tensor,
        sparse_depth: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Occupancy logits.

        Args:
            images: (B, T, N, 3, H, W) normalised images, t = 0 the key frame, t = 1 the previous keyframe.
            intrinsics: (B, T, N, 3, 3) pinhole K of the original images.
            cam_to_key_ego: (B, T, N, 4, 4) camera of frame t -> ego frame of the key frame.
            post_rots: (B, T, N, 3, 3) image augmentation: pixel_in = post_rot @ (K @ X / z) + post_tran.
            post_trans: (B, T, N, 3).
            bda: (B, 3, 3) BEV augmentation (identity at test time).
            points: (P, 6) [batch_idx, x, y, z, intensity, time_lag], x, y, z [m] in the key ego frame
                (all sweeps merged); points outside the occupancy range are ignored.
            sparse_depth: (B, N, H, W) key-frame lidar depth per input pixel [m], 0 = no point.
            camera_mask: optional (B, T, N), 0 for an image that is missing (sensor dropout): that camera's
                features are zeroed before lift-splat, so it adds nothing to the camera volume.

        Returns:
            (B, 200, 200, 16, num_classes) logits indexed [b, x, y, z, class].
        """
        return self.forward_with_aux(
            images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points, sparse_depth, camera_mask
        ).logits

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        points: torch.Tensor,
        sparse_depth: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class labels (B, 200, 200, 16) uint8: argmax of the logits (same arguments as `forward`; call
        `.eval()` first, this does not change the mode). The head takes the argmax before it rearranges
        sub-voxels (`OccHead.labels`), so the full logits volume is never materialised."""
        volumes = self._volumes(
            images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points, sparse_depth, camera_mask
        )
        return self.head.labels(volumes.occ_features)

    def forward_with_aux(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        points: torch.Tensor,
        sparse_depth: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> FusionOccOutput:
        """`forward` plus the key frame's depth and segmentation (auxiliary losses) and the volumes."""
        volumes = self._volumes(
            images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points, sparse_depth, camera_mask
        )
        volumes.logits = self.head(volumes.occ_features)  # (B, 200, 200, 16, classes)
        return volumes

    def _volumes(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_key_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
        points: torch.Tensor,
        sparse_depth: torch.Tensor,
        camera_mask: torch.Tensor | None,
    ) -> FusionOccOutput:
        """Everything up to the head (`logits` left empty)."""
        batch_size = images.shape[0]
        if self.camera_enabled:
            camera = self.camera(images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, sparse_depth,
                                 camera_mask)
            camera_volumes, key_depth, key_seg = camera.volumes, camera.key_depth, camera.key_seg_logits
        else:
            camera_volumes = self._zeros(
                batch_size, self.config.num_frames * self.config.camera.feature_channels, images
            )
            key_depth = key_seg = None
        if self.lidar_enabled:
            lidar_volume = self.encode_lidar(points, batch_size).to(camera_volumes.dtype)
        else:
            lidar_volume = self._zeros(batch_size, self.config.lidar_out_channels, camera_volumes)
        fused = torch.cat([camera_volumes, lidar_volume], dim=1)  # (B, T*C + C_lidar, Z, Y, X), prev first
        occ_features = self.occ_fpn(self.occ_encoder(fused))  # (B, C_fpn, Z, Y, X) on the volume grid
        return FusionOccOutput(fused.new_empty(0), key_depth, key_seg, camera_volumes, lidar_volume, occ_features)

    def encode_lidar(self, points: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(P, 1 + lidar_in_channels) batched points -> (B, C_lidar, Z, Y, X) float32 lidar volume."""
        if points.dim() != 2 or points.shape[1] != 1 + self.config.lidar_in_channels:
            raise ValueError(
                f"points must be (P, {1 + self.config.lidar_in_channels}) [batch_idx, x, y, z, intensity, "
                f"time_lag], got {tuple(points.shape)}"
            )
        voxels = dynamic_voxelize(points, batch_size, occ3d.POINT_CLOUD_RANGE, self.config.lidar_voxel_size)
        if voxels.coords.shape[0] == 0:  # no point in range: spconv cannot run on zero sites
            return points.new_zeros(
                batch_size, self.config.lidar_out_channels, *self.lidar_encoder.output_shape
            )
        return self.lidar_encoder(voxels.features, voxels.coords, batch_size)

    def _zeros(self, batch_size: int, channels: int, like: torch.Tensor) -> torch.Tensor:
        x, y, z = self.config.volume_grid_shape
        return like.new_zeros(batch_size, channels, z, y, x)
