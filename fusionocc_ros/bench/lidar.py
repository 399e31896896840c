"""Suite `lidar`: the sparse lidar branch on the torch rulebook path against spconv's CPU Native algorithm."""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

from fusionocc_ros.bench.common import Row, SuiteResult, SuiteSkipped
from fusionocc_ros.bench.node import synthetic_frames

if TYPE_CHECKING:
    import torch

    from fusionocc_core.model.fusionocc import FusionOcc


def node_lidar_points(sweeps: int) -> torch.Tensor:
    """The lidar input the node gives the model: `sweeps` consecutive keyframes of the synthetic world through
    `Predictor.prepare` (ring thinning, ego-motion compensation, current + previous keyframes fused), as
    (P, 6) [batch, x, y, z, intensity, time lag]. Images do not affect the points: blank ones are passed."""
    import torch

    from fusionocc_core.model.presets import build_model
    from fusionocc_core.predictor import Predictor

    predictor = Predictor(build_model("tiny").eval(), device="cpu")
    points = torch.zeros(0, 6)
    for _, frame in synthetic_frames(sweeps):
        inputs, _ = predictor.prepare(dataclasses.replace(frame, images=np.zeros((6, 396, 704, 3), np.uint8)))
        points = inputs.points
    return points


def _lidar_branch(model: FusionOcc, points: torch.Tensor, backend: str) -> torch.Tensor:
    """Voxelization + sparse encoder, as in the forward pass, on the sparse backend `backend`."""
    import torch

    model.lidar_encoder.sparse_backend = backend
    with torch.inference_mode():
        return model.encode_lidar(points, 1)


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
    points = node_lidar_points(sweeps)
    repeats = 2 if quick else 7
    for preset in ("tiny",) if quick else ("tiny", "fast"):
        torch.manual_seed(0)
        model = build_model(preset).eval()
        voxel_size = model.config.lidar_voxel_size
        voxels = dynamic_voxelize(points, 1, occ3d.POINT_CLOUD_RANGE, voxel_size).coords.shape[0]
        reference, ours = _lidar_branch(model, points, "spconv"), _lidar_branch(model, points, "torch")
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {"spconv": [], "torch": []}
        for _ in range(repeats):  # interleaved, so a burst of load on a shared machine hits both alike
            for backend, values in times.items():
                start = time.perf_counter()
                _lidar_branch(model, points, backend)
                values.append((time.perf_counter() - start) * 1e3)
        model.lidar_encoder.sparse_backend = "auto"
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
