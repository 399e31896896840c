"""Checkpoints: the published (mmdet3d-named) FusionOcc weights -> our names, and our own checkpoint format.

`convert_original_state_dict` is a pure function: unwrap `state_dict`, strip `module.`, camera keys through
`convert_camera_state_dict`, every other key through the explicit rules below. Tensors that change layout:
  * sparse 3x3x3 convs: mmcv (kx, ky, kz, Cin, Cout) -> spconv 2.x (Cout, kz, ky, kx, Cin); our sparse grid
    is indexed (z, y, x) where the original's is (x, y, z), hence the reversed kernel axes;
  * sparse 1x1x1 convs (lidar input/output): (1, 1, 1, Cin, Cout) -> nn.Linear (Cout, Cin).
Expected skips: the Swin `relative_position_index` buffers (derived from the window size here, checked).

Our own format (`save_checkpoint` / `load_checkpoint`) stores the config next to the weights so a deploy needs
nothing else, and loads with `torch.load(weights_only=True)` (no arbitrary pickles).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fusionocc_core.model.checkpoint_camera import (
    CAMERA_PREFIXES,
    CheckpointConversionError,
    convert_camera_key,
    convert_camera_state_dict,
)
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig

CHECKPOINT_FORMAT = "fusionocc-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model."""


def _sparse_kernel(w: torch.Tensor) -> torch.Tensor:
    return w.permute(4, 2, 1, 0, 3).contiguous()  # (kx, ky, kz, Cin, Cout) -> (Cout, kz, ky, kx, Cin)


def _pointwise(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[-2], w.shape[-1]).t().contiguous()  # (1, 1, 1, Cin, Cout) -> (Cout, Cin)


def _same(w: torch.Tensor) -> torch.Tensor:
    return w


_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

# (pattern on the original key, our key template, tensor transform) - first match wins.
RENAME_RULES: tuple[tuple[str, str, Any], ...] = (
    (r"^lidar_encoder\.conv_input\.0\.weight$", r"lidar_encoder.input_conv.weight", _pointwise),
    (r"^lidar_encoder\.conv_out\.0\.weight$", r"lidar_encoder.output_conv.weight", _pointwise),
    (
        r"^lidar_encoder\.encoder_layers\.encoder_layer([1-4])\.(\d+)\.0\.weight$",
        r"lidar_encoder.stages.{\1-1}.\2.conv.weight",
        _sparse_kernel,
    ),
    (
        rf"^lidar_encoder\.encoder_layers\.encoder_layer([1-4])\.(\d+)\.1\.{_BN}$",
        r"lidar_encoder.stages.{\1-1}.\2.norm.\3",
        _same,
    ),
    (
        r"^img_bev_encoder_backbone\.layers\.(\d+)\.(\d+)\.conv([12])\.conv\.weight$",
        r"occ_encoder.levels.\1.\2.conv\3.weight",
        _same,
    ),
    (
        rf"^img_bev_encoder_backbone\.layers\.(\d+)\.(\d+)\.conv([12])\.bn\.{_BN}$",
        r"occ_encoder.levels.\1.\2.bn\3.\4",
        _same,
    ),
    (
        r"^img_bev_encoder_backbone\.layers\.(\d+)\.(\d+)\.downsample\.conv\.weight$",
        r"occ_encoder.levels.\1.\2.shortcut.0.weight",
        _same,
    ),
    (
        rf"^img_bev_encoder_backbone\.layers\.(\d+)\.(\d+)\.downsample\.bn\.{_BN}$",
        r"occ_encoder.levels.\1.\2.shortcut.1.\3",
        _same,
    ),
    (r"^img_bev_encoder_neck\.conv\.conv\.weight$", r"occ_fpn.conv.weight", _same),
    (rf"^img_bev_encoder_neck\.conv\.bn\.{_BN}$", r"occ_fpn.bn.\1", _same),
    (r"^final_conv\.conv\.(weight|bias)$", r"head.final_conv.\1", _same),
    (r"^predicter\.([02])\.(weight|bias)$", r"head.predicter.\1.\2", _same),
)


def _rename(key: str) -> tuple[str, Any] | None:
    for pattern, template, transform in RENAME_RULES:
        match = re.match(pattern, key)
        if match:
            new_key = match.expand(template)
            # "{n-1}": the original numbers lidar stages from 1, ours from 0.
            new_key = re.sub(r"\{(\d+)-1\}", lambda m: str(int(m.group(1)) - 1), new_key)
            return new_key, transform
    return None


