"""Hypothesis strategies for malformed and valid sensor messages (`types.SimpleNamespace` objects with the
fields of sensor_msgs/Image, CompressedImage and PointCloud2).

Declared sizes are drawn up to 2**32 - 1 with small buffers, so a decoder that allocates from a declared size
before checking it against the buffer shows up in the process's peak RSS.
"""

from __future__ import annotations

import io
import struct
import zlib
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st
from PIL import Image as PILImage
from reference import IMAGE_LAYOUT, POINTFIELD_FORMATS

from fusionocc_ros.conversions import SUPPORTED_IMAGE_ENCODINGS

UINT32_MAX = 2**32 - 1
_CLOUD_FIELDS = ("x", "y", "z", "intensity", "ring", "rgb", "t", "X", "")
_UNKNOWN_ENCODINGS = st.one_of(
    st.sampled_from(["yuv422", "bayer_rggb8", "32FC1", "16UC1", "RGB8", "", "rgb8 ", "jpeg"]),
    st.text(max_size=8),
)


def _sizes(small: int) -> st.SearchStrategy[int]:
    """Mostly small sizes, sometimes zero or huge (up to uint32 max)."""
    return st.one_of(
        st.integers(0, small), st.integers(0, small), st.sampled_from([0, 1, 2**16, 2**31 - 1, UINT32_MAX])
    )


@st.composite
def _image_message(draw: st.DrawFn) -> tuple[SimpleNamespace, str]:
    known = draw(st.integers(0, 4)) > 0  # four in five with a supported encoding
    encoding = draw(st.sampled_from(SUPPORTED_IMAGE_ENCODINGS) if known else _UNKNOWN_ENCODINGS)
    channels, depth, _ = IMAGE_LAYOUT.get(encoding, (3, 1, None))
    height, width = draw(_sizes(6)), draw(_sizes(7))
    row = width * channels * depth
    step_kind = draw(st.sampled_from(["exact", "exact", "padded", "short", "odd", "huge"]))
    step = {
        "exact": row,
        "padded": row + draw(st.integers(1, 9)),
        "short": max(0, row - draw(st.integers(1, 5))),
        "odd": draw(st.integers(0, 64)),
        "huge": draw(st.sampled_from([2**31 - 1, UINT32_MAX])),
    }[step_kind]
    declared = height * step
    if declared <= 4096:
        size = max(0, declared + draw(st.sampled_from([0, 0, 0, 1, 7, -1, -3, -declared])))
    else:
        size = draw(st.integers(0, 512))
    data = draw(st.binary(min_size=size, max_size=size))
    msg = SimpleNamespace(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=draw(st.integers(0, 1)),
        step=step,
        data=data,
    )
    return msg, f"{encoding!r} {width}x{height} step {step} ({step_kind}) {size} bytes"


def image_messages() -> st.SearchStrategy[tuple[SimpleNamespace, str]]:
    """Strategy: (msg, note) Image-like messages, about half valid, the rest malformed in one or more ways."""
    return _image_message()


def png_with_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR width/height replaced (CRC recomputed): a header that lies about the size."""
    start = png.index(b"IHDR")
    chunk = b"IHDR" + struct.pack(">II", width, height) + png[start + 12 : start + 17]
    return png[:start] + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[start + 21 :]


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF0 frame size replaced (a header that lies about the size)."""
    start = jpeg.index(b"\xff\xc0")
    return jpeg[: start + 5] + struct.pack(">HH", height, width) + jpeg[start + 9 :]


def _encoded_image(fmt: str, rgb: np.ndarray) -> tuple[bytes, np.ndarray | None]:
    """`rgb` encoded as `fmt` (a format of `compressed_messages`) and the RGB a decoder must return: exact for
    lossless formats, approximate for JPEG, None where only the shape can be checked."""
    buffer = io.BytesIO()
    image = PILImage.fromarray(rgb)
    expected: np.ndarray | None
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=95, subsampling=0)
        expected = rgb
    elif fmt == "PNG-L":
        gray = image.convert("L")
        gray.save(buffer, "PNG")
        expected = np.repeat(np.asarray(gray)[..., None], 3, axis=2)
    elif fmt == "PNG-RGBA":
        image.convert("RGBA").save(buffer, "PNG")
        expected = rgb
    elif fmt == "PNG-P":
        palette = image.convert("P", palette=PILImage.Palette.ADAPTIVE, colors=8)
        palette.save(buffer, "PNG")
        expected = np.asarray(palette.convert("RGB"))
    elif fmt == "PNG-I16":
        wide = rgb[..., 0].astype(np.uint16) * 257
        PILImage.fromarray(wide).save(buffer, "PNG")
        expected = None  # Pillow's I;16 -> RGB clips rather than scaling: only shape is checked
    elif fmt == "GIF":
        image.save(buffer, "GIF")
        expected = None  # palette quantisation: only shape is checked
    else:
        image.save(buffer, fmt.split("-")[0])
        expected = rgb
    return buffer.getvalue(), expected


