"""Benchmarks: where the milliseconds go, as ratios against straightforward baselines measured in the same run.

Each suite prints a table (median, p95, ratio against its baseline) and the whole run is written as JSON.
`--quick` shrinks repeats and sizes so every suite finishes in seconds (CI); the figures in docs/benchmarks.md
come from a full run. Suites whose part of the project is missing, or that need CUDA without it, report
themselves skipped.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Row:
    """One measured case of a suite."""

    case: str
    median_ms: float
    p95_ms: float
    baseline_ms: float | None = None  # the baseline's median for the same case, when the suite has one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        return None if self.baseline_ms is None else self.baseline_ms / self.median_ms


@dataclass
class SuiteResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


class SuiteSkipped(Exception):
    """Raised by a suite that cannot run here (missing part, no CUDA)."""


def time_call(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> tuple[float, float, list[float]]:
    """Median and p95 wall time [ms] of `fn()` over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), float(np.percentile(times, 95)), times


# ------------------------------------------------------------------------------------------------------------
# scatter: the scatter-mean of dynamic voxelization with torch's own reductions (and torch-scatter if present)
# ------------------------------------------------------------------------------------------------------------


def suite_scatter(quick: bool) -> SuiteResult:
    import torch

    result = SuiteResult("scatter")
    points, voxels, channels = (60_000, 12_000, 5) if quick else (300_000, 60_000, 5)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(points, channels, generator=generator)
    ids = torch.randint(0, voxels, (points,), generator=generator)

    def index_add_mean() -> torch.Tensor:
        sums = torch.zeros(voxels, channels).index_add_(0, ids, features)
        counts = torch.zeros(voxels).index_add_(0, ids, torch.ones(points))
        return sums / counts.clamp(min=1)[:, None]

    def scatter_reduce_mean() -> torch.Tensor:
        index = ids[:, None].expand(-1, channels)
        return torch.zeros(voxels, channels).scatter_reduce_(0, index, features, "mean", include_self=False)

    cases: dict[str, Callable[[], torch.Tensor]] = {
        "torch index_add_ sum/count": index_add_mean,
        "torch scatter_reduce_ mean": scatter_reduce_mean,
    }
    try:
        import torch_scatter

        cases["torch_scatter.scatter_mean"] = lambda: torch_scatter.scatter_mean(features, ids, 0, dim_size=voxels)
    except ImportError:
        result.notes.append("torch-scatter not installed: its row is missing (docs/install.md has a same-run figure)")
    reference = index_add_mean()
    baseline = None
    for name, fn in cases.items():
        torch.testing.assert_close(fn(), reference, rtol=1e-5, atol=1e-5)
        median, p95, _ = time_call(fn, repeats=5 if quick else 30)
        baseline = baseline if baseline is not None else median
        result.rows.append(Row(f"{name} ({points // 1000}k pts -> {voxels // 1000}k voxels)", median, p95,
                               baseline_ms=baseline))
    return result


# ------------------------------------------------------------------------------------------------------------
# outputs: PointCloud2 and MarkerArray building against a per-voxel Python loop
# ------------------------------------------------------------------------------------------------------------


def _random_occupancy(occupied: int, seed: int) -> np.ndarray:
    from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE

    rng = np.random.default_rng(seed)
    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    flat = rng.choice(labels.size, size=occupied, replace=False)
    labels.reshape(-1)[flat] = rng.integers(0, FREE_LABEL, size=occupied, dtype=np.uint8)
    return labels


def loop_occupancy_to_pointcloud2(labels: np.ndarray) -> bytes:
    """The straightforward baseline: one Python iteration and one struct.pack per occupied voxel."""
    from fusionocc_core.occ3d import CLASS_COLORS, FREE_LABEL, POINT_CLOUD_RANGE, VOXEL_SIZE

    data = bytearray()
    for i, j, k in np.argwhere(labels != FREE_LABEL).tolist():  # only the occupied voxels: a fair baseline
        label = int(labels[i, j, k])
        r, g, b = (int(c) for c in CLASS_COLORS[label])
        rgb = struct.unpack("<f", struct.pack("<I", (r << 16) | (g << 8) | b))[0]
        x = POINT_CLOUD_RANGE[0] + VOXEL_SIZE * (i + 0.5)
        y = POINT_CLOUD_RANGE[1] + VOXEL_SIZE * (j + 0.5)
        z = POINT_CLOUD_RANGE[2] + VOXEL_SIZE * (k + 0.5)
        data += struct.pack("<ffffBxxx", x, y, z, rgb, label)
    return bytes(data)


def loop_occupancy_to_marker_points(labels: np.ndarray) -> dict[int, list[Any]]:
    """Baseline for the MarkerArray: per occupied voxel, a geometry_msgs/Point appended to its class's list."""
    from geometry_msgs.msg import Point

    from fusionocc_core.occ3d import FREE_LABEL, POINT_CLOUD_RANGE, VOXEL_SIZE

    per_class: dict[int, list[Any]] = {}
    for i, j, k in np.argwhere(labels != FREE_LABEL).tolist():
        per_class.setdefault(int(labels[i, j, k]), []).append(Point(
            x=POINT_CLOUD_RANGE[0] + VOXEL_SIZE * (i + 0.5),
            y=POINT_CLOUD_RANGE[1] + VOXEL_SIZE * (j + 0.5),
            z=POINT_CLOUD_RANGE[2] + VOXEL_SIZE * (k + 0.5)))
    return per_class


