"""Training checkpoints: atomic writes, keep-last-N, finding the newest valid one, RNG state capture.

A training checkpoint is one `torch.save`d dict of tensors and plain Python values only (format
"fusionocc-train"), so it loads with `torch.load(weights_only=True)`: no pickled code runs when resuming from
a file of unknown origin. Files are written to a temporary name in the same folder, fsynced and renamed with
`os.replace`, so a crash at any point leaves the old or the new file, never half a file under the real name.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionocc_core.errors import FusionOccError
from fusionocc_core.model.checkpoint import atomic_torch_save

CHECKPOINT_FORMAT = "fusionocc-train"
CHECKPOINT_FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8})\.pt$")


class TrainingCheckpointError(FusionOccError, RuntimeError):
    """A checkpoint cannot be used (missing, truncated, not a training checkpoint); the message says which."""


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint of `step`, sortable by name."""
    return f"step_{step:08d}.pt"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj, path)` atomically: `fusionocc_core.model.checkpoint.atomic_torch_save`.

    Raises:
        whatever writing raises; the temporary file is removed and an existing `path` is left untouched.
    """
    return atomic_torch_save(obj, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a training checkpoint on the CPU with `weights_only=True` and checks its format.

    Raises:
        TrainingCheckpointError: the file is missing, truncated/corrupt, holds pickled objects beyond tensors and
            plain types, or is not a fusionocc training checkpoint (e.g. a published model .pth).
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingCheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, pickle.UnpicklingError, EOFError, zipfile errors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingCheckpointError(f"checkpoint {path} ({path.stat().st_size} bytes) cannot be read, it is "
                              f"truncated, corrupt or holds more than tensors and plain types: "
                              f"{reason[:200]}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format", "no 'format' key") if isinstance(data, dict) else type(data).__name__
        raise TrainingCheckpointError(f"{path} is not a fusionocc training checkpoint (format: {found}); a published "
                              f"FusionOcc model goes to --init-from, a BEVDet-Occ one to --init-camera-from")
    if data.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise TrainingCheckpointError(f"{path} has training-checkpoint format version {data.get('format_version')}, "
                              f"this code reads version {CHECKPOINT_FORMAT_VERSION}")
    return data


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """`step_*.pt` files of a run folder, oldest step first (temporary files are ignored)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def find_latest_valid(out_dir: str | Path) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest checkpoint of `out_dir` that reads cleanly.

    Returns:
        (path, loaded checkpoint, one message per skipped file); (None, None, messages) when none is valid.
    """
    skipped: list[str] = []
    for path in reversed(list_checkpoints(out_dir)):
        try:
            return path, read_checkpoint(path), skipped
        except TrainingCheckpointError as error:
            skipped.append(f"skipping {error}")
    return None, None, skipped


def prune_checkpoints(out_dir: str | Path, keep: int) -> list[Path]:
    """Deletes all but the newest `keep` checkpoints and stale temporary files of crashed writes."""
    removed = []
    for path in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
        removed.append(path)
    for tmp in Path(out_dir).glob(".step_*.pt.tmp-*"):
        if tmp.name.rsplit("-", 1)[-1] != str(os.getpid()):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) RNG states as tensors and plain types (weights_only-loadable)."""
    version, mt, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=True)
    if isinstance(numpy_state, dict):  # only after np.random.set_bit_generator() with another generator
        raise TrainingCheckpointError("numpy's global RNG is not an MT19937: its state cannot be stored")
    kind, keys, pos, has_gauss, cached = numpy_state
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what `rng_state` captured (CUDA states only when CUDA is there)."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
