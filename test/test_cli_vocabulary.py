"""One vocabulary across the `fusionocc` subcommands (issue 17).

The table of options is derived from every subcommand's parser (`fusionocc_ros.cli.build_parser`), and the
test fails on:
- an option (or positional) without help text, or a hidden option that is not a deprecated alias;
- a second spelling of one concept (SYNONYMS: e.g. --quiet where the vocabulary says --no-progress);
- one option name with different kinds, types, choices or defaults across the subcommands where it means the
  same thing (every shared name except the HOMONYMS; defaults except DEFAULTS_DIFFER);
- a deprecated alias that is not hidden, does not print exactly one deprecation line or does not act as the
  new spelling.
Each check is a function of the table, and `test_each_check_can_fail` feeds it a table that breaks it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from typing import Any

import pytest

from fusionocc_core.cli_options import DEPRECATION_NOTE, DeprecatedAlias, default_workers
from fusionocc_ros import cli

# Concepts and their spellings: the first is the vocabulary's, the others must not appear (except as hidden
# deprecated aliases).
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("--infos", "--info", "--info-path", "--index"),
    ("--no-progress", "--quiet", "-q", "--silent", "--no-progress-bar", "--no-bar"),
    ("--workers", "--num-workers", "--jobs", "-j", "--nproc", "--processes"),
    ("--out", "--out-dir", "--output", "--output-dir", "-o"),
    ("--preset", "--model", "--model-preset"),
    ("--version", "--nuscenes-version", "--devkit-version"),
    ("--device", "--devices", "--gpu"),
    ("--checkpoint", "--ckpt", "--weights", "--model-path"),
    ("--calibration", "--calibration-file", "--calib", "--calibration-yaml"),
    ("--overwrite", "--force", "--replace"),
    ("--dataroot", "--data-root", "--data-dir"),
)

# One name, different meanings in different subcommands (the subcommand makes it clear).
HOMONYMS: dict[str, str] = {
    "--scenes": "synth: how many scenes to generate; convert: which scenes (names)",
    "--camera": "merge-modalities: the camera-only checkpoint; rig: a camera and its frame",
    "--lidar": "merge-modalities: the lidar-only checkpoint; rig: the lidar and its frame",
}

# Same meaning, defaults that differ by design.
DEFAULTS_DIFFER: dict[str, str] = {
    "--out": "each command's own output (demo: outputs/demo, train: the config's run folder, else required)",
    "--seed": "demo: a scene that shows every class; synth: the master seed 0",
    "--keyframes": "demo: a short scene; synth: a 9.5 s scene",
    "--image-size": "demo: the tiny model's 704x396; synth: nuScenes' 1600x900",
    "--split": "eval scores val; adjust-logits chooses tau on train so that val stays held out",
    "--json": "bench always writes its results; adjust-logits only on request",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One option (or positional) of one subcommand."""

    sub: str
    name: str  # the option string, or the dest of a positional
    action: argparse.Action
    parser: argparse.ArgumentParser
    effective_default: Any  # the default, or what None stands for (a ROS parameter, a TrainConfig field)

    @property
    def hidden(self) -> bool:
        return self.action.help == argparse.SUPPRESS

    @property
    def positional(self) -> bool:
        return not self.action.option_strings

    def signature(self) -> tuple:
        a = self.action
        kind = type(a.target if isinstance(a, DeprecatedAlias) else a).__name__
        return kind, a.type, a.nargs, tuple(a.choices) if a.choices is not None else None, a.const


def _node_default(action: argparse.Action, parser: argparse.ArgumentParser) -> Any:
    """What `fusionocc node --X` leaves to: the default of the ROS parameter it sets."""
    from fusionocc_ros.node_params import SPECS
    from fusionocc_ros.occupancy_node import ros_arguments

    args = parser.parse_args([])
    setattr(args, action.dest, "SENTINEL")
    ros = ros_arguments(args)
    names = [item.split(":=")[0] for item in ros if item.endswith(":=SENTINEL")]
    return SPECS[names[0]].default if names else action.default


def _train_default(action: argparse.Action) -> Any:
    """What `fusionocc train --X` leaves to: the TrainConfig field it sets."""
    from training.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    return fields[action.dest].default if action.dest in fields else action.default


def _effective_default(sub: str, action: argparse.Action, parser: argparse.ArgumentParser) -> Any:
    value = action.default
    if value is None and sub == "node":
        value = _node_default(action, parser)
    elif value is None and sub == "train":
        value = _train_default(action)
    return None if value == "" else value  # "" = unset, as None


def rows_of(sub: str, parser: argparse.ArgumentParser) -> list[Row]:
    rows = []
    for action in parser._actions:  # argparse has no public list
        if isinstance(action, argparse._HelpAction):
            continue
        default = _effective_default(sub, action, parser) if not isinstance(action, DeprecatedAlias) else None
        for name in action.option_strings or [action.dest]:
            rows.append(Row(sub, name, action, parser, default))
    return rows


