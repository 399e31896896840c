"""Suite `lift_splat`: BEVPool-v2 style pooling with a cached plan against the straightforward vectorised
lift-splat."""
from __future__ import annotations

from typing import TYPE_CHECKING

from fusionocc_ros.bench.common import Row, SuiteResult, SuiteSkipped, time_call

if TYPE_CHECKING:
    import torch

    from fusionocc_core.model.lift_splat import PoolingPlan


def naive_lift_splat(depth: torch.Tensor, feat: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor,
                     post_rots: torch.Tensor, post_trans: torch.Tensor, bda: torch.Tensor, frustum: torch.Tensor,
                     grid_shape: tuple[int, int, int]) -> torch.Tensor:
    """The straightforward LSS: every frame, geometry of all frustum points, the full depth x feature outer
    product (B, N, D, h, w, C), then one masked index_add into the voxels."""
    import torch

    from fusionocc_core.model.lift_splat import frustum_to_ego
    from fusionocc_core.occ3d import POINT_CLOUD_RANGE, VOXEL_SIZE

    b, _, c, _, _ = feat.shape
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

    def plan() -> PoolingPlan:
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
