"""Original FusionOcc checkpoint names -> `CameraBranch` state-dict names (camera branch only).

Pure function; the full-model conversion calls it for the keys under `CAMERA_PREFIXES`. Rename rules are
listed
explicitly below, first match wins. No tensor needs a reshape: our Swin patch merging uses the original's
nn.Unfold channel order. The original stores each Swin `relative_position_index` buffer; ours is derived from
the window size (non-persistent), so the conversion checks the stored values and drops them.
"""

from __future__ import annotations

import math
import re

import torch

from fusionocc_core.errors import FusionOccError
from fusionocc_core.model.swin import relative_position_index

CAMERA_PREFIXES: tuple[str, ...] = ("img_backbone.", "img_neck.", "img_view_transformer.", "pre_process_net.")

# (pattern on the original key, replacement) - first match wins.
RENAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^img_backbone\.(.+)$", r"backbone.\1"),
    (r"^img_neck\.(.+)$", r"neck.\1"),
    (r"^img_view_transformer\.img_reduce_conv\.(.+)$", r"fusion.image_reduce.\1"),
    (r"^img_view_transformer\.depth_encoder\.(.+)$", r"fusion.depth_encoder.\1"),
    (r"^img_view_transformer\.cross_model_fusion\.channel_mlp_c\.(.+)$", r"fusion.channel_gate_image.\1"),
    (r"^img_view_transformer\.cross_model_fusion\.channel_mlp_d\.(.+)$", r"fusion.channel_gate_depth.\1"),
    (r"^img_view_transformer\.cross_model_fusion\.spatial_c\.(.+)$", r"fusion.spatial_gate_image.\1"),
    (r"^img_view_transformer\.cross_model_fusion\.spatial_d\.(.+)$", r"fusion.spatial_gate_depth.\1"),
    (r"^img_view_transformer\.cross_model_fusion\.fuse_conv\.(.+)$", r"fusion.fuse_conv.\1"),
    (r"^img_view_transformer\.further_fuse\.(.+)$", r"fusion.out_block.\1"),
    (r"^img_view_transformer\.depth_seg_net\.bn\.(.+)$", r"depth_net.camera_param_bn.\1"),
    (r"^img_view_transformer\.depth_seg_net\.(.+)$", r"depth_net.\1"),
    (r"^pre_process_net\.layers\.0\.0\.conv1\.conv\.(.+)$", r"pre_process.conv1.\1"),
    (r"^pre_process_net\.layers\.0\.0\.conv1\.bn\.(.+)$", r"pre_process.bn1.\1"),
    (r"^pre_process_net\.layers\.0\.0\.conv2\.conv\.(.+)$", r"pre_process.conv2.\1"),
    (r"^pre_process_net\.layers\.0\.0\.conv2\.bn\.(.+)$", r"pre_process.bn2.\1"),
    (r"^pre_process_net\.layers\.0\.0\.downsample\.conv\.(.+)$", r"pre_process.downsample.0.\1"),
    (r"^pre_process_net\.layers\.0\.0\.downsample\.bn\.(.+)$", r"pre_process.downsample.1.\1"),
)

_DROPPED_BUFFER = re.compile(r"^img_backbone\..*\.relative_position_index$")


class CheckpointConversionError(FusionOccError, ValueError):
    """An original key has no rule, or a dropped buffer holds unexpected values."""


def convert_camera_key(key: str) -> str | None:
    """Our name for one original camera key; None when the key is a dropped derived buffer.

    Raises:
        CheckpointConversionError: the key matches no rule.
    """
    if _DROPPED_BUFFER.match(key):
        return None
    for pattern, replacement in RENAME_RULES:
        new_key, count = re.subn(pattern, replacement, key)
        if count:
            return new_key
    raise CheckpointConversionError(f"No camera-branch rename rule for '{key}'.")


