"""Batching of `OccupancyDataset` samples: stack fixed-size tensors, concatenate points with a batch index."""

from __future__ import annotations

from typing import Any

import torch

# Keys whose per-sample values are lists/strings, kept as Python lists.
_LIST_KEYS = ("token", "scene_name")


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Collates samples into the model's batch layout.

    `points` (P_i, 5) of every sample become one (sum P_i, 6) tensor
    [batch_idx, x, y, z, intensity, time_lag]; other tensors are stacked along a new batch axis; strings
    become lists.

    Raises:
        ValueError: empty batch or samples with different keys.
    """
    if not samples:
        raise ValueError("collate got an empty batch")
    keys = set(samples[0])
    for i, sample in enumerate(samples[1:], 1):
        if set(sample) != keys:
            raise ValueError(f"sample {i} has keys {sorted(set(sample) ^ keys)} that sample 0 does not share")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "points":
            batch[key] = torch.cat(
                [
                    torch.cat([torch.full((len(p), 1), float(b), dtype=p.dtype), p], dim=1)
                    for b, p in enumerate(values)
                ]
            )
        elif key in _LIST_KEYS or not isinstance(values[0], torch.Tensor):
            batch[key] = values
        else:
            batch[key] = torch.stack(values)
    return batch
