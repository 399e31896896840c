"""Parameter / FLOP counts and CPU latency of a model configuration, on synthetic but well-formed inputs.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`. On CPU spconv's Native algorithm runs its
per-offset GEMMs through torch.mm, so the counter sees the sparse convs' real work (2 * Cin * Cout per pair);
with CUDA implicit-gemm it would not. `lidar_sparse_upper_bound` gives 2 * Cin * Cout * K * active outputs per
sparse layer (as if every kernel tap hit an active input) for comparison.

Run `python -m fusionocc_core.model.flops [preset ...] [--latency]` to print the presets table of docs/model.md
(parameters and GFLOPs; `--latency` adds a CPU latency line per preset, a measurement: run it on a quiet machine).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Self

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig

SOURCE_SIZE = (900, 1600)  # nuScenes image (H, W) [px]
NUSCENES_K = ((1266.4, 0.0, 816.3), (0.0, 1266.4, 491.5), (0.0, 0.0, 1.0))
CAMERA_YAWS_DEG = (55.0, 0.0, -55.0, 110.0, 180.0, -110.0)  # occ3d.CAMERA_NAMES order


@dataclass
class ExampleInputs:
    """Arguments of `FusionOcc.forward`, in order (see its docstring)."""

    images: torch.Tensor
    intrinsics: torch.Tensor
    cam_to_key_ego: torch.Tensor
    post_rots: torch.Tensor
    post_trans: torch.Tensor
    bda: torch.Tensor
    points: torch.Tensor
    sparse_depth: torch.Tensor

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (
            self.images,
            self.intrinsics,
            self.cam_to_key_ego,
            self.post_rots,
            self.post_trans,
            self.bda,
            self.points,
            self.sparse_depth,
        )

    def to(self, device: torch.device | str) -> ExampleInputs:
        return ExampleInputs(*(t.to(device) for t in self.as_tuple()))


def example_inputs(
    config: FusionOccConfig,
    batch_size: int = 1,
    num_points: int = 30000,
    seed: int = 0,
    depth_fraction: float = 0.02,
) -> ExampleInputs:
    """Synthetic inputs with a nuScenes-like rig: 6 cameras at the nuScenes yaws, K of 1600 x 900 images,
    resize + bottom crop to the config's input size, previous frame 0.5 m behind, a 32-beam lidar scan of
    ground and walls (see `_lidar_sweep_points`; some points fall outside the grid, as in real data).

    Args:
        config: model config (input size, frames, lidar feature width).
        batch_size: samples.
        num_points: lidar points per sample.
        seed: generator seed (deterministic inputs).
        depth_fraction: fraction of pixels holding a sparse depth value.
    """
    gen = torch.Generator().manual_seed(seed)
    b, t, n = batch_size, config.num_frames, len(CAMERA_YAWS_DEG)
    h, w = config.camera.input_size
    images = torch.randn(b, t, n, 3, h, w, generator=gen)
    intrinsics = torch.tensor(NUSCENES_K).expand(b, t, n, 3, 3).clone()
    scale = w / SOURCE_SIZE[1]
    post_rots = torch.diag(torch.tensor([scale, scale, 1.0])).expand(b, t, n, 3, 3).clone()
    post_trans = torch.tensor([0.0, -(SOURCE_SIZE[0] * scale - h), 0.0]).expand(b, t, n, 3).clone()
    camera_axes = torch.tensor(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    )  # cam (x r, y d, z f) -> ego
    cam_to_ego = torch.zeros(n, 4, 4)
    for i, yaw_deg in enumerate(CAMERA_YAWS_DEG):
        yaw = math.radians(yaw_deg)
        c, s = math.cos(yaw), math.sin(yaw)
        yaw_rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        cam_to_ego[i, :3, :3] = yaw_rot @ camera_axes
        cam_to_ego[i, :3, 3] = torch.tensor([1.0 * c, 1.0 * s, 1.6])
        cam_to_ego[i, 3, 3] = 1.0
    cam_to_key_ego = cam_to_ego.expand(b, t, n, 4, 4).clone()
    cam_to_key_ego[:, 1:, :, 0, 3] -= 0.5  # previous frame: 0.5 m behind, same heading
    bda = torch.eye(3).expand(b, 3, 3).clone()
    xyz = _lidar_sweep_points(b * num_points, gen)  # (b * num_points, 3)
    intensity = 255.0 * torch.rand(b * num_points, 1, generator=gen)
    time_lag = 0.05 * torch.randint(0, 8, (b * num_points, 1), generator=gen).float()
    batch_index = torch.arange(b).repeat_interleave(num_points).unsqueeze(1).float()
    points = torch.cat([batch_index, xyz, intensity, time_lag], dim=1)[:, : 1 + config.lidar_in_channels]
    sparse_depth = 1.0 + 44.0 * torch.rand(b, n, h, w, generator=gen)
    sparse_depth = sparse_depth * (torch.rand(b, n, h, w, generator=gen) < depth_fraction)
    return ExampleInputs(images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points, sparse_depth)


def _lidar_sweep_points(num_points: int, gen: torch.Generator) -> torch.Tensor:
    """A 32-beam scan (elevations -30.7..10.7 deg, sensor 1.84 m above the ground) of flat ground and a ring of
    walls 8-40 m away (one distance per 5 deg sector): surface-like clustering as in real sweeps, which sparse
    convolution cost depends on (uniform random points would be a worst case)."""
    beams = 32
    azimuths = -(-num_points // beams)
    elevation = torch.deg2rad(torch.linspace(-30.7, 10.7, beams)).repeat_interleave(azimuths)[:num_points]
    azimuth = (2 * math.pi * torch.rand(num_points, generator=gen)).clamp(max=2 * math.pi - 1e-6)
    sector_wall = 8.0 + 32.0 * torch.rand(72, generator=gen)
    wall = sector_wall[(azimuth / (2 * math.pi) * 72).long()]  # horizontal distance to the wall [m]
    height = 1.84
    ground = torch.where(
        elevation < 0, height / torch.tan(-elevation).clamp(min=1e-3), torch.full_like(wall, 1e3)
    )
    horizontal = torch.minimum(ground, wall) + 0.02 * torch.randn(num_points, generator=gen)
    z = height + horizontal * torch.tan(elevation)
    return torch.stack([horizontal * torch.cos(azimuth), horizontal * torch.sin(azimuth), z], dim=1)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: FusionOcc, inputs: ExampleInputs) -> dict[str, int]:
    """FLOPs of one forward pass (no grad), per top-level module, counted on the dense torch ops.

    Returns:
        {"total_dense": ..., "<module>": ..., "lidar_sparse_upper_bound": ...}: counted FLOPs in total and per
        top-level module (on CPU the spconv Native GEMMs count under lidar_encoder), and the upper bound
        2 * Cin * Cout * K * outputs of the sparse layers (every kernel tap assumed active).
    """
    counter = FlopCounterMode(display=False, depth=1, custom_mapping=_ONEDNN_CONV)
    sparse_flops = _SparseFlops(model)
    with torch.no_grad(), counter, sparse_flops:
        model(*inputs.as_tuple())
    per_module = counter.get_flop_counts()
    result = {"total_dense": int(counter.get_total_flops())}
    for name, counts in per_module.items():
        if name.count(".") == 1 and name.startswith("FusionOcc."):
            result[name.split(".", 1)[1]] = int(sum(counts.values()))
    result["lidar_sparse_upper_bound"] = sparse_flops.total
    return result


def _mkldnn_conv_flop(x_shape, w_shape, _bias, _padding, _stride, _dilation, _groups, *, out_shape, **_kwargs) -> int:
    """FLOPs of `aten.mkldnn_convolution` (what `conv3d.Conv3d` calls on CPU), counted like aten.convolution."""
    return conv_flop_count(list(x_shape), list(w_shape), list(out_shape), transposed=False)


# FlopCounterMode knows aten.convolution only; without this the CPU 3D convolutions would count as zero.
_ONEDNN_CONV = {torch.ops.aten.mkldnn_convolution: _mkldnn_conv_flop}


class _SparseFlops:
    """Adds up 2 * Cin * Cout * K * active outputs of every spconv layer during one forward (upper bound)."""

    def __init__(self, model: FusionOcc) -> None:
        from spconv.pytorch.conv import SparseConvolution

        self.layers = [m for m in model.modules() if isinstance(m, SparseConvolution)]
        self.handles: list = []
        self.total = 0

    def _hook(self, module, _inputs, output) -> None:
        taps = math.prod(module.kernel_size)
        self.total += 2 * module.in_channels * module.out_channels * taps * int(output.features.shape[0])

    def __enter__(self) -> Self:
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class Latency:
    """wall_s: median wall time of one forward [s]; cpu_s: median process CPU time (all threads) of one
    forward [s]. On a shared machine the wall time grows with the load; the CPU time does not
    (cpu_s / threads is the best-case wall time)."""

    wall_s: float
    cpu_s: float


def cpu_latency(model: FusionOcc, inputs: ExampleInputs, runs: int = 3, threads: int = 2) -> Latency:
    """Median time of `runs` no-grad forward passes on CPU after one warm-up, with `threads` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model.eval()
        walls, cpus = [], []
        with torch.no_grad():
            model(*inputs.as_tuple())  # warm-up (allocations, lift-splat plans)
            for _ in range(runs):
                wall, cpu = time.perf_counter(), time.process_time()
                model(*inputs.as_tuple())
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
        return Latency(statistics.median(walls), statistics.median(cpus))
    finally:
        torch.set_num_threads(previous)


