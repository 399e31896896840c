"""ROS message <-> numpy conversions checked against ROS message semantics with hand-built messages."""
from __future__ import annotations

import array
import io

import numpy as np
import pytest

pytest.importorskip("rclpy")
from nav_msgs.msg import OccupancyGrid
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from fusionocc_core.occ3d import CLASS_COLORS, FREE_LABEL, GRID_SHAPE
from fusionocc_ros import conversions as conv
from fusionocc_ros.conversions import ConversionError

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def _image(encoding: str, pixels: np.ndarray, *, step: int, bigendian: bool = False) -> Image:
    """Image whose rows are `pixels` rows (raw bytes) followed by padding up to `step`."""
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.full((height, step), 0xAB, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image(height=height, width=pixels.shape[1], encoding=encoding, step=step,
                is_bigendian=int(bigendian))
    msg.data = array.array("B", padded.tobytes())
    return msg


@pytest.mark.parametrize("encoding,channels", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]),
                                               ("rgba8", [0, 1, 2, None]), ("bgra8", [2, 1, 0, None])])
def test_colour_images_with_row_padding_decode_to_rgb(encoding, channels):
    alpha = np.full(RGB.shape[:2], 77, np.uint8)
    stacked = np.stack([RGB[:, :, c] if c is not None else alpha for c in channels], axis=-1)
    msg = _image(encoding, stacked, step=7 * len(channels) + 5)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


def test_mono8_is_replicated_to_three_channels():
    mono = RGB[:, :, 0]
    out = conv.image_to_rgb(_image("mono8", mono[:, :, None], step=8))
    assert out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_images_honour_is_bigendian(bigendian):
    wide = RGB.astype(np.uint16) * 256 + 17  # high byte = RGB, low byte = noise
    raw = wide.astype(">u2" if bigendian else "<u2")
    msg = _image("rgb16", raw, step=7 * 6 + 2, bigendian=bigendian)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


def test_rgb_to_image_round_trip_and_bgr():
    for encoding in ("rgb8", "bgr8"):
        msg = conv.rgb_to_image(RGB, encoding=encoding)
        assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, 21, encoding)
        np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)
    raw_bgr = np.frombuffer(conv.rgb_to_image(RGB, encoding="bgr8").data, np.uint8).reshape(5, 7, 3)
    np.testing.assert_array_equal(raw_bgr[:, :, 0], RGB[:, :, 2])


@pytest.mark.parametrize("mutate,match", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding 'yuv422'"),
    (lambda m: setattr(m, "step", 20), "step 20 is smaller"),
    (lambda m: setattr(m, "data", m.data[:-1]), "truncated"),
    (lambda m: setattr(m, "height", 0), "zero size"),
])
def test_bad_images_raise_conversion_error(mutate, match):
    msg = conv.rgb_to_image(RGB)
    mutate(msg)
    with pytest.raises(ConversionError, match=match) as error:
        conv.image_to_rgb(msg)
    assert issubclass(ConversionError, ValueError)
    assert error.value.reason in ("encoding", "layout", "truncated")
    with pytest.raises(ConversionError, match=match):
        conv.check_image(msg)


def test_image_size_must_match_camera_info_unless_unknown():
    msg = conv.rgb_to_image(RGB)  # 7 x 5
    conv.check_image_size(msg, 7, 5)
    conv.check_image_size(msg, 0, 0)  # no size in the camera_info
    with pytest.raises(ConversionError, match="image is 7x5, camera_info says 8x5") as error:
        conv.check_image_size(msg, 8, 5)
    assert error.value.reason == "size"
    with pytest.raises(ConversionError, match="no data") as error:
        conv.check_compressed_image(CompressedImage(format="jpeg"))
    assert error.value.reason == "empty"