def suite_outputs(quick: bool) -> SuiteResult:
    try:
        from fusionocc_ros.conversions import marker_voxels, occupancy_to_marker_array, occupancy_to_pointcloud2
        from fusionocc_ros.marker_cdr import cdr_layout_matches, marker_array_cdr
    except ImportError as error:
        raise SuiteSkipped(f"needs the ROS message wheels: {error}") from error
    result = SuiteResult("outputs")
    if not cdr_layout_matches():
        raise AssertionError("marker_array_cdr does not match the installed visualization_msgs layout")
    sizes = (10_000, 50_000) if quick else (10_000, 50_000, 200_000)
    repeats = 3 if quick else 10
    baseline_repeats = 1 if quick else 3
    for occupied in sizes:
        labels = _random_occupancy(occupied, seed=occupied)
        cloud = occupancy_to_pointcloud2(labels)
        payload = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, 20)[:, :17]
        baseline_payload = np.frombuffer(loop_occupancy_to_pointcloud2(labels), np.uint8).reshape(-1, 20)[:, :17]
        if not np.array_equal(payload, baseline_payload):
            raise AssertionError("vectorised PointCloud2 differs from the per-voxel baseline")
        base, _, _ = time_call(lambda: loop_occupancy_to_pointcloud2(labels), repeats=baseline_repeats, warmup=0)
        median, p95, _ = time_call(lambda: occupancy_to_pointcloud2(labels), repeats=repeats)
        result.rows.append(Row(f"PointCloud2 {occupied // 1000}k voxels", median, p95, baseline_ms=base))
        base, _, _ = time_call(lambda: loop_occupancy_to_marker_points(labels), repeats=baseline_repeats, warmup=0)
        median, p95, _ = time_call(
            lambda: occupancy_to_marker_array(labels, max_cubes=labels.size), repeats=repeats)
        result.rows.append(Row(f"MarkerArray objects {occupied // 1000}k voxels", median, p95, baseline_ms=base))

        def cdr() -> bytes:  # what the node does
            indices, values, _ = marker_voxels(labels, max_cubes=labels.size)
            return marker_array_cdr(indices, values, sec=0, nanosec=0, frame_id="base_link")

        median, p95, _ = time_call(cdr, repeats=repeats)
        result.rows.append(Row(f"MarkerArray CDR bytes {occupied // 1000}k voxels", median, p95, baseline_ms=base))
    result.notes.append("targets: >= 20x faster than the per-voxel loop; PointCloud2 <= 5 ms at 50k voxels")
    return result


# ------------------------------------------------------------------------------------------------------------
# sync: LidarAnchoredSync against a straightforward linear search over the candidate queues
# ------------------------------------------------------------------------------------------------------------

NUSCENES_CAMERA_OFFSETS_MS = (-33.0, -25.0, -17.0, 17.0, 25.0, 33.0)  # stagger of the six cameras in a sweep


def nuscenes_timed_stream(seconds: float, *, drop: float, reorder: float, seed: int) -> list[tuple[str, int]]:
    """(topic, stamp_ns) in arrival order: lidar at 20 Hz, six cameras at 12 Hz staggered across the sweep,
    a fraction `drop` of messages lost and a fraction `reorder` swapped with their successor."""
    from fusionocc_core.occ3d import CAMERA_NAMES

    rng = np.random.default_rng(seed)
    events = [("lidar", int(t * 1e9)) for t in np.arange(0.0, seconds, 0.05)]
    for name, offset in zip(CAMERA_NAMES, NUSCENES_CAMERA_OFFSETS_MS, strict=True):
        events += [(name, int((t + offset / 1e3) * 1e9)) for t in np.arange(0.1, seconds, 1 / 12)]
    events.sort(key=lambda event: event[1])
    events = [event for event in events if rng.random() >= drop]
    for i in range(len(events) - 1):
        if rng.random() < reorder:
            events[i], events[i + 1] = events[i + 1], events[i]
    return events


class LinearSearchSync:
    """The straightforward design: per-topic lists; on every message, every pending sweep scans every camera list
    for its nearest image in the window. Same grouping rule as LidarAnchoredSync, cost O(queue length)."""

    def __init__(self, cameras: tuple[str, ...], *, window_s: float, slack_s: float, queue_size: int) -> None:
        self.cameras, self.queue_size = cameras, queue_size
        self.window, self.slack = int(window_s * 1e9), int(slack_s * 1e9)
        self.queues: dict[str, list[int]] = {name: [] for name in cameras}
        self.pending: list[int] = []
        self.clock = -(2**62)
        self.last = -(2**62)

    def add(self, topic: str, stamp: int) -> list[tuple[int, tuple[int, ...]]]:
        self.clock = max(self.clock, stamp)
        if topic == "lidar":
            if stamp > self.last:
                self.pending = (self.pending + [stamp])[-self.queue_size:]
        else:
            self.queues[topic] = (self.queues[topic] + [stamp])[-self.queue_size:]
        groups = []
        for anchor in list(self.pending):
            if self.clock < anchor + self.window + self.slack:
                continue
            chosen = []
            for name in self.cameras:
                best = None
                for candidate in self.queues[name]:
                    if abs(candidate - anchor) <= self.window and (best is None or
                                                                  abs(candidate - anchor) < abs(best - anchor)):
                        best = candidate
                chosen.append(best)
            self.pending.remove(anchor)
            if all(c is not None for c in chosen) and anchor > self.last:
                groups.append((anchor, tuple(chosen)))
                self.last = anchor
        return groups


