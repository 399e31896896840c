"""Rigid-transform helpers shared by data preparation, the dataset and the ROS side.

Quaternions are (w, x, y, z) as nuScenes stores them. Every function accepts leading batch dimensions and
works on numpy arrays; `apply_transform` and `invert_transform` also take torch tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch is not imported at run time: the ROS tools use these helpers without it
    import torch

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")  # the functions below work on either


def quat_to_matrix(quat: np.ndarray | Sequence[float]) -> np.ndarray:
    """Rotation matrices of quaternions.

    Args:
        quat: (..., 4) quaternions (w, x, y, z); normalised here, so any non-zero scale is accepted.

    Returns:
        (..., 3, 3) float64 rotation matrices.

    Raises:
        ValueError: the last axis is not 4 long or a quaternion has zero norm.
    """
    q = np.asarray(quat, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions need a last axis of 4 (w, x, y, z), got shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("zero-norm quaternion has no rotation")
    w, x, y, z = np.moveaxis(q / norm, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """Quaternions of rotation matrices, with w >= 0 (the sign nuScenes and pyquaternion agree on up to -q).

    Args:
        matrix: (..., 3, 3) rotation matrices.

    Returns:
        (..., 4) unit quaternions (w, x, y, z).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices need shape (..., 3, 3), got {m.shape}")
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate magnitudes; the largest gives the numerically stable branch (Shepperd's method).
    cands = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = np.argmax(cands, axis=-1)
    s = 2.0 * np.sqrt(np.maximum(np.take_along_axis(cands, best[..., None], -1)[..., 0], 1e-12))
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s21, s02, s10 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    options = np.stack(
        [
            np.stack([0.25 * s, d21 / s, d02 / s, d10 / s], -1),
            np.stack([d21 / s, 0.25 * s, s10 / s, s02 / s], -1),
            np.stack([d02 / s, s10 / s, 0.25 * s, s21 / s], -1),
            np.stack([d10 / s, s02 / s, s21 / s, 0.25 * s], -1),
        ],
        -2,
    )
    q = np.take_along_axis(options, best[..., None, None], -2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def make_transform(
    translation: np.ndarray | Sequence[float],
    rotation: np.ndarray | Sequence[float],
    *,
    inverse: bool = False,
) -> np.ndarray:
    """4x4 homogeneous transform from a translation and a rotation (quaternion wxyz or 3x3 matrix).

    Args:
        translation: (..., 3) translation [m].
        rotation: (..., 4) quaternion (w, x, y, z) or (..., 3, 3) rotation matrix.
        inverse: return the inverse transform instead (as `nuscenes.utils.geometry_utils.transform_matrix`).

    Returns:
        (..., 4, 4) float64 transform mapping points of the child frame into the parent frame.
    """
    t = np.asarray(translation, dtype=np.float64)
    r = np.asarray(rotation, dtype=np.float64)
    rot = quat_to_matrix(r) if r.shape[-1] == 4 else r
    if rot.shape[-2:] != (3, 3) or t.shape[-1] != 3:
        raise ValueError(
            f"need translation (..., 3) and rotation (..., 4) or (..., 3, 3), got {t.shape}, {r.shape}"
        )
    batch = np.broadcast_shapes(t.shape[:-1], rot.shape[:-2])
    out = np.zeros((*batch, 4, 4))
    out[..., 3, 3] = 1.0
    if inverse:
        rot_t = np.swapaxes(rot, -1, -2)
        out[..., :3, :3] = rot_t
        out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, t)
    else:
        out[..., :3, :3] = rot
        out[..., :3, 3] = t
    return out


def invert_transform(transform: ArrayT) -> ArrayT:
    """Inverse of rigid 4x4 transforms (R^T, -R^T t), numpy or torch, with leading batch dimensions."""
    rot = transform[..., :3, :3]
    trans = transform[..., :3, 3:]
    rot_t = rot.swapaxes(-1, -2)
    out = transform * 0
    out[..., :3, :3] = rot_t
    out[..., :3, 3:] = -(rot_t @ trans)
    out[..., 3, 3] = 1
    return out


def apply_transform(transform: ArrayT, points: ArrayT) -> ArrayT:
    """Applies a 4x4 transform to points: (4, 4) with (N, 3), or (..., 4, 4) with (..., N, 3).

    Works on numpy arrays and torch tensors (of one dtype: cast before calling).
    """
    return points @ transform[..., :3, :3].swapaxes(-1, -2) + transform[..., None, :3, 3]


def project_points(points_cam: ArrayT, intrinsics: ArrayT) -> tuple[ArrayT, ArrayT]:
    """Pinhole projection of camera-frame points.

    Args:
        points_cam: (..., N, 3) points in the camera frame (z forward) [m].
        intrinsics: (..., 3, 3) camera matrix.

    Returns:
        (uv, depth): (..., N, 2) pixel coordinates and (..., N) depth z [m]; uv means nothing where z <= 0.
    """
    depth = points_cam[..., 2]
    homo = points_cam @ intrinsics.swapaxes(-1, -2)
    # Clipping keeps points behind the camera finite; callers mask them with depth > min_depth.
    return homo[..., :2] / depth[..., None].clip(min=1e-6), depth
