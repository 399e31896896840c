"""Atomic checkpoint writes, truncated/foreign files reported and skipped, keep-last-N, RNG round trip."""
import argparse
import random

import numpy as np
import pytest
import torch

from training import checkpointing as ck


def _ckpt(step: int) -> dict:
    return {"format": ck.CHECKPOINT_FORMAT, "format_version": ck.CHECKPOINT_FORMAT_VERSION, "step": step,
            "model": {"w": torch.full((4,), float(step))}, "rng": ck.rng_state()}


def test_atomic_save_and_read(tmp_path):
    path = ck.atomic_save(_ckpt(3), tmp_path / ck.checkpoint_name(3))
    assert path.name == "step_00000003.pt"
    assert ck.read_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000003.pt"]  # no temporary file left


def test_crash_between_write_and_rename_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.atomic_save(_ckpt(1), path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.atomic_save(_ckpt(2), path)
    monkeypatch.undo()
    assert ck.read_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_crash_during_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.atomic_save(_ckpt(1), path)
    real_save = torch.save

    def half_write(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        ck.atomic_save(_ckpt(2), path)
    monkeypatch.undo()
    assert ck.read_checkpoint(path)["step"] == 1


def test_truncated_and_foreign_files_are_reported_and_skipped(tmp_path):
    for step in (10, 20, 30):
        ck.atomic_save(_ckpt(step), tmp_path / ck.checkpoint_name(step))
    newest = tmp_path / ck.checkpoint_name(30)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.TrainingCheckpointError, match="truncated"):
        ck.read_checkpoint(newest)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / ck.checkpoint_name(25))
    with pytest.raises(ck.TrainingCheckpointError, match="not a fusionocc training checkpoint"):
        ck.read_checkpoint(tmp_path / ck.checkpoint_name(25))
    (tmp_path / ".step_00000040.pt.tmp-1").write_bytes(b"junk")  # a crashed write: ignored
    path, data, skipped = ck.find_latest_valid(tmp_path)
    assert path.name == ck.checkpoint_name(20) and data["step"] == 20
    assert len(skipped) == 2 and "step_00000030.pt" in skipped[0] and "step_00000025.pt" in skipped[1]


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / ck.checkpoint_name(1)
    torch.save({**_ckpt(1), "evil": argparse.Namespace(a=1)}, path)  # an arbitrary object needs full pickle
    with pytest.raises(ck.TrainingCheckpointError, match="cannot be read"):
        ck.read_checkpoint(path)


def test_keep_last_n(tmp_path):
    for step in range(1, 6):
        ck.atomic_save(_ckpt(step), tmp_path / ck.checkpoint_name(step))
    (tmp_path / ".step_00000009.pt.tmp-999999999").write_bytes(b"stale")
    ck.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.checkpoint_name(4), ck.checkpoint_name(5)]


def test_rng_round_trip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ck.atomic_save(_ckpt(1), tmp_path / "a.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(ck.read_checkpoint(tmp_path / "a.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
