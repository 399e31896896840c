"""A deterministic stand-in for FusionOcc, fast enough for many frames on a CPU (the tiny preset takes seconds
per frame there)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE

STUB_INPUT_SIZE = (32, 88)  # (H, W) network input of `StubModel`


class StubModel(torch.nn.Module):
    """The labels of each azimuth sector depend on the pixels of the camera looking there (current and previous
    frame), and every label on the lidar points; `delay_s` emulates inference time."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.config = SimpleNamespace(camera=SimpleNamespace(input_size=STUB_INPUT_SIZE))
        self.delay_s = delay_s
        self.weight = torch.nn.Parameter(torch.tensor([0.37, -0.21, 0.11]))
        x = torch.arange(GRID_SHAPE[0], dtype=torch.float32) - GRID_SHAPE[0] / 2 + 0.5
        azimuth = torch.atan2(x[None, :], x[:, None])  # (200, 200) angle of the column from +x
        self.sector: torch.Tensor
        self.height: torch.Tensor
        self.register_buffer("sector", ((azimuth + torch.pi) / (2 * torch.pi) * 6).long().clamp(0, 5))
        self.register_buffer("height", torch.arange(GRID_SHAPE[2], dtype=torch.float32))

    def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
        if self.delay_s:
            time.sleep(self.delay_s)
        images = inputs["images"][0]  # (2, N, 3, H, W) normalised, 0 current, 1 previous
        per_camera = images.mean(dim=(2, 3, 4))  # (2, N)
        per_camera = torch.nn.functional.pad(per_camera, (0, max(0, 6 - per_camera.shape[1])))[:, :6]
        points = inputs["points"]  # (P, 6) [batch, x, y, z, intensity, lag]
        lidar = points[:, 1:5].mean(dim=0) if points.shape[0] else torch.zeros(4)
        value = (
            per_camera[0][self.sector] * 5.0
            + per_camera[1][self.sector]
            + (lidar * torch.tensor([1.0, 1.0, 1.0, 0.01])).sum() * self.weight[0]
        )  # (200, 200)
        field = value[:, :, None] + self.height * self.weight[1]
        labels = (torch.floor(field.abs() * 3) % (GRID_SHAPE[2] + 2)).to(torch.uint8)
        # Occupied only in the two lowest layers (80k voxels), free above: Occ3D scenes have ~5-10 %
        # occupied voxels, and output building costs scale with them (a fully occupied grid is 600k).
        labels[:, :, 2:] = FREE_LABEL
        return labels[None]


def stub_model(*, delay_s: float = 0.0) -> StubModel:
    """A `StubModel` in eval mode."""
    return StubModel(delay_s).eval()
