"""OdometryBuffer: interpolation, stale poses, reordering, time resets (no ROS needed)."""

from __future__ import annotations

import numpy as np

from fusionocc_ros.odometry import OdometryBuffer, pose_matrix


def test_odometry_buffer_interpolates_and_refuses_stale_poses():
    buffer = OdometryBuffer(capacity=10, max_offset_ns=100_000_000)
    half_turn = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # 90 deg about z
    buffer.add(1_000_000_000, np.zeros(3), np.array([1.0, 0, 0, 0]))
    buffer.add(1_100_000_000, np.array([1.0, 0, 0]), half_turn)
    middle = buffer.pose_at(1_050_000_000)
    np.testing.assert_allclose(middle[:3, 3], [0.5, 0, 0])
    np.testing.assert_allclose(
        middle[:3, :3] @ [1, 0, 0], [np.cos(np.pi / 4), np.sin(np.pi / 4), 0], atol=1e-9
    )
    np.testing.assert_array_equal(
        buffer.pose_at(1_100_000_000), pose_matrix(np.array([1.0, 0, 0]), half_turn)
    )
    assert buffer.pose_at(1_150_000_000) is not None and buffer.pose_at(1_300_000_000) is None
    # time went backwards by more than reset_jump_ns (1 s): history cleared
    assert buffer.add(50_000_000, np.zeros(3), np.array([1.0, 0, 0, 0])) == "time_reset"
    assert buffer.pose_at(1_100_000_000) is None


def test_odometry_buffer_inserts_a_reordered_pose_and_keeps_its_capacity():
    identity = np.array([1.0, 0, 0, 0])
    buffer = OdometryBuffer(capacity=3, max_offset_ns=60_000_000, reset_jump_ns=1_000_000_000)
    assert buffer.add(1_000_000_000, np.zeros(3), identity) == ""
    assert buffer.add(1_200_000_000, np.array([2.0, 0, 0]), identity) == ""
    # a pose delivered late (DDS reordering) goes in its place; nothing is lost
    assert buffer.add(1_100_000_000, np.array([1.0, 0, 0]), identity) == "out_of_order"
    np.testing.assert_allclose(buffer.pose_at(1_150_000_000)[:3, 3], [1.5, 0, 0])
    assert buffer.add(1_100_000_000, np.array([9.0, 0, 0]), identity) == "duplicate"
    np.testing.assert_allclose(buffer.pose_at(1_100_000_000)[:3, 3], [1.0, 0, 0])
    assert buffer.add(1_300_000_000, np.array([3.0, 0, 0]), identity) == ""  # capacity 3: the oldest goes
    assert buffer.pose_at(1_000_000_000) is None
    assert buffer.add(1_020_000_000, np.zeros(3), identity) == "out_of_order"  # older than a full buffer
    assert buffer.pose_at(1_020_000_000) is None
