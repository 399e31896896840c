"""What `fusionocc convert` writes for a scene, decided and checked before anything is written.

Loads the dataroot with the official devkit (`load_nuscenes`), plans each scene's bag (`plan_scene`: every
sample_data of the six cameras and LIDAR_TOP in stamp order, the Occ3D ground truth of its keyframes, the
number of messages they make), checks every source file and pose of a plan (`check_sources`), gathers the ego
poses (`ego_poses`) and sensor calibrations (`sensor_records`, `sensor_calibration`) the bag is made of, and
tells which existing bag directories an interrupted run may keep (`bag_state`, from the completion record
`write_complete_record` leaves in each finished bag).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from fusionocc_core.cli_options import VersionError, resolve_version
from fusionocc_core.data.files import (
    DataFileError,
    fix_for,
    image_problem,
    open_nuscenes,
    points_problem,
    pose_problem,
    read_occ,
)
from fusionocc_core.geometry import quat_to_matrix
from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME, NUSCENES_TABLES
from fusionocc_ros import bag_layout as layout
from fusionocc_ros.bag_messages import velocities
from fusionocc_ros.errors import ConvertError, SourceError

if TYPE_CHECKING:
    from nuscenes.nuscenes import NuScenes

    from fusionocc_ros.calibration import Calibration

CALIBRATION_FILE = "calibration.yaml"
COMPLETE_FILE = "conversion_complete.json"  # written last into each bag directory
_COMPLETE_FORMAT = "fusionocc-convert-complete"
# What a bag directory of ours may hold; anything else at a destination is not ours to delete.
_BAG_FILES = ("metadata.yaml", CALIBRATION_FILE, COMPLETE_FILE)
_BAG_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal")
_GTS_DIR = "gts"

BagState: TypeAlias = Literal["complete", "incomplete", "different", "foreign"]
Record: TypeAlias = dict[str, Any]  # a row of a devkit table (JSON)


@dataclass(frozen=True)
class Frame:
    """One sample_data record to write."""

    stamp_us: int
    channel: str
    token: str
    path: Path
    is_key_frame: bool
    sample_token: str


@dataclass
class ScenePlan:
    """The sample_data records and ground truths of one scene's bag, frames in (stamp, channel) order."""

    name: str
    token: str
    frames: list[Frame]
    gts: dict[str, Path]  # keyframe sample token -> labels.npz


@dataclass(frozen=True)
class EgoPoses:
    """The ego pose of every distinct stamp of a plan, in stamp order, with its velocities in base_link.

    Attributes:
        translations: (N, 3) positions in the map frame [m].
        rotations: (N, 4) orientations as nuScenes (w, x, y, z) quaternions.
        linear, angular: (N, 3) central-difference velocities [m/s, rad/s].
        index: stamp [us] -> row.
    """

    translations: np.ndarray
    rotations: np.ndarray
    linear: np.ndarray
    angular: np.ndarray
    index: dict[int, int]


def load_nuscenes(dataroot: Path | str, *, version: str | None = None) -> NuScenes:
    """Loads a dataroot with the official devkit after checking its tables exist.

    Args:
        dataroot: nuScenes dataroot.
        version: the table folder; None = the only `v1.0-*` folder of the dataroot (the rule of every
            --version, `fusionocc_core.cli_options.resolve_version`).

    Returns:
        The devkit's `NuScenes`.

    Raises:
        ConvertError: the dataroot, the version folder or one of the devkit's tables is missing, several
            versions and none chosen, or the devkit cannot load the tables (with its message).
        SourceError: a table is not valid JSON or a lidarseg file is missing (named by path).
    """
    dataroot = Path(dataroot)
    if not dataroot.is_dir():
        raise ConvertError(f"{dataroot} is not a directory (expected a nuScenes dataroot).")
    try:
        version = resolve_version(dataroot, version)
    except VersionError as error:
        raise ConvertError(f"{error}.") from None
    tables = dataroot / version
    missing = [f"{tables / name}.json" for name in NUSCENES_TABLES if not (tables / f"{name}.json").is_file()]
    if missing:
        raise ConvertError(f"{dataroot} lacks nuScenes {version} table(s): {', '.join(missing)}.")
    try:
        return open_nuscenes(dataroot, version)
    except DataFileError as error:
        if error.path.is_dir():  # no single file to blame: the devkit's message with the table folder
            raise ConvertError(str(error)) from None
        raise SourceError(error.path, f"{error.problem}; {error.fix}") from None


