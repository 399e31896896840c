"""Sparse lidar depth for the camera branch: project points into every (augmented) image, keep the nearest
depth per pixel, then reduce to the feature grid and one-hot encode into the depth bins as the original does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sparse_depth_map(
    points_xyz: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_ego: torch.Tensor,
    post_rots: torch.Tensor,
    post_trans: torch.Tensor,
    height: int,
    width: int,
    min_depth: float = 1.0,
    max_depth: float = 45.0,
) -> torch.Tensor:
    """Nearest-point depth image per camera, as the original's PointToMultiViewDepth (downsample 1).

    A point lands on pixel round(u), round(v) with pixel = post_rot @ (K @ X_cam / z) + post_tran; points with
    z outside [min_depth, max_depth) or outside the image are dropped; the smallest z per pixel wins.

    Args:
        points_xyz: (P, 3) points in the ego frame that `cam_to_ego` maps to [m].
        intrinsics: (N, 3, 3) pinhole K of the original image.
        cam_to_ego: (N, 4, 4) camera -> ego.
        post_rots: (N, 3, 3) image-augmentation matrix.
        post_trans: (N, 3) image-augmentation offset.
        height: Network input height [px].
        width: Network input width [px].
        min_depth: Smallest kept depth [m] (inclusive).
        max_depth: Largest kept depth [m] (exclusive).

    Returns:
        (N, height, width) float depth [m], 0 where no point projects.
    """
    if points_xyz.ndim != 2 or points_xyz.shape[1] != 3:
        raise ValueError(f"sparse_depth_map: points_xyz must be (P, 3), got {tuple(points_xyz.shape)}.")
    n = intrinsics.shape[0]
    ego_to_cam = torch.linalg.inv(cam_to_ego.float())  # (N, 4, 4)
    pts = points_xyz.float()
    cam = pts @ ego_to_cam[:, :3, :3].transpose(1, 2) + ego_to_cam[:, None, :3, 3]  # (N, P, 3)
    img = cam @ intrinsics.float().transpose(1, 2)  # (N, P, 3)
    z = img[..., 2:3]
    uvz = torch.cat([img[..., :2] / z, z], dim=-1)  # (N, P, 3)
    uvz = uvz @ post_rots.float().transpose(1, 2) + post_trans.float()[:, None, :]
    u, v, depth = torch.round(uvz[..., 0]), torch.round(uvz[..., 1]), uvz[..., 2]
    kept = (u >= 0) & (u < width) & (v >= 0) & (v < height) & (depth >= min_depth) & (depth < max_depth)
    cam_idx = torch.arange(n, device=pts.device)[:, None].expand_as(u)
    flat = cam_idx * height * width + v.clamp(0, height - 1).long() * width + u.clamp(0, width - 1).long()
    out = torch.full((n * height * width,), float("inf"), device=pts.device, dtype=torch.float32)
    out.scatter_reduce_(0, flat[kept], depth[kept], reduce="amin")
    out = torch.where(torch.isinf(out), torch.zeros_like(out), out)
    return out.view(n, height, width)


def downsample_depth(depth: torch.Tensor, downsample: int) -> torch.Tensor:
    """Minimum non-zero depth per downsample x downsample patch; 1e5 where a patch has no point.

    Args:
        depth: (BN, H, W) metric depth, 0 = none; H, W divisible by `downsample`.
        downsample: Patch size (16).

    Returns:
        (BN, H / downsample, W / downsample) depth [m].
    """
    bn, h, w = depth.shape
    if h % downsample or w % downsample:
        raise ValueError(f"downsample_depth: image {h}x{w} is not divisible by {downsample}.")
    patches = depth.view(bn, h // downsample, downsample, w // downsample, downsample)
    patches = patches.permute(0, 1, 3, 2, 4).reshape(bn, h // downsample, w // downsample, -1)
    patches = torch.where(patches == 0.0, torch.full_like(patches, 1e5), patches)
    return patches.min(dim=-1).values


def depth_one_hot(depth: torch.Tensor, depth_bins: tuple[float, float, float]) -> torch.Tensor:
    """One-hot depth bins exactly as the original get_downsampled_gt_depth (non-SID).

    bin = long((d - (lo - step)) / step) - 1, i.e. [lo, lo + step) -> 0: the original shifts by one step,
    keeps
    values in [0, D + 1), one-hot encodes into D + 1 classes and drops class 0. Net effect: depths in [lo, hi)
    map to bins 0..D-1; depths below `lo`, at or beyond `hi`, or "no point" (1e5) give an all-zero row.

    Args:
        depth: (...) depth [m] (1e5 or 0 = none).
        depth_bins: (lo, hi, step) = (1.0, 45.0, 0.5) -> D = 88.

    Returns:
        (..., D) float one-hot.
    """
    lo, hi, step = depth_bins
    num_bins = len(torch.arange(lo, hi, step))
    d = (depth - (lo - step)) / step
    d = torch.where((d < num_bins + 1) & (d >= 0.0), d, torch.zeros_like(d))
    return F.one_hot(d.long(), num_classes=num_bins + 1)[..., 1:].float()


def depth_input_patches(
    sparse_depth: torch.Tensor, downsample: int, depth_bins: tuple[float, float, float]
) -> torch.Tensor:
    """Sparse image depth -> one-hot depth on the feature grid, channels first.

    Args:
        sparse_depth: (BN, H, W) metric depth at input resolution, 0 = none.
        downsample: Feature stride (16).
        depth_bins: (lo, hi, step).

    Returns:
        (BN, D, H / downsample, W / downsample) float one-hot (all zero where no point).
    """
    one_hot = depth_one_hot(downsample_depth(sparse_depth, downsample), depth_bins)  # (BN, h, w, D)
    return one_hot.permute(0, 3, 1, 2).contiguous()