K = np.array([[800.0, 0.0, 800.0], [0.0, 800.0, 450.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("mutate,problem", [
    (lambda k: None, ""),
    (lambda k: k.__setitem__((0, 0), np.nan), "non-finite values"),
    (lambda k: k.__setitem__((1, 1), 0.0), "focal lengths must be positive"),
    (lambda k: k.__setitem__((1, 0), 3.0), "not a pinhole matrix"),
    (lambda k: k.__setitem__((2, 2), 0.0), "not a pinhole matrix"),
    (lambda k: k.__setitem__((0, 2), 1601.0), "principal point (1601, 450) outside the 1600 x 900 image"),
])
def test_intrinsics_problem_names_what_is_wrong(mutate, problem):
    k = K.copy()
    mutate(k)
    found = conv.intrinsics_problem(k, 1600, 900)
    assert found.startswith(problem) if problem else found == ""
    if "principal point" in problem:
        assert conv.intrinsics_problem(k, 0, 0) == ""  # size unknown: the principal point is not checked


def test_intrinsics_scale_follows_a_reduced_decode_and_refuses_another_aspect():
    np.testing.assert_allclose(conv.intrinsics_scale((450, 800, 3), 1600, 900) @ K,
                               [[400.0, 0.0, 400.0], [0.0, 400.0, 225.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(conv.intrinsics_scale((450, 800, 3), 0, 0), np.eye(3))
    np.testing.assert_allclose(np.diag(conv.intrinsics_scale((113, 200, 3), 1600, 900)), [0.125, 113 / 900, 1])
    with pytest.raises(ConversionError, match="image is 800x800, camera_info says 1600x900") as error:
        conv.intrinsics_scale((800, 800, 3), 1600, 900)
    assert error.value.reason == "size"


def test_missing_views_get_their_camera_size_and_intrinsics_else_a_present_ones():
    present = (np.full((4, 6, 3), 9, np.uint8), K)
    other_k = K * [[0.5], [0.5], [1.0]]
    images, intrinsics = conv.fill_missing_views(
        [None, present, None, None],
        [conv.CameraModel(other_k, 8, 2), None, None, conv.CameraModel(other_k, 0, 0)],
    )
    assert [image.shape for image in images] == [(2, 8, 3), (4, 6, 3), (4, 6, 3), (4, 6, 3)]
    assert not images[0].any() and not images[2].any() and images[1] is present[0]
    np.testing.assert_array_equal(intrinsics, np.stack([other_k, K, K, K]))


def test_odometry_pose_normalises_the_quaternion_and_refuses_broken_poses():
    from nav_msgs.msg import Odometry

    msg = Odometry()
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = 1.0, 2.0, 3.0
    q.w, q.x, q.y, q.z = 0.6, 0.0, 0.0, 0.8 * 1.005
    translation, quaternion = conv.odometry_pose(msg)
    np.testing.assert_array_equal(translation, [1.0, 2.0, 3.0])
    assert np.linalg.norm(quaternion) == pytest.approx(1.0)
    for bad in (lambda: setattr(p, "x", float("nan")), lambda: setattr(q, "w", 0.5)):
        bad()
        with pytest.raises(ConversionError, match="quaternion norm") as error:
            conv.odometry_pose(msg)
        assert error.value.reason == "pose"


def _encoded(fmt: str, pixels: np.ndarray, **kwargs) -> CompressedImage:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    msg = CompressedImage(format=fmt.lower())
    msg.data = array.array("B", buffer.getvalue())
    return msg


def test_png_decodes_losslessly_and_jpeg_closely():
    big = RNG.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conv.compressed_image_to_rgb(_encoded("PNG", big)), big)
    smooth = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 64, 3)).copy()
    out = conv.compressed_image_to_rgb(_encoded("JPEG", smooth, quality=95))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_jpeg_draft_decodes_at_reduced_scale_not_below_min_size():
    image = np.zeros((900, 1600, 3), np.uint8)
    image[:, 800:] = 200
    msg = _encoded("JPEG", image, quality=90)
    assert conv.compressed_image_to_rgb(msg, min_size=(704, 256)).shape == (450, 800, 3)  # 1/2
    assert conv.compressed_image_to_rgb(msg, min_size=(200, 100)).shape == (113, 200, 3)  # 1/8, rounded up
    assert conv.compressed_image_to_rgb(msg).shape == (900, 1600, 3)


def test_corrupt_or_empty_compressed_image_raises():
    msg = _encoded("JPEG", RGB)
    msg.data = msg.data[:40]
    with pytest.raises(ConversionError, match="cannot decode compressed image"):
        conv.compressed_image_to_rgb(msg)
    with pytest.raises(ConversionError, match="no data"):
        conv.compressed_image_to_rgb(CompressedImage(format="jpeg"))


# ------------------------------------------------------------------------------------------------ clouds

def _cloud(fields, record: np.ndarray, *, height: int = 1, row_pad: int = 0, bigendian: bool = False):
    msg = PointCloud2()
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    msg.is_bigendian = bigendian
    msg.point_step = record.dtype.itemsize
    msg.height, msg.width = height, record.size // height
    msg.row_step = msg.width * msg.point_step + row_pad
    rows = record.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = np.full((height, msg.row_step), 0xEE, np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg.data = array.array("B", padded.tobytes())
    return msg


def _points(n: int) -> np.ndarray:
    pts = np.zeros((n, 5), np.float32)
    pts[:, :3] = RNG.uniform(-50, 50, (n, 3))
    pts[:, 3] = RNG.uniform(0, 255, n).round()
    pts[:, 4] = RNG.integers(0, 32, n)
    return pts


@pytest.mark.parametrize("bigendian", [False, True])
def test_pointcloud2_any_field_order_padding_extra_fields_and_endianness(bigendian):
    pts = _points(12)
    e = ">" if bigendian else "<"
    # Field order scrambled, an extra float64 'time' field, intensity as uint8, ring uint16, 3 pad bytes.
    dtype = np.dtype({"names": ["ring", "time", "z", "intensity", "x", "y"],
                      "formats": [e + "u2", e + "f8", e + "f4", "u1", e + "f4", e + "f4"],
                      "offsets": [0, 2, 10, 14, 15, 19], "itemsize": 26})
    record = np.zeros(12, dtype)
    record["x"], record["y"], record["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    record["intensity"], record["ring"], record["time"] = pts[:, 3], pts[:, 4], 1.5
    f32 = PointField.FLOAT32
    fields = [("ring", 0, PointField.UINT16), ("time", 2, PointField.FLOAT64), ("z", 10, f32),
              ("intensity", 14, PointField.UINT8), ("x", 15, f32), ("y", 19, f32)]
    for height, row_pad in ((1, 0), (3, 5)):  # organised cloud with padded rows
        decoded = conv.pointcloud2_to_xyzir(_cloud(fields, record, height=height, row_pad=row_pad,
                                                   bigendian=bigendian))
        assert decoded.dropped_non_finite == 0
        np.testing.assert_array_equal(decoded.points, pts)


def test_missing_ring_gives_zero_and_nan_inf_points_are_dropped_and_counted():
    pts = _points(10)
    pts[2, 0], pts[5, 2], pts[7, 3] = np.nan, np.inf, -np.inf
    dtype = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4,
                      "offsets": [0, 4, 8, 12], "itemsize": 16})
    record = np.zeros(10, dtype)
    for c, name in enumerate(dtype.names):
        record[name] = pts[:, c]
    fields = [(n, 4 * i, PointField.FLOAT32) for i, n in enumerate(dtype.names)]
    decoded = conv.pointcloud2_to_xyzir(_cloud(fields, record))
    assert decoded.dropped_non_finite == 3
    keep = [0, 1, 3, 4, 6, 8, 9]
    np.testing.assert_array_equal(decoded.points[:, :4], pts[keep, :4])
    assert (decoded.points[:, 4] == 0).all()


def test_xyzir_to_pointcloud2_round_trip():
    pts = _points(100)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzir(conv.xyzir_to_pointcloud2(pts)).points, pts)


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m.fields.pop(1), "lacks field.*y"),
    (lambda m: setattr(m, "data", m.data[:-3]), "truncated"),
    (lambda m: setattr(m, "row_step", 10), "row_step 10 is smaller"),
    (lambda m: setattr(m.fields[4], "offset", 19), "does not fit in point_step"),
    (lambda m: setattr(m.fields[0], "datatype", 42), "unknown datatype 42"),
])
def test_bad_pointclouds_raise_conversion_error(mutate, match):
    msg = conv.xyzir_to_pointcloud2(_points(4))
    mutate(msg)
    with pytest.raises(ConversionError, match=match):
        conv.pointcloud2_to_xyzir(msg)


