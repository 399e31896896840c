"""LSS lift-splat with BEVPool-v2 style voxel pooling into the full 3D grid (no collapse of z).

Every feature pixel (stride 16) and depth bin is a frustum point; its ego position (through inverse image
augmentation, inverse intrinsics, camera -> key-ego and the BEV augmentation) selects a voxel. A `PoolingPlan`
holds, for every frustum point inside the grid, sorted by voxel: the voxel rank, the index into the depth
tensor and the index into the feature tensor. Pooling is then one gather-multiply and one `index_add` pass:
volume[voxel] = sum over points of depth[point] * feature[pixel of point].

Plans depend only on the geometry; `LiftSplat(cache_plans=True)` keeps the last few plans keyed on the exact
values of the geometry tensors (a static rig reuses the plan of its key frame; a changed value builds a new
one).

Quirk kept for checkpoint fidelity: voxel indices are computed as the original does, ((p - lower) /
size).long(),
which truncates toward zero, so points up to one voxel below the lower bound land in voxel 0.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def create_frustum(
    depth_bins: tuple[float, float, float], input_size: tuple[int, int], downsample: int
) -> torch.Tensor:
    """Frustum template (D, h, w, 3) of (u [px], v [px], depth [m]) in the augmented input image.

    Like the original, u and v are `linspace(0, W - 1, w)` / `linspace(0, H - 1, h)` (not pixel centres).
    """
    h_in, w_in = input_size
    h, w = h_in // downsample, w_in // downsample
    d = torch.arange(*depth_bins, dtype=torch.float).view(-1, 1, 1).expand(-1, h, w)
    num_bins = d.shape[0]
    u = torch.linspace(0, w_in - 1, w, dtype=torch.float).view(1, 1, w).expand(num_bins, h, w)
    v = torch.linspace(0, h_in - 1, h, dtype=torch.float).view(1, h, 1).expand(num_bins, h, w)
    return torch.stack((u, v, d), -1)


def frustum_to_ego(
    frustum: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_ego: torch.Tensor,
    post_rots: torch.Tensor,
    post_trans: torch.Tensor,
    bda: torch.Tensor,
) -> torch.Tensor:
    """Ego positions (B, N, D, h, w, 3) of the frustum points; same operation order as the original.

    Args:
        frustum: (D, h, w, 3) from `create_frustum`.
        intrinsics: (B, N, 3, 3) K of the original image.
        cam_to_ego: (B, N, 4, 4) camera -> (key) ego.
        post_rots: (B, N, 3, 3) image augmentation.
        post_trans: (B, N, 3) image augmentation.
        bda: (B, 3, 3) BEV augmentation applied last.
    """
    b, n = cam_to_ego.shape[:2]
    points = frustum.to(cam_to_ego) - post_trans.view(b, n, 1, 1, 1, 3)
    points = torch.inverse(post_rots).view(b, n, 1, 1, 1, 3, 3).matmul(points.unsqueeze(-1))
    points = torch.cat((points[..., :2, :] * points[..., 2:3, :], points[..., 2:3, :]), 5)  # (u z, v z, z)
    combine = cam_to_ego[:, :, :3, :3].matmul(torch.inverse(intrinsics))
    points = combine.view(b, n, 1, 1, 1, 3, 3).matmul(points).squeeze(-1)
    points = points + cam_to_ego[:, :, :3, 3].view(b, n, 1, 1, 1, 3)
    return bda.view(b, 1, 1, 1, 1, 3, 3).matmul(points.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class PoolingPlan:
    """Which depth/feature entries add into which voxel, sorted by voxel rank.

    ranks_bev: (M,) flat voxel index b * Z*Y*X + z * Y*X + y * X + x.
    ranks_depth: (M,) flat index into depth (B, N, D, h, w).
    ranks_feat: (M,) flat index into pixels (B, N, h, w).
    batch_size: B.
    """

    ranks_bev: torch.Tensor
    ranks_depth: torch.Tensor
    ranks_feat: torch.Tensor
    batch_size: int
    # The same entries as a CSR (voxels x pixels) matrix for the inference path (rows sorted, columns sorted
    # within a row):
    voxel_crow: torch.Tensor | None = None  # (B*Z*Y*X + 1,) row pointers
    voxel_ranks_feat: torch.Tensor | None = None  # (M,) column (pixel) of each entry
    voxel_ranks_depth: torch.Tensor | None = None  # (M,) depth entry of each entry


def plan_voxel_pooling(
    points: torch.Tensor,
    grid_lower: tuple[float, float, float],
    voxel_size: tuple[float, float, float],
    grid_shape: tuple[int, int, int],
) -> PoolingPlan:
    """Build the pooling plan from frustum ego positions (B, N, D, h, w, 3); grid_shape is (X, Y, Z)."""
    b, n, d, h, w, _ = points.shape
    num_points = b * n * d * h * w
    device = points.device
    ranks_depth = torch.arange(num_points, device=device)
    ranks_feat = (
        torch.arange(num_points // d, device=device).view(b, n, 1, h, w).expand(b, n, d, h, w).flatten()
    )
    lower = torch.tensor(grid_lower, dtype=torch.float32, device=device)
    size = torch.tensor(voxel_size, dtype=torch.float32, device=device)
    coor = ((points.float() - lower) / size).long().view(num_points, 3)  # truncation toward zero, as original
    nx, ny, nz = grid_shape
    kept = (
        (coor[:, 0] >= 0)
        & (coor[:, 0] < nx)
        & (coor[:, 1] >= 0)
        & (coor[:, 1] < ny)
        & (coor[:, 2] >= 0)
        & (coor[:, 2] < nz)
    )
    batch_idx = torch.arange(b, device=device).repeat_interleave(num_points // b)
    coor, ranks_depth, ranks_feat, batch_idx = (
        coor[kept],
        ranks_depth[kept],
        ranks_feat[kept],
        batch_idx[kept],
    )
    ranks_bev = ((batch_idx * nz + coor[:, 2]) * ny + coor[:, 1]) * nx + coor[:, 0]
    order = ranks_bev.argsort()
    ranks_bev, ranks_depth, ranks_feat = ranks_bev[order], ranks_depth[order], ranks_feat[order]
    num_voxels = b * nz * ny * nx
    by_voxel_then_pixel = (ranks_bev * (num_points // d) + ranks_feat).argsort()
    voxel_crow = torch.zeros(num_voxels + 1, dtype=torch.int64, device=device)
    voxel_crow[1:] = torch.bincount(ranks_bev, minlength=num_voxels).cumsum(0)
    return PoolingPlan(
        ranks_bev.contiguous(), ranks_depth.contiguous(), ranks_feat.contiguous(), b,
        voxel_crow, ranks_feat[by_voxel_then_pixel].contiguous(), ranks_depth[by_voxel_then_pixel].contiguous(),
    )


def voxel_pool(
    depth: torch.Tensor, feat: torch.Tensor, plan: PoolingPlan, grid_shape: tuple[int, int, int]
) -> torch.Tensor:
    """Splat depth-weighted features into voxels.

    Args:
        depth: (B, N, D, h, w) depth distribution.
        feat: (B, N, C, h, w) features.
        plan: From `plan_voxel_pooling` for the same B, N, D, h, w.
        grid_shape: (X, Y, Z).

    Returns:
        (B, C, Z, Y, X) volume.
    """
    b, n, c, h, w = feat.shape
    nx, ny, nz = grid_shape
    if plan.voxel_crow is not None and plan.voxel_ranks_feat is not None and plan.voxel_ranks_depth is not None \
            and not (torch.is_grad_enabled() and (depth.requires_grad or feat.requires_grad)):
        # Inference: the plan is a fixed sparse (voxels x pixels) matrix whose values are the depth weights, so
        # the pooling is one CSR @ dense (pixels x C) product, without materialising the (M, C) contributions.
        # Its (voxels x C) result is returned as a (B, C, Z, Y, X) view in channels_last_3d memory format (no
        # permute copy of the ~160 MB volume; the 3D convolutions that follow take that layout natively).
        # Sparse kernels exist for fp32/fp64 only (CPU MKL has no bf16/fp16 addmm): reduced precision (autocast)
        # pools in fp32, which also keeps the sums over many depth bins accurate, and casts back.
        dtype = feat.dtype if feat.dtype in (torch.float32, torch.float64) else torch.float32
        with warnings.catch_warnings(), torch.autocast(feat.device.type, enabled=False):
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta": exact here (tested)
            splat = torch.sparse_csr_tensor(plan.voxel_crow, plan.voxel_ranks_feat,
                                            depth.reshape(-1)[plan.voxel_ranks_depth].to(dtype),
                                            size=(b * nz * ny * nx, b * n * h * w))
            out = splat @ feat.permute(0, 1, 3, 4, 2).reshape(-1, c).to(dtype)  # (B*Z*Y*X, C)
        return out.to(feat.dtype).view(b, nz, ny, nx, c).permute(0, 4, 1, 2, 3)  # channels_last_3d
    feat_flat = feat.permute(0, 1, 3, 4, 2).reshape(-1, c)  # (B*N*h*w, C)
    contrib = depth.reshape(-1)[plan.ranks_depth, None] * feat_flat[plan.ranks_feat]  # (M, C)
    out = feat.new_zeros(b * nz * ny * nx, c).index_add(0, plan.ranks_bev, contrib)
    return out.view(b, nz, ny, nx, c).permute(0, 4, 1, 2, 3).contiguous()


def voxel_pool_naive(
    points: torch.Tensor,
    depth: torch.Tensor,
    feat: torch.Tensor,
    grid_lower: tuple[float, float, float],
    voxel_size: tuple[float, float, float],
    grid_shape: tuple[int, int, int],
) -> torch.Tensor:
    """Reference for tests: loop over every frustum point in float64 numpy, same voxel rule, (B, C, Z, Y,
    X)."""
    dep = depth.detach().cpu().double().numpy()
    fea = feat.detach().cpu().double().numpy()
    b, n, d, h, w, _ = points.shape
    c = fea.shape[2]
    nx, ny, nz = grid_shape
    out = np.zeros((b, c, nz, ny, nx))
    lower = np.asarray(grid_lower, dtype=np.float32)
    size = np.asarray(voxel_size, dtype=np.float32)
    cells = np.trunc((points.detach().cpu().float().numpy() - lower) / size).astype(np.int64)
    for bi, ni, di, yi, xi in np.ndindex(b, n, d, h, w):
        ix, iy, iz = cells[bi, ni, di, yi, xi]
        if 0 <= ix < nx and 0 <= iy < ny and 0 <= iz < nz:
            out[bi, :, iz, iy, ix] += dep[bi, ni, di, yi, xi] * fea[bi, ni, :, yi, xi]
    return torch.from_numpy(out)


class LiftSplat(nn.Module):
    """Depth distribution x features -> voxel volume (B, C, Z, Y, X), with an optional explicit plan cache.

    Args:
        input_size: Network input (H, W) [px].
        downsample: Feature stride (16).
        depth_bins: (lo, hi, step) [m] = (1.0, 45.0, 0.5).
        grid_lower: Lower corner (x, y, z) of the grid [m].
        voxel_size: Voxel edge (x, y, z) [m].
        grid_shape: (X, Y, Z) voxels.
        cache_plans: Reuse pooling plans when the geometry tensors are value-identical to a cached entry.
        cache_size: Plans kept (least recently used dropped).
    """

    frustum: torch.Tensor  # (D, h, w, 3) buffer: pixel u, v and depth of every lifted point

    def __init__(
        self,
        input_size: tuple[int, int],
        downsample: int,
        depth_bins: tuple[float, float, float],
        grid_lower: tuple[float, float, float],
        voxel_size: tuple[float, float, float],
        grid_shape: tuple[int, int, int],
        cache_plans: bool = False,
        cache_size: int = 4,
    ) -> None:
        super().__init__()
        self.input_size = tuple(input_size)
        self.downsample = downsample
        self.grid_lower: tuple[float, float, float] = (grid_lower[0], grid_lower[1], grid_lower[2])
        self.voxel_size: tuple[float, float, float] = (voxel_size[0], voxel_size[1], voxel_size[2])
        self.grid_shape: tuple[int, int, int] = (grid_shape[0], grid_shape[1], grid_shape[2])
        self.cache_plans = cache_plans
        self.cache_size = cache_size
        self.register_buffer("frustum", create_frustum(depth_bins, input_size, downsample), persistent=False)
        self._plans: OrderedDict[tuple, PoolingPlan] = OrderedDict()

    @property
    def num_depth_bins(self) -> int:
        return self.frustum.shape[0]

    def clear_cache(self) -> None:
        """Forget all cached pooling plans."""
        self._plans.clear()

    def plan(
        self,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
    ) -> PoolingPlan:
        """Pooling plan for this geometry (from the cache when enabled and the values match exactly)."""
        geometry = (intrinsics, cam_to_ego, post_rots, post_trans, bda)
        if not self.cache_plans:
            return self._build_plan(*geometry)
        key = _geometry_key(geometry)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(*geometry)
            self._plans[key] = plan
            while len(self._plans) > self.cache_size:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def _build_plan(
        self,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
    ) -> PoolingPlan:
        with torch.no_grad():
            points = frustum_to_ego(self.frustum, intrinsics, cam_to_ego, post_rots, post_trans, bda)
            return plan_voxel_pooling(points, self.grid_lower, self.voxel_size, self.grid_shape)

    def forward(
        self,
        depth: torch.Tensor,
        feat: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        post_rots: torch.Tensor,
        post_trans: torch.Tensor,
        bda: torch.Tensor,
    ) -> torch.Tensor:
        """depth (B, N, D, h, w), feat (B, N, C, h, w), geometry as `frustum_to_ego` -> (B, C, Z, Y, X)."""
        d, h, w = self.frustum.shape[:3]
        if depth.shape[2:] != (d, h, w) or feat.shape[3:] != (h, w):
            raise ValueError(
                f"LiftSplat: depth {tuple(depth.shape)} / features {tuple(feat.shape)} do not match "
                f"the frustum (D={d}, h={h}, w={w}) of input size {self.input_size}."
            )
        plan = self.plan(intrinsics, cam_to_ego, post_rots, post_trans, bda)
        return voxel_pool(depth, feat, plan, self.grid_shape)


def _geometry_key(tensors: tuple[torch.Tensor, ...]) -> tuple:
    """Exact-value cache key: shapes, device and the float64 bytes of all geometry tensors."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors]).cpu()
    return (tuple(tuple(t.shape) for t in tensors), str(tensors[0].device), flat.numpy().tobytes())
