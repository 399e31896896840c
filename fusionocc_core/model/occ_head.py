"""Occupancy head: final 3x3x3 conv (bias) + ReLU, channels-last, Linear-Softplus-Linear to class logits.

With `upsample` s > 1 (the tiny preset's coarse 3D stages) the last Linear predicts the logits of the s x s x s
fine voxels inside each coarse one (s^3 x classes outputs, sub-voxel order (dx, dy, dz)), which are then
rearranged onto the fine grid: a 3D pixel shuffle, FlashOcc's channel-to-height idea along all three axes. The
per-voxel MLP thus runs on 1/s^3 of the voxels, and the fine detail has to come through the coarse voxel's
features (the lidar branch still sees 0.1 m voxels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core.model.conv3d import Conv3d
from fusionocc_core.occ3d import NUM_CLASSES


class OccHead(nn.Module):
    """(B, C, Z, Y, X) volume -> (B, s*X, s*Y, s*Z, num_classes) logits.

    Args:
        in_channels: width of the 3D FPN output (64 in the published model).
        hidden_channels: width of the predicter's hidden layer (2 x in_channels in the original).
        num_classes: classes incl. free (18).
        upsample: s, fine voxels per coarse voxel along each axis (1 in the published model).
    """

    def __init__(
        self, in_channels: int = 64, hidden_channels: int = 128, num_classes: int = NUM_CLASSES, upsample: int = 1
    ) -> None:
        super().__init__()
        if upsample < 1:
            raise ValueError(f"OccHead upsample must be >= 1, got {upsample}")
        self.num_classes = num_classes
        self.upsample = upsample
        self.final_conv = Conv3d(in_channels, in_channels, 3, padding=1, bias=True)
        self.predicter = nn.Sequential(
            nn.Linear(in_channels, hidden_channels),
            nn.Softplus(),
            nn.Linear(hidden_channels, num_classes * upsample**3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._coarse_logits(x)
        s = self.upsample
        if s == 1:
            return logits
        b, nx, ny, nz = logits.shape[:4]
        logits = logits.view(b, nx, ny, nz, s, s, s, self.num_classes)  # sub-voxel (dx, dy, dz)
        return logits.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, nx * s, ny * s, nz * s, self.num_classes)

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """argmax of `forward(x)` as uint8 (B, s*X, s*Y, s*Z), taken before the sub-voxels are rearranged:
        the same labels while moving 1 byte instead of num_classes floats per fine voxel."""
        logits = self._coarse_logits(x)
        s = self.upsample
        b, nx, ny, nz = logits.shape[:4]
        labels = logits.view(b, nx, ny, nz, s**3, self.num_classes).argmax(dim=-1).to(torch.uint8)
        if s == 1:
            return labels.view(b, nx, ny, nz)
        labels = labels.view(b, nx, ny, nz, s, s, s).permute(0, 1, 4, 2, 5, 3, 6)
        return labels.reshape(b, nx * s, ny * s, nz * s)

    def _coarse_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, Z, Y, X) -> (B, X, Y, Z, s^3 * num_classes), sub-voxels (dx, dy, dz) major to minor."""
        x = F.relu(
            self.final_conv(x), inplace=True
        )  # (B, C, Z, Y, X); the original's ReLU (reference fact 5)
        x = x.permute(0, 4, 3, 2, 1)  # (B, X, Y, Z, C)
        return self.predicter(x)

    @torch.no_grad()
    def add_class_offsets(self, offsets: torch.Tensor) -> None:
        """Adds a constant per class to every logit by folding it into the last layer's bias: the model then
        outputs exactly `logits + offsets`, in the same file format and at no runtime cost (post-hoc logit
        adjustment, e.g. undoing the prior a class-weighted loss taught; `fusionocc adjust-logits`).

        Raises:
            ValueError: `offsets` is not a finite (num_classes,) vector.
        """
        last = self.predicter[-1]
        assert isinstance(last, nn.Linear)
        offsets = torch.as_tensor(offsets, dtype=last.bias.dtype, device=last.bias.device)
        if offsets.shape != (self.num_classes,) or not bool(torch.isfinite(offsets).all()):
            raise ValueError(f"class offsets must be ({self.num_classes},) finite values, got shape "
                             f"{tuple(offsets.shape)}")
        last.bias.view(-1, self.num_classes).add_(offsets)  # every sub-voxel's logits alike