@pytest.fixture(scope="module")
def table() -> list[Row]:
    rows = []
    for sub in cli.SUBCOMMANDS:
        if cli._load(sub) is None:  # not implemented yet: nothing to check
            continue
        rows += rows_of(sub.name, cli.subcommand_parser(cli.build_parser(sub.name), sub.name))
    return rows


# -- the checks: each returns its findings, one line each ----------------------------------------------------


def missing_help(rows: list[Row]) -> list[str]:
    found = []
    for row in rows:
        if row.hidden:
            if not isinstance(row.action, DeprecatedAlias):
                found.append(f"{row.sub} {row.name}: hidden but not a deprecated alias (no help)")
        elif not (row.action.help or "").strip():
            found.append(f"{row.sub} {row.name}: no help text")
    return found


def second_spellings(rows: list[Row]) -> list[str]:
    found = []
    for group in SYNONYMS:
        canonical, others = group[0], set(group[1:])
        for row in rows:
            if not row.hidden and row.name in others:
                found.append(f"{row.sub} {row.name}: a second spelling of {canonical}")
    return found


def inconsistent_shared(rows: list[Row]) -> list[str]:
    by_name: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if not row.hidden and not row.positional and row.name not in HOMONYMS:
            by_name[row.name].append(row)
    found = []
    for name, group in sorted(by_name.items()):
        if len({row.sub for row in group}) < 2:
            continue
        signatures = {row.signature() for row in group}
        if len(signatures) > 1:
            found.append(f"{name}: kind/type/nargs/choices differ: "
                         + "; ".join(f"{row.sub} {row.signature()}" for row in group))
        if name not in DEFAULTS_DIFFER:
            defaults = {repr(row.effective_default) for row in group}
            if len(defaults) > 1:
                found.append(f"{name}: defaults differ: "
                             + ", ".join(f"{row.sub} {row.effective_default!r}" for row in group))
    return found


_SAMPLES = {int: "1", float: "0.5"}


