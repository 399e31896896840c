"""Lift-splat: frustum, ego geometry, pooled volume == naive per-point sum, plan cache keyed on values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionocc_core.model.lift_splat import (
    LiftSplat,
    create_frustum,
    frustum_to_ego,
    plan_voxel_pooling,
    voxel_pool,
    voxel_pool_naive,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: small ops get slower, not faster, on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


GRID_LOWER = (-40.0, -40.0, -1.0)
VOXEL = (0.4, 0.4, 0.4)
GRID = (200, 200, 16)


def _rig(b: int, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random cameras looking outward near the ego origin, with random image augmentation."""
    g = torch.Generator().manual_seed(seed)
    intrinsics = torch.tensor([[300.0, 0.0, 160.0], [0.0, 300.0, 90.0], [0.0, 0.0, 1.0]]).repeat(b, n, 1, 1)
    intrinsics[..., 0, 0] += 50 * torch.rand(b, n, generator=g)
    cam_to_ego = torch.eye(4).repeat(b, n, 1, 1)
    for bi in range(b):
        for ni in range(n):
            yaw = float(2 * np.pi * ni / n + 0.3 * torch.rand(1, generator=g))
            # camera z forward -> ego x forward, camera x right -> ego -y, camera y down -> ego -z
            base = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
            rot = torch.tensor(
                [[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0, 0, 1.0]],
                dtype=torch.float32,
            )
            cam_to_ego[bi, ni, :3, :3] = rot @ base
            cam_to_ego[bi, ni, :3, 3] = torch.tensor([1.0, 0.0, 1.6]) + 0.2 * torch.randn(3, generator=g)
    angle = 0.05 * torch.randn(b, n, generator=g)
    post_rots = torch.eye(3).repeat(b, n, 1, 1)
    post_rots[..., 0, 0] = 0.4 * torch.cos(angle)
    post_rots[..., 0, 1] = -0.4 * torch.sin(angle)
    post_rots[..., 1, 0] = 0.4 * torch.sin(angle)
    post_rots[..., 1, 1] = 0.4 * torch.cos(angle)
    post_trans = torch.zeros(b, n, 3)
    post_trans[..., :2] = 5 * torch.randn(b, n, 2, generator=g)
    bda = torch.eye(3).repeat(b, 1, 1)
    bda[-1, 0, 0] = -1.0  # a BEV x-flip on the last sample
    return intrinsics, cam_to_ego, post_rots, post_trans, bda


def test_frustum_layout_matches_original_linspace() -> None:
    frustum = create_frustum((1.0, 45.0, 0.5), (128, 352), 16)
    assert frustum.shape == (88, 8, 22, 3)
    torch.testing.assert_close(frustum[0, 0, :, 0], torch.linspace(0, 351, 22))
    torch.testing.assert_close(frustum[0, :, 0, 1], torch.linspace(0, 127, 8))
    torch.testing.assert_close(frustum[:, 0, 0, 2], torch.arange(1.0, 45.0, 0.5))


def test_frustum_points_project_back_to_their_pixels() -> None:
    intrinsics, cam_to_ego, post_rots, post_trans, _ = _rig(1, 2, seed=1)
    frustum = create_frustum((1.0, 45.0, 0.5), (64, 128), 16)
    points = frustum_to_ego(frustum, intrinsics, cam_to_ego, post_rots, post_trans, torch.eye(3)[None])
    ego_to_cam = torch.linalg.inv(cam_to_ego[0, 1])
    cam = points[0, 1].reshape(-1, 3) @ ego_to_cam[:3, :3].T + ego_to_cam[:3, 3]
    pix = cam @ intrinsics[0, 1].T
    pix = torch.cat([pix[:, :2] / pix[:, 2:], pix[:, 2:]], 1) @ post_rots[0, 1].T + post_trans[0, 1]
    uv = pix[:, :2]
    expected = frustum.reshape(-1, 3)
    torch.testing.assert_close(uv, expected[:, :2], atol=2e-3, rtol=0)
    torch.testing.assert_close(cam[:, 2], expected[:, 2], atol=1e-4, rtol=0)


def test_pooled_equals_naive_sum_on_random_inputs() -> None:
    torch.manual_seed(0)
    b, n, c = 2, 3, 5
    intrinsics, cam_to_ego, post_rots, post_trans, bda = _rig(b, n, seed=2)
    frustum = create_frustum((1.0, 45.0, 2.0), (64, 128), 16)  # D = 22, h = 4, w = 8
    points = frustum_to_ego(frustum, intrinsics, cam_to_ego, post_rots, post_trans, bda)
    depth = torch.rand(b, n, frustum.shape[0], 4, 8).softmax(dim=2)
    feat = torch.randn(b, n, c, 4, 8)
    plan = plan_voxel_pooling(points, GRID_LOWER, VOXEL, GRID)
    pooled = voxel_pool(depth, feat, plan, GRID)
    naive = voxel_pool_naive(points, depth, feat, GRID_LOWER, VOXEL, GRID)
    assert pooled.shape == (b, c, 16, 200, 200)
    assert 0 < plan.ranks_bev.numel() < points[..., 0].numel()  # some points inside, some outside
    assert torch.all(plan.ranks_bev[1:] >= plan.ranks_bev[:-1])  # sorted by voxel
    torch.testing.assert_close(pooled.double(), naive, atol=1e-5, rtol=1e-5)