class ProductSearchSync:
    """message_filters' Python ApproximateTimeSynchronizer design: on every message, search the product of all
    per-topic queues for a combination whose stamps lie within `slop`; emit the tightest one. Cost ~ Q^topics."""

    def __init__(self, topics: tuple[str, ...], *, slop_s: float, queue_size: int) -> None:
        self.topics, self.queue_size, self.slop = topics, queue_size, int(slop_s * 1e9)
        self.queues: dict[str, list[int]] = {name: [] for name in topics}

    def add(self, topic: str, stamp: int) -> list[tuple[int, tuple[int, ...]]]:
        import itertools

        self.queues[topic] = sorted(self.queues[topic] + [stamp])[-self.queue_size:]
        best, best_spread = None, None
        for combo in itertools.product(*(self.queues[name] for name in self.topics)):
            spread = max(combo) - min(combo)
            if spread <= self.slop and (best_spread is None or spread < best_spread):
                best, best_spread = combo, spread
        if best is None:
            return []
        for name, chosen in zip(self.topics, best, strict=True):
            self.queues[name] = [s for s in self.queues[name] if s > chosen]
        return [(best[0], best[1:])]


def suite_sync(quick: bool) -> SuiteResult:
    from fusionocc_core.occ3d import CAMERA_NAMES
    from fusionocc_ros.sync import LidarAnchoredSync

    result = SuiteResult("sync")
    seconds = 20.0 if quick else 120.0
    events = nuscenes_timed_stream(seconds, drop=0.15, reorder=0.15, seed=1)
    window_s, slack_s = 0.05, 0.06
    for queue_size in (8, 64) if quick else (8, 64, 512):
        delays: dict[str, list[float]] = {"ours": [], "linear": []}

        def ours() -> list:
            sync = LidarAnchoredSync(CAMERA_NAMES, window_min_s=-window_s, window_max_s=window_s,
                                     camera_queue_size=queue_size, lidar_queue_size=queue_size,
                                     arrival_slack_s=slack_s)
            groups, delays["ours"] = [], []
            for topic, stamp in events:
                new = sync.add_lidar(stamp, None) if topic == "lidar" else sync.add_camera(topic, stamp, None)
                groups += [(g.stamp_ns, g.camera_stamps_ns) for g in new]
                delays["ours"] += [(stamp - g.stamp_ns) / 1e6 for g in new]
            return groups

        def linear() -> list:
            sync = LinearSearchSync(CAMERA_NAMES, window_s=window_s, slack_s=slack_s, queue_size=queue_size)
            groups, delays["linear"] = [], []
            for topic, stamp in events:
                new = sync.add(topic, stamp)
                groups += new
                delays["linear"] += [(stamp - anchor) / 1e6 for anchor, _ in new]
            return groups

        found, reference = ours(), linear()
        base, _, _ = time_call(linear, repeats=1 if quick else 3, warmup=0)
        median, p95, _ = time_call(ours, repeats=1 if quick else 3, warmup=0)
        per_message = 1e3 / len(events)  # ms -> us per message
        result.rows.append(Row(
            f"queue {queue_size}: us/msg (groups {len(found)} vs {len(reference)}, "
            f"delay {np.mean(delays['ours']):.0f} vs {np.mean(delays['linear']):.0f} ms)",
            median * per_message, p95 * per_message, baseline_ms=base * per_message,
            extra={"messages": len(events), "groups": len(found), "baseline_groups": len(reference),
                   "same_groups": found == reference, "mean_delay_ms": float(np.mean(delays["ours"])),
                   "baseline_mean_delay_ms": float(np.mean(delays["linear"]))}))
    short = nuscenes_timed_stream(2.0 if quick else 10.0, drop=0.15, reorder=0.15, seed=1)
    for queue_size in (2, 3) if quick else (2, 3, 4):
        def product() -> list:
            sync = ProductSearchSync(("lidar", *CAMERA_NAMES), slop_s=2 * window_s, queue_size=queue_size)
            return [group for topic, stamp in short for group in sync.add(topic, stamp)]

        def ours_short() -> list:
            sync = LidarAnchoredSync(CAMERA_NAMES, window_min_s=-window_s, window_max_s=window_s,
                                     camera_queue_size=queue_size, lidar_queue_size=queue_size,
                                     arrival_slack_s=slack_s)
            return [group for topic, stamp in short for group in
                    (sync.add_lidar(stamp, None) if topic == "lidar" else sync.add_camera(topic, stamp, None))]

        found, reference = ours_short(), product()
        base, _, _ = time_call(product, repeats=1, warmup=0)
        median, p95, _ = time_call(ours_short, repeats=1 if quick else 3, warmup=0)
        per_message = 1e3 / len(short)
        result.rows.append(Row(
            f"vs product search, queue {queue_size}: us/msg (groups {len(found)} vs {len(reference)})",
            median * per_message, p95 * per_message, baseline_ms=base * per_message,
            extra={"messages": len(short), "groups": len(found), "baseline_groups": len(reference)}))
    result.notes.append(f"{len(events)} messages, {seconds:.0f} s of a 7-topic nuScenes-timed stream, 15% dropped, "
                        "15% reordered; the 'ms' columns are microseconds per message here; delay = stream time from the "
                        "lidar stamp to the message that completed its group")
    return result


