"""nuScenes -> rosbag2 converter on the synthetic dataset, checked by reading the bags back with rosbags and
comparing with what the official devkit reads from the same dataroot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_ros import bag_converter, bag_layout
from fusionocc_ros.bag_converter import ConvertOptions, convert_dataroot, convert_scene
from fusionocc_ros.calibration import load_calibration
from fusionocc_ros.conversions import pointcloud2_to_occupancy
from fusionocc_ros.errors import ConvertError, SourceError

REPO = Path(__file__).resolve().parents[2]
SCENE = "scene-0001"
QUIET = ConvertOptions(progress=False, with_occ_gt=True)


@pytest.fixture(scope="module")
def nusc(synth_dataroot: Path) -> NuScenes:
    return NuScenes("v1.0-mini", str(synth_dataroot), verbose=False)


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory, synth_dataroot: Path) -> dict[str, Path]:
    """The first synthetic scene, every sweep plus /occ_gt, as MCAP and as sqlite3."""
    out = tmp_path_factory.mktemp("bags")
    mcap = convert_dataroot(synth_dataroot, out / "mcap", options=QUIET, scenes=[SCENE])
    sqlite = convert_dataroot(
        synth_dataroot,
        out / "sqlite3",
        scenes=[SCENE],
        options=ConvertOptions(progress=False, with_occ_gt=True, storage="sqlite3"),
    )
    return {"mcap": mcap[0].path, "sqlite3": sqlite[0].path}


def _read(path: Path) -> list[tuple[str, int, object]]:
    store = get_typestore(Stores.ROS2_JAZZY)
    with Reader(path) as reader:
        return [(c.topic, t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _scene_records(nusc: NuScenes, channel: str, *, keyframes_only: bool = False) -> list[dict]:
    scene = next(s for s in nusc.scene if s["name"] == SCENE)
    token = nusc.get("sample", scene["first_sample_token"])["data"][channel]
    records = []
    while token:
        record = nusc.get("sample_data", token)
        if nusc.get("sample", record["sample_token"])["scene_token"] != scene["token"]:
            break
        if record["is_key_frame"] or not keyframes_only:
            records.append(record)
        token = record["next"]
    return records


def test_every_topic_count_stamp_and_frame(bags, nusc):
    messages = _read(bags["mcap"])
    by_topic: dict[str, list] = {}
    for topic, log_time, msg in messages:
        by_topic.setdefault(topic, []).append((log_time, msg))
    assert set(by_topic) == set(bag_layout.sensor_topics(with_occ_gt=True))
    assert [t for _, t, _ in messages] == sorted(t for _, t, _ in messages)
    all_stamps = set()
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        expected = [r["timestamp"] * 1000 for r in _scene_records(nusc, channel)]
        all_stamps.update(expected)
        topics = (
            [bag_layout.LIDAR_TOPIC]
            if channel == LIDAR_NAME
            else [
                bag_layout.image_topic(channel),
                bag_layout.camera_info_topic(channel),
            ]
        )
        for topic in topics:
            assert [t for t, _ in by_topic[topic]] == expected, topic
            assert all(_stamp_ns(m) == t and m.header.frame_id == channel for t, m in by_topic[topic]), topic
    # one /tf and one /odom per distinct sample_data stamp; one /tf_static; one /occ_gt per keyframe sweep
    assert [t for t, _ in by_topic["/tf"]] == sorted(all_stamps)
    assert [t for t, _ in by_topic["/odom"]] == sorted(all_stamps)
    assert len(by_topic["/tf_static"]) == 1 and by_topic["/tf_static"][0][0] == min(all_stamps)
    keyframes = [r["timestamp"] * 1000 for r in _scene_records(nusc, LIDAR_NAME, keyframes_only=True)]
    assert [t for t, _ in by_topic["/occ_gt"]] == keyframes


def test_images_are_the_original_jpeg_bytes_with_matching_camera_info(bags, nusc, synth_dataroot):
    messages = _read(bags["mcap"])
    for channel in CAMERA_NAMES:
        images = [m for topic, _, m in messages if topic == bag_layout.image_topic(channel)]
        infos = [m for topic, _, m in messages if topic == bag_layout.camera_info_topic(channel)]
        for record, image, info in zip(_scene_records(nusc, channel), images, infos, strict=True):
            original = (synth_dataroot / record["filename"]).read_bytes()
            assert image.format == "jpeg"
            assert image.data.tobytes() == original
            cs = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
            np.testing.assert_array_equal(info.k.reshape(3, 3), np.asarray(cs["camera_intrinsic"]))
            np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], np.asarray(cs["camera_intrinsic"]))
            assert (info.width, info.height) == (record["width"], record["height"])
            assert info.distortion_model == "plumb_bob" and not info.d.any()


def test_pointcloud_round_trips_to_the_pcd_bin(bags, nusc, synth_dataroot):
    clouds = [m for topic, _, m in _read(bags["mcap"]) if topic == bag_layout.LIDAR_TOPIC]
    records = _scene_records(nusc, LIDAR_NAME)
    assert len(clouds) == len(records)
    for record, cloud in zip(records, clouds, strict=True):
        source = np.fromfile(synth_dataroot / record["filename"], dtype=np.float32).reshape(-1, 5)
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
            ("x", 0, 7),
            ("y", 4, 7),
            ("z", 8, 7),
            ("intensity", 12, 7),
            ("ring", 16, 4),
        ]
        assert (cloud.height, cloud.width, cloud.point_step) == (1, source.shape[0], 20)
        raw = cloud.data.reshape(-1, 20)
        xyzi = raw[:, :16].copy().view("<f4")
        ring = raw[:, 16:18].copy().view("<u2")[:, 0]
        np.testing.assert_array_equal(xyzi, source[:, :4])
        np.testing.assert_array_equal(ring, source[:, 4].astype(np.uint16))


def test_the_nodes_decoders_read_the_bag_messages(bags, synth_dataroot, nusc):
    """The occupancy node's own decoders (fusionocc_ros.conversions) accept what the converter writes."""
    from PIL import Image

    from fusionocc_ros.conversions import compressed_image_to_rgb, pointcloud2_to_xyzir

    messages = _read(bags["mcap"])
    cloud = next(m for topic, _, m in messages if topic == bag_layout.LIDAR_TOPIC)
    record = _scene_records(nusc, LIDAR_NAME)[0]
    source = np.fromfile(synth_dataroot / record["filename"], dtype=np.float32).reshape(-1, 5)
    decoded = pointcloud2_to_xyzir(cloud)
    assert decoded.dropped_non_finite == 0
    np.testing.assert_array_equal(decoded.points, source)
    image = next(m for topic, _, m in messages if topic == bag_layout.image_topic("CAM_FRONT"))
    camera = _scene_records(nusc, "CAM_FRONT")[0]
    expected = np.asarray(Image.open(synth_dataroot / camera["filename"]).convert("RGB"))
    np.testing.assert_array_equal(compressed_image_to_rgb(image), expected)


