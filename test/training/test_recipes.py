"""training/recipes/tiny_synth_v2.sh: the stages chain (each fine-tune starts from the previous stage's final
weights, all in the requested modality) and a bad modality stops before anything runs. DRY_RUN=1 prints the
commands, so this needs no data."""
from __future__ import annotations

import itertools
import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "training" / "recipes" / "tiny_synth_v2.sh"


def _dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRY_RUN": "1"}
    return subprocess.run(["bash", str(RECIPE), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=30)


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def _set_options(words: list[str]) -> dict[str, str]:
    return dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--set")


@pytest.mark.parametrize("modality", ["fusion", "lidar", "camera"])
def test_stages_chain_in_one_modality(modality: str, tmp_path: Path) -> None:
    result = _dry_run(modality, str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    trains = [c for c in commands if c[1] == "train"]
    assert len(trains) >= 2 and [c[1] for c in commands[len(trains):]] == ["adjust-logits", "eval"]
    assert all(_option(c, "--modality") == modality for c in trains)
    assert "init_from" not in _set_options(trains[0])  # stage 1 from scratch
    for previous, current in itertools.pairwise(trains):
        assert _set_options(current)["init_from"] == f"{_option(previous, '--out')}/model_final.pth"
    outs = [_option(c, "--out") for c in trains]
    assert len(set(outs)) == len(outs) and all(o.startswith(str(tmp_path / "runs")) for o in outs)
    adjust, evaluate = commands[len(trains):]
    assert _option(adjust, "--checkpoint") == f"{outs[-1]}/model_final.pth"
    assert _option(evaluate, "--checkpoint") == _option(adjust, "--out")
    # the same recipe for every modality: only --modality and the folders differ
    fusion = [shlex.split(line) for line in _dry_run("fusion", str(tmp_path / "runs")).stdout.splitlines()]
    assert [_set_options(c) | {"init_from": ""} for c in fusion[:len(trains)]] == \
        [_set_options(c) | {"init_from": ""} for c in trains]


def test_unknown_modality_stops(tmp_path: Path) -> None:
    result = _dry_run("radar", str(tmp_path))
    assert result.returncode == 2 and "unknown modality 'radar'" in result.stderr
    assert result.stdout == ""
