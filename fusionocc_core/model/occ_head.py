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