def test_tf_odom_and_tf_static_reproduce_the_devkit(bags, nusc):
    messages = _read(bags["mcap"])
    poses = {}
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        for record in _scene_records(nusc, channel):
            poses[record["timestamp"] * 1000] = nusc.get("ego_pose", record["ego_pose_token"])
    tfs = [(t, m) for topic, t, m in messages if topic == "/tf"]
    odoms = [(t, m) for topic, t, m in messages if topic == "/odom"]
    for (t, tf), (t_odom, odom) in zip(tfs, odoms, strict=True):
        assert t == t_odom
        pose = poses[t]
        (transform,) = tf.transforms
        assert (transform.header.frame_id, transform.child_frame_id) == (
            "map",
            "base_link",
        )
        tr, q = transform.transform.translation, transform.transform.rotation
        assert [tr.x, tr.y, tr.z] == pose["translation"]
        assert [q.w, q.x, q.y, q.z] == pose["rotation"]
        p, o = odom.pose.pose.position, odom.pose.pose.orientation
        assert [p.x, p.y, p.z] == pose["translation"] and [o.w, o.x, o.y, o.z] == pose["rotation"]
        assert (odom.header.frame_id, odom.child_frame_id) == ("map", "base_link")
    # odometry twist: speed matches the distance travelled over the scene
    stamps = np.array([t for t, _ in odoms]) * 1e-9
    positions = np.array([poses[t]["translation"] for t, _ in odoms])
    mean_speed = np.linalg.norm(positions[-1] - positions[0]) / (stamps[-1] - stamps[0])
    speeds = [np.hypot(m.twist.twist.linear.x, m.twist.twist.linear.y) for _, m in odoms]
    assert np.median(speeds) == pytest.approx(mean_speed, rel=0.1)
    assert np.median([m.twist.twist.linear.x for _, m in odoms]) > 0  # forward in base_link
    (static,) = [m for topic, _, m in messages if topic == "/tf_static"]
    by_child = {t.child_frame_id: t for t in static.transforms}
    assert set(by_child) == {*CAMERA_NAMES, LIDAR_NAME}
    for channel, transform in by_child.items():
        cs = nusc.get(
            "calibrated_sensor",
            _scene_records(nusc, channel)[0]["calibrated_sensor_token"],
        )
        tr, q = transform.transform.translation, transform.transform.rotation
        assert transform.header.frame_id == "base_link"
        assert [tr.x, tr.y, tr.z] == cs["translation"] and [q.w, q.x, q.y, q.z] == cs["rotation"]


