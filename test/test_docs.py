"""The documentation stays true to the code: generated tables equal their generators, links resolve, the README
stays a short manual with the quick-start block CI extracts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
MARKDOWN = [README, REPO / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_short_manual() -> None:
    assert README.stat().st_size <= 15 * 1024, f"README.md is {README.stat().st_size} bytes; move detail to docs/"


def test_quickstart_block_is_what_ci_runs() -> None:
    """Mirrors .ci/run's extraction: the lines between the markers, minus comments, fences and blank lines."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- quickstart-test -->\n", 1)[1].split("<!-- /quickstart-test -->", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith(("<!--", "```"))]
    assert commands == ["bash scripts/run.sh test"]


def test_node_parameter_table_equals_the_declarations() -> None:
    generator = _load(DOCS / "gen_node_params.py", "gen_node_params")
    documented = generator.table_in((DOCS / "node.md").read_text(encoding="utf-8"))
    assert documented == generator.render_table(), (
        "docs/node.md's parameter table differs from fusionocc_ros/node_params.py: "
        "run `python docs/gen_node_params.py --write`"
    )


def test_tiny_preset_row_equals_the_flops_module() -> None:
    from fusionocc_core.model.flops import TABLE_HEADER, preset_row

    text = (DOCS / "model.md").read_text(encoding="utf-8")
    assert TABLE_HEADER in text
    assert preset_row("tiny") in text.splitlines(), (
        "docs/model.md's presets table differs from `python -m fusionocc_core.model.flops tiny tiny_v1 fast official`"
    )


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("path", MARKDOWN, ids=[p.relative_to(REPO).as_posix() for p in MARKDOWN])
def test_local_links_and_anchors_resolve(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # external
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            problems.append(f"{target}: no heading with that anchor")
    assert not problems, f"{path.name}: " + "; ".join(problems)
