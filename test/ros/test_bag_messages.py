"""The converter's payload encoders, source readers and message builders (no nuScenes dataroot needed): each
message is serialized to CDR with rosbags, read back, and where the occupancy node has a decoder, decoded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.interfaces import QosDurability

from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE
from fusionocc_ros import bag_layout as layout
from fusionocc_ros.bag_messages import (
    MessageBuilder,
    lidar_payload,
    occ_payload,
    offered_qos,
    read_jpeg,
    read_points,
    scale_intrinsics,
    topic_qos,
    typestore,
    velocities,
)
from fusionocc_ros.cloud_layouts import LIDAR_FIELDS, LIDAR_POINT_STEP, OCC_FIELDS, OCC_POINT_STEP
from fusionocc_ros.conversions import pointcloud2_to_occupancy, pointcloud2_to_xyzir
from fusionocc_ros.errors import SourceError


def _round_trip(builder: MessageBuilder, message: object, msgtype: str) -> object:
    return builder.store.deserialize_cdr(builder.store.serialize_cdr(message, msgtype), msgtype)


@pytest.fixture(scope="module", params=["humble", "jazzy"])
def builder(request: pytest.FixtureRequest) -> MessageBuilder:
    return MessageBuilder(typestore(request.param))


def test_lidar_payload_packs_the_pointcloud2_record_and_rounds_the_ring():
    points = np.array([[1.5, -2.0, 0.25, 7.0, 3.6], [0, 0, 0, 0, -2.0], [1e3, 2e3, -3e3, 255, 7e4]], np.float32)
    payload = lidar_payload(points)
    assert payload.dtype.itemsize == LIDAR_POINT_STEP
    raw = np.frombuffer(payload.tobytes(), np.uint8).reshape(3, LIDAR_POINT_STEP)
    np.testing.assert_array_equal(raw[:, :16].copy().view("<f4"), points[:, :4])
    np.testing.assert_array_equal(raw[:, 16:18].copy().view("<u2")[:, 0], [4, 0, 65535])  # rounded, clipped
    assert not raw[:, 18:].any()  # padding is zero


def test_lidar_cloud_round_trips_through_cdr_and_the_nodes_decoder(builder):
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(size=(50, 4)), rng.integers(0, 32, (50, 1))], axis=1).astype(np.float32)
    cloud = builder.cloud(1_700_000_000_250_000, "LIDAR_TOP", LIDAR_FIELDS, lidar_payload(points),
                          LIDAR_POINT_STEP)
    read = _round_trip(builder, cloud, layout.POINTCLOUD2_TYPE)
    assert (read.height, read.width, read.row_step, read.is_dense) == (1, 50, 50 * LIDAR_POINT_STEP, True)
    assert [(f.name, f.offset, f.datatype) for f in read.fields] == list(LIDAR_FIELDS)
    decoded = pointcloud2_to_xyzir(read)
    np.testing.assert_array_equal(decoded.points, points)


def test_occ_payload_round_trips_to_the_label_grid(builder):
    grid = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    grid[0, 0, 0], grid[199, 199, 15], grid[100, 37, 5] = 1, 11, 4
    payload = occ_payload(grid)
    assert payload.shape == (3,)
    np.testing.assert_allclose([payload["x"][0], payload["y"][0], payload["z"][0]],
                               np.asarray(POINT_CLOUD_RANGE[:3]) + VOXEL_SIZE / 2, rtol=1e-6)
    cloud = builder.cloud(1, layout.EGO_FRAME, OCC_FIELDS, payload, OCC_POINT_STEP)
    np.testing.assert_array_equal(pointcloud2_to_occupancy(_round_trip(builder, cloud, layout.POINTCLOUD2_TYPE)),
                                  grid)


def test_read_points_refuses_a_partial_point(tmp_path: Path):
    points = np.arange(10, dtype=np.float32).reshape(2, 5)
    good, bad = tmp_path / "good.pcd.bin", tmp_path / "bad.pcd.bin"
    good.write_bytes(points.tobytes())
    bad.write_bytes(points.tobytes() + b"\0" * 6)
    np.testing.assert_array_equal(read_points(good), points)
    with pytest.raises(SourceError, match="corrupt point cloud") as caught:
        read_points(bad)
    assert caught.value.path == bad


def test_read_jpeg_gives_the_bytes_and_size_and_refuses_other_files(tmp_path: Path):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, format="JPEG")
    jpeg = tmp_path / "a.jpg"
    jpeg.write_bytes(buffer.getvalue())
    assert read_jpeg(jpeg) == (buffer.getvalue(), (40, 30))
    png = tmp_path / "b.jpg"
    Image.new("RGB", (4, 3)).save(png, format="PNG")
    with pytest.raises(SourceError, match="expected a JPEG image, found PNG"):
        read_jpeg(png)
    garbage = tmp_path / "c.jpg"
    garbage.write_bytes(b"not a jpeg" * 10)
    with pytest.raises(SourceError, match="corrupt image") as caught:
        read_jpeg(garbage)
    assert caught.value.path == garbage
    with pytest.raises(SourceError, match="cannot read"):
        read_jpeg(tmp_path / "missing.jpg")


def test_scale_intrinsics_follows_the_stored_size():
    k = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    np.testing.assert_array_equal(scale_intrinsics(k, (1600, 900), (1600, 900)), k)
    half = scale_intrinsics(k, (800, 450), (1600, 900))
    np.testing.assert_allclose(half, [[633.2, 0, 408.15], [0, 633.2, 245.75], [0, 0, 1]])


def _yaw(angles: np.ndarray) -> np.ndarray:
    c, s = np.cos(angles), np.sin(angles)
    rotations = np.zeros((len(angles), 3, 3))
    rotations[:, 0, 0], rotations[:, 0, 1], rotations[:, 1, 0], rotations[:, 1, 1] = c, -s, s, c
    rotations[:, 2, 2] = 1
    return rotations


def test_velocities_are_in_the_ego_frame():
    stamps = np.arange(5, dtype=np.int64) * 100_000  # 10 Hz
    t = stamps * 1e-6
    # Heading +y in the map (yaw 90 deg) at 2 m/s: forward in base_link.
    translations = np.stack([np.zeros(5), 2.0 * t, np.zeros(5)], axis=1)
    linear, angular = velocities(stamps, translations, _yaw(np.full(5, np.pi / 2)))
    np.testing.assert_allclose(linear, np.tile([2.0, 0, 0], (5, 1)), atol=1e-9)
    np.testing.assert_allclose(angular, 0, atol=1e-9)
    # Turning in place at 0.3 rad/s.
    linear, angular = velocities(stamps, np.zeros((5, 3)), _yaw(0.3 * t))
    np.testing.assert_allclose(linear, 0, atol=1e-9)
    np.testing.assert_allclose(angular, np.tile([0, 0, 0.3], (5, 1)), atol=1e-9)
    linear, angular = velocities(stamps[:1], translations[:1], _yaw(np.zeros(1)))
    assert linear.shape == angular.shape == (1, 3) and not linear.any() and not angular.any()


def test_header_transform_and_odometry(builder):
    stamp_us = 1_700_000_000_123_456
    header = builder.header(stamp_us, "map")
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (1_700_000_000, 123_456_000, "map")
    wxyz = [0.5, 0.5, -0.5, 0.5]
    tf = builder.TFMessage(transforms=[builder.transform(stamp_us, "base_link", "CAM_FRONT", [1, 2, 3], wxyz)])
    (read,) = _round_trip(builder, tf, layout.TF_TYPE).transforms
    rotation = read.transform.rotation
    assert [rotation.w, rotation.x, rotation.y, rotation.z] == wxyz  # nuScenes w first, ROS w last
    assert (read.header.frame_id, read.child_frame_id, read.transform.translation.z) == ("base_link",
                                                                                          "CAM_FRONT", 3.0)
    odometry = builder.odometry(stamp_us, np.array([4.0, 5, 6]), np.array(wxyz), np.array([2.0, 0, 0]),
                                np.array([0, 0, 0.3]))
    read = _round_trip(builder, odometry, layout.ODOM_TYPE)
    assert (read.header.frame_id, read.child_frame_id) == (layout.MAP_FRAME, layout.EGO_FRAME)
    assert (read.pose.pose.position.y, read.twist.twist.linear.x, read.twist.twist.angular.z) == (5.0, 2.0, 0.3)
    assert read.pose.covariance.shape == (36,) and not read.pose.covariance.any()


def test_camera_info_and_compressed_image(builder):
    k = np.array([[600.0, 0, 320], [0, 610, 240], [0, 0, 1]])
    info = _round_trip(builder, builder.camera_info(5, "CAM_BACK", k, 640, 480), layout.CAMERA_INFO_TYPE)
    assert (info.width, info.height, info.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(info.k.reshape(3, 3), k)
    np.testing.assert_array_equal(info.p.reshape(3, 4), np.hstack([k, np.zeros((3, 1))]))
    np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))
    assert info.d.shape == (5,) and not info.d.any()
    image = builder.compressed_image(5, "CAM_BACK", b"\xff\xd8jpeg bytes\xff\xd9")
    read = _round_trip(builder, image, layout.COMPRESSED_IMAGE_TYPE)
    assert (read.format, read.data.tobytes()) == ("jpeg", b"\xff\xd8jpeg bytes\xff\xd9")


def test_only_tf_static_is_latched():
    assert topic_qos(layout.TF_STATIC_TOPIC) == (layout.STATIC_DEPTH, True)
    assert topic_qos(layout.ODOM_TOPIC) == topic_qos(layout.TF_TOPIC) == (layout.POSE_DEPTH, False)
    assert topic_qos(layout.LIDAR_TOPIC) == (layout.SENSOR_DEPTH, False)
    assert offered_qos(layout.TF_STATIC_TOPIC).durability == QosDurability.TRANSIENT_LOCAL
    assert offered_qos(layout.image_topic("CAM_FRONT")).durability == QosDurability.VOLATILE
