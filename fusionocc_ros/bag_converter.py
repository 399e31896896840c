"""Convert a nuScenes dataroot into ROS 2 bags (one per scene) that `ros2 bag play` replays.

The official nuscenes-devkit reads the dataroot; `rosbags` writes standard ROS 2 messages (MCAP by default,
sqlite3 on request): per camera the ORIGINAL JPEG bytes as CompressedImage plus CameraInfo, LIDAR_TOP as
PointCloud2 (x, y, z, intensity float32, ring uint16), /tf_static (sensor extrinsics, transient local),
/tf and /odom (map -> base_link per ego pose) and optionally the Occ3D ground truth as a labelled
PointCloud2. Every message is stamped with its sensor's own sample_data timestamp; log time = header stamp.

Each scene becomes the bag directory `OUT/<scene name>/` with `metadata.yaml`, the storage file and
`calibration.yaml` (the occupancy node's calibration file). Inputs (tables, scenes, every source file: each
JPEG header, each `.pcd.bin` a whole number of points, each pose finite, gts when asked) are checked before
anything is written; each bag is written under a hidden temporary directory in OUT, gets
`conversion_complete.json` (options, message counts, file sizes) last, and is renamed into place, so an
interrupted run leaves no half-written bag.

Running the same command again continues an interrupted run: a bag whose completion record matches its files,
its metadata (read back with rosbags) and the scene is kept and skipped; an incomplete one (no or inconsistent
record) is written again, and temporaries of killed runs (`.fusionocc-convert-*`) are removed. A bag written
with other options is refused unless --overwrite, which rewrites every bag.

Topic layout: see `fusionocc_ros.bag_layout`; what each message holds: `fusionocc_ros.bag_messages`; which
frames, poses and files a bag is made of, and which bags a run keeps: `fusionocc_ros.bag_plan`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from fusionocc_core.cli_options import add_no_progress, add_version
from fusionocc_core.occ3d import LIDAR_NAME
from fusionocc_ros import bag_layout as layout
from fusionocc_ros.bag_messages import (
    MessageBuilder,
    lidar_payload,
    occ_payload,
    offered_qos,
    read_gt,
    read_jpeg,
    read_points,
    scale_intrinsics,
    topic_qos,
    typestore,
)
from fusionocc_ros.bag_plan import (
    CALIBRATION_FILE,
    COMPLETE_FILE,
    EgoPoses,
    Frame,
    ScenePlan,
    bag_state,
    check_sources,
    ego_poses,
    load_nuscenes,
    message_total,
    plan_scene,
    scene_by_name,
    sensor_calibration,
    sensor_records,
    write_complete_record,
)
from fusionocc_ros.cloud_layouts import LIDAR_FIELDS, LIDAR_POINT_STEP, OCC_FIELDS, OCC_POINT_STEP
from fusionocc_ros.errors import ConvertError

if TYPE_CHECKING:
    from nuscenes.nuscenes import NuScenes

    from fusionocc_ros.bag_messages import BagMessage

__all__ = [  # the public names, with those of bag_messages and bag_plan that users import from here
    "CALIBRATION_FILE", "COMPLETE_FILE", "DISTROS", "STORAGES", "ConvertOptions", "ConvertReport", "add_arguments",
    "convert_dataroot", "convert_scene", "lidar_payload", "load_nuscenes", "main", "occ_payload", "read_points",
    "run", "topic_qos",
]

STORAGES = ("mcap", "sqlite3")
DISTROS = ("humble", "jazzy", "kilted")
_TMP_PREFIX = ".fusionocc-convert-"


@dataclass(frozen=True)
class ConvertOptions:
    """What goes into each bag and how it is stored.

    Attributes:
        storage: "mcap" (default) or "sqlite3".
        distro: ROS 2 distribution whose typestore defines the message definitions; bag format version 8 for
            humble, 9 for jazzy and kilted.
        keyframes_only: only the 2 Hz annotated keyframes (samples) instead of every sweep.
        with_occ_gt: add the Occ3D ground truth of each keyframe on /occ_gt (needs `gts/`).
        with_calibration: write `calibration.yaml` into each bag directory.
        overwrite: replace existing bags at the destination (only once the new one is complete).
        progress: show a tqdm progress bar on stderr.
    """

    storage: str = "mcap"
    distro: str = "jazzy"
    keyframes_only: bool = False
    with_occ_gt: bool = False
    with_calibration: bool = True
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ConvertError(f"storage {self.storage!r} is not one of {', '.join(STORAGES)}.")
        if self.distro not in DISTROS:
            raise ConvertError(f"distro {self.distro!r} is not one of {', '.join(DISTROS)}.")


@dataclass
class ConvertReport:
    """What one scene's conversion wrote.

    Attributes:
        scene: scene name.
        path: the bag directory.
        calibration_path: the calibration YAML (None when not written).
        message_counts: topic -> number of messages.
        source_bytes: total size of the source files read (images, point clouds, gts) [bytes].
        bag_bytes: total size of the bag directory [bytes].
        seconds: wall time of the conversion [s].
        start_ns, end_ns: first and last log time [ns].
        kept: the bag was complete already and was kept, not written (an interrupted run continued).
    """

    scene: str
    path: Path
    calibration_path: Path | None
    message_counts: dict[str, int] = field(default_factory=dict)
    source_bytes: int = 0
    bag_bytes: int = 0
    seconds: float = 0.0
    start_ns: int = 0
    end_ns: int = 0
    kept: bool = False

    @property
    def messages(self) -> int:
        """Total number of messages written."""
        return sum(self.message_counts.values())


# ----------------------------------------------------------------------------------------------------------
# Converting
# ----------------------------------------------------------------------------------------------------------


def convert_dataroot(
    dataroot: Path | str,
    out_dir: Path | str,
    *,
    options: ConvertOptions,
    version: str | None = None,
    scenes: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[ConvertReport]:
    """Converts scenes of a dataroot, one bag directory `out_dir/<scene name>` per scene.

    All scenes, all their source files and all destinations are checked before the first bag is written.
    Without `options.overwrite`, an existing destination is kept when it is a complete bag of the same
    options and scene (report `kept`), written again when it is an incomplete one (an interrupted run), and
    refused otherwise; temporaries of killed runs are removed.

    Args:
        dataroot: nuScenes dataroot (holding `<version>/`, `samples/`, `sweeps/`, optionally `gts/`).
        out_dir: where the bag directories go (created when missing).
        options: content and storage options.
        version: devkit version, e.g. "v1.0-mini", "v1.0-trainval"; None = the only one of the dataroot.
        scenes: scene names; None for every scene of the version.
        log: called with one line per bag kept or written again and per leftover removed (default: silent).

    Returns:
        One report per scene, in order.

    Raises:
        ConvertError: bad tables, unknown scenes, or existing destinations that are not complete bags of these
            options (without overwrite).
        SourceError: a missing or corrupt source file, named by path.
    """
    say = log or (lambda _line: None)
    nusc = load_nuscenes(dataroot, version=version)
    out_dir = Path(out_dir)
    names = list(scenes) if scenes is not None else [s["name"] for s in nusc.scene]
    if not names:
        raise ConvertError("no scenes selected.")
    for name in names:
        scene_by_name(nusc, name)
    if out_dir.is_dir():
        _remove_stale_temporaries(out_dir, say)
    plans = {name: _plan(nusc, name, options) for name in names}
    kept: dict[str, ConvertReport] = {}
    rewrite: dict[str, str] = {}  # incomplete bag -> why; replaced once its new version is complete
    refused: list[str] = []
    for name in names:
        destination = out_dir / name
        if options.overwrite or not (destination.exists() or destination.is_symlink()):
            continue
        state, detail = bag_state(destination, plans[name], _content_options(options))
        if state == "complete":
            kept[name] = _kept_report(destination, options)
        elif state == "incomplete":
            rewrite[name] = detail
        else:
            refused.append(f"{destination} exists and {detail}")
    if refused:
        raise ConvertError(f"{'; '.join(refused)}: not overwriting (use --overwrite).")
    to_write = [name for name in names if name not in kept]
    show = options.progress and bool(to_write)
    with _progress_bar(show, sum(len(plans[n].frames) for n in to_write), "checking sources", "file") as update:
        for name in to_write:  # every file of every scene to write is checked before the first bag
            check_sources(nusc, plans[name], update)
    for name in names:
        if name in kept:
            say(f"{out_dir / name}: complete ({kept[name].messages} messages), kept")
        elif name in rewrite:
            say(f"{out_dir / name}: incomplete ({rewrite[name]}), writing it again")
    reports: list[ConvertReport] = []
    with _progress_bar(show, sum(message_total(plans[n]) for n in to_write), "convert", "msg") as update:
        for name in names:
            if name in kept:
                reports.append(kept[name])
                continue
            scene_options = dataclasses.replace(options, overwrite=options.overwrite or name in rewrite)
            reports.append(_convert_planned(nusc, plans[name], out_dir / name, options=scene_options,
                                            progress=update))
    return reports


def convert_scene(
    nusc: NuScenes,
    scene_name: str,
    out_path: Path,
    *,
    options: ConvertOptions,
    progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Writes one scene as a rosbag2 directory `out_path` (plus `calibration.yaml` inside it).

    Every source file is checked before writing; the bag is written to a temporary directory next to
    `out_path`, gets its completion record (`conversion_complete.json`) last and is renamed to `out_path`
    only when complete.

    Args:
        nusc: a loaded `nuscenes.nuscenes.NuScenes`.
        scene_name: e.g. "scene-0061".
        out_path: the bag directory to create.
        options: content and storage options.
        progress: called with the number of messages written since the last call (a tqdm bar is used when
            None and `options.progress`).

    Returns:
        What was written.

    Raises:
        ConvertError: unknown scene, or `out_path` exists and `options.overwrite` is False.
        SourceError: a missing or corrupt source file, named by path.
    """
    out_path = Path(out_path)
    if out_path.exists() and not options.overwrite:
        raise ConvertError(f"{out_path} exists already, not overwriting (use --overwrite).")
    plan = _plan(nusc, scene_name, options)
    check_sources(nusc, plan)
    return _convert_planned(nusc, plan, out_path, options=options, progress=progress)