# ----------------------------------------------------------------------------------------------- outputs

def _labels() -> np.ndarray:
    labels = np.full(GRID_SHAPE, FREE_LABEL, np.uint8)
    labels[:, :, 2] = 11  # driveable surface everywhere
    labels[120, 100, 3:6] = 4  # a car column ahead
    labels[10, 190, 8] = 16  # vegetation
    labels[0, 0, 0] = 0  # others in the corner voxel
    return labels


def test_occupancy_pointcloud2_layout_colour_and_round_trip():
    labels = _labels()
    header = Header(frame_id="base_link")
    header.stamp.sec = 42
    msg = conv.occupancy_to_pointcloud2(labels, header=header)
    assert msg.header.frame_id == "base_link" and msg.header.stamp.sec == 42
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("label", 16, 2)]
    assert msg.width == int((labels != FREE_LABEL).sum()) and msg.point_step == 20 and not msg.is_bigendian
    raw = np.frombuffer(msg.data, np.uint8).reshape(-1, 20)
    xyz = raw[:, :12].copy().view("<f4")
    rgb = raw[:, 12:16].copy().view("<u4")[:, 0]
    label = raw[:, 16]
    car = label == 4
    np.testing.assert_allclose(xyz[car][0], [-40 + 0.4 * 120.5, -40 + 0.4 * 100.5, -1 + 0.4 * 3.5], atol=1e-5)
    assert (rgb[car] == (0 << 16 | 150 << 8 | 245)).all()
    assert (raw[:, 19] == 0).all()
    np.testing.assert_array_equal(conv.pointcloud2_to_occupancy(msg), labels)


