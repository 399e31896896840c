"""Occupancy head: final 3x3x3 conv (bias) + ReLU, channels-last, Linear-Softplus-Linear to class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core.model.conv3d import Conv3d
from fusionocc_core.occ3d import NUM_CLASSES


class OccHead(nn.Module):
    """(B, C, Z, Y, X) volume -> (B, X, Y, Z, num_classes) logits.

    Args:
        in_channels: width of the 3D FPN output (64 in the published model).
        hidden_channels: width of the predicter's hidden layer (2 x in_channels in the original).
        num_classes: classes incl. free (18).
    """

    def __init__(
        self, in_channels: int = 64, hidden_channels: int = 128, num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__()
        self.final_conv = Conv3d(in_channels, in_channels, 3, padding=1, bias=True)
        self.predicter = nn.Sequential(
            nn.Linear(in_channels, hidden_channels),
            nn.Softplus(),
            nn.Linear(hidden_channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(
            self.final_conv(x), inplace=True
        )  # (B, C, Z, Y, X); the original's ReLU (reference fact 5)
        x = x.permute(0, 4, 3, 2, 1)  # (B, X, Y, Z, C)
        return self.predicter(x)  # (B, X, Y, Z, num_classes)

    @torch.no_grad()
    def add_class_offsets(self, offsets: torch.Tensor) -> None:
        """Adds a constant per class to every logit by folding it into the last layer's bias: the model then
        outputs exactly `logits + offsets`, in the same file format and at no runtime cost (post-hoc logit
        adjustment, e.g. undoing the prior a class-weighted loss taught; `fusionocc calibrate`).

        Raises:
            ValueError: `offsets` is not a finite (num_classes,) vector.
        """
        last = self.predicter[-1]
        assert isinstance(last, nn.Linear)
        offsets = torch.as_tensor(offsets, dtype=last.bias.dtype, device=last.bias.device)
        if offsets.shape != last.bias.shape or not bool(torch.isfinite(offsets).all()):
            raise ValueError(f"class offsets must be {tuple(last.bias.shape)} finite values, got shape "
                             f"{tuple(offsets.shape)}")
        last.bias.add_(offsets)