def count_static_flops(config: FusionOccConfig) -> dict[str, int]:
    """FLOPs of the shape-static parts, counted on the meta device (no memory, no arithmetic; any preset).

    Counts every camera frame's image backbone + neck + cross-modal fusion + depth/seg net and the 3D encoder,
    FPN and head. Excluded (data-dependent, need real inputs; see `count_flops`): the lift-splat pooling (an
    outer product of depth and features, well under 1% of the total) and the sparse lidar encoder.
    """
    with torch.device("meta"):
        model = FusionOcc(config)
    camera = model.camera
    images = config.num_frames * len(CAMERA_YAWS_DEG)
    h, w = config.camera.input_size
    fh, fw = config.camera.feature_size
    x, y, z = config.volume_grid_shape
    result = {}
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            features = camera.neck(camera.backbone(torch.empty(images, 3, h, w, device="meta")))
            depth_one_hot = torch.empty(images, config.camera.num_depth_bins, fh, fw, device="meta")
            fused = camera.fusion(features, depth_one_hot)
            camera.depth_net(fused, torch.empty(images, 27, device="meta"))
        result["camera_2d"] = int(counter.get_total_flops())
        counter = FlopCounterMode(display=False)
        with counter:
            volume = torch.empty(1, config.camera.feature_channels, z, y, x, device="meta")
            for _ in range(config.num_frames):
                camera.pre_process(volume)
            fused_volume = torch.empty(1, config.fused_channels, z, y, x, device="meta")
            model.head(model.occ_fpn(model.occ_encoder(fused_volume)))
        result["volume_3d"] = int(counter.get_total_flops())
    result["total_static"] = result["camera_2d"] + result["volume_3d"]
    return result