def unwrap_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of an original checkpoint: its `state_dict` entry if any, `module.` prefixes removed."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint 'state_dict' is a {type(state).__name__}, not a dict")
    return {(k.removeprefix("module.")): v for k, v in state.items()}


@dataclass
class ConversionResult:
    """converted: our name -> tensor; skipped: original keys dropped by design; unmapped: original keys
    matching no rule."""

    converted: dict[str, torch.Tensor]
    skipped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)


def convert_original_state_dict_with_report(original: dict[str, Any]) -> ConversionResult:
    """Like `convert_original_state_dict` but returns unmapped keys instead of raising."""
    state = unwrap_state_dict(original)
    result = ConversionResult(converted={})
    camera_keys = {}
    for key, value in state.items():
        if key.startswith(CAMERA_PREFIXES):
            try:
                new_key = convert_camera_key(key)
            except CheckpointConversionError:
                result.unmapped.append(key)
                continue
            if new_key is None:
                result.skipped.append(key)
            camera_keys[key] = value
            continue
        renamed = _rename(key)
        if renamed is None:
            result.unmapped.append(key)
            continue
        new_key, transform = renamed
        result.converted[new_key] = transform(value)
    # The camera conversion also validates the dropped relative_position_index buffers.
    for key, value in convert_camera_state_dict(camera_keys).items():
        result.converted["camera." + key] = value
    return result