def test_tf_static_is_offered_transient_local(bags):
    for path in bags.values():
        with Reader(path) as reader:
            durability = {c.topic: c.ext.offered_qos_profiles[0].durability for c in reader.connections}
        assert durability["/tf_static"] == QosDurability.TRANSIENT_LOCAL
        assert {d for topic, d in durability.items() if topic != "/tf_static"} == {QosDurability.VOLATILE}
    assert "transient_local" in (bags["mcap"] / "metadata.yaml").read_text()


def test_occ_gt_reproduces_the_labels(bags, nusc, synth_dataroot):
    clouds = [(t, m) for topic, t, m in _read(bags["mcap"]) if topic == bag_layout.OCC_GT_TOPIC]
    records = _scene_records(nusc, LIDAR_NAME, keyframes_only=True)
    for record, (t, cloud) in zip(records, clouds, strict=True):
        labels = np.load(synth_dataroot / "gts" / SCENE / record["sample_token"] / "labels.npz")["semantics"]
        assert cloud.header.frame_id == "base_link" and t == record["timestamp"] * 1000
        np.testing.assert_array_equal(pointcloud2_to_occupancy(cloud), labels)


def test_sqlite3_and_mcap_carry_the_same_messages(bags):
    def raw(path: Path) -> list[tuple[str, str, int, bytes]]:
        with Reader(path) as reader:
            return [(c.topic, c.msgtype, t, bytes(data)) for c, t, data in reader.messages()]

    mcap, sqlite = raw(bags["mcap"]), raw(bags["sqlite3"])
    assert len(mcap) > 500
    assert sorted(mcap) == sorted(sqlite)
    assert (bags["mcap"] / f"{SCENE}.mcap").is_file()
    assert (bags["sqlite3"] / f"{SCENE}.db3").is_file()


def test_calibration_yaml_matches_the_calibrated_sensors(bags, nusc):
    calibration = load_calibration(bags["mcap"] / "calibration.yaml")
    assert list(calibration.sensors) == [*CAMERA_NAMES, LIDAR_NAME]
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        record = _scene_records(nusc, channel)[0]
        cs = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
        sensor = calibration[channel]
        np.testing.assert_allclose(sensor.translation, cs["translation"], atol=1e-12)
        np.testing.assert_allclose(np.abs(np.dot(sensor.rotation, cs["rotation"])), 1.0, atol=1e-9)
        if channel != LIDAR_NAME:
            np.testing.assert_array_equal(sensor.intrinsics, cs["camera_intrinsic"])
            assert sensor.image_size == (record["width"], record["height"])


def test_keyframes_only_writes_only_keyframes(tmp_path, nusc):
    options = ConvertOptions(progress=False, keyframes_only=True, storage="sqlite3")
    report = convert_scene(nusc, SCENE, tmp_path / "kf", options=options)
    keyframes = _scene_records(nusc, LIDAR_NAME, keyframes_only=True)
    assert report.message_counts[bag_layout.LIDAR_TOPIC] == len(keyframes)
    assert report.message_counts[bag_layout.image_topic("CAM_FRONT")] == len(keyframes)
    assert bag_layout.OCC_GT_TOPIC not in report.message_counts
    assert report.bag_bytes > report.source_bytes > 0


