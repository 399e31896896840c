"""Generate the synthetic nuScenes + lidarseg + Occ3D world into a folder.

Procedural streets (road, sidewalks, buildings, trees, parked and moving vehicles, pedestrians, cones,
barriers)
seen by six cameras and a 32-beam lidar with nuScenes timing, with Occ3D ground truth in gts/. The folder is a
nuScenes v1.0-mini dataroot that the official devkit loads. A test world, not a substitute for nuScenes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fusionocc_core.cli_options import add_no_progress, add_workers, image_size
from fusionocc_core.synth.errors import SynthError
from fusionocc_core.synth.generate import generate_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the `synth` options to a parser."""
    parser.add_argument(
        "--out", type=Path, required=True, help="dataroot to create (must not exist or be empty)"
    )
    parser.add_argument("--scenes", type=int, default=1, help="number of scenes (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="master seed; same options = same bytes (default: %(default)s)"
    )
    parser.add_argument(
        "--keyframes",
        type=int,
        default=20,
        help="annotated keyframes per scene, 2 Hz (default: %(default)s, i.e. 9.5 s of driving)",
    )
    parser.add_argument(
        "--image-size",
        type=image_size,
        default=(1600, 900),
        metavar="WxH",
        help="camera image size; intrinsics scale from 1600x900 (default: 1600x900)",
    )
    parser.add_argument(
        "--no-sweeps",
        action="store_true",
        help="write keyframes only (no 20 Hz lidar sweeps / 12 Hz camera frames in between)",
    )
    parser.add_argument(
        "--sweep-image-scale",
        type=float,
        default=0.5,
        help="render scale of non-keyframe camera images, upsampled to full size (default: %(default)s)",
    )
    add_workers(parser, what="processes rendering frames; the output does not depend on it")
    add_no_progress(parser, deprecated=("--quiet",))


def run(args: argparse.Namespace) -> int:
    """Generates the dataset; returns the exit status."""
    width, height = args.image_size
    start = time.perf_counter()
    try:
        root = generate_dataset(
            args.out,
            num_scenes=args.scenes,
            keyframes_per_scene=args.keyframes,
            seed=args.seed,
            image_width=width,
            image_height=height,
            with_sweeps=not args.no_sweeps,
            sweep_image_scale=args.sweep_image_scale,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except SynthError as error:
        print(f"fusionocc synth: {error}")
        return 2
    print(
        f"Wrote {args.scenes} scene(s) x {args.keyframes} keyframes to {root} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusionocc synth", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
