"""Dynamic voxelization of a batched lidar cloud: one feature (the mean of its points) per occupied voxel.

The original (FusionOcc, mmdet3d style) voxelizes at 0.05 m over the occupancy range into a sparse grid of
1600 x 1600 x 128 cells, with no cap on points per voxel or on the number of voxels. Two deliberate
differences, both documented in `dynamic_voxelize`:
  * The original does no range clipping itself (an upstream range filter does, and that filter nudges its own
    bounds by +-0.001 on every call). We drop points outside the grid (and non-finite points) here, so the
    sparse encoder can never receive an out-of-range index; inside the range the result is identical.
  * The original takes the batch size from the last point's batch index, which silently shrinks the batch
    when the last samples have no points. We take the batch size explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fusionocc_core.occ3d import POINT_CLOUD_RANGE

LIDAR_VOXEL_SIZE = 0.05  # [m], the original's lidar voxel edge


@dataclass(frozen=True)
class Voxels:
    """Output of `dynamic_voxelize`.

    Attributes:
        features: (V, F) float, mean of the point features of each occupied voxel.
        coords: (V, 4) int32, (batch, z, y, x) voxel indices, sorted, unique (spconv's `indices` layout).
        spatial_shape: (Z, Y, X) size of the sparse grid, e.g. (128, 1600, 1600).
        batch_size: number of samples in the batch.
        num_points_per_voxel: (V,) int64, how many points fell into each voxel.
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    num_points_per_voxel: torch.Tensor


def grid_shape_zyx(
    point_cloud_range: tuple[float, ...] = POINT_CLOUD_RANGE, voxel_size: float = LIDAR_VOXEL_SIZE
) -> tuple[int, int, int]:
    """Sparse grid size (Z, Y, X) for a range (x_min, y_min, z_min, x_max, y_max, z_max) and a voxel edge."""
    sizes = [
        round((point_cloud_range[i + 3] - point_cloud_range[i]) / voxel_size) for i in range(3)
    ]  # x, y, z
    return (sizes[2], sizes[1], sizes[0])


def dynamic_voxelize(
    points: torch.Tensor,
    batch_size: int,
    point_cloud_range: tuple[float, ...] = POINT_CLOUD_RANGE,
    voxel_size: float = LIDAR_VOXEL_SIZE,
) -> Voxels:
    """Groups points into voxels and averages their features (vectorised, no caps).

    Voxel index along each axis is floor((coordinate - range_min) / voxel_size), computed in float32 as the
    original does. Points outside [0, size) on any axis or with a non-finite coordinate are dropped (the
    original relies on an upstream range filter instead).

    Args:
        points: (P, 1 + F) float tensor, column 0 the batch index, columns 1..3 x, y, z [m] in the ego frame,
            all F columns from 1 on (x, y, z included) are averaged into the voxel feature.
        batch_size: number of samples; every batch index must lie in [0, batch_size).
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max) [m].
        voxel_size: voxel edge [m].

    Returns:
        `Voxels` with features (V, F), coords (V, 4) int32 (batch, z, y, x) and the grid shape (Z, Y, X).

    Raises:
        ValueError: on a wrong shape, a non-positive batch size or a batch index outside [0, batch_size).
    """
    if points.dim() != 2 or points.shape[1] < 4:
        raise ValueError(
            f"points must be (P, 1 + F) with F >= 3 (batch, x, y, z, ...), got {tuple(points.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape_zyx = grid_shape_zyx(point_cloud_range, voxel_size)
    num_features = points.shape[1] - 1
    batch = points[:, 0].long()  # (P,)
    if batch.numel() and (int(batch.min()) < 0 or int(batch.max()) >= batch_size):
        raise ValueError(
            f"point batch indices span [{int(batch.min())}, {int(batch.max())}], outside [0, {batch_size})"
        )
    xyz = points[:, 1:4].float()  # (P, 3)
    low = torch.tensor(point_cloud_range[:3], dtype=torch.float32, device=points.device)
    cell = torch.floor((xyz - low) / voxel_size).long()  # (P, 3) x, y, z indices
    size_xyz = torch.tensor(shape_zyx[::-1], device=points.device)
    keep = ((cell >= 0) & (cell < size_xyz)).all(dim=1) & torch.isfinite(xyz).all(dim=1)  # (P,)
    cell, batch, features = cell[keep], batch[keep], points[keep, 1:]
    size_z, size_y, size_x = shape_zyx
    linear = ((batch * size_z + cell[:, 2]) * size_y + cell[:, 1]) * size_x + cell[
        :, 0
    ]  # (P',) sorts as b,z,y,x
    unique_ids, voxel_of_point = torch.unique(linear, sorted=True, return_inverse=True)  # (V,), (P',)
    num_voxels = unique_ids.numel()
    sums = features.new_zeros(num_voxels, num_features).index_add_(0, voxel_of_point, features)  # (V, F)
    counts = torch.zeros(num_voxels, dtype=torch.long, device=points.device)
    counts.index_add_(0, voxel_of_point, torch.ones_like(voxel_of_point))  # (V,)
    means = sums / counts.unsqueeze(1).to(sums.dtype)  # (V, F)
    x = unique_ids % size_x
    y = (unique_ids // size_x) % size_y
    z = (unique_ids // (size_x * size_y)) % size_z
    b = unique_ids // (size_x * size_y * size_z)
    coords = torch.stack([b, z, y, x], dim=1).int()  # (V, 4)
    return Voxels(
        features=means,
        coords=coords,
        spatial_shape=shape_zyx,
        batch_size=batch_size,
        num_points_per_voxel=counts,
    )