def _plan(nusc: NuScenes, scene_name: str, options: ConvertOptions) -> ScenePlan:
    return plan_scene(nusc, scene_name, keyframes_only=options.keyframes_only, with_occ_gt=options.with_occ_gt)


def _convert_planned(nusc: NuScenes, plan: ScenePlan, out_path: Path, *, options: ConvertOptions,
                     progress: Callable[[int], None] | None) -> ConvertReport:
    """`convert_scene` once the plan is made and its sources are checked."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_path.parent)
    tmp_root = out_path.parent / f"{_TMP_PREFIX}{out_path.name}-{os.getpid()}"
    shutil.rmtree(tmp_root, ignore_errors=True)
    tmp_root.mkdir()
    bag = tmp_root / out_path.name
    try:
        with _progress_bar(progress is None and options.progress, message_total(plan), plan.name, "msg") as bar:
            report = _write_bag(nusc, plan, bag, options=options, progress=progress or bar)
            if options.with_calibration:
                from fusionocc_ros.calibration import save_calibration

                save_calibration(sensor_calibration(nusc, plan), bag / CALIBRATION_FILE)
            write_complete_record(bag, report.scene, report.message_counts, _content_options(options))
            _move_into_place(bag, out_path, overwrite=options.overwrite)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    report.path = out_path
    report.calibration_path = out_path / CALIBRATION_FILE if options.with_calibration else None
    report.bag_bytes = _dir_bytes(out_path)
    return report


# ----------------------------------------------------------------------------------------------------------
# Writing one bag: generators of (topic, stamp, message) in bag order, one loop that writes them
# ----------------------------------------------------------------------------------------------------------


class _Output(NamedTuple):
    """One message to write; its header stamp is its log time."""

    topic: str
    stamp_us: int
    message: BagMessage
    source_bytes: int = 0  # size of the source files read for it (for the report)


def _write_bag(nusc: NuScenes, plan: ScenePlan, bag_path: Path, *, options: ConvertOptions,
               progress: Callable[[int], None] | None) -> ConvertReport:
    """Writes the plan's messages (`_messages`) into a new bag directory `bag_path`; returns its report."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    started = time.perf_counter()
    store = typestore(options.distro)
    report = ConvertReport(scene=plan.name, path=bag_path, calibration_path=None)
    storage = StoragePlugin.MCAP if options.storage == "mcap" else StoragePlugin.SQLITE3
    version: Literal[8, 9] = 8 if options.distro == "humble" else 9
    topics = layout.sensor_topics(with_occ_gt=options.with_occ_gt)
    poses = ego_poses(nusc, plan)
    with Writer(bag_path, version=version, storage_plugin=storage) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=[offered_qos(topic)])
            for topic, msgtype in topics.items()
        }
        for out in _messages(nusc, plan, poses, MessageBuilder(store)):
            data = store.serialize_cdr(out.message, topics[out.topic])
            writer.write(connections[out.topic], out.stamp_us * 1000, data)
            report.message_counts[out.topic] = report.message_counts.get(out.topic, 0) + 1
            report.source_bytes += out.source_bytes
            if progress is not None:
                progress(1)
        report.start_ns = writer.min_timestamp if writer.counts else 0
        report.end_ns = writer.max_timestamp
    if options.distro == "humble":
        _strip_type_hashes(bag_path / "metadata.yaml")
    report.seconds = time.perf_counter() - started
    return report


