"""`fusionocc convert` continues an interrupted run: complete bags (verified against their completion record,
their metadata read back with rosbags and the scene) are kept, incomplete ones and temporaries of killed runs
are written again or removed, bags of other options and folders that are not bags are refused, and
--overwrite rewrites everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader

from fusionocc_ros.bag_converter import COMPLETE_FILE, ConvertOptions, convert_dataroot
from fusionocc_ros.cli import main as cli_main
from fusionocc_ros.errors import ConvertError

REPO = Path(__file__).resolve().parents[2]
FUSIONOCC = REPO / ".venv" / "bin" / "fusionocc"
SCENES = ["scene-0001", "scene-0002"]

# `fusionocc convert` that stops in the middle of the second scene's bag (the first one is in place) and
# waits there to be killed, so the test interrupts it at a known point.
_PAUSE_IN_SECOND_SCENE = """
import sys, time
from pathlib import Path
from fusionocc_ros import bag_converter, cli
ready, out = Path(sys.argv[1]), Path(sys.argv[2])
original, calls = bag_converter.read_points, [0]
def pausing(path):
    if (out / "scene-0001").exists():
        calls[0] += 1
        if calls[0] == 3:
            ready.write_text("ready")
            time.sleep(300)
    return original(path)
bag_converter.read_points = pausing
sys.exit(cli.main(sys.argv[3:]))
"""


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def _complete_and_readable(bag: Path) -> int:
    record = json.loads((bag / COMPLETE_FILE).read_text())
    with Reader(bag) as reader:
        assert reader.message_count == sum(record["message_counts"].values()) > 0
        return sum(1 for _ in reader.messages())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_conversion_completes_on_rerun_and_keeps_the_first_bag(
    sig: signal.Signals, synth_dataroot: Path, tmp_path: Path
) -> None:
    out, ready = tmp_path / "out", tmp_path / "ready"
    args = ["convert", str(synth_dataroot), "--out", str(out), "--all", "--no-progress"]
    process = subprocess.Popen([sys.executable, "-c", _PAUSE_IN_SECOND_SCENE, str(ready), str(out), *args],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the conversion never reached its second scene"
        time.sleep(0.1)
    first = out / "scene-0001" / "scene-0001.mcap"
    before = _identity(first)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    left = sorted(os.listdir(out))
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        # The half-written second bag stays hidden in its temporary folder; nothing named scene-0002.
        assert left[1:] == ["scene-0001"] and left[0].startswith(".fusionocc-convert-scene-0002-")
    else:
        assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
        assert left == ["scene-0001"]

    rerun = subprocess.run([str(FUSIONOCC), *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert f"{out / 'scene-0001'}: complete" in rerun.stderr and "kept" in rerun.stderr
    if sig == signal.SIGKILL:
        assert f"removed {out / left[0]}, left by an interrupted conversion" in rerun.stderr
    assert str(out / "scene-0002") in rerun.stdout and str(out / "scene-0001") not in rerun.stdout
    assert sorted(os.listdir(out)) == SCENES  # no leftovers
    assert _identity(first) == before  # kept, not written again
    for scene in SCENES:
        _complete_and_readable(out / scene)


def test_incomplete_bags_are_rewritten_other_options_refused_overwrite_forces(
    synth_dataroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    options = ConvertOptions(progress=False, keyframes_only=True)
    assert not any(r.kept for r in convert_dataroot(synth_dataroot, out, options=options))
    bag_a, bag_b = out / "scene-0001" / "scene-0001.mcap", out / "scene-0002" / "scene-0002.mcap"
    kept_b = _identity(bag_b)

    # A bag cut short (a copy that stopped) and a temporary of a process that is gone.
    os.truncate(bag_a, bag_a.stat().st_size - 100)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = out / f".fusionocc-convert-scene-0002-{int(gone.stdout)}"
    (stale / "scene-0002").mkdir(parents=True)
    logged: list[str] = []
    reports = convert_dataroot(synth_dataroot, out, options=options, log=logged.append)
    assert [r.kept for r in reports] == [False, True]
    assert any(line.startswith(f"{out / 'scene-0001'}: incomplete (scene-0001.mcap is") for line in logged)
    assert f"{out / 'scene-0002'}: complete ({reports[1].messages} messages), kept" in logged
    assert any(line.startswith(f"removed {stale}") for line in logged)
    assert sorted(os.listdir(out)) == SCENES
    assert _identity(bag_b) == kept_b
    assert _complete_and_readable(out / "scene-0001") == reports[0].messages

    # A bag without its completion record (the conversion did not finish, or an older converter) is redone.
    (out / "scene-0001" / COMPLETE_FILE).unlink()
    reports = convert_dataroot(synth_dataroot, out, options=options)
    assert [r.kept for r in reports] == [False, True]

    # Other options: refused by name, nothing touched.
    before = _identity(bag_b)
    with pytest.raises(ConvertError, match=r"scene-0001 exists and was written with other options "
                                           r"\(keyframes_only True -> False\).*use --overwrite"):
        convert_dataroot(synth_dataroot, out, options=replace(options, keyframes_only=False))
    assert _identity(bag_b) == before

    # A folder that is not a bag is never deleted.
    mine = tmp_path / "mine" / "scene-0001"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConvertError, match=r"scene-0001 exists and holds notes.txt"):
        convert_dataroot(synth_dataroot, mine.parent, options=options, scenes=["scene-0001"])
    assert (mine / "notes.txt").read_text() == "keep me"

    # --overwrite rewrites complete bags too.
    capsys.readouterr()
    assert cli_main(["convert", str(synth_dataroot), "--out", str(out), "--all", "--keyframes-only",
                     "--no-progress", "--overwrite"]) == 0
    assert capsys.readouterr().out.count("messages") == 2
    assert _identity(bag_b) != before and sorted(os.listdir(out)) == SCENES
