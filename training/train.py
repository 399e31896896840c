"""Train FusionOcc on an info index (nuScenes + Occ3D or the synthetic world), one process or torchrun.

    fusionocc train --config training/configs/tiny_synth.yaml --set info_path=DATA/fusionocc_infos.pkl
    torchrun --nproc-per-node 2 -m training.train --config training/configs/official.yaml --infos ...

AdamW with linear warm-up + cosine decay, grad-norm clipping, EMA of the weights, optional AMP on CUDA,
TensorBoard scalars and a metrics.jsonl in the run folder, periodic validation mIoU (camera-mask and no-mask
protocols) and atomic checkpoints for an exact resume (`--resume auto` picks the newest valid one).
Only rank 0 writes files; the validation confusion matrices are summed over ranks. What is trained (model,
loss, starting weights) is set up in `training/model_setup.py`, saving and resuming in `training/resume.py`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from fusionocc_core.cli_options import (
    add_device,
    add_infos,
    add_preset,
    deprecated_alias,
)
from training.checkpointing import (
    TrainingCheckpointError,
    checkpoint_name,
    prune_checkpoints,
)
from training.config import (
    MODALITIES,
    ConfigError,
    TrainConfig,
    load_config,
    parse_set_options,
    save_config,
)
from training.distributed import (
    DistInfo,
    ResumableSampler,
    SeededDataset,
    all_reduce_mean,
    cleanup_distributed,
    setup_distributed,
)
from training.ema import ModelEMA
from training.errors import TrainError
from training.model_setup import (
    MODEL_INPUTS,
    Log,
    LossModel,
    build_loss,
    build_model,
    export_model,
    initialise_weights,
    input_size,
    occupancy_class_weights,
)
from training.resume import (
    gather_rng_states,
    report_changed_options,
    resolve_resume,
    restore_training_state,
    resume_base_config,
    save_training_checkpoint,
)
from training.schedule import lr_at, set_lr

if TYPE_CHECKING:  # annotations only; the functions import these where they use them
    from torch.utils.tensorboard import SummaryWriter

    from fusionocc_core.data.dataset import OccupancyDataset
    from fusionocc_core.model.fusionocc import FusionOcc


# Steps whose losses `train` returns: the tail of the loss curve, bounded for runs of many epochs.
HISTORY_STEPS = 1000


# -- data ----------------------------------------------------------------------------------------------------


def check_info_path(config: TrainConfig) -> None:
    """Raises TrainError unless `config.info_path` names an existing info index."""
    if not config.info_path:
        raise TrainError("no info index given: pass --infos PATH (written by `fusionocc prepare DATAROOT`)")
    if not Path(config.info_path).is_file():
        raise TrainError(f"info index {config.info_path} does not exist; run `fusionocc prepare DATAROOT` "
                         f"first")


def build_datasets(config: TrainConfig, size: tuple[int, int]) -> tuple[OccupancyDataset, OccupancyDataset]:
    """The training and validation splits of the info index at the network input size.

    Raises:
        TrainError: the index is missing, or the validation split is empty.
    """
    from fusionocc_core.data.dataset import (
        DatasetConfig,
        DatasetError,
        OccupancyDataset,
    )

    check_info_path(config)
    data_config = DatasetConfig(with_imgseg=config.with_imgseg)
    dataroot = config.dataroot or None
    train = OccupancyDataset(config.info_path, input_size=size, train=True, split=config.train_split,
                             config=data_config, dataroot=dataroot)
    try:
        val = OccupancyDataset(config.info_path, input_size=size, train=False, split=config.val_split,
                               config=data_config, dataroot=dataroot)
    except DatasetError as error:
        if "is empty" not in str(error):
            raise
        # A one-scene world gets no val scene from the hash split: say how to get one (or validate elsewhere).
        raise TrainError(f"{error}; training validates on it: prepare with `--val-scenes NAME` (needs two or "
                         f"more scenes) or choose another split with `--set val_split=...`") from None
    return train, val


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on `device` (lists such as the sample tokens stay as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


# -- one optimisation step -----------------------------------------------------------------------------------


def autocast_context(config: TrainConfig, device: torch.device) -> AbstractContextManager[object]:
    """Autocast to the config's AMP dtype on CUDA; nothing on the CPU or with `amp: none`."""
    if device.type != "cuda" or config.amp == "none":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if config.amp == "bf16" else torch.float16)