def _messages(nusc: NuScenes, plan: ScenePlan, poses: EgoPoses, msgs: MessageBuilder) -> Iterator[_Output]:
    """Every message of the bag in write order: /tf_static, then per frame its pose (first frame of a stamp)
    and its sensor messages."""
    yield from _static_tf(nusc, plan, msgs)
    posed: set[int] = set()
    for frame in plan.frames:
        if frame.stamp_us not in posed:
            posed.add(frame.stamp_us)
            yield from _pose_messages(frame.stamp_us, poses, msgs)
        if frame.channel == LIDAR_NAME:
            yield from _lidar_messages(frame, plan, msgs)
        else:
            yield from _camera_messages(nusc, frame, msgs)


def _static_tf(nusc: NuScenes, plan: ScenePlan, msgs: MessageBuilder) -> Iterator[_Output]:
    """base_link -> each sensor, stamped with the scene's first stamp."""
    first_stamp = plan.frames[0].stamp_us if plan.frames else 0
    transforms = [msgs.transform(first_stamp, layout.EGO_FRAME, channel, cs["translation"], cs["rotation"])
                  for channel, (_, cs) in sensor_records(nusc, plan).items()]
    yield _Output(layout.TF_STATIC_TOPIC, first_stamp, msgs.TFMessage(transforms=transforms))


