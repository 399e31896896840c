"""ROS 2 sensor messages -> numpy for the occupancy node: images (raw and compressed), point clouds, camera
intrinsics checks and odometry poses (a small, tested stand-in for cv_bridge and sensor_msgs_py, which have no
wheels). The occupancy outputs are in `fusionocc_ros.conversions`.

Every decoder reads the message's own layout description (`step`, `point_step`, `row_step`, field offsets
and datatypes, `is_bigendian`) with vectorised numpy views; nothing loops over pixels or points in Python.
Decoders and checks only read attributes, so they accept rclpy messages and rosbags' message objects alike
(the message types in the signatures name the ROS type meant). Every failure raises `ConversionError` (a
`ValueError`) whose message names the problem. Importing this module imports no message package: the builders
import theirs when called.
"""


from __future__ import annotations

import array
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fusionocc_core.errors import FusionOccError
from fusionocc_ros.cloud_layouts import LIDAR_FIELDS, LIDAR_POINT_STEP, LIDAR_RECORD, POINTFIELD_DTYPES

if TYPE_CHECKING:  # annotations only: the module must import without the ROS message packages
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CompressedImage, Image, PointCloud2
    from std_msgs.msg import Header


# Image encodings -> (channels, bytes per channel, order of R, G, B in the channels; None = mono).
_IMAGE_ENCODINGS: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "8UC1": (1, 1, None),
    "8UC3": (3, 1, (2, 1, 0)),  # OpenCV convention: BGR
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "mono16": (1, 2, None),
}
SUPPORTED_IMAGE_ENCODINGS: tuple[str, ...] = tuple(_IMAGE_ENCODINGS)
MAX_COMPRESSED_PIXELS = 8192 * 8192  # largest declared size decoded from a CompressedImage [pixels]


class ConversionError(FusionOccError, ValueError):
    """A message could not be converted; the message says which field is wrong and how.

    Attributes:
        reason: short machine-readable category for counters ("encoding", "layout", "truncated", "fields",
            "decode", "empty", "size", "pose", "labels", "invalid").
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class _DeclaredSizeError(Exception):
    """Internal: a compressed image's header declares an unacceptable size."""


