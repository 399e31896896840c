"""Parameter / FLOP counts and CPU latency of a model configuration, on synthetic but well-formed inputs.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`. On CPU spconv's Native algorithm runs its
per-offset GEMMs through torch.mm, so the counter sees the sparse convs' real work (2 * Cin * Cout per pair);
with CUDA implicit-gemm it would not. `lidar_sparse_upper_bound` gives 2 * Cin * Cout * K * active outputs per
sparse layer (as if every kernel tap hit an active input) for comparison.

Run `python -m fusionocc_core.model.flops [preset ...]` to print a table.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Self

import torch
from torch.utils.flop_counter import FlopCounterMode

from fusionocc_core import occ3d
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
    counter = FlopCounterMode(display=False, depth=1)
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
    z, y, x = occ3d.GRID_SHAPE[::-1]
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


def main(argv: list[str]) -> None:
    """Prints parameters, FLOPs and (for tiny/fast/reduced_a) CPU latency of the named presets."""
    from fusionocc_core.model.presets import build_model, get_config

    torch.set_num_threads(2)
    names = argv or ["tiny", "fast", "official"]
    for name in names:
        config = get_config(name)
        static = count_static_flops(config)
        line = (
            f"{name}: static GFLOPs {static['total_static'] / 1e9:.1f} "
            f"(camera 2D {static['camera_2d'] / 1e9:.1f}, "
            f"3D {static['volume_3d'] / 1e9:.1f})"
        )
        if name in ("tiny", "fast", "reduced_a"):
            torch.manual_seed(0)
            model = build_model(name).eval()
            inputs = example_inputs(config)
            line += f"  params {count_parameters(model):,}"
        if name in ("tiny", "reduced_a"):  # a counted run is one more forward: skipped for the big presets
            flops = count_flops(model, inputs)
            line += (
                f"  counted GFLOPs {flops['total_dense'] / 1e9:.1f} ("
                + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in flops.items() if k != "total_dense")
                + ")"
            )
        if name in ("tiny", "fast", "reduced_a"):
            runs = 3 if name != "fast" else 1
            latency = cpu_latency(model, inputs, runs=runs)
            line += (
                f"  latency (2 threads, median of {runs}) wall {latency.wall_s:.2f} s, "
                f"CPU {latency.cpu_s:.2f} s"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
