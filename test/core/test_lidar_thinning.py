"""The shared lidar thinning rule: upper beams kept, a fifth of the rest (random in training, fixed otherwise)."""
import numpy as np
import pytest

from fusionocc_core.lidar_thinning import thinning_mask


def test_upper_beams_are_all_kept_and_every_fifth_lower_point_deterministically():
    ring = np.array([0, 5, 17, 3, 31, 2, 16, 1, 9, 20, 4])
    keep = thinning_mask(ring)
    expected = (ring > 16) | (np.arange(ring.size) % 5 == 0)
    np.testing.assert_array_equal(keep, expected)
    np.testing.assert_array_equal(thinning_mask(ring), keep)  # no hidden state


def test_random_thinning_keeps_about_the_fraction_of_lower_points():
    ring = np.zeros(100_000, dtype=np.int64)
    keep = thinning_mask(ring, rng=np.random.default_rng(0), keep_fraction=0.2)
    assert abs(keep.mean() - 0.2) < 0.01


def test_bad_fraction_is_rejected():
    with pytest.raises(ValueError, match="keep_fraction"):
        thinning_mask(np.zeros(3), keep_fraction=0.0)
