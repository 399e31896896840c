"""The warm-up + cosine schedule at its key steps, against values computed by hand."""
import itertools
import math

import pytest
import torch

from training.schedule import lr_at, set_lr

KW = dict(base_lr=5e-5, total_steps=10_000, warmup_steps=500, warmup_ratio=1 / 3, min_lr_ratio=1e-3)


def test_warmup_starts_at_ratio_and_is_linear():
    cos0 = 5e-5  # cosine at step 0 is the base rate
    assert lr_at(0, **KW) == pytest.approx(cos0 / 3, rel=1e-12)
    # Half-way: k = 1 - 0.5 * (2/3) = 2/3, on top of the (slightly decayed) cosine value.
    cos250 = 5e-8 + 0.5 * (5e-5 - 5e-8) * (1 + math.cos(math.pi * 250 / 10_000))
    assert lr_at(250, **KW) == pytest.approx(cos250 * 2 / 3, rel=1e-12)


def test_cosine_after_warmup_midpoint_and_floor():
    cos500 = 5e-8 + 0.5 * (5e-5 - 5e-8) * (1 + math.cos(math.pi * 0.05))
    assert lr_at(500, **KW) == pytest.approx(cos500, rel=1e-12)  # no warm-up factor any more
    assert lr_at(5000, **KW) == pytest.approx((5e-5 + 5e-8) / 2, rel=1e-12)
    assert lr_at(10_000, **KW) == pytest.approx(5e-8, rel=1e-12)
    assert lr_at(20_000, **KW) == pytest.approx(5e-8, rel=1e-12)  # held at the floor


def test_monotone_after_warmup():
    values = [lr_at(s, **KW) for s in range(500, 10_001, 100)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert lr_at(499, **KW) < lr_at(500, **KW) * 1.001


def test_set_lr_changes_every_group():
    opt = torch.optim.AdamW([{"params": [torch.zeros(1, requires_grad=True)]},
                             {"params": [torch.zeros(1, requires_grad=True)]}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]