# ----------------------------------------------------------------------------------------------------------
# Failures: nothing half-written, every problem named
# ----------------------------------------------------------------------------------------------------------


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_exception_mid_way_leaves_no_bag_and_a_rerun_completes(tmp_path, nusc, monkeypatch):
    calls = {"n": 0}
    original = bag_converter.read_points

    def failing(path: Path) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected failure")
        return original(path)

    monkeypatch.setattr(bag_converter, "read_points", failing)
    with pytest.raises(RuntimeError, match="injected"):
        convert_scene(nusc, SCENE, tmp_path / SCENE, options=ConvertOptions(progress=False))
    assert calls["n"] == 4
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(bag_converter, "read_points", original)
    report = convert_scene(nusc, SCENE, tmp_path / SCENE, options=ConvertOptions(progress=False))
    assert _leftovers(tmp_path) == [SCENE]
    assert report.messages == sum(1 for _ in _read(tmp_path / SCENE))


_KILLED_RUN = """
import os, signal, sys
from fusionocc_ros import bag_converter
original, calls = bag_converter.read_points, [0]
def killing(path):
    calls[0] += 1
    if calls[0] == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(path)
bag_converter.read_points = killing
sys.exit(bag_converter.main(sys.argv[1:]))
"""


def test_killed_conversion_leaves_no_bag_and_a_rerun_cleans_up(tmp_path, synth_dataroot):
    out = tmp_path / "out"
    args = [str(synth_dataroot), "--out", str(out), "--scenes", SCENE, "--no-progress"]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, *args],
        cwd=REPO,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    assert not (out / SCENE).exists()
    assert all(name.startswith(".fusionocc-convert-") for name in _leftovers(out))  # hidden temporary only
    rerun = subprocess.run(
        [sys.executable, "-m", "fusionocc_ros.bag_converter", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _leftovers(out) == [SCENE]
    assert (out / SCENE / "metadata.yaml").is_file()


def _mirror(dataroot: Path, target: Path, *, skip: set[Path]) -> None:
    """A symlink copy of `dataroot` under `target` without the files in `skip` (absolute paths)."""
    for source in sorted(dataroot.rglob("*")):
        destination = target / source.relative_to(dataroot)
        if source.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif source not in skip:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.symlink_to(source)


def test_missing_source_file_is_named_before_anything_is_written(tmp_path, nusc, synth_dataroot):
    record = _scene_records(nusc, "CAM_BACK")[5]
    missing = synth_dataroot / record["filename"]
    _mirror(synth_dataroot, tmp_path / "root", skip={missing})
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=record["filename"].split("/")[-1]) as caught:
        convert_dataroot(
            tmp_path / "root",
            out,
            options=ConvertOptions(progress=False),
            scenes=[SCENE],
        )
    assert caught.value.path == tmp_path / "root" / record["filename"]
    assert "missing" in str(caught.value)
    assert _leftovers(out) == []


def test_missing_gts_named_only_when_asked(tmp_path, synth_dataroot):
    skip = set((synth_dataroot / "gts").rglob("*"))
    _mirror(synth_dataroot, tmp_path / "root", skip=skip)
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=r"gts.*needed for --with-occ-gt"):
        convert_dataroot(tmp_path / "root", out, options=QUIET, scenes=[SCENE])
    assert _leftovers(out) == []
    reports = convert_dataroot(
        tmp_path / "root",
        out,
        options=ConvertOptions(progress=False, keyframes_only=True),
        scenes=[SCENE],
    )
    assert reports[0].path == out / SCENE


def test_corrupt_point_cloud_is_named_and_nothing_is_left(tmp_path, nusc, synth_dataroot):
    record = _scene_records(nusc, LIDAR_NAME)[2]
    source = synth_dataroot / record["filename"]
    _mirror(synth_dataroot, tmp_path / "root", skip={source})
    corrupt = tmp_path / "root" / record["filename"]
    corrupt.write_bytes(source.read_bytes()[:-6])
    out = tmp_path / "out"
    with pytest.raises(SourceError, match="corrupt point cloud") as caught:
        convert_dataroot(
            tmp_path / "root",
            out,
            options=ConvertOptions(progress=False),
            scenes=[SCENE],
        )
    assert caught.value.path == corrupt
    assert _leftovers(out) == []


