"""Named model configurations and `build_model(name)`.

official   the published FusionOcc: Swin-B, 512 x 1408 input, widths as the released checkpoint
           (109,090,524 parameters; loads the authors' weights through `load_original_checkpoint`).
fast       ResNet-50 image backbone at 256 x 704, everything else as published.
tiny       same architecture and 200 x 200 x 16 output grid, ResNet-18 at 96 x 256 and narrow 2D/3D widths
           (camera volumes 4 ch, lidar 4 ch, 3D encoder 8/16/32, head 8): for CPU tests, CI and quick
           experiments, not for accuracy. About a second per frame on 2 CPU cores through the node
           (docs/benchmarks.md): the sparse lidar encoder and the full-resolution 3D convolutions dominate.
reduced_a  the conformance case of the reference data (Swin at embed 32, depths 2-2-2-2, 128 x 352, narrow
           widths); used by tests to reproduce the original code's outputs, not a user preset.
"""

from __future__ import annotations

from fusionocc_core.model.camera_branch import CameraBranchConfig
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig

OFFICIAL = FusionOccConfig()  # every default is the published value

FAST = FusionOccConfig(
    camera=CameraBranchConfig(backbone="resnet50", input_size=(256, 704)),
)

TINY = FusionOccConfig(
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


def get_config(name: str) -> FusionOccConfig:
    """The configuration of a preset (or of a test config such as 'reduced_a').

    Raises:
        KeyError: naming the known presets.
    """
    configs = {**PRESETS, **TEST_CONFIGS}
    if name not in configs:
        raise KeyError(f"unknown model preset '{name}'; choose one of {sorted(PRESETS)}")
    return configs[name]


def build_model(name: str) -> FusionOcc:
    """A freshly initialised `FusionOcc` of a preset ('official', 'fast', 'tiny'; 'reduced_a' for tests)."""
    return FusionOcc(get_config(name))
