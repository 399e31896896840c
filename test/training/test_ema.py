"""EMA math: the ramped decay, the update formula on parameters and buffers, and state round-trip."""
import math

import pytest
import torch
from torch import nn

from training.ema import ModelEMA


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_decay_ramp():
    ema = ModelEMA(_model(), decay=0.999, ramp=2000)
    assert ema.current_decay() == pytest.approx(0.999 * (1 - math.exp(-1 / 2000)))
    ema.updates = 9999
    assert ema.current_decay() == pytest.approx(0.999 * (1 - math.exp(-10000 / 2000)))
    assert ModelEMA(_model(), decay=0.9, ramp=0).current_decay() == 0.9


def test_update_formula_params_and_buffers():
    model = _model()
    ema = ModelEMA(model, decay=0.9, ramp=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(5)
    ema.update(model)
    state = ema.module.state_dict()
    live = model.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean"):
        torch.testing.assert_close(state[key], 0.9 * start[key] + 0.1 * live[key], rtol=0, atol=1e-7)
    assert int(state["1.num_batches_tracked"]) == 5  # integer buffers are copied
    assert ema.updates == 1
    assert not any(p.requires_grad for p in ema.module.parameters())
    # Two updates with the same weights: ema -> w + 0.81 * (start - w).
    ema.update(model)
    want = live["0.bias"] + 0.81 * (start["0.bias"] - live["0.bias"])
    torch.testing.assert_close(ema.module.state_dict()["0.bias"], want)


def test_state_round_trip():
    model = _model()
    ema = ModelEMA(model, decay=0.99, ramp=10)
    with torch.no_grad():
        model[0].weight.mul_(3)
    ema.update(model)
    other = ModelEMA(_model(), decay=0.99, ramp=10)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    torch.testing.assert_close(other.module.state_dict()["0.weight"], ema.module.state_dict()["0.weight"])