@st.composite
def _compressed_message(draw: st.DrawFn) -> tuple[SimpleNamespace, np.ndarray | None, str]:
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 16))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = (xx * 255 // max(width - 1, 1))[..., None] * np.array([1, 0, 0]) + (
        yy * 255 // max(height - 1, 1)
    )[..., None] * np.array([0, 1, 0])
    rgb = np.clip(smooth + rng.integers(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    fmt = draw(st.sampled_from(["PNG", "JPEG", "PNG-L", "PNG-RGBA", "PNG-P", "PNG-I16", "BMP", "GIF"]))
    data, expected = _encoded_image(fmt, rgb)
    mutation = draw(
        st.sampled_from(["none", "none", "truncate", "flip", "garbage", "random", "empty", "prefix", "huge", "zero"])
    )
    if mutation == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif mutation == "flip":
        mutable = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            mutable[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        data = bytes(mutable)
    elif mutation == "garbage":
        data = data + draw(st.binary(min_size=1, max_size=64))
        expected = expected if fmt in ("PNG", "PNG-L", "PNG-RGBA", "PNG-P", "JPEG") else None
    elif mutation == "random":
        data = draw(st.binary(max_size=256))
    elif mutation == "empty":
        data = b""
    elif mutation == "prefix":
        data = draw(st.binary(min_size=1, max_size=16)) + data
    elif mutation in ("huge", "zero"):
        size = (60_000, 60_000) if mutation == "huge" else (0, height)
        if fmt.startswith("PNG"):
            data = png_with_size(data, *size)
        elif fmt == "JPEG":
            data = jpeg_with_size(data, *size)
        else:
            mutation = "none"
    if mutation not in ("none", "garbage"):
        expected = None
    msg = SimpleNamespace(format=draw(st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"])), data=data)
    return msg, expected, f"{fmt} {width}x{height} {mutation} {len(data)} bytes"


def compressed_messages() -> st.SearchStrategy[tuple[SimpleNamespace, np.ndarray | None, str]]:
    """Strategy: (msg, expected, note): `expected` is the exact RGB for untouched lossless images, the
    approximate RGB for untouched JPEGs (tolerance in the note), None for mutated bytes."""
    return _compressed_message()


def _cloud_fields(draw: st.DrawFn) -> tuple[list[SimpleNamespace], int, str]:
    """(fields, point_step, layout kind): the usual packed driver layout with some fields dropped or retyped, or
    random names, offsets, datatypes and counts."""
    fields = []
    layout_kind = draw(st.sampled_from(["packed", "packed", "random"]))
    if layout_kind == "packed":
        offset = 0
        for name in ("x", "y", "z", "intensity", "ring"):
            if draw(st.integers(0, 9)) == 0:
                continue
            datatype = 7 if name != "ring" else 4
            if draw(st.integers(0, 6)) == 0:
                datatype = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255]))
            fields.append(SimpleNamespace(name=name, offset=offset, datatype=datatype, count=1))
            offset += struct.calcsize(POINTFIELD_FORMATS.get(datatype, "f"))
        point_step = offset + draw(st.sampled_from([0, 0, 0, 4, -1, -4, 3]))
    else:
        for _ in range(draw(st.integers(0, 7))):
            fields.append(
                SimpleNamespace(
                    name=draw(st.sampled_from(_CLOUD_FIELDS)),
                    offset=draw(st.integers(0, 40)),
                    datatype=draw(st.integers(0, 9)),
                    count=draw(st.sampled_from([0, 1, 1, 1, 2, 3, 2**31])),
                )
            )
        point_step = draw(st.integers(0, 48))
    return fields, max(point_step, 0), layout_kind


@st.composite
def _cloud_message(draw: st.DrawFn) -> tuple[SimpleNamespace, str]:
    fields, point_step, _ = _cloud_fields(draw)
    height = draw(st.sampled_from([1, 1, 1, 0, 2, 3, UINT32_MAX]))
    width = draw(_sizes(12))
    row_kind = draw(st.sampled_from(["exact", "exact", "padded", "short", "huge"]))
    row_step = {
        "exact": width * point_step,
        "padded": width * point_step + draw(st.integers(1, 7)),
        "short": max(0, width * point_step - draw(st.integers(1, 8))),
        "huge": UINT32_MAX,
    }[row_kind]
    needed = (max(height, 1) - 1) * row_step + width * point_step
    if needed <= 8192:
        size = max(0, needed + draw(st.sampled_from([0, 0, 0, 5, -1, -7, -needed])))
    else:
        size = draw(st.integers(0, 512))
    big = draw(st.integers(0, 1))
    raw = bytearray(draw(st.binary(min_size=size, max_size=size)))
    # Write plausible float32 values (with NaN/Inf/huge) into the x/y/z/intensity slots of each point.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    specials = [float("nan"), float("inf"), -float("inf"), 3.0e38, -0.0, 1e-40]
    for f in fields:
        if f.datatype != 7 or height * width == 0 or row_step == 0:
            continue
        for r in range(min(height, 3)):
            for c in range(min(width, 12)):
                at = r * row_step + c * point_step + f.offset
                if at >= 0 and at + 4 <= size:
                    special = rng.integers(0, 6) == 0
                    value = specials[rng.integers(0, 6)] if special else float(rng.uniform(-100, 100))
                    struct.pack_into((">" if big else "<") + "f", raw, at, value)
    msg = SimpleNamespace(
        height=height,
        width=width,
        fields=fields,
        is_bigendian=big,
        point_step=point_step,
        row_step=row_step,
        data=bytes(raw),
        is_dense=False,
    )
    names = ",".join(f"{f.name}:{f.datatype}@{f.offset}x{f.count}" for f in fields)
    return msg, f"[{names}] {width}x{height} ps {point_step} rs {row_step} ({row_kind}) {size} B"


def cloud_messages() -> st.SearchStrategy[tuple[SimpleNamespace, str]]:
    """Strategy: (msg, note) PointCloud2-like messages: random field sets, datatypes, offsets, steps, sizes,
    endianness, NaN/Inf/huge values; roughly a third valid."""
    return _cloud_message()
