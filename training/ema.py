"""Exponential moving average of a model's weights (BEVDet's MEGVII EMA hook, without the hook machinery).

ema = d * ema + (1 - d) * weights after every optimizer step, for every floating-point entry of the state
dict (parameters and BatchNorm running statistics); integer buffers (num_batches_tracked) are copied. The
decay ramps up as d = decay * (1 - exp(-updates / ramp)), so early averages are not dominated by the random
init.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A detached copy of a model whose weights track the live model's as an exponential moving average.

    Args:
        model: the live model (unwrapped from DDP); copied at construction.
        decay: the decay reached after the ramp.
        ramp: updates over which the decay rises (0 = constant decay).
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999, ramp: int = 2000) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.ramp = ramp
        self.updates = 0

    def current_decay(self) -> float:
        """Decay used by the next update."""
        if self.ramp <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Moves the average towards `model`'s current weights (call after every optimizer step)."""
        d = self.current_decay()
        live = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = live[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(value.to(avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count (for a resume)."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay,
                "ramp": self.ramp}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned; decay and ramp stay as constructed."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