def train_step(loss_model: nn.Module, batch: dict[str, Any], optimizer: torch.optim.Optimizer, *,
               config: TrainConfig, device: torch.device, scaler: torch.amp.GradScaler | None = None
               ) -> dict[str, float]:
    """Forward, backward, clip, optimizer step on one batch; returns the losses and the grad norm as floats.

    Raises:
        TrainError: the loss is not finite (names the step's losses; the weights are not updated).
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(config, device):
        losses = loss_model(batch)
    total = sum(losses.values())
    if not torch.isfinite(total):
        raise TrainError("non-finite loss: " + ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items()))
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
    else:
        total.backward()
    params = [p for p in loss_model.parameters() if p.grad is not None]
    if config.grad_clip > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params
                                                                if p.grad is not None])))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    out = {f"loss/{k}": float(v.detach()) for k, v in losses.items()}
    out["loss/total"] = float(total.detach())
    out["grad_norm"] = grad_norm
    return out


# -- validation ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, *, config: TrainConfig, info: DistInfo
             ) -> dict[str, float]:
    """mIoU of `model` over this rank's share of the val loader, confusion matrices summed over ranks.

    Returns:
        {"miou_mask", "miou_nomask", "geo_iou_mask", "geo_iou_nomask"} in percent (NaN when nothing scored).
    """
    from fusionocc_core.metrics import OccupancyMetric

    was_training = model.training
    model.eval()
    metrics = {"mask": OccupancyMetric(use_camera_mask=True),
               "nomask": OccupancyMetric(use_camera_mask=False)}
    for batch in loader:
        batch = move_batch(batch, info.device)
        with autocast_context(config, info.device):
            logits = model(*(batch[k] for k in MODEL_INPUTS))
        pred = logits.argmax(-1)  # (B, X, Y, Z)
        for metric in metrics.values():
            metric.update(pred, batch["voxel_semantics"], mask=batch["mask_camera"])
    model.train(was_training)
    out = {}
    for name, metric in metrics.items():
        metric.all_reduce(info.device)
        scores = metric.compute()
        out[f"miou_{name}"] = 100.0 * scores.miou
        out[f"geo_iou_{name}"] = 100.0 * scores.geometry_iou
    return out


# -- the loop ------------------------------------------------------------------------------------------------


class TrainSummary(TypedDict):
    """What `train` returns."""

    step: int  # the last optimizer step of the run
    history: list[dict[str, float]]  # losses and grad norm of the last `history_steps` steps, oldest first
    val: dict[str, float] | None  # the last validation scores (`evaluate`)
    config: TrainConfig


class MetricsLog:
    """TensorBoard scalars and `metrics.jsonl` lines of a run folder.

    Without a folder (the ranks other than 0) it records nothing.
    """

    def __init__(self, out_dir: Path | None, *, purge_step: int | None) -> None:
        self._writer: SummaryWriter | None = None
        self._file: Path | None = None
        if out_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(out_dir / "tb"), purge_step=purge_step)
            self._file = out_dir / "metrics.jsonl"

    def record(self, kind: str, values: dict[str, float], step: int) -> None:
        """Adds `values` as scalars `kind/key` at `step` and as one metrics.jsonl line."""
        if self._writer is None or self._file is None:
            return
        for key, value in values.items():
            self._writer.add_scalar(f"{kind}/{key}", value, step)
        with open(self._file, "a") as f:
            f.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")

    def close(self) -> None:
        """Flushes and closes the TensorBoard file."""
        if self._writer is not None:
            self._writer.close()


def build_loaders(config: TrainConfig, train_set: OccupancyDataset, val_set: OccupancyDataset, info: DistInfo
                  ) -> tuple[ResumableSampler, DataLoader, DataLoader]:
    """The data loaders of this rank.

    Returns:
        The sampler (it positions the training loader on an epoch and step), the training loader over this
        rank's share of each epoch, and the loader of this rank's share of the first `max_val_samples`
        validation samples.
    """
    from fusionocc_core.data.collate import collate

    pin_memory = info.device.type == "cuda"
    sampler = ResumableSampler(len(train_set), num_replicas=info.world_size, rank=info.rank, shuffle=True,
                               seed=config.seed)
    # Private generators: creating a loader iterator must not consume the global RNG (exact resume).
    train_loader = DataLoader(SeededDataset(train_set), batch_size=config.batch_size, sampler=sampler,
                              collate_fn=collate, num_workers=config.num_workers, pin_memory=pin_memory,
                              persistent_workers=False, generator=torch.Generator())
    val_count = min(len(val_set), config.max_val_samples or len(val_set))
    val_loader = DataLoader(Subset(val_set, range(info.rank, val_count, info.world_size)), batch_size=1,
                            shuffle=False, collate_fn=collate, num_workers=config.num_workers,
                            pin_memory=pin_memory, persistent_workers=False, generator=torch.Generator())
    return sampler, train_loader, val_loader


def _discard(message: str) -> None:
    """The log of the ranks other than 0."""


def train(config: TrainConfig, info: DistInfo, *, resume: str = "", log: Log = print,
          model_factory: Callable[[TrainConfig], FusionOcc] = build_model,
          history_steps: int = HISTORY_STEPS) -> TrainSummary:
    """Runs (or continues) a training run.

    Args:
        config: the run's options; a resume uses them as given and logs those that differ from the
            checkpoint's (see `resume_base_config` for the command line's rule).
        info: this process's rank, world size and device (`setup_distributed`).
        resume: "" (fresh), "auto" (newest valid checkpoint of out_dir, fresh if none) or a checkpoint path.
        log: where rank 0 prints its messages.
        model_factory: builds the network from the config (tests pass a cheaper stand-in with the same forward
            contract).
        history_steps: how many of the last steps' losses the summary returns (metrics.jsonl has the means of
            every log interval).

    Returns:
        The final step, the recent per-step losses, the last validation scores and the config.
    """
    log = log if info.is_main else _discard
    out_dir = Path(config.out_dir)
    state = resolve_resume(resume, out_dir, log)
    if state is not None:
        report_changed_options(state, config, log)
    check_info_path(config)  # before the (slow) model build
    torch.manual_seed(config.seed + info.rank)
    device = info.device

    model = model_factory(config).to(device)
    if state is None:
        initialise_weights(model, config, log)
    size = input_size(config, model)
    train_set, val_set = build_datasets(config, size)
    class_weights = occupancy_class_weights(config, train_set, info, progress=config.progress and info.is_main)
    if class_weights is not None:
        log("occupancy class weights (" + config.class_weights + "): "
            + " ".join(f"{w:.2f}" for w in class_weights.tolist()))
    loss_model: nn.Module = LossModel(model, build_loss(config, model, class_weights),
                                      camera_dropout=config.camera_dropout).to(device)
    ema = ModelEMA(model, decay=config.ema_decay, ramp=config.ema_ramp) if config.ema else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                                  weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and config.amp == "fp16" else None
    sampler, train_loader, val_loader = build_loaders(config, train_set, val_set, info)
    steps_per_epoch = math.ceil(sampler.per_rank() / config.batch_size)
    total_steps = config.max_iters or config.epochs * steps_per_epoch

    step, val = 0, None
    if state is not None:
        step, val = restore_training_state(state, model=model, optimizer=optimizer, ema=ema, scaler=scaler,
                                           config=config, info=info, log=log)
        state = None  # the checkpoint's tensors are copied: free them
    if info.distributed:
        # Unused parameters exist when a branch is switched off (ablations) or the seg head has no targets.
        device_ids = [device.index] if device.type == "cuda" else None
        unused = config.modality != "fusion" or not config.with_imgseg
        loss_model = DistributedDataParallel(loss_model, device_ids=device_ids, find_unused_parameters=unused)

    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
        log(f"training {config.model} ({config.modality}) on {len(train_set)} samples x {info.world_size} "
            f"rank(s) on {device}: {total_steps} steps, {steps_per_epoch} per epoch, "
            f"input {size[0]}x{size[1]}")
    metrics = MetricsLog(out_dir if info.is_main else None, purge_step=step if step else None)
    evaluated = ema.module if ema is not None else model

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not (info.is_main and config.progress),
               dynamic_ncols=True)
    history: deque[dict[str, float]] = deque(maxlen=history_steps)
    loss_model.train()
    t_last, last_logged = time.perf_counter(), step
    interval: dict[str, list[float]] = {}  # each value of the steps since the last log line
    while step < total_steps:
        epoch, start = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch, start * config.batch_size)
        for batch in train_loader:
            # determine and set the learning rate
            lr = lr_at(step, base_lr=config.lr, total_steps=total_steps, warmup_steps=config.warmup_iters,
                       warmup_ratio=config.warmup_ratio, min_lr_ratio=config.min_lr_ratio)
            set_lr(optimizer, lr)

            # forward backward update
            values = train_step(loss_model, move_batch(batch, device), optimizer, config=config,
                                device=device, scaler=scaler)
            if ema is not None:
                ema.update(model)
            step += 1
            history.append(values)
            for key, value in values.items():
                interval.setdefault(key, []).append(value)

            # timing and logging
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss/total']:.4f}", lr=f"{lr:.2e}")
            if step % config.log_interval == 0 or step == total_steps:
                # the log line and scalars are the interval's mean, not its last (noisy, batch-1) step
                mean = all_reduce_mean({key: sum(v) / len(v) for key, v in interval.items()}, info)
                interval = {}
                now = time.perf_counter()
                seconds = (now - t_last) / (step - last_logged)  # includes validation/checkpoint time
                metrics.record("train", {**mean, "lr": lr, "epoch": epoch, "sec_per_step": seconds}, step)
                if not config.progress:  # batch jobs: one line per log interval instead of the bar
                    log(f"step {step}/{total_steps}: loss {mean['loss/total']:.4f} lr {lr:.3g} "
                        f"{seconds:.2f} s/step")
                t_last, last_logged = now, step

            # evaluate and checkpoint
            if (config.eval_interval and step % config.eval_interval == 0) or step == total_steps:
                val = evaluate(evaluated, val_loader, config=config, info=info)
                metrics.record("val", val, step)
                log(f"step {step}: val mIoU {val['miou_mask']:.2f} (camera mask) / {val['miou_nomask']:.2f} "
                    f"(no mask), geometry IoU {val['geo_iou_mask']:.2f} / {val['geo_iou_nomask']:.2f}")
            if (config.ckpt_interval and step % config.ckpt_interval == 0) or step == total_steps:
                rng = gather_rng_states(info)  # collective: every rank
                if info.is_main:
                    save_training_checkpoint(out_dir / checkpoint_name(step), model=model, optimizer=optimizer,
                                             ema=ema, scaler=scaler, step=step, total_steps=total_steps,
                                             config=config, rng=rng, val=val)
                    prune_checkpoints(out_dir, config.keep_last)

            # termination conditions
            if step >= total_steps:
                break
    bar.close()
    metrics.close()
    if info.is_main:
        final = out_dir / "model_final.pth"
        export_model(final, evaluated, step=step, val=val, class_weights=class_weights)
        log(f"{'EMA ' if ema is not None else ''}weights of step {step} exported to {final}")
    return {"step": step, "history": list(history), "val": val, "config": config}


# -- command line --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fusionocc train`; most set the TrainConfig field their help names."""
    parser.add_argument("--config", type=Path, default=None, help="YAML file of TrainConfig options "
                        "(training/configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any TrainConfig option, e.g. --set lr=1e-4 (repeatable)")
    add_infos(parser, dest="info_path", deprecated=("--info",),
              help="info index written by `fusionocc prepare DATAROOT` (TrainConfig info_path)")
    parser.add_argument("--out", dest="out_dir", type=Path, default=None, metavar="RUN",
                        help="run folder: checkpoints, TensorBoard, metrics.jsonl (TrainConfig out_dir)")
    deprecated_alias(parser, "--out-dir", "--out")
    add_preset(parser, dest="model", deprecated=("--model",),
               help="model preset (TrainConfig model; default: the config's, else official)")
    parser.add_argument("--modality", default=None, choices=MODALITIES,
                        help="sensor branches to train: fusion (both), camera or lidar only, the other "
                             "switched off (TrainConfig modality; default: the config's, else fusion)")
    parser.add_argument("--max-iters", type=int, default=None, help="total optimizer steps (default: epochs)")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per rank and step")
    parser.add_argument("--amp", default=None, choices=("none", "bf16", "fp16"), help="autocast on CUDA")
    parser.add_argument("--init-from", default=None,
                        help="published FusionOcc .pth or a fusionocc checkpoint (all weights)")
    parser.add_argument("--init-camera-from", default=None,
                        help="BEVDet-Occ .pth (camera branch, non-strict)")
    parser.add_argument("--resume", default="", metavar="auto|PATH",
                        help="continue a run: 'auto' = newest valid checkpoint of the run folder, or a file")
    add_device(parser, what="training device; under torchrun each rank takes cuda:LOCAL_RANK for cuda")


