"""Named model configurations and `build_model(name)`.

official   the published FusionOcc: Swin-B, 512 x 1408 input, widths as the released checkpoint
           (109,090,524 parameters; loads the authors' weights through `load_original_checkpoint`).
fast       ResNet-50 image backbone at 256 x 704, everything else as published.
tiny       designed for CPUs (laptops, CI, small robots; docs/model.md#the-tiny-preset): the same 200 x 200 x 16
           output, but the 3D stages on a half-resolution grid (100 x 100 x 8 voxels of 0.8 m: camera
           lift-splat and the lidar encoder land there, 0.1 m lidar voxels) with a head that predicts the
           2 x 2 x 2 fine voxels of each coarse one; a half-width ResNet-18 at 96 x 256, 44 depth bins of 1 m,
           narrow widths (camera volumes 8 ch, lidar 16, 3D encoder 16/32/64). 4.3 M parameters.
tiny_v1    the tiny preset until December 2026 (full-resolution 3D stages, ResNet-18, 12.3 M parameters); kept
           to compare against and to load checkpoints trained with it, not for new work.
reduced_a  the conformance case of the reference data (Swin at embed 32, depths 2-2-2-2, 128 x 352, narrow
           widths); used by tests to reproduce the original code's outputs, not a user preset.
"""

from __future__ import annotations

from fusionocc_core import occ3d
from fusionocc_core.model.camera_branch import CameraBranchConfig
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig
from fusionocc_core.model.voxelize import LIDAR_VOXEL_SIZE

OFFICIAL = FusionOccConfig()  # every default is the published value

FAST = FusionOccConfig(
    camera=CameraBranchConfig(backbone="resnet50", input_size=(256, 704)),
)

TINY = FusionOccConfig(
    camera=CameraBranchConfig(
        backbone="resnet18",
        resnet_width=32,
        input_size=(96, 256),
        neck_channels=64,
        fusion_mid_channels=32,
        aspp_mid_channels=16,
        feature_channels=8,
        depth_bins=(1.0, 45.0, 1.0),
        voxel_size=(2 * occ3d.VOXEL_SIZE,) * 3,
        grid_shape=(occ3d.GRID_SHAPE[0] // 2, occ3d.GRID_SHAPE[1] // 2, occ3d.GRID_SHAPE[2] // 2),
    ),
    volume_stride=2,
    lidar_voxel_size=2 * LIDAR_VOXEL_SIZE,
    lidar_out_channels=16,
    lidar_stage_channels=(8, 16, 24, 32),
    encoder_channels=(16, 32, 64),
    fpn_channels=16,
    head_hidden_channels=32,
)

TINY_V1 = FusionOccConfig(
    camera=CameraBranchConfig(
        backbone="resnet18",
        input_size=(96, 256),
        neck_channels=64,
        fusion_mid_channels=32,
        aspp_mid_channels=16,
        feature_channels=4,
    ),
    lidar_out_channels=4,
    lidar_stage_channels=(8, 16, 24, 32),
    encoder_channels=(8, 16, 32),
    fpn_channels=8,
    head_hidden_channels=16,
)

REDUCED_A = FusionOccConfig(
    camera=CameraBranchConfig(
        swin_embed_dim=32,
        swin_depths=(2, 2, 2, 2),
        swin_num_heads=(1, 2, 4, 8),
        swin_window_size=12,
        neck_channels=64,
        input_size=(128, 352),
        fusion_mid_channels=32,
        aspp_mid_channels=16,
        feature_channels=8,
    ),
    lidar_out_channels=8,
    encoder_channels=(16, 32, 64),
    fpn_channels=16,
    head_hidden_channels=32,
)

PRESETS: dict[str, FusionOccConfig] = {"official": OFFICIAL, "fast": FAST, "tiny": TINY}
TEST_CONFIGS: dict[str, FusionOccConfig] = {"reduced_a": REDUCED_A}
LEGACY_CONFIGS: dict[str, FusionOccConfig] = {"tiny_v1": TINY_V1}


def get_config(name: str) -> FusionOccConfig:
    """The configuration of a preset (or of a test or legacy config such as 'reduced_a', 'tiny_v1').

    Raises:
        KeyError: naming the known presets.
    """
    configs = {**PRESETS, **TEST_CONFIGS, **LEGACY_CONFIGS}
    if name not in configs:
        raise KeyError(f"unknown model preset '{name}'; choose one of {sorted(PRESETS)}")
    return configs[name]


def build_model(name: str) -> FusionOcc:
    """A freshly initialised `FusionOcc` of a preset ('official', 'fast', 'tiny'; 'reduced_a' for tests,
    'tiny_v1' for comparisons)."""
    return FusionOcc(get_config(name))
