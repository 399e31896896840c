"""Checkpoint conversion from the published naming (manifest contract) and our own checkpoint format."""

import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch

from fusionocc_core.model.checkpoint import (
    ORIGINAL_FORMAT,
    CheckpointError,
    convert_original_state_dict,
    convert_original_state_dict_with_report,
    load_checkpoint,
    load_checkpoint_with_extra,
    load_checkpoint_with_report,
    load_original_checkpoint,
    save_checkpoint,
)
from fusionocc_core.model.checkpoint_camera import CheckpointConversionError
from fusionocc_core.model.fusionocc import FusionOcc, FusionOccConfig
from fusionocc_core.model.presets import build_model, get_config

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MANIFEST = SHARED / "spec" / "reference" / "fusionocc_official_state_dict.json"
REDUCED_A = SHARED / "spec" / "reference" / "reduced_a" / "state_dict.pth"
needs_manifest = pytest.mark.skipif(not MANIFEST.is_file(), reason="reference manifest not present")
needs_reduced_a = pytest.mark.skipif(not REDUCED_A.is_file(), reason="reference data not present")


def _micro_config() -> FusionOccConfig:
    """The smallest config that still builds every module (fast to save/load)."""
    import dataclasses

    tiny = get_config("tiny")
    return dataclasses.replace(tiny, camera=dataclasses.replace(tiny.camera, input_size=(64, 96)))


@needs_manifest
def test_official_manifest_maps_completely():
    manifest = json.loads(MANIFEST.read_text())
    dtypes = manifest["dtypes"]
    original = {
        k: torch.empty(shape, device="meta", dtype=getattr(torch, dtypes.get(k, "float32")))
        for k, shape in manifest["state_dict"].items()
    }
    assert len(original) == 735
    with torch.device("meta"):
        model = build_model("official")
    result = convert_original_state_dict_with_report({"state_dict": original})
    ours = model.state_dict()
    assert result.unmapped == []
    assert len(result.skipped) == 24 and all(k.endswith("relative_position_index") for k in result.skipped)
    assert len(result.converted) + len(result.skipped) == 735
    assert sorted(result.converted) == sorted(ours)  # 0 missing, 0 unexpected
    mismatched = [k for k, v in result.converted.items() if v.shape != ours[k].shape]
    assert mismatched == []
    assert sum(p.numel() for p in model.parameters()) == 109_090_524
    # The sparse-conv kernels really are re-laid out: (kx, ky, kz, Cin, Cout) -> (Cout, kz, ky, kx, Cin).
    assert result.converted["lidar_encoder.stages.0.2.conv.weight"].shape == (32, 3, 3, 3, 16)
    assert result.converted["lidar_encoder.output_conv.weight"].shape == (32, 64)


def test_sparse_kernel_permutation_reverses_spatial_axes():
    w = torch.arange(3 * 3 * 3 * 2 * 4, dtype=torch.float32).view(3, 3, 3, 2, 4)  # (kx, ky, kz, Cin, Cout)
    original = {
        "lidar_encoder.encoder_layers.encoder_layer2.1.0.weight": w,
        "lidar_encoder.conv_out.0.weight": torch.arange(6.0).view(1, 1, 1, 3, 2),
    }
    converted = convert_original_state_dict(original)
    ours = converted["lidar_encoder.stages.1.1.conv.weight"]
    assert ours.shape == (4, 3, 3, 3, 2)
    assert ours[3, 2, 1, 0, 1] == w[0, 1, 2, 1, 3]  # (Cout, kz, ky, kx, Cin) <- (kx, ky, kz, Cin, Cout)
    assert converted["lidar_encoder.output_conv.weight"].tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]


def test_unknown_keys_and_module_prefix():
    converted = convert_original_state_dict({"state_dict": {"module.predicter.0.bias": torch.zeros(3)}})
    assert list(converted) == ["head.predicter.0.bias"]
    with pytest.raises(CheckpointConversionError, match="no rename rule: pts_bbox_head.x"):
        convert_original_state_dict({"pts_bbox_head.x": torch.zeros(1)})