def scene_by_name(nusc: NuScenes, scene_name: str) -> Record:
    """The scene record named `scene_name`.

    Raises:
        ConvertError: no such scene (the message lists the scenes there are).
    """
    for scene in nusc.scene:
        if scene["name"] == scene_name:
            return scene
    names = ", ".join(s["name"] for s in nusc.scene)
    raise ConvertError(f"scene {scene_name!r} is not in {nusc.dataroot} ({nusc.version}); it has {names}.")


def _channel_chain(nusc: NuScenes, first_token: str, scene_token: str) -> Iterator[Record]:
    """Every sample_data of one channel that belongs to the scene, oldest first (walks prev, then next)."""
    record = nusc.get("sample_data", first_token)
    while record["prev"]:
        previous = nusc.get("sample_data", record["prev"])
        if nusc.get("sample", previous["sample_token"])["scene_token"] != scene_token:
            break
        record = previous
    while True:
        yield record
        if not record["next"]:
            return
        record = nusc.get("sample_data", record["next"])
        if nusc.get("sample", record["sample_token"])["scene_token"] != scene_token:
            return


def plan_scene(nusc: NuScenes, scene_name: str, *, keyframes_only: bool, with_occ_gt: bool) -> ScenePlan:
    """The frames (and ground truths) of one scene's bag.

    Args:
        nusc: the loaded dataroot.
        scene_name: e.g. "scene-0061".
        keyframes_only: only the annotated keyframes instead of every sweep.
        with_occ_gt: plan the Occ3D `gts/<scene>/<sample token>/labels.npz` of each lidar keyframe.

    Raises:
        ConvertError: unknown scene, or its first sample lacks a camera or LIDAR_TOP.
    """
    scene = scene_by_name(nusc, scene_name)
    first_sample = nusc.get("sample", scene["first_sample_token"])
    dataroot = Path(nusc.dataroot)
    frames: list[Frame] = []
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        if channel not in first_sample["data"]:
            raise ConvertError(f"scene {scene_name}: the first sample has no {channel} sample_data.")
        for record in _channel_chain(nusc, first_sample["data"][channel], scene["token"]):
            if keyframes_only and not record["is_key_frame"]:
                continue
            frames.append(Frame(int(record["timestamp"]), channel, record["token"], dataroot / record["filename"],
                                bool(record["is_key_frame"]), record["sample_token"]))
    frames.sort(key=lambda f: (f.stamp_us, f.channel))
    gts: dict[str, Path] = {}
    if with_occ_gt:
        for frame in frames:
            if frame.channel == LIDAR_NAME and frame.is_key_frame:
                gts[frame.sample_token] = dataroot / _GTS_DIR / scene_name / frame.sample_token / "labels.npz"
    return ScenePlan(scene_name, scene["token"], frames, gts)


def message_total(plan: ScenePlan) -> int:
    """How many messages the plan's bag holds: /tf_static, image + camera info per camera frame, a cloud per
    lidar frame, /tf + /odom per distinct stamp and an /occ_gt per ground truth."""
    cameras = sum(1 for f in plan.frames if f.channel != LIDAR_NAME)
    poses = len({f.stamp_us for f in plan.frames})
    return 1 + 2 * cameras + (len(plan.frames) - cameras) + 2 * poses + len(plan.gts)