def test_voxel_index_truncates_toward_zero_like_the_original() -> None:
    # x = -40.2 is half a voxel below the grid: the original's .long() puts it in voxel 0, floor would drop
    # it.
    points = torch.tensor([[-40.2, 0.1, 0.1], [-40.5, 0.1, 0.1], [39.9, 39.9, 5.3]]).view(1, 1, 3, 1, 1, 3)
    plan = plan_voxel_pooling(points, GRID_LOWER, VOXEL, GRID)
    assert plan.ranks_depth.tolist() == [0, 2]
    expected = [(2 * 200 + 100) * 200 + 0, (15 * 200 + 199) * 200 + 199]
    assert plan.ranks_bev.tolist() == expected


def test_pooling_gradients_reach_depth_and_features() -> None:
    torch.manual_seed(0)
    intrinsics, cam_to_ego, post_rots, post_trans, bda = _rig(1, 2, seed=3)
    module = LiftSplat((64, 128), 16, (1.0, 45.0, 2.0), GRID_LOWER, VOXEL, GRID)
    depth = torch.rand(1, 2, 22, 4, 8, requires_grad=True)
    feat = torch.randn(1, 2, 3, 4, 8, requires_grad=True)
    (module(depth, feat, intrinsics, cam_to_ego, post_rots, post_trans, bda) ** 2).sum().backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0
    assert feat.grad is not None and feat.grad.abs().sum() > 0


def test_plan_cache_hits_only_for_identical_geometry() -> None:
    intrinsics, cam_to_ego, post_rots, post_trans, bda = _rig(1, 2, seed=4)
    module = LiftSplat(
        (64, 128), 16, (1.0, 45.0, 2.0), GRID_LOWER, VOXEL, GRID, cache_plans=True, cache_size=2
    )
    first = module.plan(intrinsics, cam_to_ego, post_rots, post_trans, bda)
    assert module.plan(intrinsics.clone(), cam_to_ego.clone(), post_rots, post_trans, bda) is first
    moved = cam_to_ego.clone()
    moved[0, 0, 0, 3] += 1e-3  # any value change must rebuild
    second = module.plan(intrinsics, moved, post_rots, post_trans, bda)
    assert second is not first
    assert not torch.equal(second.ranks_depth, first.ranks_depth) or not torch.equal(
        second.ranks_bev, first.ranks_bev
    )
    module.plan(intrinsics, cam_to_ego, post_rots, post_trans, 2 * bda)  # third entry evicts the oldest
    assert module.plan(intrinsics, cam_to_ego, post_rots, post_trans, bda) is not first
    module.clear_cache()
    uncached = LiftSplat((64, 128), 16, (1.0, 45.0, 2.0), GRID_LOWER, VOXEL, GRID)
    assert uncached.plan(intrinsics, cam_to_ego, post_rots, post_trans, bda) is not uncached.plan(
        intrinsics, cam_to_ego, post_rots, post_trans, bda
    )


def test_lift_splat_rejects_mismatched_shapes() -> None:
    intrinsics, cam_to_ego, post_rots, post_trans, bda = _rig(1, 2, seed=5)
    module = LiftSplat((64, 128), 16, (1.0, 45.0, 2.0), GRID_LOWER, VOXEL, GRID)
    with pytest.raises(ValueError, match="frustum"):
        module(
            torch.rand(1, 2, 22, 5, 8),
            torch.rand(1, 2, 3, 5, 8),
            intrinsics,
            cam_to_ego,
            post_rots,
            post_trans,
            bda,
        )


def test_inference_csr_path_equals_the_training_index_add_path():
    from fusionocc_core.model.lift_splat import PoolingPlan, plan_voxel_pooling, voxel_pool

    torch.manual_seed(0)
    grid = (10, 8, 4)
    points = torch.rand(1, 2, 5, 3, 4, 3) * torch.tensor([10.0, 8.0, 4.0]) - 0.5  # some outside the grid
    plan = plan_voxel_pooling(points, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), grid)
    depth = torch.rand(1, 2, 5, 3, 4)
    feat = torch.randn(1, 2, 6, 3, 4)
    with torch.no_grad():
        inference = voxel_pool(depth, feat, plan, grid)  # CSR product
    training = voxel_pool(depth.requires_grad_(), feat, plan, grid)  # index_add (autograd)
    without_csr = voxel_pool(depth.detach(), feat, PoolingPlan(plan.ranks_bev, plan.ranks_depth, plan.ranks_feat, 1),
                             grid)
    torch.testing.assert_close(inference, training.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(inference, without_csr, rtol=1e-5, atol=1e-6)
    assert inference.abs().sum() > 0
