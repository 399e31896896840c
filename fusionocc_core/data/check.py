"""Validate a nuScenes/Occ3D dataroot: name every missing or malformed piece and the command that fixes it.

Checks, in order: the v1.0-* tables (present, JSON lists, loadable by the official devkit), ego poses and
sensor calibrations (finite), every keyframe's camera and lidar file under samples/ (each JPEG's header and
size against its sample_data record, fully decoded with --deep; each `.pcd.bin` a whole number of 5 x float32
points), lidarseg (table, one file per keyframe sweep with one label per point of that sweep), Occ3D
gts/<scene>/<token>/labels.npz (present for every keyframe; arrays, shapes and dtypes opened for a sample of
them, all with --deep), and the outputs of `fusionocc prepare` (info index matching the tables, imgseg maps).
Sweeps are not required (FusionOcc's temporal windows use keyframes only; `convert --keyframes-only` needs
none), but when sweeps/ exists its files are checked like the keyframes' (`convert` reads them).
The file checks are those of `fusionocc_core.data.files`, which every command applies when it reads.
Exit status 0 when everything training needs is there, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from fusionocc_core.cli_options import add_infos, add_no_progress, add_version, find_versions
from fusionocc_core.data.files import (
    OCC_ARRAYS,
    fix_for,
    image_problem,
    lidarseg_problem,
    occ_problem,
    point_count,
    points_problem,
    pose_problem,
)
from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME, NUSCENES_TABLES

REQUIRED_TABLES = NUSCENES_TABLES
__all__ = ["OCC_ARRAYS", "CheckReport", "Finding", "check_dataroot", "check_occ_file"]
_SHOW = 3  # examples listed per problem


@dataclass
class Finding:
    """One line of the report."""

    ok: bool
    topic: str
    message: str
    fix: str = ""


@dataclass
class CheckReport:
    """All findings of one check; `ok` when none failed."""

    dataroot: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, ok: bool, topic: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(ok, topic, message, fix))

    def format(self) -> str:
        lines = [f"dataset check of {self.dataroot}"]
        for f in self.findings:
            lines.append(f"  [{'ok' if f.ok else 'FAIL'}] {f.topic}: {f.message}")
            if not f.ok and f.fix:
                lines.append(f"         fix: {f.fix}")
        failed = sum(not f.ok for f in self.findings)
        lines.append("all checks passed" if not failed else f"{failed} problem(s) found")
        return "\n".join(lines)


def _examples(items: list[str]) -> str:
    more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _find_version(dataroot: Path, version: str | None, report: CheckReport) -> str | None:
    if version is not None:
        return version
    found = find_versions(dataroot)  # the rule of every --version (fusionocc_core.cli_options)
    if len(found) == 1:
        return found[0]
    if not found:
        report.add(
            False,
            "tables",
            f"no v1.0-* table folder in {dataroot}",
            "extract the nuScenes metadata archive (v1.0-trainval_meta.tgz or v1.0-mini.tgz) into the "
            "dataroot, or make a synthetic world with `fusionocc synth --out DATAROOT`",
        )
    else:
        report.add(False, "tables", f"several table folders ({', '.join(found)})", "pass --version")
    return None


def _check_tables(dataroot: Path, version: str, report: CheckReport) -> bool:
    folder = dataroot / version
    missing, broken = [], []
    for name in REQUIRED_TABLES:
        path = folder / f"{name}.json"
        if not path.is_file():
            missing.append(path.name)
            continue
        try:
            with path.open() as f:
                if not isinstance(json.load(f), list):
                    broken.append(f"{version}/{path.name} (not a list)")
        except (OSError, json.JSONDecodeError) as error:
            broken.append(f"{version}/{path.name} ({type(error).__name__})")
    if missing:
        report.add(
            False,
            "tables",
            f"{folder} lacks {_examples(missing)}",
            f"re-extract the nuScenes {version} metadata archive into {dataroot}",
        )
    if broken:
        report.add(
            False,
            "tables",
            f"malformed: {_examples(broken)}",
            f"re-extract the nuScenes {version} metadata archive into {dataroot}",
        )
    if not missing and not broken:
        report.add(True, "tables", f"{len(REQUIRED_TABLES)} tables of {version}")
    return not missing and not broken


def _report_damaged(report: CheckReport, topic: str, dataroot: Path, damaged: list[tuple[Path, str]]) -> None:
    """One finding per fix (files from one archive share it), each listing files with their own problem."""
    by_fix: dict[str, list[str]] = {}
    for path, problem in damaged:
        by_fix.setdefault(fix_for(path), []).append(f"{path.relative_to(dataroot)} ({problem})")
    for fix, entries in by_fix.items():
        report.add(False, topic, f"{len(entries)} damaged: {_examples(entries)}", fix)


def _file_problem(sd: dict[str, Any], path: Path, deep: bool, *, keyframe: bool) -> str | None:
    """Problem of one sample_data file, as the command that reads it would find it."""
    if sd["channel"] == LIDAR_NAME or path.name.endswith(".pcd.bin"):
        return points_problem(path)
    # Training reads keyframe images with the intrinsics of their record, so their size must match it;
    # `convert` scales the intrinsics of a sweep image stored at another size, so any size is fine there.
    size = (int(sd["width"]), int(sd["height"])) if keyframe and sd.get("width") else None
    return image_problem(path, size=size, decode=deep)


def _check_files(nusc: Any, dataroot: Path, report: CheckReport, deep: bool, progress: bool) -> None:
    missing: dict[str, list[str]] = {}
    damaged: list[tuple[Path, str]] = []
    keyframes = [sd for sd in nusc.sample_data if sd["is_key_frame"]]
    for sd in tqdm(keyframes, desc="keyframe files", unit="file", disable=not progress):
        path = dataroot / sd["filename"]
        if not path.is_file():
            missing.setdefault(sd["channel"], []).append(sd["filename"])
        elif (problem := _file_problem(sd, path, deep, keyframe=True)) is not None:
            damaged.append((path, problem))
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        if channel in missing:
            report.add(
                False,
                f"samples/{channel}",
                f"{len(missing[channel])} keyframe files missing, e.g. {_examples(missing[channel])}",
                f"extract the nuScenes samples blobs (v1.0-*_blobs.tgz) into {dataroot}",
            )
    _report_damaged(report, "samples", dataroot, damaged)
    total = len(keyframes)
    if not missing and not damaged:
        how = "decoded" if deep else "headers read"
        report.add(True, "samples", f"{total} keyframe files (6 cameras + {LIDAR_NAME}; images {how})")
    _check_sweeps(nusc, dataroot, report, deep, progress)


def _check_sweeps(nusc: Any, dataroot: Path, report: CheckReport, deep: bool, progress: bool) -> None:
    sweeps = [sd for sd in nusc.sample_data if not sd["is_key_frame"]]
    if not (dataroot / "sweeps").is_dir():
        report.add(True, "sweeps", "absent (not needed: FusionOcc uses keyframes only; convert with "
                   "--keyframes-only)")
        return
    missing: list[str] = []
    damaged: list[tuple[Path, str]] = []
    for sd in tqdm(sweeps, desc="sweep files", unit="file", disable=not progress):
        path = dataroot / sd["filename"]
        if not path.is_file():
            missing.append(sd["filename"])
        elif (problem := _file_problem(sd, path, deep, keyframe=False)) is not None:
            damaged.append((path, problem))
    if missing:
        report.add(
            False,
            "sweeps",
            f"{len(missing)} of {len(sweeps)} sweep files missing (`convert` without --keyframes-only reads "
            f"them): {_examples(missing)}",
            f"extract the nuScenes sweeps blobs (v1.0-*_blobs.tgz) into {dataroot}, or convert with "
            f"--keyframes-only",
        )
    _report_damaged(report, "sweeps", dataroot, damaged)
    if not missing and not damaged:
        report.add(True, "sweeps", f"{len(sweeps)} sweep files")


def _check_poses(nusc: Any, dataroot: Path, version: str, report: CheckReport) -> None:
    """Every ego pose and sensor calibration finite: one NaN moves every point and voxel of its frame."""
    ok = True
    for table in ("ego_pose", "calibrated_sensor"):
        bad = [f"{r.get('token')}: {problem}" for r in getattr(nusc, table)
               if (problem := pose_problem(r)) is not None]
        if bad:
            ok = False
            path = dataroot / version / f"{table}.json"
            report.add(False, "poses", f"{path.relative_to(dataroot)}: {len(bad)} records not finite: "
                       f"{_examples(bad)}", fix_for(path))
    if ok:
        report.add(True, "poses", f"{len(nusc.ego_pose)} ego poses and {len(nusc.calibrated_sensor)} "
                   "calibrations finite")


def _check_lidarseg(nusc: Any, dataroot: Path, version: str, report: CheckReport, progress: bool) -> None:
    fix = (
        f"download nuScenes-lidarseg ({version}) and extract it into {dataroot} (lidarseg/ and "
        f"{version}/lidarseg.json, category.json with 'index' fields)"
    )
    records = {r["sample_data_token"]: r["filename"] for r in getattr(nusc, "lidarseg", [])}
    if not records:
        report.add(False, "lidarseg", "no lidarseg table (needed for the imgseg targets)", fix)
        return
    missing, wrong, wrong_tokens = [], [], []
    lidar_keyframes = [sd for sd in nusc.sample_data if sd["is_key_frame"] and sd["channel"] == LIDAR_NAME]
    for sd in tqdm(lidar_keyframes, desc="lidarseg", unit="file", disable=not progress):
        name = records.get(sd["token"])
        if name is None or not (dataroot / name).is_file():
            missing.append(name or f"<no record for {sd['token']}>")
            continue
        points = dataroot / sd["filename"]
        if not points.is_file() or points_problem(points) is not None:
            continue  # a missing or damaged sweep is reported under samples: the labels are not to blame
        problem = lidarseg_problem(dataroot / name, point_count(points), points)
        if problem is not None:
            wrong.append(f"{name} ({problem})")  # one uint8 label per 20-byte point
            wrong_tokens.append(sd["token"])
    if missing:
        report.add(
            False,
            "lidarseg",
            f"{len(missing)} of {len(lidar_keyframes)} files missing: {_examples(missing)}",
            fix,
        )
    if wrong:
        report.add(
            False,
            "lidarseg",
            f"{len(wrong)} files with a label count != point count: {_examples(wrong)}",
            fix_for(dataroot / records[wrong_tokens[0]]),
        )
    if not missing and not wrong:
        report.add(True, "lidarseg", f"{len(lidar_keyframes)} files, one label per point")


def check_occ_file(path: Path) -> str | None:
    """Problem of one Occ3D labels.npz, prefixed with its path (None when fine)."""
    problem = occ_problem(path)
    return None if problem is None else f"{path}: {problem}"


def _check_gts(nusc: Any, dataroot: Path, report: CheckReport, deep: bool, progress: bool) -> None:
    fix = (
        f"download Occ3D-nuScenes gts (gts.tar.gz) and extract it as {dataroot}/gts/<scene>/<token>/"
        f"labels.npz, or regenerate a synthetic world with `fusionocc synth`"
    )
    scene_names = {s["token"]: s["name"] for s in nusc.scene}
    paths = [
        dataroot / "gts" / scene_names[s["scene_token"]] / s["token"] / "labels.npz" for s in nusc.sample
    ]
    missing = [str(p.relative_to(dataroot)) for p in paths if not p.is_file()]
    present = [p for p in paths if p.is_file()]
    # Opening every archive of trainval takes minutes: a spread-out sample unless --deep.
    to_open = present if deep else present[:: max(1, len(present) // 20)]
    broken = [
        msg
        for p in tqdm(to_open, desc="gts", unit="file", disable=not progress)
        if (msg := check_occ_file(p)) is not None
    ]
    if missing:
        report.add(
            False, "gts", f"{len(missing)} of {len(paths)} keyframes lack labels: {_examples(missing)}", fix
        )
    if broken:
        report.add(False, "gts", f"{len(broken)} malformed: {_examples(broken)}", fix)
    if not missing and not broken:
        report.add(True, "gts", f"{len(paths)} labels.npz ({len(to_open)} opened and validated)")


def _check_prepared(nusc: Any, infos_path: Path, dataroot: Path, report: CheckReport, progress: bool) -> None:
    from fusionocc_core.data.infos import InfoIndexError, load_infos, resolve_imgseg_root

    fix = f"run `fusionocc prepare {dataroot} --out {infos_path.parent}`"
    try:
        index = load_infos(infos_path, dataroot=dataroot)
    except InfoIndexError as error:
        report.add(False, "info index", str(error).split(";")[0], fix)
        return
    tokens = {info["token"] for info in index["samples"]}
    expected = {s["token"] for s in nusc.sample}
    if tokens != expected:
        report.add(
            False,
            "info index",
            f"{infos_path} has {len(tokens)} keyframes, the tables {len(expected)} "
            f"({len(expected - tokens)} missing, {len(tokens - expected)} unknown)",
            fix,
        )
        return
    splits = {s: sum(i["split"] == s for i in index["samples"]) for s in ("train", "val", "test")}
    report.add(
        True,
        "info index",
        f"{infos_path}: "
        + ", ".join(f"{k} {v}" for k, v in splits.items() if v)
        + f" (split by {index['split_source']})",
    )
    root = resolve_imgseg_root(index)
    if root is None:
        report.add(False, "imgseg", "the info index was written with --no-imgseg", fix)
        return
    missing, wrong = [], []
    for info in tqdm(index["samples"], desc="imgseg", unit="file", disable=not progress):
        path = root / info["imgseg_path"]
        if not path.is_file():
            missing.append(str(path))
            continue
        cam = info["cams"][CAMERA_NAMES[0]]
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError, EOFError) as error:
            wrong.append(f"{path} (unreadable: {type(error).__name__})")
            continue
        if shape != (len(CAMERA_NAMES), -(-cam["height"] // 8), -(-cam["width"] // 8)):
            wrong.append(f"{path} {shape}")
    if missing:
        report.add(
            False,
            "imgseg",
            f"{len(missing)} of {len(index['samples'])} maps missing: {_examples(missing)}",
            fix,
        )
    if wrong:
        report.add(
            False,
            "imgseg",
            f"{len(wrong)} maps unreadable or of the wrong shape: {_examples(wrong)}",
            f"run `fusionocc prepare {dataroot} --out {infos_path.parent} --recompute-imgseg`",
        )
    if not missing and not wrong:
        report.add(True, "imgseg", f"{len(index['samples'])} maps in {root}")


def _raw_tables(folder: Path) -> SimpleNamespace:
    """The tables the checks need, as lists of dicts named like the devkit's attributes."""

    def read(name: str) -> list[dict[str, Any]]:
        path = folder / f"{name}.json"
        if not path.is_file():
            return []
        with path.open() as f:
            return json.load(f)

    tables = {
        name: read(name)
        for name in ("scene", "sample", "sample_data", "lidarseg", "calibrated_sensor", "sensor", "ego_pose")
    }
    # Add the channel to sample_data as the devkit does (sample_data -> calibrated_sensor -> sensor).
    channel = {s["token"]: s["channel"] for s in tables["sensor"]}
    sensor_of = {c["token"]: channel.get(c["sensor_token"], "?") for c in tables["calibrated_sensor"]}
    for sd in tables["sample_data"]:
        sd["channel"] = sensor_of.get(sd["calibrated_sensor_token"], "?")
    return SimpleNamespace(**tables)