# ------------------------------------------------------------------------------------------------------------
# lift_splat: BEVPool-v2 style pooling with a cached plan against the straightforward vectorised lift-splat
# ------------------------------------------------------------------------------------------------------------


def naive_lift_splat(depth, feat, intrinsics, cam_to_ego, post_rots, post_trans, bda, frustum, grid_shape):
    """The straightforward LSS: every frame, geometry of all frustum points, the full depth x feature outer
    product (B, N, D, h, w, C), then one masked index_add into the voxels."""
    import torch

    from fusionocc_core.model.lift_splat import frustum_to_ego
    from fusionocc_core.occ3d import POINT_CLOUD_RANGE, VOXEL_SIZE

    b, n, c, h, w = feat.shape
    nx, ny, nz = grid_shape
    points = frustum_to_ego(frustum, intrinsics, cam_to_ego, post_rots, post_trans, bda)
    lower = torch.tensor(POINT_CLOUD_RANGE[:3], dtype=torch.float32)
    coor = ((points - lower) / VOXEL_SIZE).long().view(-1, 3)
    kept = ((coor >= 0) & (coor < torch.tensor([nx, ny, nz]))).all(dim=1)
    batch = torch.arange(b).repeat_interleave(coor.shape[0] // b)
    rank = ((batch * nz + coor[:, 2]) * ny + coor[:, 1]) * nx + coor[:, 0]
    lifted = depth.unsqueeze(-1) * feat.permute(0, 1, 3, 4, 2).unsqueeze(2)  # (B, N, D, h, w, C)
    out = feat.new_zeros(b * nz * ny * nx, c).index_add(0, rank[kept], lifted.reshape(-1, c)[kept])
    return out.view(b, nz, ny, nx, c).permute(0, 4, 1, 2, 3).contiguous()  # the layout the 3D convs take


def suite_lift_splat(quick: bool) -> SuiteResult:
    import torch

    try:
        from fusionocc_core.model.lift_splat import create_frustum, frustum_to_ego, plan_voxel_pooling, voxel_pool
        from fusionocc_core.model.presets import get_config
    except ImportError as error:
        raise SuiteSkipped(f"model package missing: {error}") from error
    from fusionocc_core.occ3d import GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE

    result = SuiteResult("lift_splat")
    camera = get_config("fast").camera
    height, width = camera.input_size
    channels = 8 if quick else camera.feature_channels * 2  # the lifted feature: segmentation + context
    generator = torch.Generator().manual_seed(0)
    b, n = 1, 6
    frustum = create_frustum(camera.depth_bins, camera.input_size, camera.downsample)
    d, h, w, _ = frustum.shape
    depth = torch.rand(b, n, d, h, w, generator=generator).softmax(dim=2)
    feat = torch.randn(b, n, channels, h, w, generator=generator)
    intrinsics = torch.tensor([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]]).expand(b, n, 3, 3)
    cam_to_ego = torch.eye(4).repeat(b, n, 1, 1)
    for i, yaw in enumerate(torch.deg2rad(torch.tensor([55.0, 0.0, -55.0, 110.0, 180.0, -110.0]))):
        c, s = torch.cos(yaw), torch.sin(yaw)
        to_ego = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # camera axes in ego
        cam_to_ego[0, i, :3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ to_ego
        cam_to_ego[0, i, :3, 3] = torch.tensor([1.0, 0.0, 1.6])
    scale = width / 1600
    post_rots = torch.diag(torch.tensor([scale, scale, 1.0])).expand(b, n, 3, 3)
    post_trans = torch.tensor([0.0, -(900 * scale - height), 0.0]).expand(b, n, 3)
    bda = torch.eye(3)[None]
    geometry = (intrinsics, cam_to_ego, post_rots, post_trans, bda)

    def plan():
        points = frustum_to_ego(frustum, *geometry)
        return plan_voxel_pooling(points, POINT_CLOUD_RANGE[:3], (VOXEL_SIZE,) * 3, GRID_SHAPE)

    cached = plan()
    ours = voxel_pool(depth, feat, cached, GRID_SHAPE)
    naive = naive_lift_splat(depth, feat, *geometry, frustum, GRID_SHAPE)
    torch.testing.assert_close(ours, naive, rtol=1e-4, atol=1e-5)
    repeats = 2 if quick else 7
    base, _, _ = time_call(lambda: naive_lift_splat(depth, feat, *geometry, frustum, GRID_SHAPE), repeats=repeats)
    median, p95, _ = time_call(lambda: voxel_pool(depth, feat, cached, GRID_SHAPE), repeats=repeats)
    size = f"6 x {d} x {h} x {w}, C={channels}"
    result.rows.append(Row(f"pooled, cached plan (static rig) [{size}]", median, p95, baseline_ms=base,
                           extra={"frustum_points_in_grid": int(cached.ranks_bev.numel())}))
    median, p95, _ = time_call(lambda: voxel_pool(depth, feat, plan(), GRID_SHAPE), repeats=repeats)
    result.rows.append(Row(f"pooled, plan rebuilt every frame [{size}]", median, p95, baseline_ms=base))
    result.notes.append("baseline: the straightforward vectorised lift-splat (geometry + full outer product + "
                        "masked index_add every frame, contiguous (B, C, Z, Y, X) out); outputs checked equal")
    return result


# ------------------------------------------------------------------------------------------------------------
# node: one frame through the node's path, stage by stage, on the synthetic world
# ------------------------------------------------------------------------------------------------------------


def _synthetic_frames(count: int) -> list[tuple[list[bytes], Any]]:
    """`count` consecutive keyframes of the small synthetic world: (six JPEG byte strings, SensorFrame sans images)."""
    from nuscenes.nuscenes import NuScenes

    from fusionocc_core.geometry import make_transform
    from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
    from fusionocc_core.predictor import SensorFrame
    from fusionocc_core.synth import ensure_dataset

    dataroot = ensure_dataset(Path(".cache/synth"), num_scenes=1, keyframes_per_scene=max(count, 2), seed=2026,
                              image_width=704, image_height=396, with_sweeps=False, progress=False)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(dataroot), verbose=False)
    frames, token = [], nusc.scene[0]["first_sample_token"]
    while token and len(frames) < count:
        sample = nusc.get("sample", token)
        jpegs, intrinsics, cam_to_ego = [], [], []
        for name in CAMERA_NAMES:
            data = nusc.get("sample_data", sample["data"][name])
            calib = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
            jpegs.append(Path(dataroot, data["filename"]).read_bytes())
            intrinsics.append(np.asarray(calib["camera_intrinsic"]))
            cam_to_ego.append(make_transform(calib["translation"], calib["rotation"]))
        lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])
        calib = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", lidar["ego_pose_token"])
        points = np.fromfile(Path(dataroot, lidar["filename"]), dtype=np.float32).reshape(-1, 5)
        frames.append((jpegs, SensorFrame(
            images=np.zeros((6, 1, 1, 3), np.uint8), intrinsics=np.stack(intrinsics), cam_to_ego=np.stack(cam_to_ego),
            lidar_points=points, lidar_to_ego=make_transform(calib["translation"], calib["rotation"]),
            ego_to_global=make_transform(pose["translation"], pose["rotation"]), stamp_s=lidar["timestamp"] * 1e-6)))
        token = sample["next"]
    return frames


