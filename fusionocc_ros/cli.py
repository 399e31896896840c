"""The `fusionocc` command: one entry point for every user-facing job.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their subcommand runs, so `fusionocc --help` is fast and `fusionocc synth` never loads rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


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
    Subcommand("calibrate", "training.calibrate",
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
    for sub in SUBCOMMANDS:
        module = _load(sub) if sub.name == selected else None
        doc = (module.__doc__ or sub.summary).strip().split("\n\n")[0] if module else sub.summary
        sub_parser = subparsers.add_parser(
            sub.name, help=sub.summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        if module is not None:
            module.add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    known = {sub.name: sub for sub in SUBCOMMANDS}
    if selected in known and _load(known[selected]) is None:
        print(f"fusionocc {selected}: not implemented yet (module {known[selected].module} is missing).",
              file=sys.stderr)
        return 2
    parser = build_parser(selected if selected in known else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = _load(known[args.command])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