def convert_camera_state_dict(
    original: dict[str, torch.Tensor], *, prefixes: tuple[str, ...] = CAMERA_PREFIXES
) -> dict[str, torch.Tensor]:
    """Convert the camera-branch part of an original FusionOcc state dict to `CameraBranch` names.

    Keys outside `prefixes` (lidar branch, 3D encoder, head) are ignored: the full conversion owns them.
    Load the result with `camera_branch.load_state_dict(converted, strict=True)`. To initialise from a
    BEVDet-Occ checkpoint (same image backbone and neck, a different view transformer), convert only
    `prefixes=("img_backbone.", "img_neck.")` and load with `strict=False`.

    Args:
        original: The original `state_dict` (already unwrapped from the checkpoint's 'state_dict' entry).
        prefixes: Which of `CAMERA_PREFIXES` to convert.

    Returns:
        New dict with our key names; tensors are the same objects (no copies).

    Raises:
        CheckpointConversionError: listing every camera key without a rule, or a relative_position_index
            buffer that is not the standard one for its window size.
    """
    unknown = [p for p in prefixes if p not in CAMERA_PREFIXES]
    if unknown:
        raise CheckpointConversionError(
            f"Prefixes {unknown} are not camera-branch prefixes {CAMERA_PREFIXES}."
        )
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in original.items():
        if not key.startswith(tuple(prefixes)):
            continue
        if _DROPPED_BUFFER.match(key):
            _check_relative_position_index(key, value)
            continue
        try:
            new_key = convert_camera_key(key)
        except CheckpointConversionError:
            unmapped.append(key)
            continue
        assert new_key is not None
        converted[new_key] = value
    if unmapped:
        raise CheckpointConversionError(
            f"{len(unmapped)} camera-branch key(s) have no rename rule: " + ", ".join(sorted(unmapped))
        )
    return converted


def _check_relative_position_index(key: str, value: torch.Tensor) -> None:
    window = math.isqrt(value.shape[0]) if value.ndim == 2 else 0
    if window == 0 or value.shape != (window * window, window * window):
        raise CheckpointConversionError(f"'{key}' has shape {tuple(value.shape)}, not (w*w, w*w).")
    if value.device.type != "meta" and not torch.equal(value.long().cpu(), relative_position_index(window)):
        raise CheckpointConversionError(f"'{key}' differs from the standard Swin index for window {window}.")


# Microsoft's Swin ImageNet checkpoints ('model' entry of swin_base_patch4_window12_384_22k.pth and friends)
# -> our SwinTransformer names; the same conversion the original applies when it loads ImageNet weights.
SWIN_IMAGENET_RULES: tuple[tuple[str, str], ...] = (
    (r"^patch_embed\.proj\.(.+)$", r"patch_embed.projection.\1"),
    (r"^patch_embed\.norm\.(.+)$", r"patch_embed.norm.\1"),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.(.+)$", r"stages.\1.blocks.\2.attn.w_msa.\3"),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.+)$", r"stages.\1.blocks.\2.ffn.layers.0.0.\3"),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.+)$", r"stages.\1.blocks.\2.ffn.layers.1.\3"),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(.+)$", r"stages.\1.blocks.\2.\3.\4"),
    (r"^layers\.(\d+)\.downsample\.(reduction|norm)\.(.+)$", r"stages.\1.downsample.\2.\3"),
)
# Classifier, final norm and derived buffers have no counterpart (our output norms keep their init).
_SWIN_IMAGENET_DROPPED = re.compile(r"^(head\.|norm\.)|\.(attn_mask|relative_position_index)$")


def convert_swin_imagenet_state_dict(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a Microsoft Swin ImageNet state dict to `SwinTransformer` names for backbone initialisation.

    Patch-merging weights are permuted from Microsoft's [x(0,0), x(1,0), x(0,1), x(1,1)] concatenation to the
    nn.Unfold channel order our merging uses. Load with `backbone.load_state_dict(converted, strict=False)`:
    the per-output norms (`norm2`, `norm3`) stay missing, as in the original.

    Args:
        official: The checkpoint's 'model' dict.

    Returns:
        Converted dict (permuted tensors are new, others are the same objects).

    Raises:
        CheckpointConversionError: listing keys without a rule.
    """
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in official.items():
        if _SWIN_IMAGENET_DROPPED.search(key):
            continue
        for pattern, replacement in SWIN_IMAGENET_RULES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                break
        else:
            unmapped.append(key)
            continue
        if ".downsample.reduction." in new_key:
            value = _unfold_order_rows(value.t()).t()  # (out, 4C): permute input columns
        elif ".downsample.norm." in new_key:
            value = _unfold_order_rows(value)
        converted[new_key] = value
    if unmapped:
        raise CheckpointConversionError(
            f"{len(unmapped)} Swin ImageNet key(s) have no rename rule: " + ", ".join(sorted(unmapped))
        )
    return converted


def _unfold_order_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows k * C + c (k over (h0,w0), (h1,w0), (h0,w1), (h1,w1)) -> rows c * 4 + kh * 2 + kw."""
    rows = x.shape[0]
    x = x.reshape(4, rows // 4, *x.shape[1:])[
        [0, 2, 1, 3]
    ]  # k now ordered (h0,w0), (h0,w1), (h1,w0), (h1,w1)
    return x.transpose(0, 1).reshape(rows, *x.shape[2:])
