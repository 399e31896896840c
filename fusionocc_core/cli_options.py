"""The shared vocabulary of the `fusionocc` subcommands: one name, meaning, default and check per concept.

Subcommands add these options through the helpers below instead of spelling them out, so that an option means
the same thing wherever it appears (`test/test_cli_vocabulary.py` derives the table of every subcommand's
options and fails on a second spelling of a concept or on one name with two defaults or types):

- `--infos PATH`: the info index written by `fusionocc prepare`.
- `--no-progress`: no progress bars.
- `--workers N`: worker processes; 0 = all in this process; default min(4, usable CPUs).
- `--version NAME`: the nuScenes table folder; default the only `v1.0-*` folder of the dataroot, an error that
  lists them when there are several.
- `--device DEVICE`: auto (CUDA when available), cpu, cuda or cuda:N, checked when parsed.
- `--out PATH`: what the command writes (a file or a folder, as its help says).
- `--preset NAME`: a model preset (official, fast, tiny).
- `--overwrite`: replace existing outputs (the same files it would write).

A renamed option keeps its old spelling for one release as a hidden alias (`deprecated_alias`) that prints one
deprecation line and then does what the new spelling does.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, cast

from fusionocc_core.errors import FusionOccError

DEPRECATION_NOTE = "deprecated and will be removed in the next release"

# fusionocc_core.model.presets.PRESETS, without importing the model
PRESET_NAMES = ("official", "fast", "tiny")

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceError(FusionOccError, ValueError):
    """A device that cannot be used here (CUDA asked for but not available, no such GPU)."""


class VersionError(FusionOccError, FileNotFoundError):
    """No table folder, or several and none chosen; the message lists what the dataroot has."""


# -- deprecated spellings ----------------------------------------------------------------------------------


def deprecation_line(prog: str, old: str, new: str) -> str:
    return f"{prog}: {old} is {DEPRECATION_NOTE}; use {new}"


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: prints one deprecation line, then acts as the new spelling.

    Attributes:
        target: the action of the new spelling (same dest, type, nargs and choices).
    """

    def __init__(self, option_strings: list[str], dest: str, *, target: argparse.Action, **_: Any) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=target.nargs,
            const=target.const,
            default=argparse.SUPPRESS,  # the new spelling's default stands
            type=cast(Any, target.type),  # argparse's stubs allow a str type here but not in __init__
            choices=target.choices,
            help=argparse.SUPPRESS,
            metavar=target.metavar,
        )
        self.target = target

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        new = self.target.option_strings[0]
        print(deprecation_line(parser.prog, option_string or self.option_strings[0], new), file=sys.stderr)
        self.target(parser, namespace, values, new)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Adds `old` as a hidden, deprecated spelling of the already added option `new`."""
    target = parser._option_string_actions[new]  # argparse has no public lookup
    parser.add_argument(old, dest=target.dest, action=DeprecatedAlias, target=target)


def _aliases(parser: argparse.ArgumentParser, new: str, deprecated: tuple[str, ...]) -> None:
    for old in deprecated:
        deprecated_alias(parser, old, new)


# -- types -------------------------------------------------------------------------------------------------


def device(text: str) -> str:
    """argparse type of `--device`: auto, cpu, cuda or cuda:N (whether it exists is checked on use)."""
    value = text.strip().lower()
    if not _DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"device must be {DEVICE_CHOICES}, got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """argparse type of `--image-size`: WxH -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 1600x900, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return width, height


# -- defaults ----------------------------------------------------------------------------------------------


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """The one default of every `--workers`: the usable CPUs, at most 4."""
    return min(4, usable_cpus())


def find_versions(dataroot: Path | str) -> list[str]:
    """The `v1.0-*` table folders of a dataroot, sorted."""
    root = Path(dataroot)
    return sorted(p.name for p in root.glob("v1.0-*") if p.is_dir())


def resolve_version(dataroot: Path | str, version: str | None) -> str:
    """`version` when given, else the only `v1.0-*` table folder of the dataroot.

    Raises:
        VersionError: no table folder, or several (the message lists them and says to pass --version).
    """
    if version:
        return version
    found = find_versions(dataroot)
    if len(found) == 1:
        return found[0]
    if not found:
        raise VersionError(f"no v1.0-* table folder in {dataroot}; run `fusionocc check-data {dataroot}` to "
                           "see what is missing")
    raise VersionError(f"several table folders in {dataroot} ({', '.join(found)}); pass --version")


def resolve_device(name: str) -> str:
    """A `--device` value as a torch device string: auto -> cuda when available, else cpu.

    Raises:
        DeviceError: CUDA asked for but not available, or no GPU of that index.
    """
    import torch

    name = device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available (torch {torch.__version__}); "
                              "use --device cpu or auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
    return name


# -- the options -------------------------------------------------------------------------------------------


def add_device(parser: argparse.ArgumentParser, *, what: str = "device", default: str | None = "auto",
               help_suffix: str = "") -> argparse.Action:
    """`--device`; `default` None only where another source (a ROS parameter) supplies the default."""
    default_text = "" if default is None else f" (default: {default})"
    return parser.add_argument(
        "--device", type=device, default=default, metavar="DEVICE",
        help=f"{what}: {DEVICE_CHOICES}; auto = CUDA when available{default_text}{help_suffix}",
    )


def add_workers(parser: argparse.ArgumentParser, *, what: str, deprecated: tuple[str, ...] = ()) -> None:
    """`--workers N` with the shared default."""
    parser.add_argument(
        "--workers", type=int, default=default_workers(), metavar="N",
        help=f"{what}; 0 = all in this process (default: the usable CPUs, at most 4; here %(default)s)",
    )
    _aliases(parser, "--workers", deprecated)


def add_no_progress(parser: argparse.ArgumentParser, *, deprecated: tuple[str, ...] = ()) -> None:
    """`--no-progress` (dest `no_progress`)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    _aliases(parser, "--no-progress", deprecated)


def add_version(parser: argparse.ArgumentParser) -> None:
    """`--version` of a nuScenes dataroot (None: resolved by `resolve_version` when the command runs)."""
    parser.add_argument(
        "--version", default=None, metavar="NAME",
        help="nuScenes table folder, e.g. v1.0-trainval (default: the only v1.0-* folder of the dataroot; "
        "when there are several, pass one)",
    )


def add_preset(parser: argparse.ArgumentParser, *, help: str, dest: str = "preset",
               deprecated: tuple[str, ...] = ()) -> None:
    """`--preset NAME`, a model preset (None: the command's own source of the default)."""
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None, dest=dest, help=help)
    _aliases(parser, "--preset", deprecated)


def add_infos(parser: argparse.ArgumentParser, *, help: str, required: bool = False,
              dest: str = "infos", deprecated: tuple[str, ...] = ()) -> None:
    """`--infos PATH`, the info index written by `fusionocc prepare`."""
    parser.add_argument("--infos", type=Path, default=None, required=required, dest=dest, metavar="PATH",
                        help=help)
    _aliases(parser, "--infos", deprecated)
