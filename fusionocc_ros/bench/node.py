"""Suite `node`: one frame through the node's path, stage by stage, on the synthetic world."""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from fusionocc_ros.bench.common import Row, SuiteResult, SuiteSkipped

if TYPE_CHECKING:
    import torch

    from fusionocc_core.predictor import Predictor, SensorFrame


def synthetic_frames(count: int) -> list[tuple[list[bytes], SensorFrame]]:
    """`count` consecutive keyframes of the small synthetic world: (six JPEG byte strings, SensorFrame sans images)."""
    return [(jpegs, frame) for jpegs, frame, _ in synthetic_frames_with_truth(count)]


def synthetic_frames_with_truth(count: int) -> list[tuple[list[bytes], SensorFrame, np.ndarray]]:
    """As `synthetic_frames`, plus each keyframe's ground-truth occupancy labels (200, 200, 16) uint8."""
    from nuscenes.nuscenes import NuScenes

    from fusionocc_core.data.files import read_occ
    from fusionocc_core.geometry import make_transform
    from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
    from fusionocc_core.predictor import SensorFrame
    from fusionocc_core.synth import ensure_dataset

    dataroot = ensure_dataset(Path(".cache/synth"), num_scenes=1, keyframes_per_scene=max(count, 2), seed=2026,
                              image_width=704, image_height=396, with_sweeps=False, progress=False)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(dataroot), verbose=False)
    frames: list[tuple[list[bytes], SensorFrame, np.ndarray]] = []
    scene = nusc.scene[0]
    token = scene["first_sample_token"]
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
        truth = read_occ(Path(dataroot, "gts", scene["name"], token, "labels.npz"), keys=("semantics",))["semantics"]
        frames.append((jpegs, SensorFrame(
            images=np.zeros((6, 1, 1, 3), np.uint8), intrinsics=np.stack(intrinsics), cam_to_ego=np.stack(cam_to_ego),
            lidar_points=points, lidar_to_ego=make_transform(calib["translation"], calib["rotation"]),
            ego_to_global=make_transform(pose["translation"], pose["rotation"]), stamp_s=lidar["timestamp"] * 1e-6),
            truth.astype(np.uint8)))
        token = sample["next"]
    return frames


def decode_jpegs(jpegs: list[bytes], input_size: tuple[int, int]) -> list[np.ndarray]:
    """The six JPEGs decoded as the node decodes them (reduced-size DCT decode, at least `input_size` (H, W))."""
    from fusionocc_ros.conversions import compressed_image_to_rgb

    height, width = input_size
    return [compressed_image_to_rgb(SimpleNamespace(data=j, format="jpeg"), min_size=(width, height))
            for j in jpegs]


def with_images(frame: SensorFrame, images: list[np.ndarray]) -> SensorFrame:
    """`frame` with the decoded 704 x 396 synthetic images; draft decoding may have shrunk them, so the
    intrinsics are scaled to their width."""
    intrinsics = frame.intrinsics.copy()
    intrinsics[:, :2] *= images[0].shape[1] / 704
    return dataclasses.replace(frame, images=np.stack(images), intrinsics=intrinsics)


class _ModuleTimer:
    """Wall time per named submodule (summed over its calls in one forward) through forward hooks."""

    def __init__(self, modules: dict[str, torch.nn.Module]) -> None:
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