def test_dense_grid_image_is_lossless_and_indexed_xyz():
    labels = _labels()
    msg = conv.dense_grid_to_image(labels, header=Header(frame_id="base_link"))
    assert (msg.height, msg.width, msg.encoding, msg.step) == (200, 200, "8UC16", 3200)
    data = np.frombuffer(msg.data, np.uint8)
    assert data[120 * 3200 + 100 * 16 + 4] == 4  # labels[x=120, y=100, z=4]
    np.testing.assert_array_equal(conv.image_to_dense_grid(msg), labels)
    msg.encoding = "mono8"
    with pytest.raises(ConversionError, match="dense grid image"):
        conv.image_to_dense_grid(msg)


def test_occupancy_grid_marks_non_ground_columns_row_major_in_y():
    labels = _labels()
    msg = conv.occupancy_to_occupancy_grid(labels, header=Header(frame_id="base_link"))
    assert isinstance(msg, OccupancyGrid)
    assert (msg.info.width, msg.info.height) == (200, 200)
    assert msg.info.resolution == pytest.approx(0.4)
    assert (msg.info.origin.position.x, msg.info.origin.position.y, msg.info.origin.orientation.w) == \
        (-40.0, -40.0, 1.0)
    data = np.frombuffer(msg.data, np.int8)
    assert data[100 * 200 + 120] == 100  # car at x=120, y=100
    assert data[190 * 200 + 10] == 100 and data[0] == 100  # vegetation, others
    assert data[120 * 200 + 100] == 0  # transposed position: only ground
    assert int((data == 100).sum()) == 3 and int((data == 0).sum()) == 200 * 200 - 3
    known = np.ones((200, 200), bool)
    known[5, 6] = False
    bev = conv.occupancy_grid_to_bev(conv.occupancy_to_occupancy_grid(labels, known=known))
    assert bev[5, 6] == -1 and bev[120, 100] == 100


def test_marker_array_one_cube_list_per_class_with_colours_and_cap():
    labels = _labels()
    markers, stats = conv.occupancy_to_marker_array(labels, header=Header(frame_id="base_link"), alpha=0.8,
                                                    max_cubes=50_000)
    assert markers.markers[0].action == Marker.DELETEALL
    by_id = {m.id: m for m in markers.markers[1:]}
    assert sorted(by_id) == [0, 4, 11, 16]
    car = by_id[4]
    assert car.type == Marker.CUBE_LIST and car.ns == "occupancy/car" and len(car.points) == 3
    assert car.scale.x == pytest.approx(0.4)
    assert (car.color.r, car.color.g, car.color.b) == pytest.approx(tuple(CLASS_COLORS[4] / 255.0))
    assert car.color.a == pytest.approx(0.8)
    assert stats.cubes == int((labels != FREE_LABEL).sum()) and stats.capped == 0
    assert sum(len(m.points) for m in markers.markers[1:]) == stats.cubes

    capped, stats = conv.occupancy_to_marker_array(labels, max_cubes=1000)
    assert stats.cubes == 1000 and stats.capped == int((labels != FREE_LABEL).sum()) - 1000
    assert sum(len(m.points) for m in capped.markers[1:]) == 1000
    kept = np.array([[p.x, p.y] for m in capped.markers[1:] for p in m.points])
    assert np.abs(kept).max() < 7.0  # the ~32 x 32 columns nearest to the ego are kept
    assert 0 not in {m.id for m in capped.markers[1:]}  # the far corner voxel is left out


def test_labels_with_wrong_shape_dtype_or_values_are_rejected():
    with pytest.raises(ConversionError, match="shape"):
        conv.occupancy_to_pointcloud2(np.zeros((200, 200, 15), np.uint8))
    with pytest.raises(ConversionError, match="uint8"):
        conv.dense_grid_to_image(np.zeros(GRID_SHAPE, np.int64))
    with pytest.raises(ConversionError, match="class id"):
        conv.bev_obstacles(np.full(GRID_SHAPE, 18, np.uint8))


def test_a_compressed_image_declaring_a_huge_size_is_rejected_before_decoding():
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)  # 60000 x 60000 RGB, 8 bit
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    msg = CompressedImage(format="png")
    msg.data = array.array("B", png)
    with pytest.raises(ConversionError, match="too large") as error:
        conv.compressed_image_to_rgb(msg)
    assert error.value.reason == "size"


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 1.0])
def test_occupied_voxels_equals_argwhere(fraction):
    rng = np.random.default_rng(3)
    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    occupied = rng.random(GRID_SHAPE) < fraction
    labels[occupied] = rng.integers(0, FREE_LABEL, size=int(occupied.sum()))
    indices, values = conv.occupied_voxels(labels)
    expected = np.argwhere(labels != FREE_LABEL)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(values, labels[tuple(expected.T)])
