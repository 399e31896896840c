"""Generation API: bit-for-bit determinism, caching without regeneration, errors, keyframes-only output."""

import hashlib
from pathlib import Path

import pytest
from nuscenes.nuscenes import NuScenes

import fusionocc_core.synth.generate as generate_module
from fusionocc_core.synth import COMPLETE_MARKER, SynthConfig, SynthError, ensure_dataset, generate_dataset

TINY = {
    "num_scenes": 1,
    "keyframes_per_scene": 2,
    "image_width": 96,
    "image_height": 54,
    "with_sweeps": False,
    "progress": False,
}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    a = generate_dataset(tmp_path / "a", seed=3, **TINY)
    b = generate_dataset(tmp_path / "b", seed=3, **TINY)
    c = generate_dataset(tmp_path / "c", seed=4, **TINY)
    assert _digest(a) == _digest(b)
    assert _digest(a)["v1.0-mini/sample_annotation.json"] != _digest(c)["v1.0-mini/sample_annotation.json"]


def test_keyframes_only_dataset_loads(tmp_path):
    root = generate_dataset(tmp_path / "k", seed=1, **TINY)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    assert all(sd["is_key_frame"] for sd in nusc.sample_data)
    assert len(nusc.sample_data) == 2 * 7
    assert not (root / "sweeps").exists()
    assert len(list((root / "gts").rglob("labels.npz"))) == 2


def test_ensure_dataset_generates_once_and_keys_on_every_option(tmp_path, monkeypatch):
    first = ensure_dataset(tmp_path, seed=5, **TINY)
    assert (first / COMPLETE_MARKER).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(generate_module, "_generate", refuse)
    assert ensure_dataset(tmp_path, seed=5, **TINY) == first
    with pytest.raises(AssertionError, match="regenerated"):
        ensure_dataset(tmp_path, seed=5, **{**TINY, "image_width": 128})


def test_cache_key_changes_with_options():
    base = SynthConfig(num_scenes=1, keyframes_per_scene=2, seed=0)
    assert base.cache_key() == SynthConfig(num_scenes=1, keyframes_per_scene=2, seed=0).cache_key()
    assert base.cache_key() != SynthConfig(num_scenes=1, keyframes_per_scene=2, seed=1).cache_key()
    assert (
        base.cache_key()
        != SynthConfig(num_scenes=1, keyframes_per_scene=2, seed=0, with_sweeps=False).cache_key()
    )


def test_refuses_non_empty_output_and_bad_options(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    with pytest.raises(SynthError, match="not empty"):
        generate_dataset(tmp_path / "x", seed=0, **TINY)
    assert (tmp_path / "x" / "file").read_text() == "keep me"
    with pytest.raises(SynthError, match="keyframes_per_scene"):
        SynthConfig(keyframes_per_scene=0)
    with pytest.raises(SynthError, match="image size"):
        SynthConfig(image_width=8, image_height=900)


def test_worker_processes_write_the_same_bytes(tmp_path):
    one = generate_dataset(tmp_path / "one", seed=6, workers=1, **TINY)
    two = generate_dataset(tmp_path / "two", seed=6, workers=2, **TINY)
    assert _digest(one) == _digest(two)


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(root, config, **kwargs):
        (root / "half").mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate_module, "_generate", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_dataset(tmp_path, seed=9, **TINY)
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
