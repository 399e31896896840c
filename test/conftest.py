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


@pytest.fixture(scope="session")
def published_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file laid out like the authors' FusionOcc download: every key and shape of the published manifest (the
    full Swin-B model, 440 MB) under `state_dict`, next to an mmcv-style `meta`, with seeded values. Built once per
    session; skipped without ../shared."""
    import json
    import os

    import torch

    manifest_path = SHARED / "spec" / "reference" / "fusionocc_official_state_dict.json"
    if not manifest_path.is_file():
        pytest.skip("reference manifest not present (../shared)")
    from fusionocc_core.model.swin import relative_position_index

    path = tmp_path_factory.getbasetemp() / "published_fusionocc_official.pth"
    manifest = json.loads(manifest_path.read_text())
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in manifest["state_dict"].items():
        dtype = getattr(torch, manifest["dtypes"].get(key, "float32"))
        if key.endswith("relative_position_index"):  # checked against the window on load: must be right
            state[key] = relative_position_index(round(shape[0] ** 0.5))
        elif dtype.is_floating_point:
            state[key] = torch.randn(shape, generator=generator, dtype=dtype)
        else:
            state[key] = torch.full(shape, 7, dtype=dtype)  # num_batches_tracked
    meta = {"epoch": 24, "iter": 84384, "mmcv_version": "1.5.3", "CLASSES": ("others", "barrier", "free")}
    temp = path.with_suffix(".tmp")
    torch.save({"meta": meta, "state_dict": state}, temp)
    os.replace(temp, path)  # a test interrupted while writing leaves no half file under the real name
    return path
