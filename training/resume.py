"""Saving and resuming a training run exactly: the checkpoint's contents, which checkpoint to resume from, and
restoring the model, optimiser, EMA, scaler and every rank's RNG streams from it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.checkpointing import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    atomic_save,
    find_latest_valid,
    read_checkpoint,
    rng_state,
    set_rng_state,
)
from training.config import ConfigError, TrainConfig
from training.distributed import DistInfo
from training.ema import ModelEMA
from training.model_setup import Log

# Options that may differ between the sessions of one run without changing its numbers.
_FREE_ON_RESUME = {"out_dir", "num_workers", "log_interval", "eval_interval", "ckpt_interval", "keep_last",
                   "progress", "max_val_samples", "init_from", "init_camera_from", "dataroot", "info_path"}


def gather_rng_states(info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank order); a collective, so every rank must call it."""
    state = rng_state()
    if not info.distributed:
        return [state]
    states: list[dict[str, Any]] = [{} for _ in range(info.world_size)]  # filled by the collective
    dist.all_gather_object(states, state)
    return states


def save_training_checkpoint(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                             ema: ModelEMA | None, scaler: torch.amp.GradScaler | None, step: int,
                             total_steps: int, config: TrainConfig, rng: list[dict[str, Any]],
                             val: dict[str, float] | None) -> None:
    """Writes everything an exact resume needs to `path`, atomically (format "fusionocc-train")."""
    atomic_save({
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "step": step,
        "total_steps": total_steps,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng,  # one entry per rank
        "world_size": len(rng),
        "config": config.to_dict(),
        "val": val,
    }, path)


def resolve_resume(resume: str, out_dir: Path, log: Log) -> dict[str, Any] | None:
    """The checkpoint to resume from: none (""), the newest valid one of out_dir ("auto") or a path.

    Raises:
        TrainingCheckpointError: an explicit path that cannot be used.
    """
    if not resume:
        return None
    if resume == "auto":
        path, data, skipped = find_latest_valid(out_dir)
        for message in skipped:
            log(message)
        if path is None or data is None:
            log(f"resume auto: no valid checkpoint in {out_dir}, starting from scratch")
            return None
        log(f"resuming from {path} (step {data['step']})")
        return data
    data = read_checkpoint(resume)
    log(f"resuming from {resume} (step {data['step']})")
    return data


def report_changed_options(state: dict[str, Any], config: TrainConfig, log: Log) -> None:
    """Logs the options that differ from the resumed checkpoint's and change the run's numbers."""
    # An option the checkpoint predates ran at its default (the behaviour before the option existed).
    stored = {**{f.name: f.default for f in fields(TrainConfig)}, **state["config"]}
    changed = [f"{k} {stored[k]!r} -> {v!r}" for k, v in config.to_dict().items()
               if k in stored and stored[k] != v and k not in _FREE_ON_RESUME]
    if changed:
        log("resuming with changed options (the continuation is not bit-exact): " + "; ".join(changed))


def restore_training_state(state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
                           ema: ModelEMA | None, scaler: torch.amp.GradScaler | None, config: TrainConfig,
                           info: DistInfo, log: Log) -> tuple[int, dict[str, float] | None]:
    """Loads a resumed checkpoint into the run's objects and this rank's RNG streams.

    Returns:
        The checkpoint's step and its last validation scores.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    step = int(state["step"])
    if state["world_size"] == info.world_size:
        set_rng_state(state["rng"][info.rank])
    else:
        log(f"checkpoint was written by {state['world_size']} ranks, now {info.world_size}: RNG streams "
            f"are reseeded (the run continues, not bit-exactly)")
        torch.manual_seed(config.seed + info.rank + 1_000_003 * step)
    return step, state["val"]


def resume_base_config(resume: str, config_file: Path | None, out_dir: str | None) -> Path | None:
    """The YAML a command-line resume starts from.

    That is --config when given, else the run folder's config.yaml (written when the run started), so
    `--resume auto --out RUN` needs nothing else. The run folder is --out, or the folder of `--resume PATH`.

    Raises:
        ConfigError: `--resume auto` with neither --config nor --out (nowhere to look).
    """
    if not resume or config_file is not None:
        return config_file
    if out_dir is None and resume == "auto":
        raise ConfigError("--resume auto needs --out RUN (or --config) to know which run folder to "
                          "continue")
    run_dir = Path(out_dir) if out_dir is not None else Path(resume).parent
    return run_dir / "config.yaml" if (run_dir / "config.yaml").is_file() else None