def run(args: argparse.Namespace) -> int:
    """`fusionocc train`: 0 when the run finished, 2 for a bad option or device, 1 when training fails."""
    from fusionocc_core.data.dataset import DatasetError
    from fusionocc_core.data.infos import InfoIndexError

    try:
        overrides = parse_set_options(args.overrides)
        for key in ("info_path", "out_dir", "model", "modality", "max_iters", "batch_size", "amp",
                    "init_from", "init_camera_from"):
            if getattr(args, key) is not None:
                value = getattr(args, key)
                overrides[key] = str(value) if isinstance(value, Path) else value
        if args.resume and args.resume != "auto" and args.config is None:
            overrides.setdefault("out_dir", str(Path(args.resume).parent))
        base = resume_base_config(args.resume, args.config, overrides.get("out_dir"))
        config = load_config(base, overrides)
    except ConfigError as error:
        print(f"fusionocc train: {error}", file=sys.stderr)
        return 2
    try:
        info = setup_distributed(args.device)
    except RuntimeError as error:  # no CUDA, no such GPU
        print(f"fusionocc train: {error}", file=sys.stderr)
        return 2
    try:
        summary = train(config, info, resume=args.resume)
    except (TrainError, TrainingCheckpointError, DatasetError, InfoIndexError) as error:
        # A damaged data file (DatasetError, also from a loader worker) or index: one line, no traceback.
        print(f"fusionocc train: {error}", file=sys.stderr)
        return 1
    finally:
        cleanup_distributed()
    if info.is_main and summary["history"]:
        print(f"done: step {summary['step']}, last loss {summary['history'][-1]['loss/total']:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m training.train` (the same as `fusionocc train`)."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
