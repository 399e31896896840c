"""training.model_setup: camera dropout in the loss wrapper and its config checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.config import ConfigError, load_config
from training.model_setup import LossModel


class _Recorder(nn.Module):
    """Records the camera_mask each training forward gets; the loss path is not under test here."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[torch.Tensor | None] = []

    def forward_with_aux(self, *inputs: torch.Tensor, camera_mask: torch.Tensor | None = None) -> None:
        self.masks.append(camera_mask)
        raise StopIteration  # stop before the loss


def _masks(wrapper: LossModel, calls: int, batch_size: int = 3) -> list[torch.Tensor | None]:
    batch = {key: torch.zeros(1) for key in ("intrinsics", "cam_to_key_ego", "post_rots", "post_trans", "bda",
                                            "points", "sparse_depth")}
    batch["images"] = torch.zeros(batch_size, 2, 6, 3, 4, 4)
    for _ in range(calls):
        with pytest.raises(StopIteration):
            wrapper(batch)
    return wrapper.model.masks  # type: ignore[return-value]


def test_camera_dropout_drops_whole_rigs_at_the_set_rate() -> None:
    torch.manual_seed(0)
    wrapper = LossModel(_Recorder(), nn.Identity(), camera_dropout=0.3)  # type: ignore[arg-type]
    masks = _masks(wrapper, 400)
    assert all(m is not None and m.shape == (3, 2, 6) for m in masks)
    stacked = torch.stack([m for m in masks if m is not None])  # (400, 3, 2, 6)
    per_sample = stacked.flatten(2)
    assert ((per_sample == 0).all(-1) | (per_sample == 1).all(-1)).all()  # a rig is dropped whole, both frames
    assert 0.25 < (per_sample[..., 0] == 0).float().mean() < 0.35


def test_no_dropout_in_eval_mode_or_when_off() -> None:
    wrapper = LossModel(_Recorder(), nn.Identity(), camera_dropout=0.5).eval()  # type: ignore[arg-type]
    assert _masks(wrapper, 3) == [None] * 3
    assert _masks(LossModel(_Recorder(), nn.Identity()), 2) == [None] * 2  # type: ignore[arg-type]


def test_camera_dropout_config_is_checked() -> None:
    assert load_config(None, {"camera_dropout": 0.25}).camera_dropout == 0.25
    with pytest.raises(ConfigError, match=r"camera_dropout must be in \[0, 1\)"):
        load_config(None, {"camera_dropout": 1.0})
    for modality in ("camera", "lidar"):
        with pytest.raises(ConfigError, match=f"modality '{modality}'"):
            load_config(None, {"camera_dropout": 0.25, "modality": modality})