def broken_aliases(rows: list[Row], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Each hidden alias: its new spelling is visible in the same subcommand with the same dest; using it
    prints one deprecation line naming the new spelling and stores what the new spelling stores."""
    found = []
    for row in rows:
        alias = row.action
        if not isinstance(alias, DeprecatedAlias):
            continue
        target = alias.target
        visible = [r for r in rows if r.sub == row.sub and r.action is target and not r.hidden]
        if not visible or target.dest != alias.dest or alias.help != argparse.SUPPRESS:
            found.append(f"{row.sub} {row.name}: not a hidden alias of a visible option with the same dest")
            continue
        sample = _SAMPLES.get(alias.type, "cpu" if "device" in alias.dest else "x")
        value = None if alias.nargs == 0 else sample
        if value is not None and alias.type is not None:
            value = alias.type(value)
        if value is not None and alias.nargs not in (None, "?"):
            value = [value]
        old, new = argparse.Namespace(), argparse.Namespace()
        capsys.readouterr()
        alias(row.parser, old, value, row.name)
        lines = capsys.readouterr().err.splitlines()
        target(row.parser, new, value, target.option_strings[0])
        if len(lines) != 1 or DEPRECATION_NOTE not in lines[0] or target.option_strings[0] not in lines[0]:
            found.append(f"{row.sub} {row.name}: printed {lines!r}, not one deprecation line")
        if vars(old) != vars(new):
            found.append(f"{row.sub} {row.name}: stores {vars(old)}, the new spelling {vars(new)}")
    return found


# -- the tests -----------------------------------------------------------------------------------------------


def test_the_table_covers_every_subcommand(table: list[Row]) -> None:
    subs = {row.sub for row in table}
    assert {"train", "eval", "adjust-logits", "prepare", "convert", "node"} <= subs
    assert len(table) > 100


def test_every_option_has_help(table: list[Row]) -> None:
    assert missing_help(table) == []
    assert all(sub.summary.strip() for sub in cli.SUBCOMMANDS)


def test_one_spelling_per_concept(table: list[Row]) -> None:
    assert second_spellings(table) == []


def test_one_name_means_one_kind_type_and_default(table: list[Row]) -> None:
    assert inconsistent_shared(table) == []


def test_the_shared_defaults_are_the_vocabulary(table: list[Row]) -> None:
    """The rules themselves: --workers min(4, CPUs), --device auto, --version the only one (None here)."""
    defaults = defaultdict(set)
    for row in table:
        if not row.hidden and row.name in ("--workers", "--device", "--version", "--no-progress"):
            defaults[row.name].add(row.effective_default)
    assert defaults == {"--workers": {default_workers()}, "--device": {"auto"}, "--version": {None},
                        "--no-progress": {False}}


def test_deprecated_aliases_print_one_line_and_act_as_the_new_spelling(table, capsys) -> None:
    aliases = {(row.sub, row.name) for row in table if isinstance(row.action, DeprecatedAlias)}
    assert {("train", "--info"), ("train", "--out-dir"), ("train", "--model"), ("prepare", "--overwrite"),
            ("prepare", "--quiet"), ("eval", "--num-workers"), ("adjust-logits", "--quiet")} <= aliases
    assert broken_aliases(table, capsys) == []


def test_an_old_spelling_still_parses_with_one_line(capsys) -> None:
    parser = cli.build_parser("train")
    args = parser.parse_args(["train", "--info", "i.pkl", "--out-dir", "run", "--device", "cpu"])
    assert (str(args.info_path), str(args.out_dir), args.device) == ("i.pkl", "run", "cpu")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(DEPRECATION_NOTE in line for line in err), err


def test_the_old_subcommand_name_runs_the_new_one(tmp_path, capsys) -> None:
    """`fusionocc calibrate` is `fusionocc adjust-logits` plus one deprecation line, hidden from the help."""
    same = str(tmp_path / "a.pth")
    code = cli.main(["calibrate", "--checkpoint", same, "--infos", "i.pkl", "--out", same, "--device", "cpu"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0] == f"fusionocc: `calibrate` is {DEPRECATION_NOTE}; use `fusionocc adjust-logits`"
    assert err[1].startswith("fusionocc adjust-logits: --out must differ"), err
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "calibrate" not in capsys.readouterr().out


def test_an_unknown_option_gets_the_subcommand_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["eval", "--infos", "i.pkl", "--pred-dir", "p", "--no-such-option"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fusionocc eval") and "unrecognized arguments: --no-such-option" in err


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:1", "CUDA:0"])
def test_device_accepts_the_vocabulary(text: str) -> None:
    from fusionocc_core.cli_options import device

    assert device(text) == text.lower()


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "mps0", ""])
def test_device_refuses_the_rest(text: str) -> None:
    from fusionocc_core.cli_options import device

    with pytest.raises(argparse.ArgumentTypeError, match="auto, cpu, cuda or cuda:N"):
        device(text)


def test_version_is_the_only_one_or_an_error_listing_them(tmp_path) -> None:
    from fusionocc_core.cli_options import VersionError, resolve_version

    with pytest.raises(VersionError, match="no v1.0-\\* table folder"):
        resolve_version(tmp_path, None)
    (tmp_path / "v1.0-mini").mkdir()
    assert resolve_version(tmp_path, None) == "v1.0-mini"
    (tmp_path / "v1.0-trainval").mkdir()
    with pytest.raises(VersionError, match=r"v1.0-mini, v1.0-trainval\); pass --version"):
        resolve_version(tmp_path, None)
    assert resolve_version(tmp_path, "v1.0-trainval") == "v1.0-trainval"


def test_each_check_can_fail(capsys) -> None:
    """A table with one violation per check: every check reports it."""
    from fusionocc_core.cli_options import add_device, add_no_progress, add_workers, deprecated_alias, device

    a = argparse.ArgumentParser(prog="fusionocc a")
    a.add_argument("--limit", type=int)  # no help
    a.add_argument("--secret", help=argparse.SUPPRESS)  # hidden, not an alias
    a.add_argument("--quiet", action="store_true", help="no progress bars")  # a second spelling
    a.add_argument("--workers", type=int, default=0, help="processes")  # another default
    a.add_argument("--device", default="auto", help="device")  # another type
    add_no_progress(a)
    b = argparse.ArgumentParser(prog="fusionocc b")
    add_workers(b, what="processes")
    add_device(b)
    add_no_progress(b)
    no_progress = b._option_string_actions["--no-progress"]
    b._add_action(DeprecatedAlias(["--silent"], "other", target=no_progress))  # an alias with another dest
    deprecated_alias(b, "--num-workers", "--workers")
    rows = rows_of("a", a) + rows_of("b", b)

    assert any("--limit: no help" in f for f in missing_help(rows))
    assert any("--secret: hidden but not a deprecated alias" in f for f in missing_help(rows))
    assert second_spellings(rows) == ["a --quiet: a second spelling of --no-progress"]
    shared = inconsistent_shared(rows)
    assert any(f.startswith("--workers: defaults differ") for f in shared), shared
    assert any(f.startswith("--device: kind/type") for f in shared), shared
    assert device in {row.action.type for row in rows if row.name == "--device"}
    aliases = broken_aliases(rows, capsys)
    assert aliases == ["b --silent: not a hidden alias of a visible option with the same dest"], aliases
