"""fusionocc import-checkpoint: the published-format weights written once as a fusionocc checkpoint that loads to
the same model; errors are one line and exit status 2; `fusionocc eval --checkpoint` takes the published file.

The reduced_a reference case (published naming, 4 M parameters) carries the round trip; the full Swin-B file
(built from the manifest, 440 MB) is imported once to show the real preset goes through too.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fusionocc_core.model.checkpoint import convert_original_state_dict, load_checkpoint, load_checkpoint_with_extra
from fusionocc_core.model.presets import get_config
from fusionocc_ros.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "spec" / "reference"
MANIFEST = REFERENCE / "fusionocc_official_state_dict.json"
CASE = REFERENCE / "reduced_a"
REDUCED_A = CASE / "state_dict.pth"
needs_reduced_a = pytest.mark.skipif(not (CASE / "outputs.pth").is_file(), reason="reference data not present")
needs_manifest = pytest.mark.skipif(not MANIFEST.is_file(), reason="reference manifest not present")


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@needs_reduced_a
@pytest.mark.slow
def test_import_round_trips_the_reference_case(tmp_path, capsys):
    """The imported checkpoint holds the config and exactly the tensors the direct load gives, so it computes
    the original code's outputs (one forward, checked against the reference data, which test_conformance
    shows the directly loaded model reproduces; a second forward of the direct model would add 6 s only)."""
    out = tmp_path / "reduced_a.pt"
    assert cli_main(["import-checkpoint", str(REDUCED_A), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "built preset 'reduced_a'" in printed and "4,219,266 parameters" in printed and str(out) in printed
    imported, extra = load_checkpoint_with_extra(out)
    direct = load_checkpoint(REDUCED_A)
    assert imported.config == direct.config == get_config("reduced_a")
    assert extra == {"imported_from": {"file": "state_dict.pth", "format": "mmdet3d", "preset": "reduced_a"}}
    ours, theirs = imported.state_dict(), direct.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    conformance = importlib.util.spec_from_file_location("conformance", REPO / "test/model/test_conformance.py")
    module = importlib.util.module_from_spec(conformance)
    conformance.loader.exec_module(module)  # its translate_inputs: the original's input layouts -> ours
    inputs = torch.load(CASE / "inputs.pth", weights_only=True)
    expected = torch.load(CASE / "outputs.pth", weights_only=True)
    with torch.no_grad():
        logits = imported(*module.translate_inputs(inputs))
    reference = expected["occ_logits_crop_f32_BXYZC_x80_120_y80_120"]
    error = (logits[:, 80:120, 80:120] - reference).abs().max().item()
    assert error <= 1e-4 * reference.abs().max().item()


@needs_reduced_a
def test_half_import_and_reimport_keep_the_provenance(tmp_path, capsys):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    assert cli_main(["import-checkpoint", str(REDUCED_A), "--out", str(full)]) == 0
    assert cli_main(["import-checkpoint", str(full), "--out", str(half), "--half"]) == 0  # ours -> float16
    assert "fusionocc-checkpoint (config stored inside)" in capsys.readouterr().out
    assert half.stat().st_size < 0.6 * full.stat().st_size
    model, extra = load_checkpoint_with_extra(half)
    assert extra["imported_from"]["preset"] == "reduced_a"
    converted = convert_original_state_dict(torch.load(REDUCED_A, weights_only=True))
    state = model.state_dict()
    for key, value in converted.items():
        assert state[key].dtype == value.dtype, key  # float32 again in the model
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(state[key], expected), key


def test_garbage_and_foreign_files_exit_2_with_one_line(tmp_path, capsys):
    garbage = tmp_path / "fusion_occ.pth"
    garbage.write_bytes(bytes(range(7, 256)) * 16)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(2)}, foreign)
    out = tmp_path / "out.pt"
    for source, what in ((garbage, "not a torch checkpoint"), (foreign, "neither a fusionocc-checkpoint"),
                         (tmp_path / "missing.pth", "does not exist")):
        assert cli_main(["import-checkpoint", str(source), "--out", str(out)]) == 2  # no exception escapes
        captured = capsys.readouterr()
        line = _one_line(captured.err)
        assert line.startswith("fusionocc import-checkpoint: ") and what in line, line
        assert "Traceback" not in captured.err and "weights_only" not in line and captured.out == ""
        assert not out.exists()


def test_the_source_is_never_overwritten(tmp_path, capsys):
    source = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, source)
    before = source.read_bytes()
    assert cli_main(["import-checkpoint", str(source), "--out", str(tmp_path / "." / "model.pt")]) == 2
    assert "is the source file" in _one_line(capsys.readouterr().err)
    assert source.read_bytes() == before


@needs_manifest
@pytest.mark.slow
def test_import_of_the_full_published_model(published_checkpoint, tmp_path_factory, capsys):
    """The 109 M-parameter download (manifest layout) imports as preset 'official'; about 15 s on 2 cores. The
    written file is inspected memory-mapped instead of loading the model a second time."""
    source = published_checkpoint
    out = tmp_path_factory.mktemp("import") / "fusionocc_official.pt"
    assert cli_main(["import-checkpoint", str(source), "--out", str(out), "--half"]) == 0
    printed = capsys.readouterr().out
    assert "built preset 'official'" in printed and "109,090,524 parameters" in printed and "float16" in printed
    written = torch.load(out, weights_only=True, mmap=True)
    assert written["format"] == "fusionocc-checkpoint" and written["imported_from"]["preset"] == "official"
    assert written["config"] == get_config("official").to_dict()
    original = torch.load(source, weights_only=True, mmap=True)["state_dict"]
    assert len(written["state_dict"]) == 711
    assert torch.equal(written["state_dict"]["head.predicter.2.weight"], original["predicter.2.weight"].half())


@needs_reduced_a
@pytest.mark.slow
def test_eval_takes_the_published_file_directly(synth_dataroot, tmp_path, capsys):
    """`fusionocc eval --checkpoint <published .pth>` without --original: one sample scored end to end."""
    prepared = tmp_path / "prepared"
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(prepared), "--no-progress",
                     "--no-imgseg"]) == 0
    scores = tmp_path / "scores.json"
    argv = ["eval", "--checkpoint", str(REDUCED_A), "--infos", str(prepared / "fusionocc_infos.pkl"),
            "--device", "cpu", "--workers", "0", "--limit", "1", "--out", str(scores), "--no-progress"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    result = json.loads(scores.read_text())
    assert result["camera_mask"]["num_samples"] == 1 and result["source"].endswith("state_dict.pth")