def _check_devkit(dataroot: Path, version: str, report: CheckReport) -> None:
    from nuscenes.nuscenes import NuScenes

    try:
        nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        report.add(
            False,
            "devkit",
            f"nuscenes-devkit cannot load {version}: {type(error).__name__}: {message}",
            "fix the problems listed below; if none are, re-extract the nuScenes metadata (and lidarseg) "
            f"archives into {dataroot}",
        )
        return
    report.add(True, "devkit", f"{len(nusc.scene)} scenes, {len(nusc.sample)} keyframes")


def check_dataroot(
    dataroot: str | Path,
    *,
    version: str | None = None,
    infos: str | Path | None = None,
    deep: bool = False,
    progress: bool = True,
) -> CheckReport:
    """Runs every check (see the module docstring) and returns the report.

    Args:
        dataroot: the nuScenes-format folder.
        version: table folder (default: the only v1.0-* folder).
        infos: info index to validate (default: DATAROOT/fusionocc_infos.pkl).
        deep: decode every keyframe image and open every gts archive (instead of headers and a sample).
        progress: tqdm bars.
    """
    dataroot = Path(dataroot).resolve()
    report = CheckReport(dataroot)
    if not dataroot.is_dir():
        report.add(
            False,
            "dataroot",
            f"{dataroot} is not a folder",
            "pass the folder that holds v1.0-*/, samples/ and gts/",
        )
        return report
    version = _find_version(dataroot, version, report)
    if version is None or not _check_tables(dataroot, version, report):
        return report
    # The later checks read the raw tables, so one broken piece (the devkit refuses to load when a single
    # lidarseg file is missing) does not hide the others.
    nusc = _raw_tables(dataroot / version)
    _check_devkit(dataroot, version, report)
    _check_poses(nusc, dataroot, version, report)
    _check_files(nusc, dataroot, report, deep, progress)
    _check_lidarseg(nusc, dataroot, version, report, progress)
    _check_gts(nusc, dataroot, report, deep, progress)
    from fusionocc_core.data.infos import DEFAULT_INFO_NAME

    _check_prepared(nusc, Path(infos) if infos else dataroot / DEFAULT_INFO_NAME, dataroot, report, progress)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataroot", type=Path, help="nuScenes-format folder (v1.0-*/, samples/, lidarseg/, gts/)"
    )
    add_version(parser)
    add_infos(parser, help="info index to validate (default: DATAROOT/fusionocc_infos.pkl)")
    parser.add_argument(
        "--deep",
        action="store_true",
        help="decode every image and open every gts archive (slow on trainval; default: image headers and "
        "sizes, a sample of the gts)",
    )
    add_no_progress(parser, deprecated=("--quiet",))


def run(args: argparse.Namespace) -> int:
    report = check_dataroot(
        args.dataroot, version=args.version, infos=args.infos, deep=args.deep, progress=not args.no_progress
    )
    print(report.format(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
