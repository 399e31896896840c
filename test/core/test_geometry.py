"""Geometry helpers against pyquaternion and the devkit's transform_matrix (the references nuScenes uses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from fusionocc_core.geometry import (
    apply_transform,
    invert_transform,
    make_transform,
    matrix_to_quat,
    project_points,
    quat_to_matrix,
)


def _random_quats(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_quat_to_matrix_matches_pyquaternion() -> None:
    quats = _random_quats(50)
    ours = quat_to_matrix(quats)
    for q, m in zip(quats, ours, strict=True):
        np.testing.assert_allclose(m, Quaternion(q).rotation_matrix, atol=1e-12)


def test_matrix_to_quat_round_trip_and_sign() -> None:
    quats = _random_quats(200, seed=1)
    # Include the branches where w is tiny (180 degree turns about each axis).
    quats = np.concatenate([quats, np.eye(4)[1:], [[1e-9, 1, 0, 0]]])
    mats = np.stack([Quaternion(q).rotation_matrix for q in quats])
    back = matrix_to_quat(mats)
    assert np.all(back[:, 0] >= 0)
    expected = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    expected = np.where(expected[:, :1] < 0, -expected, expected)
    np.testing.assert_allclose(np.abs(np.sum(back * expected, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(quat_to_matrix(back), mats, atol=1e-9)


@pytest.mark.parametrize("inverse", [False, True])
def test_make_transform_matches_devkit(inverse: bool) -> None:
    rng = np.random.default_rng(2)
    for q in _random_quats(10, seed=3):
        t = rng.normal(size=3) * 10
        ref = transform_matrix(t, Quaternion(q), inverse=inverse)
        np.testing.assert_allclose(make_transform(t, q, inverse=inverse), ref, atol=1e-12)


def test_invert_and_apply_numpy_and_torch() -> None:
    rng = np.random.default_rng(4)
    transforms = make_transform(rng.normal(size=(3, 3)), _random_quats(3, seed=5))
    points = rng.normal(size=(3, 7, 3))
    moved = apply_transform(transforms, points)
    np.testing.assert_allclose(
        moved[1], (transforms[1] @ np.c_[points[1], np.ones(7)].T).T[:, :3], atol=1e-12
    )
    np.testing.assert_allclose(apply_transform(invert_transform(transforms), moved), points, atol=1e-12)
    tt = torch.from_numpy(transforms)
    np.testing.assert_allclose(invert_transform(tt).numpy(), np.linalg.inv(transforms), atol=1e-12)
    np.testing.assert_allclose(
        apply_transform(tt[0], torch.from_numpy(points[0])).numpy(), moved[0], atol=1e-12
    )


def test_project_points() -> None:
    k = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    uv, depth = project_points(np.array([[1.0, -2.0, 10.0], [0, 0, 0]]), k)
    np.testing.assert_allclose(uv[0], [370.0, 140.0])
    np.testing.assert_allclose(depth, [10.0, 0.0])
    assert np.all(np.isfinite(uv))
    uv_t, _ = project_points(torch.tensor([[1.0, -2.0, 10.0]]), torch.from_numpy(k).float())
    np.testing.assert_allclose(uv_t.numpy()[0], [370.0, 140.0], rtol=1e-6)


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="last axis of 4"):
        quat_to_matrix([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="zero-norm"):
        quat_to_matrix([0.0, 0.0, 0.0, 0.0])
