"""The original FusionOcc's lidar thinning, shared by the training data pipeline and the streaming Predictor.

The original keeps every point of the upper beams (ring index > 16) and a random 20 % of the rest, to save
compute; the network is trained on clouds thinned that way, so inference must thin the same way. Training draws
the 20 % at random; evaluation and the Predictor keep every 5th point of each sweep's lower beams instead, a
deterministic rule that gives the node and the offline evaluation identical inputs for the same sweep.
"""
from __future__ import annotations

import numpy as np

RING_ABOVE = 16  # points with a ring index above this are all kept
KEEP_FRACTION = 0.2  # share of the remaining points kept


def thinning_mask(ring: np.ndarray, *, rng: np.random.Generator | None = None, ring_above: int = RING_ABOVE,
                  keep_fraction: float = KEEP_FRACTION) -> np.ndarray:
    """Which points of ONE sweep to keep.

    Args:
        ring: (P,) ring (laser) index of each point, in the sweep's own point order.
        rng: random generator (training); None = deterministic every round(1 / keep_fraction)-th point.
        ring_above: points with ring > ring_above are all kept.
        keep_fraction: share of the other points kept, in (0, 1].

    Returns:
        (P,) bool mask.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    ring = np.asarray(ring)
    keep = ring > ring_above
    if rng is None:
        keep |= np.arange(ring.shape[0]) % max(1, round(1.0 / keep_fraction)) == 0
    else:
        keep |= rng.random(ring.shape[0]) < keep_fraction
    return keep