def test_corrupt_image_is_named_and_nothing_is_left(tmp_path, nusc, synth_dataroot):
    record = _scene_records(nusc, "CAM_BACK_LEFT")[3]
    source = synth_dataroot / record["filename"]
    _mirror(synth_dataroot, tmp_path / "root", skip={source})
    corrupt = tmp_path / "root" / record["filename"]
    corrupt.write_bytes(b"not a jpeg" * 100)
    out = tmp_path / "out"
    with pytest.raises(SourceError, match="corrupt image") as caught:
        convert_dataroot(tmp_path / "root", out, options=ConvertOptions(progress=False), scenes=[SCENE])
    assert caught.value.path == corrupt
    assert _leftovers(out) == []


def test_camera_info_follows_the_jpeg_size(tmp_path, nusc, synth_dataroot):
    """An image stored at half the sample_data size gets its intrinsics scaled with it."""
    from PIL import Image

    record = _scene_records(nusc, "CAM_FRONT", keyframes_only=True)[1]
    source = synth_dataroot / record["filename"]
    _mirror(synth_dataroot, tmp_path / "root", skip={source})
    half = (record["width"] // 2, record["height"] // 2)
    Image.open(source).resize(half).save(tmp_path / "root" / record["filename"], quality=90)
    options = ConvertOptions(progress=False, keyframes_only=True)
    (report,) = convert_dataroot(tmp_path / "root", tmp_path / "out", options=options, scenes=[SCENE])
    infos = [m for topic, _, m in _read(report.path) if topic == bag_layout.camera_info_topic("CAM_FRONT")]
    k = np.asarray(nusc.get("calibrated_sensor", record["calibrated_sensor_token"])["camera_intrinsic"])
    scale = np.diag([half[0] / record["width"], half[1] / record["height"], 1.0])
    assert (infos[1].width, infos[1].height) == half
    np.testing.assert_allclose(infos[1].k.reshape(3, 3), scale @ k)
    assert (infos[0].width, infos[0].height) == (record["width"], record["height"])
    np.testing.assert_array_equal(infos[0].k.reshape(3, 3), k)


def test_missing_table_unknown_scene_and_existing_destination(tmp_path, synth_dataroot, bags):
    root = tmp_path / "root"
    _mirror(synth_dataroot, root, skip={synth_dataroot / "v1.0-mini" / "ego_pose.json"})
    with pytest.raises(ConvertError, match="ego_pose.json"):
        convert_dataroot(root, tmp_path / "out", options=QUIET)
    with pytest.raises(ConvertError, match="scene-9999.*scene-0001"):
        convert_dataroot(synth_dataroot, tmp_path / "out", options=QUIET, scenes=["scene-9999"])
    # A complete bag of the same options is kept (an interrupted run continues); other options are refused.
    with pytest.raises(ConvertError, match="exist.*other options.*not overwriting"):
        convert_dataroot(synth_dataroot, bags["mcap"].parent, options=ConvertOptions(progress=False),
                         scenes=[SCENE])
    with pytest.raises(ConvertError, match="storage 'rosbag'"):
        ConvertOptions(storage="rosbag")
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_a_bag(tmp_path, nusc):
    path = tmp_path / SCENE
    convert_scene(nusc, SCENE, path, options=ConvertOptions(progress=False, keyframes_only=True))
    first = len(_read(path))
    convert_scene(nusc, SCENE, path, options=ConvertOptions(progress=False, overwrite=True))
    assert len(_read(path)) > first
    assert _leftovers(tmp_path) == [SCENE]


def test_fusionocc_convert_cli(tmp_path, synth_dataroot, capsys):
    from fusionocc_ros.cli import main

    out = tmp_path / "out"
    code = main(
        [
            "convert",
            str(synth_dataroot),
            "--out",
            str(out),
            "--all",
            "--keyframes-only",
            "--storage",
            "sqlite3",
            "--distro",
            "humble",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("messages") == 2 and str(out / SCENE) in printed
    metadata = (out / SCENE / "metadata.yaml").read_text()
    assert "version: 8" in metadata and "storage_identifier: sqlite3" in metadata
    assert "type_description_hash" not in metadata  # Humble's rosbag2 does not know the field
    with Reader(out / SCENE) as reader:
        assert reader.message_count > 100
    assert main(["convert", str(tmp_path / "nowhere"), "--out", str(out), "--all"]) == 1
    assert "nowhere is not a directory" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["scene-0001", "scene-0002"]