def _pose_messages(stamp_us: int, poses: EgoPoses, msgs: MessageBuilder) -> Iterator[_Output]:
    """map -> base_link at one stamp, on /tf and /odom."""
    i = poses.index[stamp_us]
    translation, rotation = poses.translations[i], poses.rotations[i]
    transform = msgs.transform(stamp_us, layout.MAP_FRAME, layout.EGO_FRAME, translation, rotation)
    yield _Output(layout.TF_TOPIC, stamp_us, msgs.TFMessage(transforms=[transform]))
    odometry = msgs.odometry(stamp_us, translation, rotation, poses.linear[i], poses.angular[i])
    yield _Output(layout.ODOM_TOPIC, stamp_us, odometry)


def _lidar_messages(frame: Frame, plan: ScenePlan, msgs: MessageBuilder) -> Iterator[_Output]:
    """The sweep's point cloud, then the keyframe's Occ3D ground truth when planned."""
    stamp = frame.stamp_us
    points = read_points(frame.path)  # this module's name: tests patch `bag_converter.read_points` to interrupt
    cloud = msgs.cloud(stamp, frame.channel, LIDAR_FIELDS, lidar_payload(points), LIDAR_POINT_STEP)
    yield _Output(layout.LIDAR_TOPIC, stamp, cloud, frame.path.stat().st_size)
    if frame.sample_token in plan.gts and frame.is_key_frame:
        gt_path = plan.gts[frame.sample_token]
        semantics = read_gt(gt_path)
        labels = msgs.cloud(stamp, layout.EGO_FRAME, OCC_FIELDS, occ_payload(semantics), OCC_POINT_STEP)
        yield _Output(layout.OCC_GT_TOPIC, stamp, labels, gt_path.stat().st_size)