@needs_reduced_a
def test_load_original_checkpoint_report(tmp_path):
    model = FusionOcc(get_config("reduced_a"))
    report = load_original_checkpoint(model, REDUCED_A)
    assert report.ok and len(report.expected_skips) == 8 and not report.missing
    reference = torch.load(REDUCED_A, weights_only=True)
    assert torch.equal(model.head.predicter[2].bias, reference["predicter.2.bias"])
    # A checkpoint of other widths: strict loading names the mismatch and hints at the config.
    narrow = FusionOcc(get_config("tiny"))
    with pytest.raises(CheckpointError, match="SHAPE MISMATCH|MISSING"):
        load_original_checkpoint(narrow, REDUCED_A)
    # A camera-only checkpoint: non-strict loading reports the lidar branch as missing, with a hint.
    camera_only = {k: v for k, v in reference.items() if not k.startswith("lidar_encoder.")}
    path = tmp_path / "camera_only.pth"
    torch.save({"state_dict": camera_only}, path)
    report = load_original_checkpoint(FusionOcc(get_config("reduced_a")), path, strict=False)
    assert not report.ok and all(k.startswith("lidar_encoder.") for k in report.missing)
    assert any("no lidar branch" in h for h in report.hints) and "MISSING" in str(report)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = FusionOcc(_micro_config())
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, epoch=3, metrics={"miou": 12.5})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind
    loaded, extra = load_checkpoint_with_extra(path)
    assert loaded.config == model.config and not loaded.training
    assert extra == {"epoch": 3, "metrics": {"miou": 12.5}}
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_half_checkpoint_halves_the_file_and_loads_into_float32(tmp_path):
    torch.manual_seed(0)
    model = FusionOcc(_micro_config())
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, model)
    save_checkpoint(half, model, half=True, step=7)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, extra = load_checkpoint_with_extra(half)
    assert extra == {"step": 7}
    ours, theirs = model.state_dict(), loaded.state_dict()
    for key in ours:
        assert theirs[key].dtype == ours[key].dtype, key  # back in the model's own precision
        if ours[key].is_floating_point():
            torch.testing.assert_close(theirs[key], ours[key].half().float(), rtol=0, atol=0)
        else:
            assert torch.equal(theirs[key], ours[key]), key


def test_truncated_foreign_and_missing_files(tmp_path):
    model = FusionOcc(_micro_config())
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="neither a fusionocc-checkpoint"):
        load_checkpoint(foreign)
    original = tmp_path / "original.pth"
    torch.save({"state_dict": {"img_backbone.patch_embed.projection.bias": torch.zeros(2)}}, original)
    with pytest.raises(CheckpointError, match="published-format .* fits none of the known configurations"):
        load_checkpoint(original)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(path, model, config={})


def test_saved_checkpoints_get_the_umasks_permissions(tmp_path):
    """A checkpoint is an ordinary file for the user's group to read (mkstemp's 0600 was a surprise on shared
    machines): with umask 022 it is rw-r--r--."""
    import stat

    from fusionocc_core.model.checkpoint import atomic_torch_save

    old = os.umask(0o022)
    try:
        path = atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left


# ---------------------------------------------------------------------- the published file, as downloaded




@pytest.fixture(scope="module")
def published(published_checkpoint: Path) -> Path:
    return published_checkpoint


@needs_manifest
@pytest.mark.slow
def test_load_checkpoint_takes_the_published_file_and_logs_its_report(published, caplog):
    """The download goes straight to load_checkpoint (so to every --checkpoint): official preset, every tensor
    converted, report logged. About 10 s on 2 cores: the file is the full 109 M-parameter model."""
    with caplog.at_level(logging.INFO, logger="fusionocc_core.model.checkpoint"):
        model = load_checkpoint(published)
    assert model.config == get_config("official") and not model.training
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "built preset 'official'" in logged and "loaded 711 tensors, skipped 24 derived buffers" in logged
    original = torch.load(published, weights_only=True, mmap=True)["state_dict"]
    converted = convert_original_state_dict(original)
    state = model.state_dict()
    assert state.keys() == converted.keys()
    assert all(torch.equal(state[k], converted[k]) for k in state)
    # Spot checks independent of the converter: a renamed Swin tensor and a re-laid-out sparse kernel.
    assert torch.equal(
        state["camera.backbone.stages.2.blocks.17.ffn.layers.1.weight"],
        original["img_backbone.stages.2.blocks.17.ffn.layers.1.weight"],
    )
    kernel = original["lidar_encoder.encoder_layers.encoder_layer3.2.0.weight"]  # (kx, ky, kz, Cin, Cout)
    assert torch.equal(state["lidar_encoder.stages.2.2.conv.weight"], kernel.permute(4, 2, 1, 0, 3))


