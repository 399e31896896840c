"""The `fusionocc` command: one entry point for every user-facing job.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their subcommand runs, so `fusionocc --help` is fast and `fusionocc synth` never loads rclpy.
Options shared by several subcommands come from `fusionocc_core.cli_options` (one name, meaning and default
per concept; `test/test_cli_vocabulary.py` checks the table). A renamed subcommand keeps its old name for one
release in DEPRECATED_SUBCOMMANDS: hidden from the help, it prints one deprecation line and runs the new one.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from fusionocc_core.cli_options import DEPRECATION_NOTE


@dataclass(frozen=True)
class Subcommand:
    name: str
    module: str
    summary: str


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("demo", "fusionocc_ros.demo",
               "end-to-end demo: synthetic scene -> bag -> node -> summary, mIoU and PNG renders"),
    Subcommand("synth", "fusionocc_core.synth.cli",
               "generate the synthetic nuScenes + lidarseg + Occ3D world"),
    Subcommand("check-data", "fusionocc_core.data.check",
               "validate a nuScenes/Occ3D dataroot and name every missing piece"),
    Subcommand("prepare", "fusionocc_core.data.prepare",
               "write the per-sample info index and the imgseg maps for training"),
    Subcommand("train", "training.train", "train FusionOcc (single process or torchrun)"),
    Subcommand("eval", "training.evaluate", "Occ3D mIoU of a checkpoint or of saved predictions"),
    Subcommand("adjust-logits", "training.calibrate",
               "undo the class-weight prior of a checkpoint (logit adjustment chosen on the train split)"),
    Subcommand("merge-modalities", "training.merge_modalities",
               "a fused model from a camera-only and a lidar-only one, to fine-tune"),
    Subcommand("import-checkpoint", "training.import_checkpoint", "published FusionOcc .pth -> fusionocc checkpoint"),
    Subcommand("convert", "fusionocc_ros.bag_converter", "nuScenes dataroot -> one rosbag2 per scene"),
    Subcommand("rig", "fusionocc_ros.rig", "the node's calibration YAML from a robot's URDF or a bag's /tf_static"),
    Subcommand("replay", "fusionocc_ros.replay", "publish a rosbag2 through rclpy (no ros2 bag needed)"),
    Subcommand("node", "fusionocc_ros.occupancy_node", "run the ROS 2 occupancy node"),
    Subcommand("render", "fusionocc_core.render", "render an occupancy volume to PNG (BEV and 3D)"),
    Subcommand("bench", "fusionocc_ros.bench", "latency and throughput benchmarks, tables + JSON"),
)

# Old name -> new name, for one release (the old name is hidden from the help and prints a deprecation line).
DEPRECATED_SUBCOMMANDS: dict[str, str] = {
    "calibrate": "adjust-logits",  # renamed: sensor calibration is `rig` and the node's calibration YAML
}


def _load(sub: Subcommand):
    """Imports a subcommand's module; None when the module does not exist yet (not implemented)."""
    try:
        return importlib.import_module(sub.module)
    except ModuleNotFoundError as error:
        if error.name is not None and sub.module.startswith(error.name):
            return None
        raise


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Builds the top-level parser; only the selected subcommand's module is imported for its arguments."""
    parser = argparse.ArgumentParser(
        prog="fusionocc",
        description="FusionOcc camera + lidar 3D semantic occupancy: demo, data, training, ROS 2 node, tools.",
        epilog="Run `fusionocc <subcommand> --help` for the arguments of each subcommand.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>")
    known = {sub.name: sub for sub in SUBCOMMANDS}
    for sub in SUBCOMMANDS:
        module = _load(sub) if sub.name == selected else None
        doc = (module.__doc__ or sub.summary).strip().split("\n\n")[0] if module else sub.summary
        sub_parser = subparsers.add_parser(
            sub.name, help=sub.summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        if module is not None:
            module.add_arguments(sub_parser)
    for old, new in DEPRECATED_SUBCOMMANDS.items():  # no help=: not listed in `fusionocc --help`
        sub_parser = subparsers.add_parser(old, description=f"Deprecated name of `fusionocc {new}`: "
                                           f"{known[new].summary}.")
        module = _load(known[new]) if old == selected else None
        if module is not None:
            module.add_arguments(sub_parser)
    return parser


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of one subcommand inside a parser made by `build_parser`."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def resolve_subcommand(name: str) -> str:
    """The current name of a subcommand (a deprecated name gives its replacement)."""
    return DEPRECATED_SUBCOMMANDS.get(name, name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    known = {sub.name: sub for sub in SUBCOMMANDS}
    current = resolve_subcommand(selected) if selected is not None else None
    if current in known and _load(known[current]) is None:
        print(f"fusionocc {selected}: not implemented yet (module {known[current].module} is missing).",
              file=sys.stderr)
        return 2
    if selected in DEPRECATED_SUBCOMMANDS:
        print(f"fusionocc: `{selected}` is {DEPRECATION_NOTE}; use `fusionocc {current}`", file=sys.stderr)
    parser = build_parser(selected if current in known else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top-level one
        target = subcommand_parser(parser, args.command) if args.command else parser
        target.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    module = _load(known[resolve_subcommand(args.command)])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