def _camera_messages(nusc: NuScenes, frame: Frame, msgs: MessageBuilder) -> Iterator[_Output]:
    """The original JPEG and its CameraInfo (intrinsics scaled to the size the JPEG is stored at)."""
    stamp = frame.stamp_us
    jpeg, (width, height) = read_jpeg(frame.path)
    record = nusc.get("sample_data", frame.token)
    cs = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
    if not cs.get("camera_intrinsic"):
        raise ConvertError(f"calibrated_sensor {cs['token']} of {frame.channel} has no camera_intrinsic.")
    reference = (int(record.get("width") or width), int(record.get("height") or height))
    intrinsics = scale_intrinsics(cs["camera_intrinsic"], (width, height), reference)
    image = msgs.compressed_image(stamp, frame.channel, jpeg)
    yield _Output(layout.image_topic(frame.channel), stamp, image, len(jpeg))
    info = msgs.camera_info(stamp, frame.channel, intrinsics, width, height)
    yield _Output(layout.camera_info_topic(frame.channel), stamp, info)


def _strip_type_hashes(metadata_path: Path) -> None:
    """Drops `type_description_hash` (Jazzy+) from metadata.yaml: Humble's rosbag2 does not know it."""
    import yaml

    metadata = yaml.safe_load(metadata_path.read_text())
    for entry in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        entry["topic_metadata"].pop("type_description_hash", None)
    metadata_path.write_text(yaml.safe_dump(metadata, sort_keys=False))


# ----------------------------------------------------------------------------------------------------------
# Bag directories: temporaries, moving into place, kept bags
# ----------------------------------------------------------------------------------------------------------


def _content_options(options: ConvertOptions) -> dict[str, str | bool]:
    """The options that change a bag's content (not overwrite or progress)."""
    return {
        "storage": options.storage,
        "distro": options.distro,
        "keyframes_only": options.keyframes_only,
        "with_occ_gt": options.with_occ_gt,
        "with_calibration": options.with_calibration,
    }