def count_lidar_flops(config: FusionOccConfig, inputs: ExampleInputs, seed: int = 0) -> int:
    """FLOPs of the lidar branch (voxelization + sparse encoder) on `inputs.points`, counted on CPU.

    Builds only the lidar encoder (the rest of the model stays on the meta device), so it is cheap for every
    preset. On CPU spconv's Native algorithm runs its per-offset GEMMs through torch.mm, which the counter sees.
    """
    from fusionocc_core.model.lidar_encoder import LidarEncoder

    with torch.device("meta"):
        model = FusionOcc(config)
    torch.manual_seed(seed)
    model.lidar_encoder = LidarEncoder(
        config.lidar_in_channels,
        config.lidar_out_channels,
        model.lidar_encoder.sparse_shape,
        config.lidar_stage_channels,
    ).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.encode_lidar(inputs.points, inputs.images.shape[0])
    return int(counter.get_total_flops())


def backbone_name(config: FusionOccConfig) -> str:
    """'Swin-B', 'ResNet-50', ... of a config's image backbone, as the docs name it."""
    camera = config.camera
    if camera.backbone == "swin":
        if camera.swin_embed_dim == 128 and tuple(camera.swin_depths) == (2, 2, 18, 2):
            return "Swin-B"
        return f"Swin (embed {camera.swin_embed_dim}, depths {'-'.join(map(str, camera.swin_depths))})"
    name = camera.backbone.replace("resnet", "ResNet-")
    return name if camera.resnet_width == 64 else f"{name} (width {camera.resnet_width})"


def _gflops(flops: int) -> str:
    value = flops / 1e9
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def preset_row(name: str) -> str:
    """One row of the presets table: backbone and input, parameters, GFLOPs of one sample (all frames x 6
    cameras): total = static camera 2D + static 3D (meta device) + counted sparse lidar (CPU)."""
    from fusionocc_core.model.presets import get_config

    config = get_config(name)
    with torch.device("meta"):
        parameters = count_parameters(FusionOcc(config))
    static = count_static_flops(config)
    lidar = count_lidar_flops(config, example_inputs(config))
    total = static["total_static"] + lidar
    h, w = config.camera.input_size
    return (
        f"| `{name}` | {backbone_name(config)}, {h} x {w} | {parameters:,} | {_gflops(total)} "
        f"(camera 2D {_gflops(static['camera_2d'])}, 3D {_gflops(static['volume_3d'])}, "
        f"sparse lidar {_gflops(lidar)}) |"
    )


TABLE_HEADER = (
    "| Preset | Backbone, input | Parameters | GFLOPs (one sample, 2 frames x 6 cameras) |\n"
    "|---|---|---|---|"
)


def main(argv: list[str]) -> None:
    """Prints the presets table (markdown) of the named presets (default tiny, fast, official); with
    `--latency` also the median CPU latency of a forward on 2 threads (tiny/fast/reduced_a only)."""
    from fusionocc_core.model.presets import build_model, get_config

    latency_wanted = "--latency" in argv
    names = [a for a in argv if a != "--latency"] or ["tiny", "fast", "official"]
    torch.set_num_threads(2)
    print(TABLE_HEADER, flush=True)
    for name in names:
        print(preset_row(name), flush=True)
    if not latency_wanted:
        return
    for name in names:
        if name not in ("tiny", "fast", "reduced_a"):
            continue
        torch.manual_seed(0)
        model = build_model(name).eval()
        runs = 3 if name != "fast" else 1
        latency = cpu_latency(model, example_inputs(get_config(name)), runs=runs)
        print(
            f"{name}: latency (2 threads, median of {runs}) wall {latency.wall_s:.2f} s, CPU {latency.cpu_s:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