def convert_original_state_dict(original: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Converts a published FusionOcc checkpoint (mmdet3d naming) to `FusionOcc` state-dict names.

    Args:
        original: the loaded checkpoint (with or without the `state_dict` wrapper; `module.` prefixes ok).

    Returns:
        Our key -> tensor (sparse-conv weights permuted; Swin relative_position_index buffers dropped).

    Raises:
        CheckpointConversionError: listing every key that matches no rule.
    """
    result = convert_original_state_dict_with_report(original)
    if result.unmapped:
        raise CheckpointConversionError(
            f"{len(result.unmapped)} key(s) of the original checkpoint have no rename rule: "
            + ", ".join(sorted(result.unmapped)[:20])
            + (" ..." if len(result.unmapped) > 20 else "")
        )
    return result.converted


@dataclass
class LoadReport:
    """What happened when loading an original checkpoint into a model."""

    loaded: list[str] = field(default_factory=list)
    expected_skips: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model tensor was loaded and nothing in the checkpoint was left unused."""
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def __str__(self) -> str:
        lines = [
            (
                f"loaded {len(self.loaded)} tensors; expected skips {len(self.expected_skips)} "
                f"(Swin relative_position_index, derived from the window size)"
            )
        ]
        if self.missing:
            lines.append(
                f"MISSING in checkpoint ({len(self.missing)}): "
                + ", ".join(self.missing[:10])
                + (" ..." if len(self.missing) > 10 else "")
            )
        if self.unexpected:
            lines.append(
                f"UNEXPECTED in checkpoint ({len(self.unexpected)}): "
                + ", ".join(self.unexpected[:10])
                + (" ..." if len(self.unexpected) > 10 else "")
            )
        for key, got, want in self.shape_mismatches[:10]:
            lines.append(f"SHAPE MISMATCH {key}: checkpoint {list(got)} vs model {list(want)}")
        lines += [f"hint: {h}" for h in self.hints]
        return "\n".join(lines)


def _hints(report: LoadReport) -> list[str]:
    hints = []
    keys = report.missing + [k for k, _, _ in report.shape_mismatches]
    if any(k.startswith("lidar_encoder.") for k in report.missing):
        hints.append(
            "the checkpoint has no lidar branch: a camera-only (BEVDet-Occ) checkpoint? Load it with "
            "strict=False to initialise the camera branch only."
        )
    if any(k.startswith("camera.backbone.") for k in keys):
        hints.append(
            "image backbone differs: the published checkpoint is Swin-B (preset 'official'); 'fast' and "
            "'tiny' use ResNets and cannot load it."
        )
    if any(k.startswith(("occ_encoder.levels.0.0.conv1", "occ_encoder.levels.0.0.shortcut")) for k in keys):
        hints.append(
            "fused input width differs: check num_frames, camera feature_channels and lidar_out_channels."
        )
    if report.shape_mismatches and not hints:
        hints.append(
            "a width differs between checkpoint and config: build the model with the preset the "
            "checkpoint was trained with (the published one is 'official')."
        )
    if any(k.startswith("module.") for k in report.unexpected):
        hints.append("nested 'module.' prefixes: unwrap the DataParallel/EMA wrapper first.")
    return hints


def load_original_checkpoint(
    model: FusionOcc, path: str | os.PathLike, strict: bool = True, allow_pickle: bool = False
) -> LoadReport:
    """Loads a published FusionOcc checkpoint (.pth, mmdet3d naming) into `model`.

    Args:
        model: the model, built with the matching config (the published checkpoint: preset 'official').
        path: checkpoint file.
        strict: raise unless every model tensor is loaded and every checkpoint key used; when False, load the
            tensors that fit and return the report.
        allow_pickle: allow arbitrary pickled objects in the file (`weights_only=False`); trusted files only,
            whose metadata the safe loader rejects.

    Returns:
        The `LoadReport` (print it: loaded, expected skips, missing, unexpected, shape mismatches, hints).

    Raises:
        CheckpointError: unreadable file, or (strict) any missing, unexpected or mis-shaped tensor.
    """
    checkpoint = _torch_load(Path(path), allow_pickle)
    result = convert_original_state_dict_with_report(checkpoint)
    report = LoadReport(expected_skips=sorted(result.skipped), unexpected=sorted(result.unmapped))
    own = model.state_dict()
    fitting = {}
    for key, value in result.converted.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.shape_mismatches.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            fitting[key] = value
    report.missing = sorted(k for k in own if k not in result.converted)
    report.loaded = sorted(fitting)
    report.hints = _hints(report)
    if strict and not report.ok:
        raise CheckpointError(f"{path} does not fit the model:\n{report}")
    model.load_state_dict(fitting, strict=False)
    return report


def _torch_load(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError / UnpicklingError / EOFError / ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated, not a torch file, or holding objects "
            f"the safe loader refuses): {reason}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dict")
    return data


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj, path)` through a temporary file in the same folder, fsync and `os.replace`: a crash at
    any point leaves the old or the new file, never half a file under the real name. The file gets the usual
    permissions (the umask's), like any file the user writes.

    Raises:
        whatever writing raises; the temporary file is removed and an existing `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    # Persist the rename itself (the directory entry); not possible on every platform, harmless to skip.
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def save_checkpoint(path: str | os.PathLike, model: FusionOcc, *, half: bool = False, **extra: Any) -> None:
    """Saves weights + config atomically (`atomic_torch_save`).

    Args:
        path: destination file.
        model: the model; its `config` is stored.
        half: store floating-point weights as float16 (half the file; `load_checkpoint` copies them back
            into the float32 model). For shipping a small file; training checkpoints keep full precision.
        **extra: further plain entries (epoch, metrics, optimizer state, ...); they must be tensors or plain
            Python containers/values so that `load_checkpoint` can read them with `weights_only=True`.
    """
    path = Path(path)
    reserved = {"format", "version", "config", "state_dict"} & set(extra)
    if reserved:
        raise ValueError(f"extra entries {sorted(reserved)} are reserved names")
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        **extra,
    }
    atomic_torch_save(payload, path)


def load_checkpoint_with_extra(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[FusionOcc, dict[str, Any]]:
    """Like `load_checkpoint`, also returning the extra entries given to `save_checkpoint`."""
    path = Path(path)
    data = _torch_load(path)
    if data.get("format") != CHECKPOINT_FORMAT:
        if "state_dict" in data and any(
            str(k).startswith(("img_backbone.", "module.img_backbone.")) for k in data["state_dict"]
        ):
            raise CheckpointError(
                f"{path} is an original (mmdet3d) FusionOcc checkpoint; build the 'official' "
                "preset and use load_original_checkpoint(model, path)"
            )
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} file (no 'format' entry)")
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {data.get('version')}; this code reads "
            f"version {CHECKPOINT_VERSION}"
        )
    model = FusionOcc(FusionOccConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"], strict=True)
    model.to(device).eval()
    extra = {k: v for k, v in data.items() if k not in {"format", "version", "config", "state_dict"}}
    return model, extra


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> FusionOcc:
    """Builds the model from the stored config, loads the weights (strict) and returns it in eval mode.

    Raises:
        CheckpointError: missing, truncated or foreign file, or an unsupported version.
    """
    return load_checkpoint_with_extra(path, device)[0]