class _ModuleTimer:
    """Wall time per named submodule (summed over its calls in one forward) through forward hooks."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.totals: dict[str, float] = dict.fromkeys(modules, 0.0)
        self._starts: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(
                lambda _m, _i, name=name: self._starts.__setitem__(name, time.perf_counter())))
            self._handles.append(module.register_forward_hook(lambda _m, _i, _o, name=name: self._stop(name)))

    def _stop(self, name: str) -> None:
        self.totals[name] += (time.perf_counter() - self._starts.pop(name)) * 1e3

    def reset(self) -> None:
        self.totals = dict.fromkeys(self.totals, 0.0)


def suite_node(quick: bool) -> SuiteResult:
    import torch

    try:
        from fusionocc_core.model.presets import build_model
        from fusionocc_core.predictor import Predictor
        from fusionocc_ros.conversions import (
            compressed_image_to_rgb,
            dense_grid_to_image,
            occupancy_to_occupancy_grid,
            occupancy_to_pointcloud2,
        )
        from fusionocc_ros.marker_cdr import marker_array_cdr
    except ImportError as error:
        raise SuiteSkipped(f"needs the model and the ROS message wheels: {error}") from error
    from types import SimpleNamespace

    from fusionocc_core.occ3d import FREE_LABEL

    result = SuiteResult("node")
    frames = _synthetic_frames(3 if quick else 6)
    for preset in ("tiny",) if quick else ("tiny", "fast"):
        torch.manual_seed(0)
        model = build_model(preset).eval()
        predictor = Predictor(model, device="cpu")
        height, width = predictor.input_size
        parts = {"model: image backbone + neck": [model.camera.backbone, model.camera.neck],
                 "model: cross-modal fusion + depth/seg net": [model.camera.fusion, model.camera.depth_net],
                 "model: lift-splat + 3D pre-process": [model.camera.lift_splat, model.camera.pre_process],
                 "model: lidar voxelization + sparse encoder": [model.lidar_encoder],
                 "model: 3D fusion encoder + FPN + head": [model.occ_encoder, model.occ_fpn, model.head]}
        timer = _ModuleTimer({f"{name}#{i}": m for name, mods in parts.items() for i, m in enumerate(mods)})
        stages: dict[str, list[float]] = {}

        def record(stage: str, ms: float) -> None:
            stages.setdefault(stage, []).append(ms)

        for index, (jpegs, frame) in enumerate(frames):
            start = time.perf_counter()
            images = [compressed_image_to_rgb(SimpleNamespace(data=j, format="jpeg"), min_size=(width, height))
                      for j in jpegs]
            decode_ms = (time.perf_counter() - start) * 1e3
            scale = images[0].shape[1] / 704  # draft decoding may shrink the images: scale the intrinsics
            intrinsics = frame.intrinsics.copy()
            intrinsics[:, :2] *= scale
            sensor = SensorFrame_replace(frame, images=np.stack(images), intrinsics=intrinsics)
            timer.reset()
            prediction = predictor.predict(sensor)
            start = time.perf_counter()
            labels = prediction.labels
            indices = np.argwhere(labels != FREE_LABEL)
            occupancy_to_pointcloud2(labels)
            marker_array_cdr(indices, labels[tuple(indices.T)], sec=0, nanosec=0, frame_id="base_link")
            dense_grid_to_image(labels)
            occupancy_to_occupancy_grid(labels)
            messages_ms = (time.perf_counter() - start) * 1e3
            if index == 0:
                continue  # warm-up (first-call allocations, spconv kernels)
            record("decode 6 JPEGs", decode_ms)
            record("preprocess: images (resize, crop, normalise)", prediction.timings_ms["images"])
            record("preprocess: temporal history", prediction.timings_ms["history"])
            record("preprocess: sparse depth", prediction.timings_ms["depth"])
            model_total = prediction.timings_ms["inference"]
            accounted = 0.0
            for name, modules in parts.items():
                ms = sum(timer.totals[f"{name}#{i}"] for i in range(len(modules)))
                accounted += ms
                record(name, ms)
            record("model: other (argmax, glue)", model_total - accounted)
            record("output messages (cloud, markers, dense, grid)", messages_ms)
        total = [sum(values[i] for values in stages.values()) for i in range(len(frames) - 1)]
        model_share = [sum(v[i] for k, v in stages.items() if k.startswith("model")) for i in range(len(total))]
        for stage, values in stages.items():
            result.rows.append(Row(f"{preset}: {stage}", statistics.median(values), float(np.percentile(values, 95))))
        result.rows.append(Row(f"{preset}: TOTAL one frame", statistics.median(total), float(np.percentile(total, 95)),
                               extra={"non_model_share": 1 - statistics.median(model_share) / statistics.median(total),
                                      "input_size": [height, width]}))
        result.notes.append(f"{preset}: input {height}x{width}, non-model overhead "
                            f"{100 * (1 - statistics.median(model_share) / statistics.median(total)):.1f}% of the total")
    result.notes.append("CPU, fp32, temporal mode on (previous camera frame + up to 7 lidar keyframes), "
                        f"{torch.get_num_threads()} torch threads, synthetic 704x396 JPEGs; sync costs a few us "
                        "per message (sync suite)")
    return result


def SensorFrame_replace(frame: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(frame, **changes)


# ------------------------------------------------------------------------------------------------------------
# lidar: the sparse lidar branch on the torch rulebook path against spconv's CPU Native algorithm
# ------------------------------------------------------------------------------------------------------------


def _node_lidar_points(sweeps: int) -> Any:
    """The lidar input the node gives the model: `sweeps` consecutive keyframes of the synthetic world through
    `Predictor.prepare` (ring thinning, ego-motion compensation, current + previous keyframes fused), as
    (P, 6) [batch, x, y, z, intensity, time lag]. Images do not affect the points: blank ones are passed."""
    import dataclasses

    import torch

    from fusionocc_core.model.presets import build_model
    from fusionocc_core.predictor import Predictor

    predictor = Predictor(build_model("tiny").eval(), device="cpu")
    points = torch.zeros(0, 6)
    for _, frame in _synthetic_frames(sweeps):
        inputs, _ = predictor.prepare(dataclasses.replace(frame, images=np.zeros((6, 396, 704, 3), np.uint8)))
        points = inputs.points
    return points


def suite_lidar(quick: bool) -> SuiteResult:
    import torch

    try:
        from fusionocc_core.model.presets import build_model
        from fusionocc_core.model.voxelize import dynamic_voxelize
    except ImportError as error:
        raise SuiteSkipped(f"model package missing: {error}") from error
    from fusionocc_core import occ3d

    result = SuiteResult("lidar")
    sweeps = 3 if quick else 8  # the node fuses the current sweep with up to 7 previous keyframes
    points = _node_lidar_points(sweeps)
    repeats = 2 if quick else 7
    for preset in ("tiny",) if quick else ("tiny", "fast"):
        torch.manual_seed(0)
        model = build_model(preset).eval()
        encoder = model.lidar_encoder
        voxel_size = model.config.lidar_voxel_size
        voxels = dynamic_voxelize(points, 1, occ3d.POINT_CLOUD_RANGE, voxel_size).coords.shape[0]

        def branch(backend: str, model: Any = model) -> Any:
            model.lidar_encoder.sparse_backend = backend
            with torch.inference_mode():
                return model.encode_lidar(points, 1)  # voxelization + sparse encoder, as in the forward pass

        reference, ours = branch("spconv"), branch("torch")
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {"spconv": [], "torch": []}
        for _ in range(repeats):  # interleaved, so a burst of load on this shared machine hits both alike
            for backend, values in times.items():
                start = time.perf_counter()
                branch(backend)
                values.append((time.perf_counter() - start) * 1e3)
        encoder.sparse_backend = "auto"
        base = statistics.median(times["spconv"])
        label = f"{preset}: lidar branch, {voxels // 1000}k voxels ({sweeps} sweeps)"
        result.rows.append(Row(f"{label}, spconv Native", base, float(np.percentile(times["spconv"], 95)),
                               baseline_ms=base, extra={"voxels": voxels, "sweeps": sweeps}))
        result.rows.append(Row(f"{label}, torch rulebooks", statistics.median(times["torch"]),
                               float(np.percentile(times["torch"], 95)), baseline_ms=base,
                               extra={"voxels": voxels, "sweeps": sweeps}))
    result.notes.append(f"voxelization + sparse encoder (encode_lidar) on the node's fused sweep of the "
                        f"synthetic world; {torch.get_num_threads()} torch threads; backends interleaved, "
                        "outputs checked equal; ratio = speed-up over spconv's CPU Native algorithm")
    return result


# ------------------------------------------------------------------------------------------------------------
# contention: a frame next to a competing CPU-bound load, default threading against configure_cpu_inference
# ------------------------------------------------------------------------------------------------------------

CONTENTION_TARGET = 2.5  # frame time under the load / quiet, with the configuration (issue 19)
_HOG_CODE = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"


def contention_child(configured: bool, workload: str, repeats: int, hogs: int, hog_limit_s: float,
                     backend: str = "auto") -> dict[str, Any]:
    """Runs in a fresh process (the wait policy is fixed when torch loads): times `workload` quietly, then
    with `hogs` busy-looping processes beside it. Returns the timings and the threading actually in force.

    `backend` is the lidar encoder's sparse backend for the "frame" workload ("spconv": as before issue
    19)."""
    report = None
    if configured:
        from fusionocc_core.cpu_threads import configure_cpu_inference

        report = configure_cpu_inference()  # before torch is imported, as a node would call it
    import subprocess

    import torch

    from fusionocc_core.cpu_threads import wait_policy_in_force
    from fusionocc_core.model.flops import example_inputs
    from fusionocc_core.model.presets import build_model, get_config

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    model.lidar_encoder.sparse_backend = backend
    if workload == "frame":  # the whole model on synthetic inputs, a lidar sweep of node-like size
        inputs = example_inputs(get_config("tiny"), num_points=250_000).as_tuple()

        def run() -> None:
            with torch.inference_mode():
                model.predict(*inputs)
    else:  # "backbone": the 12 tiny-preset images through ResNet-18 (the stage that collapsed in issue 19)
        height, width = get_config("tiny").camera.input_size
        images = torch.randn(12, 3, height, width)

        def run() -> None:
            with torch.inference_mode():
                model.camera.backbone(images)

    def measure() -> list[float]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        return times

    run()  # warm-up
    quiet = measure()
    load = [subprocess.Popen([sys.executable, "-c", _HOG_CODE, str(hog_limit_s)]) for _ in range(hogs)]
    try:
        time.sleep(0.3)  # let the scheduler see the hogs
        loaded = measure()
    finally:
        for process in load:
            process.kill()
            process.wait()
    return {"quiet_ms": quiet, "loaded_ms": loaded, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "wait_policy": wait_policy_in_force(),
            "report": report.summary() if report else None}


def _run_contention_child(configured: bool, workload: str, repeats: int, hogs: int,
                          backend: str) -> dict[str, Any]:
    import os
    import subprocess

    env = dict(os.environ)
    for name in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        env.pop(name, None)  # "default" means the runtime's defaults; "configured" sets its own
    call = f"contention_child({configured}, {workload!r}, {repeats}, {hogs}, 600.0, {backend!r})"
    code = ("import json; from fusionocc_ros.bench import contention_child; "
            f"print('CONTENTION ' + json.dumps({call}))")
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               timeout=1800, cwd=str(Path(__file__).resolve().parents[1]))
    lines = [line for line in completed.stdout.splitlines() if line.startswith("CONTENTION ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"contention child failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(lines[-1][len("CONTENTION "):])


def suite_contention(quick: bool) -> SuiteResult:
    result = SuiteResult("contention")
    # quick: the image backbone only (seconds); full: whole tiny-model frames, first as before issue 19
    # (default threading, spconv Native), then default threading with the torch sparse path, then configured.
    workload = "backbone" if quick else "frame"
    repeats, hogs = (3, 2) if quick else (5, 2)
    setups = [("default", "auto"), ("configured", "auto")] if quick else [
        ("default", "spconv"), ("default", "auto"), ("configured", "auto")]
    quiet_first = None
    for name, backend in setups:
        child = _run_contention_child(name == "configured", workload, repeats, hogs, backend)
        quiet, loaded = statistics.median(child["quiet_ms"]), statistics.median(child["loaded_ms"])
        quiet_first = quiet_first if quiet_first is not None else quiet
        label = f"{name}{', spconv Native' if backend == 'spconv' else ''}: {workload}"
        setting = (f"{child['threads']} threads, inter-op {child['interop_threads']}, "
                   f"wait {child['wait_policy'] or 'default'}")
        result.rows.append(Row(f"{label} quiet ({setting})", quiet,
                               float(np.percentile(child["quiet_ms"], 95)), baseline_ms=quiet_first,
                               extra={"threads": child["threads"], "backend": backend}))
        result.rows.append(Row(f"{label} beside {hogs} busy processes", loaded,
                               float(np.percentile(child["loaded_ms"], 95)), baseline_ms=quiet,
                               extra={"slowdown": loaded / quiet, "target": CONTENTION_TARGET,
                                      "backend": backend}))
        result.notes.append(f"{label}: {loaded / quiet:.2f}x slower beside {hogs} busy processes than quiet"
                            + (f" (target <= {CONTENTION_TARGET}x); {child['report']}"
                               if child["report"] else ""))
    result.notes.append("each setup in a fresh process (the OpenMP wait policy is read when torch loads); "
                        "ratio column = quiet / this row (below 1: slower), quiet rows against the first "
                        "setup's quiet figure. 'frame': the tiny model on synthetic inputs (250k lidar points, ~88k "
                        "voxels); 'backbone': ResNet-18 on the 12 tiny-preset images")
    return result


# ------------------------------------------------------------------------------------------------------------
# convert: nuScenes -> rosbag2 throughput and size
# ------------------------------------------------------------------------------------------------------------


def suite_convert(quick: bool) -> SuiteResult:
    import shutil
    import tempfile

    from fusionocc_core.synth import ensure_dataset
    from fusionocc_ros.bag_converter import ConvertOptions, convert_scene, load_nuscenes

    result = SuiteResult("convert")
    dataroot = ensure_dataset(Path(".cache/synth"), num_scenes=1, keyframes_per_scene=4 if quick else 8, seed=7,
                              image_width=704, image_height=396, with_sweeps=True, progress=False)
    nusc = load_nuscenes(dataroot)
    scene = nusc.scene[0]["name"]
    for storage in ("mcap", "sqlite3"):
        times, report = [], None
        for _ in range(1 if quick else 3):
            out = Path(tempfile.mkdtemp(prefix="fusionocc-bench-"))
            try:
                start = time.perf_counter()
                report = convert_scene(nusc, scene, out / scene, options=ConvertOptions(storage=storage,
                                                                                        progress=False))
                times.append((time.perf_counter() - start) * 1e3)
            finally:
                shutil.rmtree(out, ignore_errors=True)
        frames = sum(count for topic, count in report.message_counts.items()
                     if topic.endswith("compressed") or topic == "/LIDAR_TOP")
        median = statistics.median(times)
        result.rows.append(Row(
            f"{storage}: {frames} sensor frames, {report.bag_bytes / 1e6:.1f} MB bag / "
            f"{report.source_bytes / 1e6:.1f} MB source = {report.bag_bytes / report.source_bytes:.3f}x",
            median, max(times), extra={"frames_per_s": frames / (median / 1e3), "bag_bytes": report.bag_bytes,
                                       "source_bytes": report.source_bytes, "messages": report.messages}))
        result.notes.append(f"{storage}: {frames / (median / 1e3):.0f} sensor frames/s "
                            f"({report.messages} messages incl. camera_info, tf, odom)")
    result.notes.append("synthetic scene with all sweeps, 704x396 JPEGs kept byte for byte (no re-encoding)")
    return result


# ------------------------------------------------------------------------------------------------------------
# gpu: end-to-end model latency per preset and precision on CUDA (skipped without CUDA)
# ------------------------------------------------------------------------------------------------------------


def suite_gpu(quick: bool) -> SuiteResult:
    import torch

    if not torch.cuda.is_available():
        raise SuiteSkipped("no CUDA device: GPU latencies are not measured on this machine")
    from fusionocc_core.model.flops import example_inputs
    from fusionocc_core.model.presets import build_model, get_config

    result = SuiteResult("gpu")
    device = torch.device("cuda")
    presets = ("tiny", "fast") if quick else ("tiny", "fast", "official")
    precisions = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    for preset in presets:
        model = build_model(preset).to(device).eval()
        inputs = [t.to(device) for t in example_inputs(get_config(preset)).as_tuple()]
        baseline = None
        for name, dtype in precisions.items():
            if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                continue

            def call(model: torch.nn.Module = model, dtype: torch.dtype | None = dtype) -> None:
                with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                    model.predict(*inputs)
                torch.cuda.synchronize()

            torch.cuda.reset_peak_memory_stats()
            median, p95, _ = time_call(call, repeats=5 if quick else 20, warmup=3)
            baseline = baseline if baseline is not None else median
            result.rows.append(Row(f"{preset} {name}", median, p95, baseline_ms=baseline,
                                   extra={"peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30}))
        del model
        torch.cuda.empty_cache()
    result.notes.append(f"{torch.cuda.get_device_name(0)}; ratio = speed-up over fp32 of the same preset; "
                        "temporal mode on, batch 1, synthetic inputs (fusionocc_core.model.flops.example_inputs)")
    return result


SUITES: dict[str, Callable[[bool], SuiteResult]] = {
    "scatter": suite_scatter,
    "outputs": suite_outputs,
    "sync": suite_sync,
    "lift_splat": suite_lift_splat,
    "node": suite_node,
    "lidar": suite_lidar,
    "contention": suite_contention,
    "convert": suite_convert,
    "gpu": suite_gpu,
}


def format_table(result: SuiteResult) -> str:
    if result.skipped:
        return f"== {result.name}: skipped ({result.skipped})"
    lines = [f"== {result.name}", f"{'case':58s} {'median ms':>10s} {'p95 ms':>9s} {'baseline ms':>12s} {'ratio':>7s}"]
    for row in result.rows:
        base = f"{row.baseline_ms:12.2f}" if row.baseline_ms is not None else f"{'-':>12s}"
        ratio = f"{row.speedup:6.1f}x" if row.speedup is not None else f"{'-':>7s}"
        lines.append(f"{row.case:58s} {row.median_ms:10.2f} {row.p95_ms:9.2f} {base} {ratio}")
    lines.extend(f"   note: {note}" for note in result.notes)
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), default=None,
                        help="suite to run (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI, under 2 minutes)")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench.json"),
                        help="where to write the results as JSON (default: outputs/bench.json)")


def run(args: argparse.Namespace) -> int:
    names = args.suite or list(SUITES)
    results = []
    for name in names:
        try:
            result = SUITES[name](args.quick)
        except SuiteSkipped as skipped:
            result = SuiteResult(name, skipped=str(skipped))
        print(format_table(result), flush=True)
        results.append(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_description(), "quick": args.quick,
              "suites": [asdict(r) | {"rows": [asdict(row) | {"speedup": row.speedup} for row in r.rows]}
                         for r in results]}
    args.json.write_text(json.dumps(report, indent=1))
    print(f"results written to {args.json}")
    return 0


def main_args(argv: list[str]) -> argparse.Namespace:
    """Parses `fusionocc bench` arguments (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="fusionocc bench", description=__doc__)
    add_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(main_args(sys.argv[1:])))