def check_sources(nusc: NuScenes, plan: ScenePlan, progress: Callable[[int], None] | None = None) -> None:
    """Checks every file and pose one scene's bag is made of, as the writer will read them.

    Args:
        nusc: the loaded dataroot.
        plan: the scene's plan.
        progress: called with 1 per frame checked.

    Raises:
        SourceError: the first missing or damaged file (or the pose table holding a non-finite pose), in
            one line with the number of other problems of the scene.
    """
    dataroot = Path(nusc.dataroot)
    check_data = f"`fusionocc check-data {dataroot}` lists them"
    missing = [f.path for f in plan.frames if not f.path.is_file()]
    missing += [p for p in plan.gts.values() if not p.is_file()]
    if missing:
        hint = " (Occ3D gts/ are needed for --with-occ-gt)" if _GTS_DIR in missing[0].parts else ""
        more = f"; scene {plan.name} lacks {len(missing)} source files, {check_data}"
        more = more if len(missing) > 1 else ""
        raise SourceError(missing[0], f"missing{hint}{more}; {fix_for(missing[0])}")
    problems: list[tuple[Path, str]] = []
    for frame in plan.frames:
        if frame.channel == LIDAR_NAME:
            problem = points_problem(frame.path)
            kind = "corrupt point cloud"
        else:
            # Any size: the CameraInfo follows a JPEG stored at another size than its record.
            problem = image_problem(frame.path)
            kind = "corrupt image"
        if problem is not None:
            problems.append((frame.path, f"{kind}: {problem}"))
        record = nusc.get("sample_data", frame.token)
        for table, token in (("ego_pose", record["ego_pose_token"]),
                             ("calibrated_sensor", record["calibrated_sensor_token"])):
            problem = pose_problem(nusc.get(table, token))
            if problem is not None:
                path = dataroot / nusc.version / f"{table}.json"
                problems.append((path, f"{table} {token} (of {frame.path.name}): {problem}"))
        if progress is not None:
            progress(1)
    for path in plan.gts.values():
        try:
            read_occ(path, ("semantics",))
        except DataFileError as error:
            problems.append((path, f"corrupt Occ3D ground truth: {error.problem}"))
    if problems:
        path, problem = problems[0]
        more = f" ({len(problems) - 1} more problems in scene {plan.name}: {check_data})"
        more = more if len(problems) > 1 else ""
        raise SourceError(path, f"{problem}{more}; {fix_for(path)}")


def sensor_records(nusc: NuScenes, plan: ScenePlan) -> dict[str, tuple[Record, Record]]:
    """Channel -> (its first sample_data record, that record's calibrated_sensor), in order of first frame."""
    sensors: dict[str, tuple[Record, Record]] = {}
    for frame in plan.frames:
        if frame.channel not in sensors:
            record = nusc.get("sample_data", frame.token)
            sensors[frame.channel] = (record, nusc.get("calibrated_sensor", record["calibrated_sensor_token"]))
    return sensors


def sensor_calibration(nusc: NuScenes, plan: ScenePlan) -> Calibration:
    """The occupancy node's calibration of the plan's sensors (each one's first calibrated_sensor), cameras
    first in `CAMERA_NAMES` order, written as `calibration.yaml` into each bag."""
    from fusionocc_ros.calibration import Calibration, SensorCalibration

    sensors: dict[str, SensorCalibration] = {}
    for channel, (record, cs) in sensor_records(nusc, plan).items():
        pose = np.eye(4)
        pose[:3, :3] = quat_to_matrix(cs["rotation"])
        pose[:3, 3] = cs["translation"]
        intrinsics = np.asarray(cs["camera_intrinsic"]) if cs.get("camera_intrinsic") else None
        size = (int(record["width"]), int(record["height"])) if intrinsics is not None else None
        sensors[channel] = SensorCalibration.from_matrix(channel, pose, intrinsics=intrinsics, image_size=size)
    ordered = {name: sensors[name] for name in (*CAMERA_NAMES, LIDAR_NAME) if name in sensors}
    return Calibration(ordered, ego_frame=layout.EGO_FRAME)


