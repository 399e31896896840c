"""`fusionocc prepare`: the info index it writes, and the split options."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusionocc_core.data.infos import load_infos
from fusionocc_ros.cli import main as cli_main


def test_val_scenes_fix_the_split(synth_dataroot: Path, tmp_path: Path) -> None:
    out = tmp_path / "listed"
    args = ["prepare", str(synth_dataroot), "--out", str(out), "--no-imgseg", "--no-progress"]
    assert cli_main([*args, "--val-scenes", "scene-0002"]) == 0
    index = load_infos(out / "fusionocc_infos.pkl")
    assert index["split_source"] == "listed"
    splits = {(info["scene_name"], info["split"]) for info in index["samples"]}
    assert {name for name, split in splits if split == "val"} == {"scene-0002"}
    assert {name for name, split in splits if split == "train"} == {
        info["scene_name"] for info in index["samples"]
    } - {"scene-0002"}


def test_unknown_val_scene_is_named_and_nothing_written(
    synth_dataroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad"
    args = ["prepare", str(synth_dataroot), "--out", str(out), "--no-imgseg", "--no-progress"]
    assert cli_main([*args, "--val-scenes", "scene-0002,scene-0042"]) == 2
    assert "val scenes scene-0042 are not in the dataroot" in capsys.readouterr().err
    assert not (out / "fusionocc_infos.pkl").exists()