@needs_reduced_a
def test_a_published_format_file_builds_the_configuration_its_weights_fit(tmp_path):
    """reduced_a (bare, as in the reference data, and wrapped like a download with DataParallel's `module.`)
    loads as the reduced_a configuration: the weights pick the config, not a fixed preset."""
    reference = torch.load(REDUCED_A, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": {f"module.{k}": v for k, v in reference.items()}}, wrapped)
    converted = convert_original_state_dict(reference)
    for path in (REDUCED_A, wrapped):
        loaded = load_checkpoint_with_report(path)
        assert loaded.source == ORIGINAL_FORMAT and loaded.preset == "reduced_a"
        assert loaded.model.config == get_config("reduced_a") and loaded.extra == {}
        assert loaded.report.ok and len(loaded.report.expected_skips) == 8
        state = loaded.model.state_dict()
        assert state.keys() == converted.keys() and all(torch.equal(state[k], converted[k]) for k in state)


@needs_reduced_a
def test_a_published_format_file_that_fits_nothing_says_what_is_missing(tmp_path):
    reference = torch.load(REDUCED_A, weights_only=True)
    camera_only = tmp_path / "bevdet_occ.pth"
    torch.save({"state_dict": {k: v for k, v in reference.items() if not k.startswith("lidar_encoder.")}},
               camera_only)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(camera_only)
    message = str(error.value)
    lidar = sum(k.startswith("lidar_encoder.") for k in FusionOcc(get_config("reduced_a")).state_dict())
    assert "\n" not in message
    assert re.search(r"fits none of the known configurations .*; closest, 'reduced_a': .*"
                     rf"missing {lidar} tensors: lidar_encoder \({lidar}\)", message), message
    assert "no lidar branch" in message  # the hint


def _saved_micro(tmp_path: Path) -> tuple[Path, dict]:
    model = FusionOcc(_micro_config())
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    return path, torch.load(path, weights_only=True)


def test_missing_tensors_are_counted_per_module_in_one_line(tmp_path):
    path, data = _saved_micro(tmp_path)
    state = data["state_dict"]
    backbone = [k for k in state if k.startswith("camera.backbone.")]
    head = [k for k in state if k.startswith("head.")]
    for key in backbone + head:
        del state[key]
    torch.save(data, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and "Error(s) in loading" not in message
    assert (f"missing {len(backbone) + len(head)} tensors: camera.backbone ({len(backbone)}), "
            f"head ({len(head)})") in message


def test_unexpected_and_mis_shaped_tensors_are_named(tmp_path):
    path, data = _saved_micro(tmp_path)
    state = data["state_dict"]
    state["head.extra.weight"] = torch.zeros(3)
    state["occ_fpn.conv.weight"] = state["occ_fpn.conv.weight"][:1].clone()
    torch.save(data, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and "missing" not in message
    assert "1 unexpected tensors: head (1)" in message
    assert re.search(r"1 mis-shaped tensors: occ_fpn \(1\) \(e.g. occ_fpn.conv.weight: \[1, \d+, 1, 1, 1\] in the "
                     r"file, \[\d+, \d+, 1, 1, 1\] in the model\)", message), message


def test_unreadable_files_get_one_line_without_torchs_advice(tmp_path):
    import numpy as np

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(1, 256, 4096, dtype=np.uint8)))
    text = tmp_path / "notes.pth"
    text.write_text("my checkpoint is on the other disk\n")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    pickled = tmp_path / "numpy.pth"
    torch.save({"state_dict": {}, "meta": {"best": np.float64(0.5)}}, pickled)  # a pickled numpy scalar
    expected = {
        garbage: "not a torch checkpoint",
        text: "not a torch checkpoint (it starts with b'my check'",
        empty: "the file is empty",
        pickled: "pickled Python object (numpy.",
    }
    for path, what in expected.items():
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        message = str(error.value)
        assert message.startswith(f"cannot read checkpoint {path}: ") and what in message, message
        assert "\n" not in message and "weights_only" not in message, message


def test_files_of_neither_format_say_what_they_are(tmp_path):
    model = FusionOcc(_micro_config())
    cases = {
        "bare.pth": (model.state_dict(), "a bare state_dict in this project's naming"),
        "train.pt": ({"format": "fusionocc-train", "format_version": 1}, "a fusionocc training checkpoint"),
        "other.pt": ({"weights": torch.zeros(1), "epoch": 3}, "a dict with keys ['weights', 'epoch']"),
    }
    for name, (payload, what) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(tmp_path / name)
        message = str(error.value)
        assert "neither a fusionocc-checkpoint" in message and what in message and "\n" not in message, message


@pytest.mark.parametrize(("asset", "preset", "max_mb"), [("tiny_synth.pt", "tiny_v1", 26.0),
                                                          ("tiny_synth_v2.pt", "tiny", 10.0)])
def test_shipped_checkpoints_load_as_their_preset_in_float16_within_their_size(asset, preset, max_mb):
    """The demo's default checkpoint is a tiny_v1 model; the redesigned tiny's checkpoint ships beside it
    (issue 19: at most 10 MB). Both are read with weights_only=True and fit their preset strictly."""
    path = Path(__file__).parents[2] / "fusionocc_core" / "assets" / asset
    assert path.stat().st_size <= max_mb * 1e6
    assert load_checkpoint(path).config == get_config(preset)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
