"""`TrainConfig`: every option of a training run in one dataclass, read from a YAML file plus CLI overrides.

A YAML file holds a flat mapping of field names to values (see `training/configs/*.yaml`); unknown keys and
values of the wrong type are errors naming the file and the key. The resolved config is stored inside every
training checkpoint, so a resume needs nothing else.
"""
from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fusionocc_core.errors import FusionOccError

MODALITIES = ("fusion", "camera", "lidar")
AMP_MODES = ("none", "bf16", "fp16")
CLASS_WEIGHTINGS = ("none", "enet")


class ConfigError(FusionOccError, ValueError):
    """A config file or override is invalid (message names the file/key and the problem)."""


@dataclass
class TrainConfig:
    """Every option of a training run.

    The defaults of the model and optimisation fields are the published FusionOcc recipe, so a YAML file sets
    only what differs from them (`training/configs/official.yaml` sets just the bookkeeping and AMP);
    test/training/test_config.py pins the recipe the official file loads.
    """

    # -- data
    info_path: str = ""  # info index written by `fusionocc prepare` (required)
    dataroot: str = ""  # replaces the dataroot stored in the index ("" = keep it)
    train_split: str = "train"
    val_split: str = "val"
    input_height: int = 0  # network input [px] (resize + bottom crop); 0 = the model preset's input size
    input_width: int = 0
    with_imgseg: bool = True  # image segmentation targets (the aux seg loss needs them)
    num_workers: int = 4  # data loader processes per rank
    # -- model
    model: str = "official"  # preset of fusionocc_core.model.presets
    modality: str = "fusion"  # fusion | camera | lidar (ablations: the other branch is switched off)
    use_mask: bool = False  # weight the occupancy loss by the camera-visibility mask (the original: off)
    class_weights: str = "none"  # none (the original's plain CE) | enet: 1/ln(1.02 + p) of the train labels
    lovasz_weight: float = 0.0  # factor of an added Lovasz-softmax occupancy loss (0: none, the original)
    visible_weight: float = 0.0  # the occupancy (+ Lovasz) loss once more over camera-visible voxels, x this
    # fusion only: chance that a sample's whole camera rig is dropped (features zeroed before lift-splat, as in
    # the node's degraded mode; depth and seg losses unaffected), so the lidar path alone must carry occupancy
    camera_dropout: float = 0.0
    # -- optimisation (the original FusionOcc schedule)
    batch_size: int = 1  # per rank
    epochs: int = 24
    max_iters: int = 0  # total optimizer steps; 0 = epochs * steps per epoch
    lr: float = 5e-5
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 5.0  # max global grad norm; 0 = no clipping
    warmup_iters: int = 500  # linear warm-up from warmup_ratio * lr
    warmup_ratio: float = 1.0 / 3.0
    min_lr_ratio: float = 1e-3  # cosine ends at min_lr_ratio * lr
    ema: bool = True  # keep an exponential moving average of the weights (evaluated and exported)
    ema_decay: float = 0.999  # final EMA decay ...
    ema_ramp: int = 2000  # ... reached as decay * (1 - exp(-updates / ramp)) (BEVDet's MEGVII EMA)
    amp: str = "none"  # none | bf16 | fp16 autocast on CUDA (ignored on CPU)
    seed: int = 0
    # -- init
    init_from: str = ""  # whole model: published FusionOcc .pth (mmdet3d naming) or a fusionocc checkpoint
    init_camera_from: str = ""  # BEVDet-Occ .pth: camera branch only, non-strict with a report
    # -- bookkeeping
    out_dir: str = ".cache/train_runs/run"  # checkpoints, TensorBoard events, config.yaml
    log_interval: int = 10  # optimizer steps between TensorBoard scalars
    eval_interval: int = 1000  # steps between validations; 0 = only at the end
    max_val_samples: int = 0  # validate on the first N val samples; 0 = all
    ckpt_interval: int = 1000  # steps between checkpoints; 0 = only at the end
    keep_last: int = 3  # checkpoints kept in out_dir (older ones are deleted)
    progress: bool = True  # tqdm bar on rank 0

    def validate(self) -> None:
        """Raises ConfigError naming the first invalid option."""
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality must be one of {MODALITIES}, got '{self.modality}'")
        if not 0.0 <= self.camera_dropout < 1.0:
            raise ConfigError(f"camera_dropout must be in [0, 1), got {self.camera_dropout}")
        if self.camera_dropout and self.modality != "fusion":
            raise ConfigError(f"camera_dropout drops the cameras of a fusion model; modality '{self.modality}' "
                              f"has nothing to fall back on or no camera to drop: set it to 0")
        if self.class_weights not in CLASS_WEIGHTINGS:
            raise ConfigError(f"class_weights must be one of {CLASS_WEIGHTINGS}, got '{self.class_weights}'")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {AMP_MODES}, got '{self.amp}'")
        for name in ("batch_size", "epochs", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("input_height", "input_width", "max_iters", "warmup_iters", "num_workers",
                     "eval_interval", "ckpt_interval", "max_val_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1, got {self.keep_last}")
        if self.lr <= 0 or not 0 < self.warmup_ratio <= 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"need lr > 0, 0 < warmup_ratio <= 1, 0 <= min_lr_ratio <= 1; got "
                              f"lr={self.lr}, warmup_ratio={self.warmup_ratio}, "
                              f"min_lr_ratio={self.min_lr_ratio}")
        if self.lovasz_weight < 0:
            raise ConfigError(f"lovasz_weight must be >= 0, got {self.lovasz_weight}")
        if self.visible_weight < 0:
            raise ConfigError(f"visible_weight must be >= 0, got {self.visible_weight}")
        if self.visible_weight > 0 and self.use_mask:
            raise ConfigError("visible_weight adds a camera-visible term to the all-voxel loss; with use_mask "
                              "true the loss already sees only the visible voxels (set one of them)")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.init_from and self.init_camera_from:
            raise ConfigError("init_from and init_camera_from exclude each other (init_from sets every "
                              "weight)")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (what checkpoints and config.yaml store)."""
        return dataclasses.asdict(self)


_FIELD_TYPES = typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: object, where: str) -> Any:  # Any: the type depends on the key
    """Checks/converts one value to its field's type (int -> float allowed; CLI strings parsed as YAML)."""
    if key not in _FIELD_TYPES:
        close = [f for f in _FIELD_TYPES if f.startswith(key[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"{where}: unknown option '{key}'{hint}")
    kind = _FIELD_TYPES[key]
    if isinstance(kind, types.UnionType):
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if isinstance(value, str) and kind is not str:  # CLI overrides arrive as strings: "3", "1e-4", "true"
        with contextlib.suppress(ValueError):  # a value that does not parse is reported as a type error below
            value = float(value) if kind is float else yaml.safe_load(value)  # YAML reads "1e-4" as a string
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and value is None:
        value = ""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: option '{key}' must be {kind.__name__}, got {value!r}")
    return value


def apply_overrides(config: TrainConfig, values: Mapping[str, object], where: str) -> TrainConfig:
    """Returns a copy of `config` with `values` set (type-checked); `where` names their source in errors."""
    changes = {key: _coerce(key, value, where) for key, value in values.items()}
    return dataclasses.replace(config, **changes)


def parse_set_options(items: list[str]) -> dict[str, str]:
    """`["lr=1e-4", "epochs=2"]` -> {"lr": "1e-4", "epochs": "2"} (values are typed by `apply_overrides`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        out[key.strip().replace("-", "_")] = value
    return out


def load_config(path: str | Path | None, overrides: Mapping[str, object] | None = None) -> TrainConfig:
    """Defaults, then the YAML file (if any), then `overrides`; validated.

    Raises:
        ConfigError: the file is missing/not a mapping, a key is unknown, a value has the wrong type or range.
    """
    config = TrainConfig()
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
        config = apply_overrides(config, data, str(path))
    if overrides:
        config = apply_overrides(config, overrides, "command line")
    config.validate()
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Writes the options as YAML that `load_config` reads back to the same config."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
