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


def _stage_options(words: list[str], defaults: dict) -> tuple[str, float, float, int]:
    sets = _set_options(words)
    return (_option(words, "--max-iters"), float(sets.get("visible_weight", defaults.get("visible_weight", 0))),
            float(sets.get("lr", defaults["lr"])), int(sets.get("warmup_iters", defaults["warmup_iters"])))


def test_the_documented_commands_are_the_scripts_stages(tmp_path: Path) -> None:
    # docs/training.md keeps the hand-run commands the shipped checkpoint was made with; they and the script's
    # stage table must stay one recipe.
    import yaml

    defaults = yaml.safe_load((REPO / "training" / "configs" / "tiny_synth_fusion.yaml").read_text())
    doc = (REPO / "docs" / "training.md").read_text()
    block = doc[doc.index("The checkpoint\n`fusionocc_core/assets/tiny_synth_v2.pt` was made with:"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("```")]
    joined = block.replace("\\\n", " ")
    documented = [shlex.split(line.split("#")[0])[1:] for line in joined.splitlines() if line.startswith("$T ")]
    scripted = [c for c in (shlex.split(line) for line in _dry_run("fusion", str(tmp_path)).stdout.splitlines())
                if c[1] == "train"]
    assert len(documented) == len(scripted) == 5
    assert [_stage_options(c, defaults) for c in documented] == [_stage_options(c, defaults) for c in scripted]
