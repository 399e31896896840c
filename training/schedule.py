"""Learning rate of the original FusionOcc schedule: linear warm-up, then cosine annealing to a floor.

mmcv's `CosineAnnealing` + linear warm-up, evaluated per optimizer step (the original anneals per epoch; per
step is smoother and does not depend on the epoch length). The rate is a pure function of the step, so a
resume needs only the step count, and the test can check values by hand.
"""
from __future__ import annotations

import math

import torch


def cosine_lr(step: int, *, base_lr: float, total_steps: int, min_lr_ratio: float) -> float:
    """Cosine from base_lr at step 0 to min_lr_ratio * base_lr at total_steps (held there afterwards)."""
    target = base_lr * min_lr_ratio
    progress = min(step, total_steps) / max(total_steps, 1)
    return target + 0.5 * (base_lr - target) * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, warmup_ratio: float,
          min_lr_ratio: float) -> float:
    """Learning rate of optimizer step `step` (0-based).

    During warm-up the cosine rate is scaled by k = 1 - (1 - step / warmup_steps) * (1 - warmup_ratio), which
    grows linearly from warmup_ratio at step 0 to 1 at warmup_steps (mmcv's linear warm-up).
    """
    lr = cosine_lr(step, base_lr=base_lr, total_steps=total_steps, min_lr_ratio=min_lr_ratio)
    if step < warmup_steps:
        lr *= 1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
    return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets `lr` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
