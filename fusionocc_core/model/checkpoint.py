"""Checkpoints: the published (mmdet3d-named) FusionOcc weights -> our names, and our own checkpoint format.

`convert_original_state_dict` is a pure function: unwrap `state_dict`, strip `module.`, camera keys through
`convert_camera_state_dict`, every other key through the explicit rules below. Tensors that change layout:
  * sparse 3x3x3 convs: mmcv (kx, ky, kz, Cin, Cout) -> spconv 2.x (Cout, kz, ky, kx, Cin); our sparse grid
    is indexed (z, y, x) where the original's is (x, y, z), hence the reversed kernel axes;
  * sparse 1x1x1 convs (lidar input/output): (1, 1, 1, Cin, Cout) -> nn.Linear (Cout, Cin).
Expected skips: the Swin `relative_position_index` buffers (derived from the window size here, checked).

Our own format (`save_checkpoint` / `load_checkpoint`) stores the config next to the weights so a deploy needs
nothing else, and loads with `torch.load(weights_only=True)` (no arbitrary pickles). `load_checkpoint` also
takes the published file as it is: it recognises the original naming, builds the known configuration whose
shapes the weights fit (the published weights: 'official') and converts them, so every `--checkpoint` accepts
the download directly (`fusionocc import-checkpoint` writes it once in our format, which loads faster).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fusionocc_core.errors import FusionOccError
from fusionocc_core.model.checkpoint_camera import (
    CAMERA_PREFIXES,
    CheckpointConversionError,
    convert_camera_key,
    convert_camera_state_dict,
)
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig

CHECKPOINT_FORMAT = "fusionocc-checkpoint"
CHECKPOINT_VERSION = 1
ORIGINAL_FORMAT = "original"  # `LoadedCheckpoint.source` of a published (mmdet3d-named) checkpoint

# Top-level names only the original uses: they tell a published checkpoint from anything else. `lidar_encoder.`
# is both ours and theirs, so only the original's own sub-module names under it count.
ORIGINAL_PREFIXES: tuple[str, ...] = (
    "img_backbone.",
    "img_neck.",
    "img_view_transformer.",
    "pre_process_net.",
    "img_bev_encoder_backbone.",
    "img_bev_encoder_neck.",
    "final_conv.",
    "predicter.",
    "lidar_encoder.conv_input.",
    "lidar_encoder.encoder_layers.",
    "lidar_encoder.conv_out.",
)
# Ours, to name a bare state_dict of this project (saved with torch.save instead of save_checkpoint).
OWN_PREFIXES: tuple[str, ...] = ("camera.", "occ_encoder.", "occ_fpn.", "head.", "lidar_encoder.stages.")

logger = logging.getLogger(__name__)


class CheckpointError(FusionOccError, RuntimeError):
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

    def summary(self) -> str:
        """One line: counts per module instead of key lists (for logs and error messages)."""
        line = f"loaded {len(self.loaded)} tensors, skipped {len(self.expected_skips)} derived buffers"
        problems = tensor_problems(self.missing, self.unexpected, self.shape_mismatches)
        return "; ".join([line, *([problems] if problems else []), *(f"hint: {h}" for h in self.hints)])


def _module_of(key: str) -> str:
    # The camera branch holds 80 % of the tensors: its sub-modules (backbone, neck, ...) say more than "camera".
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "camera" and len(parts) > 2 else parts[0]


def count_by_module(keys: list[str], limit: int = 6) -> str:
    """'camera.backbone (180), head (32)': how many keys per top-level module, most first."""
    counts = Counter(_module_of(k) for k in keys).most_common()
    text = ", ".join(f"{module} ({n})" for module, n in counts[:limit])
    return text + (f", {len(counts) - limit} more modules" if len(counts) > limit else "")


def tensor_problems(
    missing: list[str],
    unexpected: list[str],
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
) -> str:
    """One line naming how many tensors are missing / unexpected / mis-shaped and where ('' when none):
    torch's own strict-load error lists every key over hundreds of lines."""
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensors: {count_by_module(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors: {count_by_module(unexpected)}")
    if shape_mismatches:
        key, got, want = shape_mismatches[0]
        parts.append(
            f"{len(shape_mismatches)} mis-shaped tensors: {count_by_module([k for k, _, _ in shape_mismatches])} "
            f"(e.g. {key}: {list(got)} in the file, {list(want)} in the model)"
        )
    return "; ".join(parts)


def _hints(report: LoadReport) -> list[str]:
    hints = []
    keys = report.missing + [k for k, _, _ in report.shape_mismatches]
    if any(k.startswith("lidar_encoder.") for k in report.missing):
        hints.append(
            "the checkpoint has no lidar branch: a camera-only (BEVDet-Occ) checkpoint? It can initialise "
            "the camera branch only (fusionocc train --init-camera-from; in Python "
            "load_original_checkpoint(model, path, strict=False))."
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
    result = convert_original_state_dict_with_report(_torch_load(Path(path), allow_pickle))
    report = _report_against(result, model.state_dict())
    if strict and not report.ok:
        raise CheckpointError(f"{path} does not fit the model:\n{report}")
    model.load_state_dict({k: result.converted[k] for k in report.loaded}, strict=False)
    return report


def _report_against(result: ConversionResult, own: dict[str, torch.Tensor]) -> LoadReport:
    """How converted tensors fit a model's state dict (`own` may live on the meta device: only shapes count)."""
    report = LoadReport(expected_skips=sorted(result.skipped), unexpected=sorted(result.unmapped))
    for key, value in result.converted.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.shape_mismatches.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            report.loaded.append(key)
    report.missing = sorted(k for k in own if k not in result.converted)
    report.loaded.sort()
    report.hints = _hints(report)
    return report


def _torch_load(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {_unreadable(path, error)}") from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(data).__name__}, not a dict (expected a fusionocc-checkpoint or "
            "a published FusionOcc .pth)"
        )
    return data


def _unreadable(path: Path, error: BaseException) -> str:
    """Why torch could not read `path`, in one line: what the file looks like rather than torch's message,
    whose weights_only failures span a dozen lines and advise disabling the safe loader (never right for a
    file from the internet, and not needed for a real checkpoint)."""
    text = str(error)
    with path.open("rb") as stream:
        head = stream.read(8)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    detail = re.search(r"WeightsUnpickler error: *(\S.*)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    reason = (detail.group(1) if detail else lines[0] if lines else type(error).__name__)[:200]
    if not head:
        return "the file is empty"
    if refused:
        return (
            f"it holds a pickled Python object ({refused.group(1)}) besides tensors and plain values; "
            "checkpoints are read with torch's safe loader, which does not run pickled code"
        )
    if head.startswith(b"PK\x03\x04"):
        return f"a zip archive that is not a complete torch checkpoint (truncated or damaged?): {reason}"
    if head[:1] == b"\x80":  # a pickle protocol marker: the legacy torch format, or a plain pickle
        return f"a pickle stream that does not load (truncated or damaged?): {reason}"
    return (
        f"not a torch checkpoint (it starts with {head!r}; expected a torch.save file: a fusionocc-checkpoint "
        "or a published FusionOcc .pth)"
    )


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


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint_with_report` loaded.

    model: in eval mode on the requested device. extra: the entries given to `save_checkpoint` (none for a
    published checkpoint: its mmdet3d `meta`/optimizer state describe their training, not this model).
    source: CHECKPOINT_FORMAT or ORIGINAL_FORMAT. preset: the configuration built for a published checkpoint
    (None for ours, whose config is inside). report: the conversion report of a published checkpoint.
    """

    model: FusionOcc
    extra: dict[str, Any]
    source: str
    preset: str | None = None
    report: LoadReport | None = None

    def describe(self) -> str:
        """One line for logs and command output."""
        if self.source != ORIGINAL_FORMAT:
            return f"{CHECKPOINT_FORMAT} (config stored inside)"
        summary = self.report.summary() if self.report is not None else ""
        return f"published FusionOcc checkpoint (mmdet3d naming), built preset '{self.preset}': {summary}"


def is_original_checkpoint(data: dict[str, Any]) -> bool:
    """True when `data` (a loaded file) holds tensors in the published (mmdet3d) naming, wrapped in `state_dict`
    as the authors ship it or bare."""
    state = data.get("state_dict", data)
    return isinstance(state, dict) and any(
        isinstance(k, str) and k.removeprefix("module.").startswith(ORIGINAL_PREFIXES) for k in state
    )


def _what_it_is(data: dict[str, Any]) -> str:
    """What a dict that is neither checkpoint format holds, so the user can tell which file they passed."""
    found = data.get("format")
    if found == "fusionocc-train":  # training/checkpointing.py, which imports this module
        return (
            "a fusionocc training checkpoint (the resume state of `fusionocc train`); deploy the model the run "
            "exported, model_final.pth"
        )
    if found is not None:
        return f"a file of format {found!r}"
    state = data.get("state_dict", data)
    if isinstance(state, dict) and any(isinstance(k, str) and k.startswith(OWN_PREFIXES) for k in state):
        return (
            "a bare state_dict in this project's naming, without the config to build its model; write it with "
            "save_checkpoint(path, model)"
        )
    keys = [str(k) for k in data][:6]
    if not keys:
        return "an empty dict"
    return f"a dict with keys {keys}" + (" ..." if len(data) > 6 else "")


def _fit_problems(state: dict[str, Any], own: dict[str, torch.Tensor]) -> str:
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        (k, tuple(getattr(v, "shape", ())), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and tuple(getattr(v, "shape", ())) != tuple(own[k].shape)
    ]
    return tensor_problems(missing, unexpected, mismatched)


def _load_own(path: Path, data: dict[str, Any], device: str | torch.device) -> LoadedCheckpoint:
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {data.get('version')}; this code reads "
            f"version {CHECKPOINT_VERSION}"
        )
    state = data.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no state_dict (found {type(state).__name__})")
    try:
        model = FusionOcc(FusionOccConfig.from_dict(data.get("config") or {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} stores a config this code cannot build (written by another version?): {error}"
        ) from None
    # Compared here rather than left to load_state_dict, whose strict error lists every key over hundreds
    # of lines; the counts per module say at once which part is missing.
    problems = _fit_problems(state, model.state_dict())
    if problems:
        raise CheckpointError(
            f"{path} does not fit the model its stored config builds: {problems} "
            "(written by another version of this code, or edited?)"
        )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    extra = {k: v for k, v in data.items() if k not in {"format", "version", "config", "state_dict"}}
    return LoadedCheckpoint(model, extra, CHECKPOINT_FORMAT)


@functools.cache
def _meta_state_dict(name: str) -> dict[str, torch.Tensor]:
    """A configuration's state dict on the meta device: shapes only, no memory (kept: a few ms to look up
    again, 0.2 s to build for Swin-B). Read-only."""
    from fusionocc_core.model.presets import get_config

    with torch.device("meta"):
        return FusionOcc(get_config(name)).state_dict()


def match_original_config(
    result: ConversionResult, path: str | os.PathLike = "checkpoint"
) -> tuple[str, LoadReport]:
    """The first known configuration (preset 'official' first, then the others and the test configs) whose
    tensors the converted checkpoint fills exactly: its weights decide, not a guess from the file name.
    Models are built on the meta device, so trying one costs no memory and a fraction of a second.

    Raises:
        CheckpointError: none fits; the message gives the closest configuration's missing/mis-shaped tensors.
    """
    # Imported here: presets imports the model; keeps this module importable without the preset table.
    from fusionocc_core.model.presets import PRESETS, TEST_CONFIGS

    reports = {}
    for name in {**PRESETS, **TEST_CONFIGS}:
        report = _report_against(result, _meta_state_dict(name))
        if report.ok:
            return name, report
        reports[name] = report

    def misfit(name: str) -> int:
        report = reports[name]
        return len(report.missing) + len(report.unexpected) + len(report.shape_mismatches)

    closest = min(reports, key=misfit)
    raise CheckpointError(
        f"{path} is a published-format (mmdet3d) FusionOcc checkpoint but fits none of the known "
        f"configurations ({', '.join(reports)}); closest, '{closest}': {reports[closest].summary()}"
    )


def _load_original(path: Path, data: dict[str, Any], device: str | torch.device) -> LoadedCheckpoint:
    try:
        result = convert_original_state_dict_with_report(data)
    except CheckpointConversionError as error:  # e.g. a relative_position_index that is not the window's
        raise CheckpointError(f"{path}: {error}") from None
    name, report = match_original_config(result, path)
    from fusionocc_core.model.presets import get_config

    model = FusionOcc(get_config(name))
    model.load_state_dict({k: result.converted[k] for k in report.loaded}, strict=True)
    model.to(device).eval()
    loaded = LoadedCheckpoint(model, {}, ORIGINAL_FORMAT, name, report)
    logger.info("%s: %s", path, loaded.describe())
    return loaded


def load_checkpoint_with_report(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Loads either checkpoint format: ours (config inside) or the published FusionOcc .pth (mmdet3d naming,
    recognised by its keys; the known configuration its weights fit is built, `match_original_config`, and the
    conversion report is logged and returned). Always read with `weights_only=True`.

    Raises:
        CheckpointError: one line: a missing or unreadable file (what it looks like), a file of neither format
            (what it holds), an unsupported version, or weights that do not fit (how many tensors are missing,
            unexpected or mis-shaped, per module).
    """
    path = Path(path)
    data = _torch_load(path)
    if data.get("format") == CHECKPOINT_FORMAT:
        return _load_own(path, data, device)
    if is_original_checkpoint(data):
        return _load_original(path, data, device)
    raise CheckpointError(
        f"{path} is neither a {CHECKPOINT_FORMAT} (written by fusionocc) nor a published FusionOcc checkpoint "
        f"(a state_dict with mmdet3d names such as img_backbone.*): it is {_what_it_is(data)}"
    )


def load_checkpoint_with_extra(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[FusionOcc, dict[str, Any]]:
    """Like `load_checkpoint`, also returning the extra entries given to `save_checkpoint` (none for a published
    checkpoint)."""
    loaded = load_checkpoint_with_report(path, device)
    return loaded.model, loaded.extra


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> FusionOcc:
    """The model of a checkpoint in eval mode: ours (built from the stored config, weights strict) or the
    published FusionOcc .pth as downloaded (see `load_checkpoint_with_report`).

    Raises:
        CheckpointError: missing, truncated or foreign file, an unsupported version, or non-fitting weights.
    """
    return load_checkpoint_with_report(path, device).model