def _kept_report(path: Path, options: ConvertOptions) -> ConvertReport:
    """The report of a complete bag that is kept (its counts and time span read back)."""
    from rosbags.rosbag2 import Reader

    record = json.loads((path / COMPLETE_FILE).read_text())
    with Reader(path) as reader:
        start, end = (reader.start_time, reader.end_time) if reader.message_count else (0, 0)
    calibration = path / CALIBRATION_FILE
    return ConvertReport(
        scene=record["scene"],
        path=path,
        calibration_path=calibration if options.with_calibration else None,
        message_counts=dict(record["message_counts"]),
        bag_bytes=_dir_bytes(path),
        start_ns=start,
        end_ns=max(start, end - 1),  # rosbags' end_time is one past the last message
        kept=True,
    )


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remove_stale_temporaries(out_dir: Path, log: Callable[[str], None] | None = None) -> None:
    """Removes temporaries of earlier runs whose process is gone (killed conversions)."""
    for stale in out_dir.glob(f"{_TMP_PREFIX}*"):
        pid_text = stale.name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and int(pid_text) != os.getpid():
            try:
                os.kill(int(pid_text), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        elif pid_text.isdigit():
            continue
        shutil.rmtree(stale, ignore_errors=True)
        if log is not None:
            log(f"removed {stale}, left by an interrupted conversion")


def _move_into_place(source: Path, destination: Path, *, overwrite: bool) -> None:
    if destination.exists():
        if not overwrite:
            raise ConvertError(f"{destination} exists already, not overwriting (use --overwrite).")
        old = destination.parent / f"{_TMP_PREFIX}{destination.name}-old-{os.getpid()}"
        destination.rename(old)
        source.rename(destination)
        shutil.rmtree(old, ignore_errors=True)
    else:
        source.rename(destination)


@contextmanager
def _progress_bar(enabled: bool, total: int, desc: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar's `update` on stderr, closed on exit; a no-op when not `enabled`."""
    if not enabled:
        yield _no_progress
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def _no_progress(_: int) -> None:
    return None


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `fusionocc convert`."""
    parser.add_argument("dataroot", type=Path, help="nuScenes dataroot (with v1.0-*/ tables, samples/, sweeps/)")
    parser.add_argument("--out", type=Path, required=True, help="output directory; one bag directory per scene")
    add_version(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenes", nargs="+", metavar="NAME", help="scene names, e.g. scene-0061")
    which.add_argument("--all", action="store_true", help="every scene of the version")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="bag storage (default: %(default)s)")
    parser.add_argument(
        "--distro",
        choices=DISTROS,
        default="jazzy",
        help="typestore for message definitions; humble writes bag format 8, others 9 (default: %(default)s)",
    )
    parser.add_argument("--keyframes-only", action="store_true",
                        help="only the 2 Hz keyframes (default: every sweep: cameras 12 Hz, lidar 20 Hz)")
    parser.add_argument("--with-occ-gt", action="store_true",
                        help="add Occ3D ground truth on /occ_gt (needs gts/<scene>/<token>/labels.npz)")
    parser.add_argument("--no-calibration", action="store_true",
                        help="do not write calibration.yaml into each bag directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing bags (default: keep complete ones of the same options, redo incomplete ones)",
    )
    add_no_progress(parser)


def _log(line: str) -> None:
    print(f"fusionocc convert: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Runs `fusionocc convert`; prints one line per bag; returns 1 with a message on a named error."""
    from fusionocc_ros.errors import BagToolError

    try:
        options = ConvertOptions(
            storage=args.storage,
            distro=args.distro,
            keyframes_only=args.keyframes_only,
            with_occ_gt=args.with_occ_gt,
            with_calibration=not args.no_calibration,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        reports = convert_dataroot(
            args.dataroot,
            args.out,
            options=options,
            version=args.version,
            scenes=None if args.all else args.scenes,
            log=_log,
        )
    except BagToolError as error:
        print(f"fusionocc convert: {error}", file=sys.stderr)
        return 1
    for report in reports:
        if report.kept:
            continue  # logged above
        duration = (report.end_ns - report.start_ns) * 1e-9
        print(
            f"{report.path}: {report.messages} messages, {duration:.1f} s of data, "
            f"{report.bag_bytes / 1e6:.1f} MB (sources {report.source_bytes / 1e6:.1f} MB), "
            f"written in {report.seconds:.1f} s"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`python -m fusionocc_ros.bag_converter`)."""
    parser = argparse.ArgumentParser(prog="fusionocc convert", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
