"""One damaged file at a time in a copy of the synthetic world: `check-data` names it (and blames the right
file), every command that reads it stops with exit status non-zero and ONE line naming the file and the
problem, no traceback, and nothing half-written at its destination (no index, no imgseg map, no bag, no
checkpoint, no scores, no picture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fusionocc_core.data.infos import DEFAULT_INFO_NAME, load_infos, save_infos
from fusionocc_core.occ3d import GRID_SHAPE
from fusionocc_ros.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
FUSIONOCC = REPO / ".venv" / "bin" / "fusionocc"
TINY_CONFIG = REPO / "training" / "configs" / "tiny_synth.yaml"


# -- worlds ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hard-linked copy of the cached world with its info index and imgseg maps (written once)."""
    root = tmp_path_factory.mktemp("damaged") / "prepared"
    shutil.copytree(synth_dataroot, root, copy_function=os.link)
    assert cli_main(["prepare", str(root), "--no-progress"]) == 0
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny-preset checkpoint (eval and calibrate fail on the data before its weights matter)."""
    from fusionocc_core.model.checkpoint import save_checkpoint
    from fusionocc_core.model.presets import build_model

    path = tmp_path_factory.mktemp("damaged_ckpt") / "tiny.pth"
    save_checkpoint(path, build_model("tiny"))
    return path


def _world(prepared: Path, target: Path) -> tuple[Path, dict[str, Any]]:
    """A hard-linked copy of `prepared` whose index points at the copy; returns it and its index."""
    shutil.copytree(prepared, target, copy_function=os.link)
    index = load_infos(target / DEFAULT_INFO_NAME)
    index["dataroot"] = str(target)
    (target / DEFAULT_INFO_NAME).unlink()  # never write through a hard link into the cached world
    save_infos(index, target / DEFAULT_INFO_NAME)
    return target, load_infos(target / DEFAULT_INFO_NAME)


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # a new inode: the cached world the copy links to stays intact
    path.write_bytes(data)


# -- damages: each takes (dataroot, the keyframe info to hit) and returns the damaged file --------------


def _json_cut(root: Path, info: dict[str, Any]) -> Path:
    path = root / "v1.0-mini" / "sample_data.json"
    data = path.read_bytes()
    _replace(path, data[: len(data) // 2])
    return path


def _jpeg_garbage(root: Path, info: dict[str, Any]) -> Path:
    path = root / info["cams"]["CAM_FRONT"]["path"]
    _replace(path, np.random.default_rng(0).bytes(5000))
    return path


def _pcd_longer(extra: int) -> Callable[[Path, dict[str, Any]], Path]:
    def damage(root: Path, info: dict[str, Any]) -> Path:
        path = root / info["lidar"]["path"]
        data = path.read_bytes()
        _replace(path, data + b"\x01" * extra if extra > 0 else data[:extra])
        return path

    return damage


def _missing_jpeg(root: Path, info: dict[str, Any]) -> Path:
    path = root / info["cams"]["CAM_BACK"]["path"]
    path.unlink()
    return path


def _nan_pose(root: Path, info: dict[str, Any]) -> Path:
    tables = root / "v1.0-mini"
    sample_data = json.loads((tables / "sample_data.json").read_text())
    pose_token = next(sd["ego_pose_token"] for sd in sample_data
                      if sd["token"] == info["lidar"]["sample_data_token"])
    path = tables / "ego_pose.json"
    poses = json.loads(path.read_text())
    next(p for p in poses if p["token"] == pose_token)["translation"][0] = float("nan")
    _replace(path, json.dumps(poses).encode())  # Python's json writes (and the devkit reads) NaN
    return path


def _image_half_size(root: Path, info: dict[str, Any]) -> Path:
    path = root / info["cams"]["CAM_FRONT_RIGHT"]["path"]
    with Image.open(path) as image:
        small = image.resize((image.width // 2, image.height // 2))
    path.unlink()
    small.save(path, quality=90)
    return path


def _gts_cut(root: Path, info: dict[str, Any]) -> Path:
    path = root / info["occ_path"]
    _replace(path, path.read_bytes()[:1000])
    return path


def _lidarseg_short(root: Path, info: dict[str, Any]) -> Path:
    path = root / info["lidar"]["lidarseg_path"]
    _replace(path, path.read_bytes()[:-3])
    return path


# damage -> (function, what the commands say, what check-data says, commands that read the file)
DAMAGES: dict[str, tuple[Callable[[Path, dict[str, Any]], Path], str, str, tuple[str, ...]]] = {
    "json_cut": (_json_cut, "not valid JSON", "JSONDecodeError", ("prepare", "convert")),
    "jpeg_garbage": (_jpeg_garbage, "not a readable image", "not a readable image",
                     ("prepare", "eval", "render", "convert")),
    "pcd_one_byte_long": (_pcd_longer(1), "not a whole number of 20-byte points", "20-byte points",
                          ("prepare", "train", "eval", "convert")),
    "pcd_nine_bytes_long": (_pcd_longer(9), "not a whole number of 20-byte points", "20-byte points",
                            ("prepare", "convert")),
    # Cut short, the sweep has one point fewer than its labels: still the sweep is to blame, not the labels.
    "pcd_six_bytes_short": (_pcd_longer(-6), "not a whole number of 20-byte points", "20-byte points",
                            ("prepare",)),
    "missing_jpeg": (_missing_jpeg, "missing", "missing", ("prepare", "eval", "render", "convert")),
    "nan_ego_pose": (_nan_pose, "not 3 finite numbers", "not 3 finite numbers", ("prepare", "convert")),
    "image_wrong_size": (_image_half_size, "its sample_data record says", "its sample_data record says",
                         ("prepare", "eval")),
    "gts_cut": (_gts_cut, "unreadable as an .npz archive", "unreadable as an .npz archive",
                ("prepare", "train", "eval", "adjust-logits", "render", "convert")),
    "lidarseg_short": (_lidarseg_short, "labels for the", "labels for the", ("prepare",)),
}
# prepare and convert are hit in the last scene: a lazy check would have written the first scene's imgseg
# maps or bag by then. The others are hit in the index's first keyframe, which they read first.
LAST_SCENE_COMMANDS = ("prepare", "convert")
CASES = [(damage, command) for damage, spec in DAMAGES.items() for command in spec[3]]


def _one_line_error(code: int, err: str, path: Path, problem: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert str(path) in lines[0] and problem in lines[0], lines[0]
    return lines[0]


def _split_of_first(index: dict[str, Any]) -> tuple[str, str]:
    first = index["samples"][0]["split"]
    return first, next(s for s in ("train", "val") if s != first)


def _run(command: str, root: Path, index: dict[str, Any], damage: str, out: Path,
         checkpoint: Path) -> list[str]:
    """The command line of `command` on the damaged world, writing (if anything) under `out`."""
    infos = str(root / DEFAULT_INFO_NAME)
    split, other = _split_of_first(index)
    if command == "prepare":
        return ["prepare", str(root), "--out", str(out), "--no-progress"]
    if command == "convert":
        extra = ["--with-occ-gt"] if damage == "gts_cut" else []
        return ["convert", str(root), "--out", str(out), "--all", "--no-progress", *extra]
    if command == "eval":
        return ["eval", "--checkpoint", str(checkpoint), "--infos", infos, "--split", split, "--limit", "1",
                "--workers", "0", "--device", "cpu", "--out", str(out / "scores.json"), "--no-progress"]
    if command == "adjust-logits":
        return ["adjust-logits", "--checkpoint", str(checkpoint), "--infos", infos,
                "--out", str(out / "cal.pth"), "--split", split, "--limit", "1", "--taus", "0",
                "--workers", "0", "--device", "cpu", "--no-progress"]
    if command == "train":
        # The first keyframe's sweep is in every keyframe's lidar window of its scene and enet weights read
        # every label of the split first: the first step reads the damaged file whichever sample it draws.
        return ["train", "--config", str(TINY_CONFIG), "--infos", infos, "--out", str(out),
                "--device", "cpu", "--max-iters", "1", "--set", "num_workers=0", "--set", "progress=false",
                "--set", f"train_split={split}", "--set", f"val_split={other}", "--set", "class_weights=enet"]
    if command == "render":
        volume = out.parent / "volume.npy"
        np.save(volume, np.full(GRID_SHAPE, 17, np.uint8))
        return ["render", str(volume), "--infos", infos, "--token", index["samples"][0]["token"],
                "--out", str(out / "picture.png")]
    raise AssertionError(command)


def _nothing_written(command: str, out: Path) -> None:
    if command == "train":  # the run folder may hold its config; no checkpoint or exported model
        assert not list(out.glob("*.pt")) and not list(out.glob("*.pth"))
    else:  # no index, no imgseg map, no bag, no temporary, no scores, no calibrated model, no picture
        assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.mark.parametrize(("damage", "command"), CASES, ids=[f"{d}-{c}" for d, c in CASES])
def test_command_stops_with_one_line_naming_the_file(
    damage: str, command: str, prepared: Path, checkpoint: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, index = _world(prepared, tmp_path / "world")
    target = index["samples"][-1] if command in LAST_SCENE_COMMANDS else index["samples"][0]
    function, problem, _, _ = DAMAGES[damage]
    path = function(root, target)
    out = tmp_path / "out"
    argv = _run(command, root, index, damage, out, checkpoint)
    capsys.readouterr()
    code = cli_main(argv)
    _one_line_error(code, capsys.readouterr().err, path, problem)
    _nothing_written(command, out)


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_check_data_names_the_damaged_file_and_its_fix(
    damage: str, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, index = _world(prepared, tmp_path / "world")
    function, _, problem, _ = DAMAGES[damage]
    path = function(root, index["samples"][0])
    capsys.readouterr()
    assert cli_main(["check-data", str(root), "--no-progress", "--deep"]) == 1
    report = capsys.readouterr().err.splitlines()
    failed = [i for i, line in enumerate(report) if "[FAIL]" in line]
    # Exactly one finding, and it is about the damaged file (a long sweep does not blame its lidarseg file).
    assert len(failed) == 1, "\n".join(report)
    line = report[failed[0]]
    relative = str(path.relative_to(root))
    assert (relative in line or str(path) in line) and problem in line, line
    assert report[failed[0] + 1].strip().startswith("fix: ")


def test_train_on_an_index_without_val_samples(prepared: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A one-scene world gets no val scene from the hash split: one line saying how to get one."""
    root, index = _world(prepared, tmp_path / "world")
    for info in index["samples"]:
        info["split"] = "train"
    (root / DEFAULT_INFO_NAME).unlink()
    save_infos(index, root / DEFAULT_INFO_NAME)
    capsys.readouterr()
    code = cli_main(["train", "--config", str(TINY_CONFIG), "--infos", str(root / DEFAULT_INFO_NAME),
                     "--out", str(tmp_path / "run"), "--device", "cpu", "--max-iters", "1",
                     "--set", "num_workers=0", "--set", "progress=false"])
    line = _one_line_error(code, capsys.readouterr().err, root / DEFAULT_INFO_NAME, "split 'val'")
    assert "is empty" in line and "--val-scenes" in line
    assert not (tmp_path / "run").exists()