def as_uint8(data: np.ndarray | bytes | bytearray | memoryview | array.array | Sequence[int]) -> np.ndarray:
    """Zero-copy uint8 view of a message's `data` (array.array, bytes, memoryview, list or ndarray)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)


def byte_array(buffer: bytes | np.ndarray, typecode: str = "B") -> array.array:
    """array.array for a message field (the rclpy setter accepts it without a per-element check)."""
    return array.array(typecode, buffer.tobytes() if isinstance(buffer, np.ndarray) else buffer)


# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------


def check_image(msg: Image) -> tuple[int, int, int]:
    """Checks a `sensor_msgs/Image`'s layout without decoding it (cheap enough for a subscription callback).

    Returns:
        (channels, bytes per channel, bytes per row without padding).

    Raises:
        ConversionError: unsupported encoding (reason "encoding"), zero size or `step` too small ("layout"),
            data shorter than height * step ("truncated").
    """
    encoding = str(msg.encoding)
    if encoding not in _IMAGE_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_IMAGE_ENCODINGS)}",
            reason="encoding",
        )
    channels, depth, _ = _IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(f"image has zero size ({width} x {height})", reason="layout")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ConversionError(
            f"image step {step} is smaller than width {width} x {channels * depth} bytes per "
            f"pixel = {row_bytes} for {encoding}",
            reason="layout",
        )
    size = len(msg.data)
    if size < height * step:
        raise ConversionError(
            f"image data truncated: {size} bytes, expected height {height} x step {step} = {height * step}",
            reason="truncated",
        )
    return channels, depth, row_bytes


def check_image_size(msg: Image, width: int, height: int) -> None:
    """Checks that a `sensor_msgs/Image` has the size its camera_info gives (width 0: size unknown, any goes).

    Raises:
        ConversionError: another size (reason "size"); the intrinsics would not fit the image.
    """
    if width and (msg.width, msg.height) != (width, height):
        raise ConversionError(
            f"image is {msg.width}x{msg.height}, camera_info says {width}x{height}", reason="size"
        )


def check_compressed_image(msg: CompressedImage) -> None:
    """Checks a `sensor_msgs/CompressedImage` without decoding it (decoding is the worker's job).

    Raises:
        ConversionError: no data (reason "empty").
    """
    if len(msg.data) == 0:
        raise ConversionError("compressed image has no data", reason="empty")


def intrinsics_problem(k: np.ndarray, width: int, height: int) -> str:
    """What is wrong with a CameraInfo's 3x3 K for a pinhole camera ('' when nothing).

    K must be finite with positive focal lengths and rows [fx s cx; 0 fy cy; 0 0 1] (a zero or scaled last row
    would divide by zero or rescale every projection), with the principal point inside the image when the size
    (`width`, `height`, 0 = unknown) is given.
    """
    if not np.isfinite(k).all():
        return "non-finite values"
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        return "focal lengths must be positive"
    if k[1, 0] != 0 or not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        return "not a pinhole matrix (K[1][0] must be 0 and the last row 0, 0, 1)"
    if width > 0 and height > 0 and not (0 <= k[0, 2] <= width and 0 <= k[1, 2] <= height):
        return f"principal point ({k[0, 2]:g}, {k[1, 2]:g}) outside the {width} x {height} image"
    return ""


@dataclass
class CameraModel:
    """Intrinsics of one camera and the image size they refer to (0 = unknown): from its CameraInfo, else from
    the calibration."""

    intrinsics: np.ndarray  # (3, 3) K
    width: int
    height: int


def fill_missing_views(
    views: Sequence[tuple[np.ndarray, np.ndarray] | None], models: Sequence[CameraModel | None]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every camera's image and intrinsics for a frame with some cameras missing.

    Args:
        views: per camera (RGB image, its 3x3 intrinsics), None where missing; at least one present.
        models: per camera its model, None where unknown.

    Returns:
        The images and the (N, 3, 3) intrinsics. A missing camera gets a black image of its model's size with its
        model's intrinsics, or, where its model or size is unknown, those of the first present camera.
    """
    present = next(view for view in views if view is not None)
    images, intrinsics = [], []
    for view, model in zip(views, models, strict=True):
        if view is None and model is not None and model.width and model.height:
            view = (np.zeros((model.height, model.width, 3), dtype=np.uint8), model.intrinsics)
        elif view is None:
            view = (np.zeros_like(present[0]), present[1])
        images.append(view[0])
        intrinsics.append(view[1])
    return images, np.stack(intrinsics)


def intrinsics_scale(image_shape: tuple[int, ...], width: int, height: int) -> np.ndarray:
    """The 3x3 scale from a camera_info's image size to a decoded image's: `scale @ K` are the decoded image's
    intrinsics (a JPEG decoded at a reduced DCT scale is smaller than the camera_info says).

    Args:
        image_shape: the decoded image's shape, (height, width, ...).
        width: the camera_info's width (0 = unknown: identity).
        height: the camera_info's height (0 = unknown: identity).

    Raises:
        ConversionError: the two sizes differ in aspect by more than two pixels of rounding (reason "size").
    """
    if not (width and height):
        return np.eye(3)
    sx, sy = image_shape[1] / width, image_shape[0] / height
    if abs(sx - sy) > 2.0 / min(image_shape[:2]):
        raise ConversionError(
            f"image is {image_shape[1]}x{image_shape[0]}, camera_info says {width}x{height}", reason="size"
        )
    return np.diag([sx, sy, 1.0])


def image_to_rgb(msg: Image) -> np.ndarray:
    """Decodes a `sensor_msgs/Image` to an RGB array.

    Args:
        msg: the Image (encodings rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3, rgb16, bgr16, mono16); rows may
            be padded (`step` > width * bytes per pixel); `is_bigendian` is honoured for 16-bit encodings.

    Returns:
        (height, width, 3) uint8 RGB array (16-bit keeps the 8 high bits, mono is replicated).

    Raises:
        ConversionError: as `check_image`.
    """
    channels, depth, row_bytes = check_image(msg)
    order = _IMAGE_ENCODINGS[str(msg.encoding)][2]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = as_uint8(msg.data)
    rows = data[: height * step].reshape(height, step)[:, :row_bytes]
    if depth == 1:
        pixels = rows.reshape(height, width, channels)
    else:
        big = bool(msg.is_bigendian)
        wide = np.ascontiguousarray(rows).view(">u2" if big else "<u2").reshape(height, width, channels)
        pixels = (wide >> 8).astype(np.uint8)
    if order is None:
        return np.ascontiguousarray(np.broadcast_to(pixels, (height, width, 3)))
    if order == (0, 1, 2) and channels == 3:
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def compressed_image_to_rgb(
    msg: CompressedImage, *, min_size: tuple[int, int] | None = None, max_pixels: int = MAX_COMPRESSED_PIXELS
) -> np.ndarray:
    """Decodes a `sensor_msgs/CompressedImage` (JPEG or PNG, any `format` string) to an RGB array.

    Args:
        msg: the CompressedImage.
        min_size: optional (width, height): JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
            size is still at least this (Pillow's `draft`), which is several times faster when the network
            input is much smaller than the image. The caller must scale the intrinsics by the returned size.
        max_pixels: images whose header declares more pixels are rejected before anything is decoded (a few
            bytes can declare a 60000 x 60000 image; Pillow would allocate it).

    Returns:
        (height, width, 3) uint8 RGB array.

    Raises:
        ConversionError: empty data (reason "empty"), a declared size of zero or above `max_pixels`
            ("size"), or bytes that are not a readable image ("decode").
    """
    from PIL import Image as PILImage

    data = as_uint8(msg.data)
    if data.size == 0:
        raise ConversionError(f"compressed image (format {str(msg.format)!r}) has no data", reason="empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)  # max_pixels decides
            with PILImage.open(io.BytesIO(data.tobytes())) as image:
                width, height = image.size  # from the header; nothing decoded yet
                if width <= 0 or height <= 0 or width * height > max_pixels:
                    raise _DeclaredSizeError(f"{width} x {height}")
                if min_size is not None and image.format == "JPEG":
                    image.draft("RGB", (int(min_size[0]), int(min_size[1])))
                rgb = np.asarray(image.convert("RGB"))
    except (_DeclaredSizeError, PILImage.DecompressionBombError) as error:  # Pillow's own bomb check
        raise ConversionError(
            f"compressed image (format {str(msg.format)!r}, {data.size} bytes) declares too large or empty "
            f"a size ({error}); accepted: 1 to {max_pixels} pixels",
            reason="size",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow raises these for corrupt or truncated data
        raise ConversionError(
            f"cannot decode compressed image (format {str(msg.format)!r}, {data.size} bytes): {error}",
            reason="decode",
        ) from None
    return rgb


def rgb_to_image(rgb: np.ndarray, *, header: Header | None = None, encoding: str = "rgb8") -> Image:
    """Builds a `sensor_msgs/Image` from an (H, W, 3) uint8 RGB array (encoding rgb8 or bgr8, no padding)."""
    from sensor_msgs.msg import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    if encoding not in ("rgb8", "bgr8"):
        raise ConversionError(f"rgb_to_image writes rgb8 or bgr8, not {encoding!r}")
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = encoding, 0, int(rgb.shape[1]) * 3
    msg.data = byte_array(np.ascontiguousarray(pixels))
    return msg


# ----------------------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedCloud:
    """Lidar points decoded from a PointCloud2.

    Attributes:
        points: (N, 5) float32 [x, y, z, intensity, ring] of the finite points (ring 0 when the
            cloud has none).
        dropped_non_finite: number of points dropped because x, y, z or intensity was NaN or infinite.
    """

    points: np.ndarray
    dropped_non_finite: int


def field_dtypes(msg: PointCloud2) -> dict[str, tuple[np.dtype, int]]:
    byte_order = ">" if bool(msg.is_bigendian) else "<"
    point_step = int(msg.point_step)
    fields: dict[str, tuple[np.dtype, int]] = {}
    for field in msg.fields:
        name, datatype, offset, count = (
            str(field.name),
            int(field.datatype),
            int(field.offset),
            int(field.count),
        )
        if datatype not in POINTFIELD_DTYPES:
            raise ConversionError(
                f"PointCloud2 field {name!r} has unknown datatype {datatype}", reason="fields"
            )
        dtype = np.dtype(byte_order + POINTFIELD_DTYPES[datatype])
        if offset < 0 or offset + dtype.itemsize * max(count, 1) > point_step:
            raise ConversionError(
                f"PointCloud2 field {name!r} (offset {offset}, {max(count, 1)} x "
                f"{dtype.itemsize} bytes) does not fit in point_step {point_step}",
                reason="layout",
            )
        fields[name] = (dtype, offset)
    return fields


def pointcloud2_to_xyzir(
    msg: PointCloud2, *, intensity_field: str = "intensity", ring_field: str = "ring"
) -> DecodedCloud:
    """Decodes a `sensor_msgs/PointCloud2` to [x, y, z, intensity, ring] float32 points.

    Any field order, extra fields, padding inside a point (`point_step`), padding at the end of rows
    (`row_step`), organised clouds (height > 1) and big-endian data are handled through one strided view.

    Args:
        msg: the PointCloud2; fields x, y, z and `intensity_field` are required, `ring_field` is optional.
        intensity_field: name of the intensity field.
        ring_field: name of the ring (laser index) field; 0 for every point when absent.

    Returns:
        The finite points and the count of dropped non-finite ones.

    Raises:
        ConversionError: a required field missing, a field outside point_step, row_step smaller than
            width * point_step, or data shorter than height * row_step.
    """
    fields = field_dtypes(msg)
    missing = [name for name in ("x", "y", "z", intensity_field) if name not in fields]
    if missing:
        raise ConversionError(
            f"PointCloud2 lacks field(s) {', '.join(missing)}; it has {', '.join(fields) or 'no fields'}",
            reason="fields",
        )
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height * width == 0:
        return DecodedCloud(np.zeros((0, 5), np.float32), 0)
    if point_step <= 0 or row_step < width * point_step:
        raise ConversionError(
            f"PointCloud2 row_step {row_step} is smaller than width {width} x point_step {point_step}",
            reason="layout",
        )
    data = as_uint8(msg.data)
    needed = (height - 1) * row_step + width * point_step
    if data.size < needed:
        raise ConversionError(
            f"PointCloud2 data truncated: {data.size} bytes, expected {needed} "
            f"(height {height}, row_step {row_step}, width {width}, point_step {point_step})",
            reason="truncated",
        )
    wanted = ["x", "y", "z", intensity_field] + ([ring_field] if ring_field in fields else [])
    record = np.dtype(
        {
            "names": wanted,
            "formats": [fields[n][0] for n in wanted],
            "offsets": [fields[n][1] for n in wanted],
            "itemsize": point_step,
        }
    )
    view: np.ndarray = np.ndarray(
        (height, width), dtype=record, buffer=data, offset=0, strides=(row_step, point_step)
    )
    view = view.reshape(-1) if height == 1 else view.ravel()  # ravel copies only for organised clouds
    points = np.zeros((view.shape[0], 5), dtype=np.float32)
    for column, name in enumerate(wanted):  # five columns, not points: each line is one vectorised copy
        points[:, column] = view[name]
    finite = np.isfinite(points[:, :4]).all(axis=1)
    dropped = int(finite.size - np.count_nonzero(finite))
    if dropped:
        points = points[finite]
    return DecodedCloud(points, dropped)


def build_pointcloud2(
    fields: Sequence[tuple[str, int, int]], payload: np.ndarray, *, header: Header | None, point_step: int
) -> PointCloud2:
    from sensor_msgs.msg import PointCloud2, PointField

    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, int(payload.shape[0])
    msg.fields = [
        PointField(name=name, offset=offset, datatype=datatype, count=1) for name, offset, datatype in fields
    ]
    msg.is_bigendian = False  # payload dtypes are explicitly little endian
    msg.point_step, msg.row_step = point_step, point_step * int(payload.shape[0])
    msg.is_dense = True
    msg.data = byte_array(payload)
    return msg


def xyzir_to_pointcloud2(points: np.ndarray, *, header: Header | None = None) -> PointCloud2:
    """Builds a PointCloud2 with float32 x, y, z, intensity and uint16 ring from (N, 4 or 5) points."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (4, 5):
        raise ConversionError(f"expected (N, 4) or (N, 5) points, got {points.shape}")
    payload = np.zeros(points.shape[0], dtype=LIDAR_RECORD)
    for column, name in enumerate(("x", "y", "z", "intensity")):
        payload[name] = points[:, column]
    if points.shape[1] == 5:
        payload["ring"] = points[:, 4]
    return build_pointcloud2(LIDAR_FIELDS, payload, header=header, point_step=LIDAR_POINT_STEP)


# ----------------------------------------------------------------------------------------------------------
# Odometry
# ----------------------------------------------------------------------------------------------------------


def odometry_pose(msg: Odometry) -> tuple[np.ndarray, np.ndarray]:
    """The ego pose of a `nav_msgs/Odometry`: translation (3,) and unit quaternion (4,) w, x, y, z.

    Raises:
        ConversionError: a non-finite position, or a quaternion whose norm is not 1 within 1 % (reason
            "pose"; a norm that far off is a broken message, not rounding).
    """
    position, orientation = msg.pose.pose.position, msg.pose.pose.orientation
    quaternion = np.array([orientation.w, orientation.x, orientation.y, orientation.z])
    translation = np.array([position.x, position.y, position.z])
    norm = float(np.linalg.norm(quaternion))
    if not np.isfinite(translation).all() or not np.isfinite(norm) or abs(norm - 1.0) > 1e-2:
        raise ConversionError(f"position {translation.tolist()}, quaternion norm {norm}", reason="pose")
    return translation, quaternion / norm
