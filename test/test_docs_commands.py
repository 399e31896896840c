"""The README's commands run as written, so they cannot drift from the code.

- Every subcommand in the README's command table answers `--help`, and every subcommand of the CLI is in the table.
- Every fenced block preceded by `<!-- doc-test -->` runs line by line with bash, exactly as written, in a fresh
  working folder with `.venv/bin` first on PATH. A line is expected to exit 0 unless its comment says
  `exit status N`. Blocks that use `data/nuscenes` get the cached synthetic dataset there (its files linked, so
  `fusionocc prepare` writes into the temporary folder, not into the cache).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fusionocc_ros import cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_TEST_MARKER = "<!-- doc-test -->"
PREPARE_OUTPUTS = {"fusionocc_infos.pkl", "imgseg"}  # never linked from the cache: the blocks make them


def readme_subcommands(text: str) -> list[str]:
    """Subcommand names of the README's command table (rows like "| `fusionocc name ...` | ... |")."""
    return re.findall(r"^\| `fusionocc ([a-z][a-z-]*)[^`]*` \|", text, flags=re.MULTILINE)


def doc_test_blocks(text: str) -> list[list[str]]:
    """The commands of each fenced block right after a doc-test marker (backslash continuations joined)."""
    blocks = []
    for match in re.finditer(re.escape(DOC_TEST_MARKER) + r"\s*\n```[a-z]*\n(.*?)\n```", text, flags=re.DOTALL):
        commands, pending = [], ""
        for line in match.group(1).splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
        blocks.append(commands)
    return blocks


def expected_status(command: str) -> int:
    """0, or N when the command's comment says `exit status N`."""
    comment = command.partition(" #")[2]
    match = re.search(r"exit status (\d+)", comment)
    return int(match.group(1)) if match else 0


TEXT = README.read_text(encoding="utf-8")
SUBCOMMANDS = readme_subcommands(TEXT)
BLOCKS = doc_test_blocks(TEXT)


def test_the_command_table_lists_every_subcommand_of_the_cli() -> None:
    assert len(SUBCOMMANDS) == len(set(SUBCOMMANDS)) >= 10
    missing = [sub.name for sub in cli.SUBCOMMANDS if sub.name not in SUBCOMMANDS]
    assert not missing, f"subcommands missing from the README's command table: {missing}"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_listed_subcommand_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    known = {sub.name for sub in cli.SUBCOMMANDS}
    if name not in known:
        pytest.skip(f"`fusionocc {name}` is in the README but not in the CLI yet")
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fusionocc {name}"), out[:200]
    assert "not implemented" not in out


def test_the_readme_has_the_doc_test_blocks() -> None:
    commands = " ".join(command for block in BLOCKS for command in block)
    for needed in ("fusionocc synth", "fusionocc check-data", "fusionocc prepare", "fusionocc render"):
        assert needed in commands, f"no doc-test block runs `{needed}`"


def _link_dataset(source: Path, target: Path) -> None:
    """`target` as a real folder whose entries link to `source`'s (the prepare outputs left out)."""
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name not in PREPARE_OUTPUTS:
            (target / entry.name).symlink_to(entry)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_test_block_runs_as_written(index: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    block = BLOCKS[index]
    if any("data/nuscenes" in command for command in block):
        _link_dataset(request.getfixturevalue("synth_dataroot"), tmp_path / "data" / "nuscenes")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in block:
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == expected_status(command), (
            f"`{command}` exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
            f"\n--- stderr\n{done.stderr[-3000:]}"
        )
    if any(command.startswith("fusionocc render") for command in block):
        assert list((tmp_path / "outputs").glob("*.png")), "render wrote no PNG"