def _stage_times(predictor: Predictor, frames: list[tuple[list[bytes], SensorFrame, np.ndarray]], warm_up: int
                 ) -> tuple[dict[str, list[float]], list[int]]:
    """Per stage of the node's path, its time [ms] in every frame after the first `warm_up` ones (first-call
    costs, and the frames before the lidar history is full: the lidar branch grows with the fused sweeps), and the
    number of lidar sweeps each timed frame fused.

    The output messages are built from the keyframe's ground-truth occupancy, not from the model's labels: the
    benchmarked models are freshly initialised and label most of the grid occupied, which would time messages
    of 10x the voxels a trained model publishes (their cost grows with the occupied voxels)."""
    from fusionocc_core.occ3d import FREE_LABEL
    from fusionocc_ros.conversions import (
        dense_grid_to_image,
        occupancy_to_occupancy_grid,
        occupancy_to_pointcloud2,
    )
    from fusionocc_ros.marker_cdr import marker_array_cdr

    model = predictor.model
    height, width = predictor.input_size
    parts: dict[str, list[torch.nn.Module]] = {
        "model: image backbone + neck": [model.camera.backbone, model.camera.neck],
        "model: cross-modal fusion + depth/seg net": [model.camera.fusion, model.camera.depth_net],
        "model: lift-splat + 3D pre-process": [model.camera.lift_splat, model.camera.pre_process],
        "model: sparse lidar encoder": [model.lidar_encoder],
        # the head's layers, not the head: `predict` calls `OccHead.labels`, which no forward hook of the head sees
        "model: 3D fusion encoder + FPN + head": [model.occ_encoder, model.occ_fpn, model.head.final_conv,
                                                  model.head.predicter]}
    timer = _ModuleTimer({f"{name}#{i}": m for name, mods in parts.items() for i, m in enumerate(mods)})
    stages: dict[str, list[float]] = {}
    sweeps: list[int] = []
    for index, (jpegs, frame, truth) in enumerate(frames):
        start = time.perf_counter()
        images = decode_jpegs(jpegs, (height, width))
        decode_ms = (time.perf_counter() - start) * 1e3
        sensor = with_images(frame, images)
        timer.reset()
        prediction = predictor.predict(sensor)
        start = time.perf_counter()
        labels = truth
        indices = np.argwhere(labels != FREE_LABEL)
        occupancy_to_pointcloud2(labels)
        marker_array_cdr(indices, labels[tuple(indices.T)], sec=0, nanosec=0, frame_id="base_link")
        dense_grid_to_image(labels)
        occupancy_to_occupancy_grid(labels)
        messages_ms = (time.perf_counter() - start) * 1e3
        if index < warm_up:
            continue
        sweeps.append(prediction.lidar_sweeps)
        measured = {"decode 6 JPEGs": decode_ms,
                    "preprocess: images (resize, crop, normalise)": prediction.timings_ms["images"],
                    "preprocess: temporal history": prediction.timings_ms["history"],
                    "preprocess: sparse depth": prediction.timings_ms["depth"]}
        for name, modules in parts.items():
            measured[name] = sum(timer.totals[f"{name}#{i}"] for i in range(len(modules)))
        measured["model: other (voxelization, argmax, glue)"] = prediction.timings_ms["inference"] - sum(
            measured[name] for name in parts)
        measured["output messages (cloud, markers, dense, grid)"] = messages_ms
        for stage, ms in measured.items():
            stages.setdefault(stage, []).append(ms)
    return stages, sweeps


def suite_node(quick: bool) -> SuiteResult:
    import torch

    try:
        from fusionocc_core.model.presets import build_model
        from fusionocc_core.occ3d import FREE_LABEL
        from fusionocc_core.predictor import NUM_LIDAR_KEYFRAMES, Predictor
    except ImportError as error:
        raise SuiteSkipped(f"needs the model and the ROS message wheels: {error}") from error

    result = SuiteResult("node")
    # steady state: timed frames fuse the current sweep with the full history of previous lidar keyframes
    warm_up = 1 if quick else 1 + NUM_LIDAR_KEYFRAMES
    frames = synthetic_frames_with_truth(warm_up + (2 if quick else 5))
    totals: dict[str, float] = {}
    # tiny_v1: the tiny preset before its CPU redesign, the baseline the new one is measured against
    for preset in ("tiny",) if quick else ("tiny", "tiny_v1", "fast"):
        torch.manual_seed(0)
        predictor = Predictor(build_model(preset).eval(), device="cpu")
        height, width = predictor.input_size
        stages, sweeps = _stage_times(predictor, frames, warm_up)
        total = [sum(values[i] for values in stages.values()) for i in range(len(frames) - warm_up)]
        model_share = [sum(v[i] for k, v in stages.items() if k.startswith("model")) for i in range(len(total))]
        non_model_share = 1 - statistics.median(model_share) / statistics.median(total)
        for stage, values in stages.items():
            result.rows.append(Row(f"{preset}: {stage}", statistics.median(values), float(np.percentile(values, 95))))
        result.rows.append(Row(f"{preset}: TOTAL one frame", statistics.median(total), float(np.percentile(total, 95)),
                               extra={"non_model_share": non_model_share, "input_size": [height, width]}))
        totals[preset] = statistics.median(total)
        result.notes.append(f"{preset}: input {height}x{width}, non-model overhead {100 * non_model_share:.1f}% "
                            "of the total")
    if "tiny_v1" in totals:
        result.notes.append(f"tiny vs tiny_v1 (median frame): {totals['tiny_v1'] / totals['tiny']:.1f}x faster")
    result.notes.append("output messages built from the ground-truth occupancy of each keyframe "
                        f"({int(np.mean([(t != FREE_LABEL).sum() for _, _, t in frames]))} occupied voxels on average)")
    result.notes.append(f"{len(frames) - warm_up} frames timed after {warm_up} untimed ones, "
                        f"{min(sweeps)}-{max(sweeps)} lidar sweeps fused per timed frame")
    result.notes.append("CPU, fp32, temporal mode on (previous camera frame + up to 7 lidar keyframes), "
                        f"{torch.get_num_threads()} torch threads, synthetic 704x396 JPEGs; sync costs a few us "
                        "per message (sync suite)")
    return result
