"""Ego poses from odometry, interpolated at a sensor stamp: what the node uses to place each camera image and
lidar sweep in one frame (temporal fusion needs the ego motion between frames). No ROS types: the node passes
stamps [ns], translations and quaternions it has checked.
"""

from __future__ import annotations

import bisect

import numpy as np

from fusionocc_core.geometry import quat_to_matrix

NS_PER_S = 1_000_000_000


class OdometryBuffer:
    """Ego poses from odometry, interpolated at a stamp (linear translation, normalised-lerp rotation).

    Args:
        capacity: poses kept.
        max_offset_ns: a stamp farther than this from every pose gets None [ns].
        reset_jump_ns: a stamp this much older than the newest means time went backwards: clear first [ns].
    """

    def __init__(self, *, capacity: int, max_offset_ns: int, reset_jump_ns: int = NS_PER_S) -> None:
        self._capacity = capacity
        self._stamps: list[int] = []
        self._poses: list[tuple[np.ndarray, np.ndarray]] = []  # (translation, wxyz), sorted by stamp
        self._max_offset = max_offset_ns
        self._reset_jump = reset_jump_ns

    def add(self, stamp_ns: int, translation: np.ndarray, quaternion_wxyz: np.ndarray) -> str:
        """Adds a pose in stamp order. Returns '' normally, 'duplicate' for a stamp already held (ignored),
        'out_of_order' for one older than the newest (transport reordering: inserted in place) and
        'time_reset' for one older by more than `reset_jump_ns` (a bag loop or restarted clock: the buffer
        is cleared first)."""
        pose = (np.asarray(translation, np.float64), np.asarray(quaternion_wxyz, np.float64))
        outcome = ""
        if self._stamps and stamp_ns < self._stamps[-1] - self._reset_jump:
            self._stamps.clear()
            self._poses.clear()
            outcome = "time_reset"
        index = bisect.bisect_left(self._stamps, stamp_ns)
        if index < len(self._stamps):  # not the newest
            if self._stamps[index] == stamp_ns:
                return "duplicate"
            outcome = "out_of_order"
            if index == 0 and len(self._stamps) >= self._capacity:
                return outcome  # older than everything a full buffer holds: nothing to keep
        self._stamps.insert(index, stamp_ns)
        self._poses.insert(index, pose)
        if len(self._stamps) > self._capacity:
            del self._stamps[0], self._poses[0]
        return outcome

    def pose_at(self, stamp_ns: int) -> np.ndarray | None:
        """(4, 4) ego -> odometry-frame pose at `stamp_ns`, or None when no pose is close enough."""
        stamps = self._stamps
        if not stamps:
            return None
        index = bisect.bisect_left(stamps, stamp_ns)
        if index < len(stamps) and stamps[index] == stamp_ns:
            return pose_matrix(*self._poses[index])
        if 0 < index < len(stamps):
            before, after = stamps[index - 1], stamps[index]
            if min(stamp_ns - before, after - stamp_ns) <= self._max_offset and after - before <= 4 * max(
                self._max_offset, 1
            ):
                weight = (stamp_ns - before) / (after - before)
                (t0, q0), (t1, q1) = self._poses[index - 1], self._poses[index]
                q1 = q1 if float(np.dot(q0, q1)) >= 0 else -q1
                return pose_matrix(t0 + weight * (t1 - t0), q0 + weight * (q1 - q0))
        nearest = min(
            (i for i in (index - 1, index) if 0 <= i < len(stamps)), key=lambda i: abs(stamps[i] - stamp_ns)
        )
        if abs(stamps[nearest] - stamp_ns) <= self._max_offset:
            return pose_matrix(*self._poses[nearest])
        return None


def pose_matrix(translation: np.ndarray, quaternion_wxyz: np.ndarray) -> np.ndarray:
    """(4, 4) homogeneous transform of a translation and a unit quaternion (w, x, y, z)."""
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(quaternion_wxyz)
    pose[:3, 3] = translation
    return pose