def _subprocess(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(FUSIONOCC), *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_real_process_with_loader_workers_prints_one_line(prepared: Path, checkpoint: Path,
                                                          tmp_path: Path) -> None:
    """The installed command in its own process: a damaged image read in a DataLoader worker comes back as
    one line (the worker's traceback is not printed), and so does a damaged sweep in `prepare`."""
    root, index = _world(prepared, tmp_path / "world")
    image = _jpeg_garbage(root, index["samples"][0])
    split, _ = _split_of_first(index)
    result = _subprocess(["eval", "--checkpoint", str(checkpoint), "--infos", str(root / DEFAULT_INFO_NAME),
                          "--split", split, "--limit", "1", "--workers", "1", "--device", "cpu",
                          "--out", str(tmp_path / "out" / "scores.json"), "--no-progress"])
    _one_line_error(result.returncode, result.stderr, image, "not a readable image")
    assert not (tmp_path / "out").exists()
    root, index = _world(prepared, tmp_path / "world2")
    sweep = _pcd_longer(9)(root, index["samples"][-1])
    result = _subprocess(["prepare", str(root), "--out", str(tmp_path / "prepared"), "--no-progress"])
    _one_line_error(result.returncode, result.stderr, sweep, "not a whole number of 20-byte points")
    assert not (tmp_path / "prepared").exists()


def test_imgseg_pass_removes_its_maps_when_a_file_turns_out_damaged(prepared: Path, tmp_path: Path) -> None:
    """Past prepare's up-front check (a file damaged meanwhile): the maps of this pass are removed again."""
    from fusionocc_core.data.files import DataFileError
    from fusionocc_core.data.imgseg import write_imgseg

    root, index = _world(prepared, tmp_path / "world")
    sweep = _pcd_longer(9)(root, index["samples"][-1])
    with pytest.raises(DataFileError, match="not a whole number of 20-byte points") as caught:
        write_imgseg(index, tmp_path / "imgseg", progress=False)
    assert caught.value.path == sweep
    assert not list((tmp_path / "imgseg").rglob("*.npy"))
