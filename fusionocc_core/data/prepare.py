"""Write the per-sample info index and the imgseg maps that training and evaluation read.

Reads DATAROOT with the official nuscenes-devkit (tables, lidarseg, Occ3D gts/ paths) and writes
OUT/fusionocc_infos.pkl plus OUT/imgseg/<scene>/<sample_token>.npy (OUT defaults to DATAROOT). Existing imgseg
maps are kept, so an interrupted run resumes; --recompute-imgseg redoes them.

Before writing anything, every file training will read is checked (each keyframe JPEG's header and size,
each `.pcd.bin` a whole number of points, each lidarseg file one label per point, each Occ3D labels.npz when
gts/ exists, every pose finite): a damaged one stops the command with one line naming it, and neither the
index nor any map is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fusionocc_core.cli_options import (
    VersionError,
    add_no_progress,
    add_version,
    add_workers,
    deprecated_alias,
    resolve_version,
)
from fusionocc_core.data.files import (
    DataFileError,
    fix_for,
    image_problem,
    lidarseg_problem,
    occ_problem,
    open_nuscenes,
    point_count,
    points_problem,
)
from fusionocc_core.data.infos import (
    DEFAULT_INFO_NAME,
    InfoBuildConfig,
    InfoIndexError,
    build_infos,
    save_infos,
)


def check_sources(index: dict[str, Any], *, with_lidarseg: bool, progress: bool = True) -> None:
    """Checks every dataroot file that training reads for the keyframes of an index: camera JPEGs (header and
    size), lidar sweeps, lidarseg files (with `with_lidarseg`) and, when the dataroot has a gts/ folder,
    every keyframe's Occ3D labels (a test-split dataroot has none and needs none).

    Raises:
        DataFileError: the first damaged or missing file (in index order), with the number of others.
    """
    from fusionocc_core.occ3d import CAMERA_NAMES

    dataroot = Path(index["dataroot"])
    with_gts = (dataroot / "gts").is_dir()
    found: list[tuple[Path, str]] = []
    for info in tqdm(index["samples"], desc="checking files", unit="keyframe", disable=not progress):
        for name in CAMERA_NAMES:
            cam = info["cams"][name]
            path = dataroot / cam["path"]
            if (problem := image_problem(path, size=(cam["width"], cam["height"]))) is not None:
                found.append((path, problem))
        lidar = info["lidar"]
        points = dataroot / lidar["path"]
        if (problem := points_problem(points)) is not None:
            found.append((points, problem))
        elif with_lidarseg and lidar.get("lidarseg_path"):
            labels = dataroot / lidar["lidarseg_path"]
            if (problem := lidarseg_problem(labels, point_count(points), points)) is not None:
                found.append((labels, problem))
        if with_gts and (problem := occ_problem(dataroot / info["occ_path"])) is not None:
            found.append((dataroot / info["occ_path"], problem))
    if found:
        path, problem = found[0]
        more = (f" ({len(found) - 1} more damaged file(s): `fusionocc check-data {dataroot}` lists them)"
                if len(found) > 1 else "")
        raise DataFileError(path, problem + more, fix_for(path))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataroot", type=Path, help="nuScenes-format dataroot (v1.0-*/, samples/, lidarseg/, gts/)"
    )
    add_version(parser)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: DATAROOT)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of scenes in val when scene names are not official nuScenes ones (default 0.2)",
    )
    parser.add_argument(
        "--val-scenes",
        default="",
        metavar="NAME[,NAME...]",
        help="comma-separated scene names that form val, every other scene train (overrides both the "
        "official and the hash split; keeps a held-out set fixed when scenes are added)",
    )
    parser.add_argument(
        "--no-imgseg", action="store_true", help="write only the info index (no lidarseg needed)"
    )
    parser.add_argument(
        "--recompute-imgseg",
        action="store_true",
        help="recompute the imgseg maps that exist (default: keep them, so an interrupted run resumes)",
    )
    deprecated_alias(parser, "--overwrite", "--recompute-imgseg")
    add_workers(parser, what="processes writing the imgseg maps")
    add_no_progress(parser, deprecated=("--quiet",))


def run(args: argparse.Namespace) -> int:
    from fusionocc_core.data.imgseg import write_imgseg

    dataroot: Path = args.dataroot.resolve()
    out: Path = (args.out or dataroot).resolve()
    try:
        version = resolve_version(dataroot, args.version)
    except VersionError as error:
        print(f"fusionocc prepare: {error}", file=sys.stderr)
        return 2
    config = InfoBuildConfig(
        version=version,
        val_fraction=args.val_fraction,
        val_scenes=tuple(name.strip() for name in args.val_scenes.split(",") if name.strip()),
        imgseg_root=None if args.no_imgseg else "imgseg",
    )
    try:
        nusc = open_nuscenes(dataroot, version, verbose=not args.no_progress)
        index = build_infos(nusc, config=config, progress=not args.no_progress)
        del nusc  # the devkit's tables are large on trainval; free them before the imgseg pass
        if not args.no_imgseg:
            missing = sum(info["lidar"]["lidarseg_path"] is None for info in index["samples"])
            if missing:
                raise InfoIndexError(
                    f"{missing} keyframes have no lidarseg; install nuScenes-lidarseg into {dataroot} or "
                    f"pass --no-imgseg"
                )
        # Before anything is written: a damaged file must not leave an index or maps behind.
        check_sources(index, with_lidarseg=not args.no_imgseg, progress=not args.no_progress)
        if not args.no_imgseg:
            written = write_imgseg(
                index,
                out / "imgseg",
                overwrite=args.recompute_imgseg,
                workers=args.workers,
                progress=not args.no_progress,
            )
            print(f"imgseg: {written} written, {len(index['samples']) - written} kept, in {out / 'imgseg'}")
    except (InfoIndexError, DataFileError) as error:
        print(f"fusionocc prepare: {error}", file=sys.stderr)
        return 2
    path = save_infos(index, out / DEFAULT_INFO_NAME)
    counts = {split: sum(i["split"] == split for i in index["samples"]) for split in ("train", "val", "test")}
    print(
        f"info index: {path} ({len(index['samples'])} keyframes; "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        + f"; split by {index['split_source']})"
    )
    return 0
