"""Shared test fixtures: repository paths and one small cached synthetic nuScenes dataset for every area."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # the read-only reference folder beside the checkout
SYNTH_CACHE = REPO / ".cache" / "synth"

# The small test world: 2 scenes x 4 keyframes with all sweeps, 704x396 images (intrinsics scaled from
# 1600x900). Generated once (about half a minute on 2 cores) and cached by a hash of these options.
SYNTH_TEST_OPTIONS = {
    "num_scenes": 2,
    "keyframes_per_scene": 4,
    "seed": 7,
    "image_width": 704,
    "image_height": 396,
    "with_sweeps": True,
}


@pytest.fixture(scope="session")
def synth_dataroot() -> Path:
    """Dataroot of the small cached synthetic dataset (nuScenes v1.0-mini + lidarseg + Occ3D `gts/`)."""
    from fusionocc_core.synth import ensure_dataset

    return ensure_dataset(SYNTH_CACHE, progress=False, **SYNTH_TEST_OPTIONS)


@pytest.fixture(scope="session")
def synth_options() -> dict:
    """The options `synth_dataroot` was generated with (seed, scene count, keyframes, image size)."""
    return dict(SYNTH_TEST_OPTIONS)