def ego_poses(nusc: NuScenes, plan: ScenePlan) -> EgoPoses:
    """The ego pose of every distinct stamp of the plan (the first frame's pose where channels share one)."""
    records: dict[int, Record] = {}
    for frame in plan.frames:
        record = nusc.get("sample_data", frame.token)
        records.setdefault(frame.stamp_us, nusc.get("ego_pose", record["ego_pose_token"]))
    stamps = np.array(sorted(records), dtype=np.int64)
    translations = np.array([records[int(s)]["translation"] for s in stamps], dtype=np.float64)
    rotations = np.array([records[int(s)]["rotation"] for s in stamps], dtype=np.float64)
    linear, angular = velocities(stamps, translations, quat_to_matrix(rotations))
    return EgoPoses(translations, rotations, linear, angular, {int(s): i for i, s in enumerate(stamps)})


# ----------------------------------------------------------------------------------------------------------
# Completion record: which bags an interrupted run may keep
# ----------------------------------------------------------------------------------------------------------


def write_complete_record(bag: Path, scene: str, message_counts: Mapping[str, int],
                          content: Mapping[str, object]) -> None:
    """Writes `conversion_complete.json` into a finished bag directory.

    It holds the options, message counts and the size of every file, so a later run can tell a complete bag
    from a damaged or partial copy (`bag_state`).

    Args:
        bag: the bag directory, every other file of it written.
        scene: the scene name.
        message_counts: topic -> number of messages written.
        content: the options that change a bag's content (compared by `bag_state`).
    """
    record = {
        "format": _COMPLETE_FORMAT,
        "version": 1,
        "scene": scene,
        "options": dict(content),
        "message_counts": dict(sorted(message_counts.items())),
        "files": {p.name: p.stat().st_size for p in sorted(bag.iterdir()) if p.is_file()},
    }
    (bag / COMPLETE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def bag_state(path: Path, plan: ScenePlan, content: Mapping[str, object]) -> tuple[BagState, str]:
    """What an existing destination is.

    Args:
        path: the destination of the plan's bag.
        plan: the scene's plan.
        content: the options that change a bag's content, as `write_complete_record` stores them.

    Returns:
        ("complete", summary): keep it; ("incomplete", why): write it again; ("different", why): written with
        other options or for other data, refused without --overwrite; ("foreign", why): not a bag directory of
        ours, never deleted without --overwrite.
    """
    if not path.is_dir():
        return "foreign", "is not a directory"
    names = [p.name for p in path.iterdir()]
    strangers = [n for n in names if n not in _BAG_FILES and not n.endswith(_BAG_SUFFIXES)]
    if strangers:
        return "foreign", f"holds {', '.join(sorted(strangers)[:3])}, which a converted bag does not"
    if COMPLETE_FILE not in names:
        return "incomplete", f"no {COMPLETE_FILE} (the conversion did not finish, or predates the record)"
    try:
        record = json.loads((path / COMPLETE_FILE).read_text())
        counts = {str(k): int(v) for k, v in record["message_counts"].items()}
        sizes = {str(k): int(v) for k, v in record["files"].items()}
        stored = dict(record["options"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "incomplete", f"{COMPLETE_FILE} is unreadable"
    wanted = dict(content)
    if stored != wanted:
        changed = ", ".join(f"{k} {stored.get(k)!r} -> {v!r}" for k, v in wanted.items() if stored.get(k) != v)
        return "different", f"was written with other options ({changed})"
    for name, size in sizes.items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual:,} bytes"
            return "incomplete", f"{name} is {found}, {size:,} bytes when written"
    from rosbags.rosbag2 import Reader

    try:
        with Reader(path) as reader:  # reads metadata.yaml, and an MCAP file's footer and summary
            in_bag: dict[str, int] = {}
            for connection in reader.connections:
                in_bag[connection.topic] = in_bag.get(connection.topic, 0) + connection.msgcount
    except Exception as error:
        return "incomplete", f"rosbags cannot open it ({type(error).__name__}: {error})"
    in_bag = {topic: n for topic, n in in_bag.items() if n}
    if in_bag != counts:
        written = sum(counts.values())
        return "incomplete", f"its metadata counts {sum(in_bag.values())} messages, {written} were written"
    expected = message_total(plan)
    if sum(counts.values()) != expected:
        return "different", f"holds {sum(counts.values())} messages, the scene now makes {expected}"
    return "complete", f"{sum(counts.values())} messages"
