"""Reliability test harness (issue 9): malformed-input fuzzing, node overload and sensor-dropout runs.

Test tooling, not part of the product package (it needs hypothesis, a dev dependency). Used by the tests in
`test/reliability/` (short, deterministic runs) and from the command line, in the repository root, for longer
runs that print figures:

    python test/reliability/harness.py fuzz --examples 20000
    python test/reliability/harness.py overload --seconds 120 [--rate 5 | --rate 0]

Fuzzing (hypothesis, derandomised): every generated message either raises `ConversionError` whose reason is
one of the problems the message really has, or decodes to exactly what an independent slow reference decoder
(`struct` per pixel / per point) computes. Any other exception, a wrong result or a rejection of a valid
message is a failure. Declared sizes are drawn up to 2**32 - 1 with small buffers, so a decoder that
allocates from a declared size before checking it against the buffer shows up in the process's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from fusionocc_ros.conversions import (
    SUPPORTED_IMAGE_ENCODINGS,
    ConversionError,
    compressed_image_to_rgb,
    image_to_rgb,
    pointcloud2_to_xyzir,
)
from fusionocc_ros.node_params import PRIVATE_TOPICS

UINT32_MAX = 2**32 - 1
KNOWN_REASONS = frozenset(
    {"encoding", "layout", "truncated", "fields", "decode", "empty", "labels", "invalid", "size"}
)


# ----------------------------------------------------------------------------------------------- memory


def rss_kb(field_name: str = "VmRSS") -> int:
    """Resident set size (or `VmHWM`, the peak) of this process [KiB] from /proc/self/status; 0 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------------- reference decoders

_IMAGE_LAYOUT = {  # encoding -> (channels, bytes per channel, R, G, B channel indices or None for mono)
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "8UC1": (1, 1, None),
    "8UC3": (3, 1, (2, 1, 0)),
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "mono16": (1, 2, None),
}


def image_problems(msg: Any) -> set[str]:
    """Reasons (ConversionError.reason values) a sensor_msgs/Image is invalid; empty when it is valid."""
    encoding = str(msg.encoding)
    if encoding not in _IMAGE_LAYOUT:
        return {"encoding"}
    channels, depth, _ = _IMAGE_LAYOUT[encoding]
    problems = set()
    if msg.height <= 0 or msg.width <= 0 or msg.step < msg.width * channels * depth:
        problems.add("layout")
    if len(msg.data) < msg.height * msg.step:
        problems.add("truncated")
    return problems


def reference_image_to_rgb(msg: Any) -> np.ndarray:
    """Slow per-pixel decode of a valid Image (struct.unpack_from at each pixel's byte offset)."""
    channels, depth, order = _IMAGE_LAYOUT[str(msg.encoding)]
    data = bytes(msg.data)
    code = ("B" if depth == 1 else ("H")) * channels
    fmt = (">" if msg.is_bigendian else "<") + code
    out = np.zeros((msg.height, msg.width, 3), np.uint8)
    for row in range(msg.height):
        for col in range(msg.width):
            values = struct.unpack_from(fmt, data, row * msg.step + col * channels * depth)
            if depth == 2:
                values = tuple(v >> 8 for v in values)
            out[row, col] = [values[0]] * 3 if order is None else [values[i] for i in order]
    return out


_POINTFIELD_FORMATS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}


def cloud_problems(msg: Any) -> set[str]:
    """Reasons a sensor_msgs/PointCloud2 is invalid for `pointcloud2_to_xyzir`; empty when valid."""
    problems = set()
    names = set()
    for f in msg.fields:
        if f.datatype not in _POINTFIELD_FORMATS:
            problems.add("fields")
            continue
        size = struct.calcsize(_POINTFIELD_FORMATS[f.datatype])
        if f.offset < 0 or f.offset + size * max(f.count, 1) > msg.point_step:
            problems.add("layout")
        names.add(f.name)
    if not {"x", "y", "z", "intensity"} <= names:
        problems.add("fields")
    if problems or msg.height * msg.width == 0:
        return problems
    if msg.point_step <= 0 or msg.row_step < msg.width * msg.point_step:
        return {"layout"}
    if len(msg.data) < (msg.height - 1) * msg.row_step + msg.width * msg.point_step:
        return {"truncated"}
    return set()


def reference_cloud(msg: Any) -> tuple[np.ndarray, int]:
    """Slow per-point decode of a valid PointCloud2: ((N, 5) finite [x, y, z, intensity, ring], dropped)."""
    data = bytes(msg.data)
    endian = ">" if msg.is_bigendian else "<"
    layout = {f.name: (f.offset, endian + _POINTFIELD_FORMATS[f.datatype]) for f in msg.fields}
    rows, dropped = [], 0
    for r in range(msg.height if msg.width else 0):
        for c in range(msg.width):
            base = r * msg.row_step + c * msg.point_step
            values = [
                float(np.float32(struct.unpack_from(layout[n][1], data, base + layout[n][0])[0]))
                if n in layout
                else 0.0
                for n in ("x", "y", "z", "intensity", "ring")
            ]
            if all(np.isfinite(values[:4])):
                rows.append(values)
            else:
                dropped += 1
    return np.asarray(rows, np.float32).reshape(-1, 5), dropped


# ------------------------------------------------------------------------------------ hypothesis inputs


def _sizes(st: Any, small: int) -> Any:
    """Mostly small sizes, sometimes zero or huge (up to uint32 max)."""
    return st.one_of(
        st.integers(0, small), st.integers(0, small), st.sampled_from([0, 1, 2**16, 2**31 - 1, UINT32_MAX])
    )


def image_messages() -> Any:
    """Strategy: (msg, note) Image-like messages, about half valid, the rest malformed in one or more ways."""
    from hypothesis import strategies as st

    unknown = st.one_of(
        st.sampled_from(["yuv422", "bayer_rggb8", "32FC1", "16UC1", "RGB8", "", "rgb8 ", "jpeg"]),
        st.text(max_size=8),
    )

    @st.composite
    def build(draw: Any) -> tuple[Any, str]:
        known = draw(st.integers(0, 4)) > 0  # four in five with a supported encoding
        encoding = draw(st.sampled_from(SUPPORTED_IMAGE_ENCODINGS) if known else unknown)
        channels, depth, _ = _IMAGE_LAYOUT.get(encoding, (3, 1, None))
        height, width = draw(_sizes(st, 6)), draw(_sizes(st, 7))
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

    return build()


def _png_with_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR width/height replaced (CRC recomputed): a header that lies about the size."""
    start = png.index(b"IHDR")
    chunk = b"IHDR" + struct.pack(">II", width, height) + png[start + 12 : start + 17]
    return png[:start] + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[start + 21 :]


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF0 frame size replaced (a header that lies about the size)."""
    start = jpeg.index(b"\xff\xc0")
    return jpeg[: start + 5] + struct.pack(">HH", height, width) + jpeg[start + 9 :]


def compressed_messages() -> Any:
    """Strategy: (msg, expected, note): `expected` is the exact RGB for untouched lossless images, the
    approximate RGB for untouched JPEGs (tolerance in the note), None for mutated bytes."""
    from hypothesis import strategies as st
    from PIL import Image as PILImage

    @st.composite
    def build(draw: Any) -> tuple[Any, Any, str]:
        width, height = draw(st.integers(1, 24)), draw(st.integers(1, 16))
        seed = draw(st.integers(0, 2**16))
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width]
        smooth = (xx * 255 // max(width - 1, 1))[..., None] * np.array([1, 0, 0]) + (
            yy * 255 // max(height - 1, 1)
        )[..., None] * np.array([0, 1, 0])
        rgb = np.clip(smooth + rng.integers(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
        fmt = draw(st.sampled_from(["PNG", "JPEG", "PNG-L", "PNG-RGBA", "PNG-P", "PNG-I16", "BMP", "GIF"]))
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
        data = buffer.getvalue()
        mutation = draw(
            st.sampled_from(
                ["none", "none", "truncate", "flip", "garbage", "random", "empty", "prefix", "huge", "zero"]
            )
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
                data = _png_with_size(data, *size)
            elif fmt == "JPEG":
                data = _jpeg_with_size(data, *size)
            else:
                mutation = "none"
        if mutation not in ("none", "garbage"):
            expected = None
        msg = SimpleNamespace(format=draw(st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"])),
                              data=data)
        return msg, expected, f"{fmt} {width}x{height} {mutation} {len(data)} bytes"

    return build()


_CLOUD_FIELDS = ("x", "y", "z", "intensity", "ring", "rgb", "t", "X", "")


def cloud_messages() -> Any:
    """Strategy: (msg, note) PointCloud2-like messages: random field sets, datatypes, offsets, steps, sizes,
    endianness, NaN/Inf/huge values; roughly a third valid."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> tuple[Any, str]:
        layout_kind = draw(st.sampled_from(["packed", "packed", "random"]))
        fields = []
        if layout_kind == "packed":  # the usual driver layout, some fields dropped or retyped
            offset = 0
            for name in ("x", "y", "z", "intensity", "ring"):
                if draw(st.integers(0, 9)) == 0:
                    continue
                datatype = 7 if name != "ring" else 4
                if draw(st.integers(0, 6)) == 0:
                    datatype = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255]))
                fields.append(SimpleNamespace(name=name, offset=offset, datatype=datatype, count=1))
                offset += struct.calcsize(_POINTFIELD_FORMATS.get(datatype, "f"))
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
        point_step = max(point_step, 0)
        height = draw(st.sampled_from([1, 1, 1, 0, 2, 3, UINT32_MAX]))
        width = draw(_sizes(st, 12))
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

    return build()


# --------------------------------------------------------------------------------------------- properties


@dataclass
class FuzzReport:
    """Outcome counts of one fuzz run (`failures` lists the first failing notes; empty when all passed)."""

    kind: str
    cases: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped_points: int = 0
    peak_rss_growth_kb: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
        return (
            f"{self.kind:<16} {self.cases:>6} cases: {self.accepted} decoded correctly, "
            f"{sum(self.rejected.values())} rejected ({rejected or '-'}), other exceptions/wrong results "
            f"{len(self.failures)}, peak RSS +{self.peak_rss_growth_kb / 1024:.1f} MiB, {self.seconds:.1f} s"
        )


def _rejected(report: FuzzReport, error: ConversionError, allowed: set[str], note: str) -> None:
    assert str(error), f"empty ConversionError message for {note}"
    assert error.reason in KNOWN_REASONS, f"unknown reason {error.reason!r} for {note}"
    assert error.reason in allowed, (
        f"rejected as {error.reason!r} ({error}) but the problems are {sorted(allowed) or 'none'}: {note}"
    )
    report.rejected[error.reason] += 1


def check_image(report: FuzzReport, msg: Any, note: str) -> None:
    """The Image property (see the module docstring)."""
    report.cases += 1
    problems = image_problems(msg)
    try:
        rgb = image_to_rgb(msg)
    except ConversionError as error:
        _rejected(report, error, problems, note)
        return
    assert not problems, f"accepted an Image with problems {sorted(problems)}: {note}"
    np.testing.assert_array_equal(rgb, reference_image_to_rgb(msg), err_msg=note)
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    report.accepted += 1


def _draft_ok(rgb: np.ndarray, full: tuple[int, int], min_size: tuple[int, int] | None) -> bool:
    if min_size is None:
        return (rgb.shape[1], rgb.shape[0]) == full
    return rgb.shape[1] >= min(min_size[0], full[0]) and rgb.shape[0] >= min(min_size[1], full[1])


def check_compressed(
    report: FuzzReport, msg: Any, expected: np.ndarray | None, note: str, min_size: tuple[int, int] | None
) -> None:
    """The CompressedImage property: decode errors are ConversionError; an untouched image decodes to its
    pixels (exact for lossless, mean error < 8 levels for JPEG quality 95); anything decoded is (H, W, 3) uint8
    of the size its header declares (or the draft size)."""
    from PIL import Image as PILImage

    report.cases += 1
    data = bytes(msg.data)
    allowed = {"empty"} if not data else {"decode", "size"}
    try:
        rgb = compressed_image_to_rgb(msg, min_size=min_size)
    except ConversionError as error:
        assert expected is None, f"rejected an intact image ({error}): {note}"
        _rejected(report, error, allowed, note)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8, f"{rgb.shape} {rgb.dtype}: {note}"
    with PILImage.open(io.BytesIO(data)) as header:
        declared = header.size
    assert _draft_ok(rgb, declared, min_size if "JPEG" in note else None), (
        f"decoded {rgb.shape[1]}x{rgb.shape[0]}, header says {declared}, min_size {min_size}: {note}"
    )
    assert rgb.size <= 64 * 2**20, f"decoded a {rgb.shape} image from {len(data)} bytes: {note}"
    if expected is not None and (rgb.shape[1], rgb.shape[0]) == declared:
        if note.startswith("JPEG"):
            error = np.abs(rgb.astype(int) - expected.astype(int)).mean()
            assert error < 8, f"JPEG decoded with mean error {error:.1f}: {note}"
        else:
            np.testing.assert_array_equal(rgb, expected, err_msg=note)
    report.accepted += 1


def check_cloud(report: FuzzReport, msg: Any, note: str) -> None:
    """The PointCloud2 property: exact agreement with the per-point reference, NaN/Inf dropped and counted."""
    report.cases += 1
    problems = cloud_problems(msg)
    try:
        cloud = pointcloud2_to_xyzir(msg)
    except ConversionError as error:
        _rejected(report, error, problems, note)
        return
    assert not problems, f"accepted a PointCloud2 with problems {sorted(problems)}: {note}"
    points, dropped = reference_cloud(msg)
    assert cloud.points.dtype == np.float32 and cloud.points.shape[1] == 5, note
    np.testing.assert_array_equal(cloud.points, points, err_msg=note)
    assert cloud.dropped_non_finite == dropped, note
    assert np.isfinite(cloud.points[:, :4]).all(), note
    report.dropped_points += dropped
    report.accepted += 1


def _fuzz_run(kind: str, report: FuzzReport, examples: int, min_size: tuple[int, int] | None) -> Any:
    from hypothesis import HealthCheck, given, settings

    configured = settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    if kind == "image":
        return configured(given(image_messages())(lambda case: check_image(report, *case)))
    if kind == "compressed":
        return configured(
            given(compressed_messages())(lambda case: check_compressed(report, *case, min_size))
        )
    if kind == "pointcloud":
        return configured(given(cloud_messages())(lambda case: check_cloud(report, *case)))
    raise ValueError(f"unknown fuzz kind {kind!r}; one of {', '.join(FUZZ_KINDS)}")


FUZZ_KINDS = ("image", "compressed", "pointcloud")


def fuzz(kind: str, examples: int, *, min_size: tuple[int, int] | None = None) -> FuzzReport:
    """Runs one derandomised hypothesis fuzz ("image", "compressed" or "pointcloud") for `examples` cases.

    A short warm-up run first (hypothesis builds caches on first use) so that `peak_rss_growth_kb` is the
    growth of the process's peak RSS caused by the decoders.

    Raises:
        AssertionError (or the unexpected exception): the first (shrunk) failing case.
    """
    _fuzz_run(kind, FuzzReport(kind), min(examples, 20), min_size)()
    report = FuzzReport(kind)
    run = _fuzz_run(kind, report, examples, min_size)
    start_peak, start = rss_kb("VmHWM"), time.perf_counter()
    try:
        run()
    except Exception as error:
        report.failures.append(f"{type(error).__name__}: {error}")
        raise
    finally:
        report.seconds = time.perf_counter() - start
        report.peak_rss_growth_kb = rss_kb("VmHWM") - start_peak
    return report


# ------------------------------------------------------------------------------------ node under test

STUB_INPUT_SIZE = (32, 88)  # (H, W) network input of `StubModel`
RIG_IMAGE_SIZE = (160, 90)  # (width, height) of the synthetic rig's images (16:9 like nuScenes)
RIG_INTRINSICS = np.array([[80.0, 0.0, 80.0], [0.0, 80.0, 45.0], [0.0, 0.0, 1.0]])


def stub_model(*, delay_s: float = 0.0) -> Any:
    """A deterministic stand-in for FusionOcc (the tiny preset needs ~20 s a frame on this CI's shared CPU):
    the labels of each azimuth sector depend on the pixels of the camera looking there (current and previous
    frame), and every label on the lidar points; `delay_s` emulates inference time."""
    import torch

    from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE

    class StubModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = SimpleNamespace(camera=SimpleNamespace(input_size=STUB_INPUT_SIZE))
            self.delay_s = delay_s
            self.weight = torch.nn.Parameter(torch.tensor([0.37, -0.21, 0.11]))
            x = torch.arange(GRID_SHAPE[0], dtype=torch.float32) - GRID_SHAPE[0] / 2 + 0.5
            azimuth = torch.atan2(x[None, :], x[:, None])  # (200, 200) angle of the column from +x
            self.register_buffer("sector", ((azimuth + torch.pi) / (2 * torch.pi) * 6).long().clamp(0, 5))
            self.register_buffer("height", torch.arange(GRID_SHAPE[2], dtype=torch.float32))

        def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
            if self.delay_s:
                time.sleep(self.delay_s)
            images = inputs["images"][0]  # (2, N, 3, H, W) normalised, 0 current, 1 previous
            per_camera = images.mean(dim=(2, 3, 4))  # (2, N)
            per_camera = torch.nn.functional.pad(per_camera, (0, max(0, 6 - per_camera.shape[1])))[:, :6]
            points = inputs["points"]  # (P, 6) [batch, x, y, z, intensity, lag]
            lidar = points[:, 1:5].mean(dim=0) if points.shape[0] else torch.zeros(4)
            value = (
                per_camera[0][self.sector] * 5.0
                + per_camera[1][self.sector]
                + (lidar * torch.tensor([1.0, 1.0, 1.0, 0.01])).sum() * self.weight[0]
            )  # (200, 200)
            field = value[:, :, None] + self.height * self.weight[1]
            labels = (torch.floor(field.abs() * 3) % (GRID_SHAPE[2] + 2)).to(torch.uint8)
            # Occupied only in the two lowest layers (80k voxels), free above: Occ3D scenes have ~5-10 %
            # occupied voxels, and output building costs scale with them (a fully occupied grid is 600k).
            labels[:, :, 2:] = FREE_LABEL
            return labels[None]

    return StubModel().eval()


def write_rig_calibration(path: Any) -> Any:
    """Calibration file of the synthetic rig: six cameras at the ego origin looking out at 60 degree steps
    (optical frame z forward), lidar at the origin; returns the loaded Calibration."""
    from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
    from fusionocc_ros.calibration import Calibration, SensorCalibration, load_calibration, save_calibration

    sensors = {}
    optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # camera -> ego at yaw 0
    for index, name in enumerate(CAMERA_NAMES):
        yaw = np.deg2rad(60.0 * index)
        rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        pose = np.eye(4)
        pose[:3, :3] = rot @ optical
        pose[:3, 3] = [0.0, 0.0, 1.5]
        sensors[name] = SensorCalibration.from_matrix(name, pose)
    sensors[LIDAR_NAME] = SensorCalibration(LIDAR_NAME, LIDAR_NAME, np.array([0.0, 0.0, 1.8]),
                                            np.array([1.0, 0.0, 0.0, 0.0]))
    save_calibration(Calibration(sensors=sensors), path, overwrite=True)
    return load_calibration(path)


@dataclass
class RigFrame:
    """One synthetic sensor frame: lidar sweep, six staggered images, the ego pose."""

    stamp_ns: int
    points: np.ndarray  # (N, 5) lidar frame
    images: list[np.ndarray]  # (H, W, 3) uint8 per camera
    jpegs: list[bytes]
    camera_stamps_ns: list[int]
    translation: np.ndarray
    quaternion: np.ndarray  # w, x, y, z


def rig_frames(count: int, *, seed: int = 0, period_s: float = 0.1, start_s: float = 100.0,
               num_points: int = 400) -> list[RigFrame]:
    """`count` frames `period_s` apart; the ego drives along x at 5 m/s; cameras fire 0..25 ms after the
    sweep (nuScenes-like stagger)."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    width, height = RIG_IMAGE_SIZE
    frames = []
    for i in range(count):
        stamp = round((start_s + i * period_s) * 1e9)
        images, jpegs = [], []
        for _ in range(6):
            base = rng.integers(0, 256, 3)
            image = np.clip(base + rng.integers(-30, 30, (height, width, 3)), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            PILImage.fromarray(image).save(buffer, "JPEG", quality=90)
            images.append(image)
            jpegs.append(buffer.getvalue())
        points = np.concatenate(
            [rng.uniform(-30, 30, (num_points, 2)), rng.uniform(-1, 3, (num_points, 1)),
             rng.uniform(0, 255, (num_points, 1)), rng.integers(0, 32, (num_points, 1))], axis=1
        ).astype(np.float32)
        frames.append(RigFrame(stamp, points, images, jpegs, [stamp + 5_000_000 * c for c in range(6)],
                               np.array([5.0 * i * period_s, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0])))
    return frames


def direct_sensor_frame(frame: RigFrame, calibration: Any, *, transport: str = "raw") -> Any:
    """The Predictor input the node should build from `frame` (decoded exactly as the node decodes)."""
    from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
    from fusionocc_core.predictor import SensorFrame
    from fusionocc_ros.odometry import pose_matrix

    if transport == "raw":
        images = np.stack(frame.images)
    else:
        images = np.stack([compressed_image_to_rgb(SimpleNamespace(data=j, format="jpeg")) for j in frame.jpegs])
    return SensorFrame(
        images=images,
        intrinsics=np.tile(RIG_INTRINSICS, (6, 1, 1)),
        cam_to_ego=np.stack([calibration[name].sensor_to_ego for name in CAMERA_NAMES]),
        lidar_points=frame.points,
        lidar_to_ego=calibration[LIDAR_NAME].sensor_to_ego,
        ego_to_global=pose_matrix(frame.translation, frame.quaternion),
        stamp_s=frame.stamp_ns / 1e9,
        camera_names=CAMERA_NAMES,
    )


def _set_stamp(header: Any, stamp_ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


def stamp_ns_of(msg: Any) -> int:
    """header.stamp of a message [ns]."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def rig_camera_info_msg(name: str) -> Any:
    """The rig's CameraInfo for camera `name`."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=RIG_IMAGE_SIZE[0], height=RIG_IMAGE_SIZE[1])
    info.header.frame_id = name
    info.k = RIG_INTRINSICS.reshape(-1).tolist()
    return info


def rig_odometry_msg(frame: RigFrame) -> Any:
    """The frame's ego pose as nav_msgs/Odometry (map -> base_link)."""
    from nav_msgs.msg import Odometry

    odom = Odometry(child_frame_id="base_link")
    odom.header.frame_id = "map"
    _set_stamp(odom.header, frame.stamp_ns)
    position, orientation = odom.pose.pose.position, odom.pose.pose.orientation
    position.x, position.y, position.z = map(float, frame.translation)
    orientation.w, orientation.x, orientation.y, orientation.z = map(float, frame.quaternion)
    return odom


def rig_cloud_msg(frame: RigFrame) -> Any:
    """The frame's lidar sweep as PointCloud2 (x, y, z, intensity, ring)."""
    from std_msgs.msg import Header

    from fusionocc_core.occ3d import LIDAR_NAME
    from fusionocc_ros.conversions import xyzir_to_pointcloud2

    header = Header(frame_id=LIDAR_NAME)
    _set_stamp(header, frame.stamp_ns)
    return xyzir_to_pointcloud2(frame.points, header=header)


def rig_image_msg(frame: RigFrame, index: int, transport: str) -> tuple[Any, str, Any]:
    """(message type, node-relative topic, message) of camera `index`: CompressedImage with the frame's JPEG
    for transport "compressed", raw Image otherwise."""
    import array

    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from fusionocc_core.occ3d import CAMERA_NAMES
    from fusionocc_ros.conversions import rgb_to_image

    name = CAMERA_NAMES[index]
    header = Header(frame_id=name)
    _set_stamp(header, frame.camera_stamps_ns[index])
    if transport == "compressed":
        msg = CompressedImage(header=header, format="jpeg")
        msg.data = array.array("B", frame.jpegs[index])
        return CompressedImage, f"input/{name}/image/compressed", msg
    return Image, f"input/{name}/image", rgb_to_image(frame.images[index], header=header)


class NodeHarness:
    """An `OccupancyNode` in a private rclpy context plus a driver node that publishes its inputs and records
    its outputs with their arrival time (`time.monotonic()`).

    Args:
        model: the model the node's Predictor wraps.
        calibration_file: the rig calibration.
        domain_id: ROS domain of the private context (unique per test process).
        spin: False leaves the node unspun (callbacks called directly by the caller).
        **overrides: node parameters.
    """

    NAMESPACE = "reliability"

    def __init__(self, model: Any, calibration_file: Any, *, domain_id: int, spin: bool = True,
                 keep_messages: bool = True, **overrides: Any) -> None:
        import threading

        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from fusionocc_core.predictor import Predictor
        from fusionocc_ros.occupancy_node import OccupancyNode

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        params = {"calibration_file": str(calibration_file), "jpeg_draft": False, "image_transport": "raw",
                  "min_lidar_points": 10, "diagnostics_period_s": 0.2, **PRIVATE_TOPICS, **overrides}
        self.transport = params["image_transport"]
        self.node = OccupancyNode(
            predictor=Predictor(model, device="cpu"), context=self.context, namespace=self.NAMESPACE,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.driver = rclpy.create_node("reliability_driver", context=self.context)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self.lock = threading.Lock()
        self.publishers: dict[str, Any] = {}
        self.base = f"/{self.NAMESPACE}/occupancy_node"
        self._thread = None
        self.executor = None
        self.keep_messages = keep_messages  # False: outputs kept as (arrival, stamp_ns) only (long runs)
        if spin:
            from diagnostic_msgs.msg import DiagnosticArray
            from sensor_msgs.msg import Image

            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            for key, msg_type, topic in (("dense", Image, f"{self.base}/output/dense_grid"),
                                         ("diagnostics", DiagnosticArray, "/diagnostics")):
                self.driver.create_subscription(msg_type, topic, lambda m, k=key: self._record(k, m), qos)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.node)
            self.executor.add_node(self.driver)
            self._thread = threading.Thread(target=self.executor.spin, daemon=True)
            self._thread.start()

    def _record(self, key: str, msg: Any) -> None:
        item = msg if self.keep_messages or key == "diagnostics" else stamp_ns_of(msg)
        with self.lock:
            entries = self.received.setdefault(key, [])
            entries.append((time.monotonic(), item))
            if key == "diagnostics" and len(entries) > 50:
                del entries[:-50]

    def outputs(self, key: str) -> list[tuple[float, Any]]:
        with self.lock:
            return list(self.received.get(key, []))

    def publish(self, msg_type: Any, topic: str, msg: Any) -> None:
        """Publishes on the node's input `topic` (relative to the node, e.g. "input/pointcloud")."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        if topic not in self.publishers:
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            publisher = self.driver.create_publisher(msg_type, f"{self.base}/{topic}", qos)
            deadline = time.monotonic() + 10.0
            while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.publishers[topic] = publisher
        self.publishers[topic].publish(msg)

    def send_and_count(self, msg_type: Any, topic: str, msg: Any, counter: str, timeout_s: float = 10.0) -> None:
        """Publishes and waits until the node's `counter` ("in:<topic>") has grown (republishing a message
        lost by the best-effort subscription); loopback delivery is then deterministic."""
        before = self.node.counters.get(counter, 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.publish(msg_type, topic, msg)
            resend = time.monotonic() + 1.0
            while time.monotonic() < min(resend, deadline):
                if self.node.counters.get(counter, 0) > before:
                    return
                time.sleep(0.002)
        raise AssertionError(f"{counter} did not grow within {timeout_s} s; counters {self.node.counters}")

    # -------------------------------------------------------------------------------------- messages

    def camera_info_msg(self, name: str) -> Any:
        return rig_camera_info_msg(name)

    def odometry_msg(self, frame: RigFrame) -> Any:
        return rig_odometry_msg(frame)

    def cloud_msg(self, frame: RigFrame) -> Any:
        return rig_cloud_msg(frame)

    def image_msg(self, frame: RigFrame, index: int) -> tuple[Any, str, Any]:
        return rig_image_msg(frame, index, self.transport)

    def send_frame(self, frame: RigFrame, *, cameras: Any = None, lidar: bool = True,
                   wait: bool = True) -> None:
        """Publishes camera infos, odometry, the sweep and the images (`cameras`: indices sent, all by
        default); with `wait`, each message is confirmed received before the next."""
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, PointCloud2

        from fusionocc_core.occ3d import CAMERA_NAMES

        send = self.send_and_count if wait else (lambda t, topic, m, counter: self.publish(t, topic, m))
        for name in CAMERA_NAMES:
            if name not in self.node._camera_models:
                send(CameraInfo, f"input/{name}/camera_info", self.camera_info_msg(name), f"in:{name}/camera_info")
        send(Odometry, "input/odometry", self.odometry_msg(frame), "in:odometry")
        if lidar:
            send(PointCloud2, "input/pointcloud", self.cloud_msg(frame), "in:pointcloud")
        for index in range(6) if cameras is None else cameras:
            msg_type, topic, msg = self.image_msg(frame, index)
            send(msg_type, topic, msg, f"in:{CAMERA_NAMES[index]}")

    def wait_output(self, stamp_ns: int, timeout_s: float = 30.0) -> tuple[float, Any]:
        """The dense-grid output stamped `stamp_ns` (arrival time, message)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrival, msg in self.outputs("dense"):
                if (msg if isinstance(msg, int) else stamp_ns_of(msg)) == stamp_ns:
                    return arrival, msg
            time.sleep(0.005)
        raise AssertionError(f"no output for stamp {stamp_ns} within {timeout_s} s; counters {self.node.counters}")

    def latest_diagnostics(self, after: float = 0.0, timeout_s: float = 5.0) -> dict[str, str]:
        """Key/values of the first /diagnostics message that arrives after monotonic time `after`, plus the
        status's `__level__` (0 OK, 1 WARN, 2 ERROR) and `__message__`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrival, msg in self.outputs("diagnostics"):
                if arrival > after:
                    values = {kv.key: kv.value for status in msg.status for kv in status.values}
                    values["__level__"] = str(int.from_bytes(msg.status[0].level, "little")
                                              if isinstance(msg.status[0].level, bytes) else msg.status[0].level)
                    values["__message__"] = msg.status[0].message
                    return values
            time.sleep(0.01)
        raise AssertionError("no /diagnostics message")

    def close(self) -> None:
        """Shuts down in the order a Ctrl-C does: executor, node (joins the worker), context."""
        if self.executor is not None:
            self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()
        self.context.try_shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class OverloadFigures:
    """What a sustained overload run measured."""

    seconds: float
    rate: float
    sent: int  # sweeps published by the driver
    received: int  # sweeps the node received (best-effort transport may lose some)
    published: int  # occupancy outputs
    dropped: int  # sweeps dropped and counted (sync drops + worker busy)
    drop_reasons: dict[str, int]
    latency_p50_s: float
    latency_p99_s: float
    latency_max_s: float
    rss_start_kb: int
    rss_end_kb: int
    rss_growth_percent: float

    def line(self) -> str:
        mode = "as fast as possible" if self.rate <= 0 else f"{self.rate:g}x real time"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.drop_reasons.items()))
        return (
            f"overload {mode}, {self.seconds:.0f} s: {self.sent} sweeps sent, {self.received} received, "
            f"{self.published} published, {self.dropped} dropped and counted ({reasons}); latency p50 "
            f"{self.latency_p50_s * 1e3:.0f} ms, p99 {self.latency_p99_s * 1e3:.0f} ms, max "
            f"{self.latency_max_s * 1e3:.0f} ms; RSS after warm-up {self.rss_start_kb / 1024:.0f} -> "
            f"{self.rss_end_kb / 1024:.0f} MiB ({self.rss_growth_percent:+.1f} %)"
        )


# One counter per dropped sweep (a sweep missing two cameras counts once in sync:incomplete_sweeps, twice in
# the per-camera sync:dropped:incomplete:<camera> keys, which are therefore not summed here).
_SWEEP_DROPS = ("sync:incomplete_sweeps", "sync:dropped:late_lidar", "sync:dropped:duplicate_lidar",
                "sync:dropped:lidar_queue_full", "sync:dropped:superseded", "dropped:worker_busy",
                "rejected:pointcloud")


def _stream_frame(template: RigFrame, index: int, period_s: float, count: int) -> RigFrame:
    """Frame `index` of an endless 10 Hz stream that loops over `count` templates, with stamps and a pose
    that keep moving forward."""
    import dataclasses

    shift = (index - index % count) * round(period_s * 1e9)
    return dataclasses.replace(
        template,
        stamp_ns=template.stamp_ns + shift,
        camera_stamps_ns=[s + shift for s in template.camera_stamps_ns],
        translation=np.array([5.0 * index * period_s, 0.0, 0.0]),
    )


def _publish_overload_stream(domain_id: int, seconds: float, rate: float, period_s: float, results: Any) -> None:
    """Child process of `run_overload`: plays the rig stream into the node's inputs like `ros2 bag play` (a
    process of its own, so the player's Python does not compete with the node's for one GIL) and puts
    {sweep stamp: monotonic send time} on `results` (CLOCK_MONOTONIC is shared by the processes)."""
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("overload_player", context=context)
    base = f"/{NodeHarness.NAMESPACE}/occupancy_node"
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    templates = rig_frames(10, seed=1, period_s=period_s)
    sent_at: dict[int, float] = {}
    try:
        # Every publisher matched with the node's subscription before the clock starts (discovery takes
        # seconds here, and a late match would turn the paced stream into a burst).
        publishers = {"input/odometry": node.create_publisher(Odometry, f"{base}/input/odometry", qos),
                      "input/pointcloud": node.create_publisher(PointCloud2, f"{base}/input/pointcloud", qos)}
        for camera in range(6):
            msg_type, topic, _ = rig_image_msg(templates[0], camera, "raw")
            publishers[topic] = node.create_publisher(msg_type, f"{base}/{topic}", qos)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
            time.sleep(0.01)

        def publish(msg_type: Any, topic: str, msg: Any) -> None:
            publishers[topic].publish(msg)

        start, index = time.monotonic(), 1
        while time.monotonic() - start < seconds:
            frame = _stream_frame(templates[index % len(templates)], index, period_s, len(templates))
            publish(Odometry, "input/odometry", rig_odometry_msg(frame))
            publish(PointCloud2, "input/pointcloud", rig_cloud_msg(frame))
            for camera in range(6):
                publish(*rig_image_msg(frame, camera, "raw"))
            sent_at[frame.stamp_ns] = time.monotonic()
            index += 1
            if rate > 0:
                time.sleep(max(0.0, start + (index - 1) * period_s / rate - time.monotonic()))
    finally:
        results.put(sent_at)
        node.destroy_node()
        context.try_shutdown()


def run_overload(calibration_file: Any, *, seconds: float, rate: float, delay_s: float, domain_id: int,
                 period_s: float = 0.1) -> OverloadFigures:
    """Publishes a 10 Hz rig stream at `rate` x real time (0 = as fast as possible) for `seconds`, from a
    separate process, into a node whose model takes `delay_s` per frame; samples the node process's VmRSS
    every 0.25 s (warm-up: the first quarter)."""
    import multiprocessing

    harness = NodeHarness(stub_model(delay_s=delay_s), calibration_file, domain_id=domain_id,
                          keep_messages=False)
    samples: list[tuple[float, int]] = []
    try:
        first = rig_frames(1, seed=1, period_s=period_s)[0]
        harness.send_frame(first)  # camera infos (kept by the node) + discovery
        harness.wait_output(first.stamp_ns)
        before = dict(harness.node.counters)
        spawn = multiprocessing.get_context("spawn")  # never fork a process that runs DDS threads
        results = spawn.Queue()
        player = spawn.Process(target=_publish_overload_stream, args=(domain_id, seconds, rate, period_s, results),
                               daemon=True)
        player.start()
        start = None
        while player.is_alive() and results.empty():
            if harness.node.counters.get("in:pointcloud", 0) > before.get("in:pointcloud", 0):
                start = start or time.monotonic()  # the stream has begun
                samples.append((time.monotonic() - start, rss_kb()))
            time.sleep(0.25)
        sent_at = results.get(timeout=60.0)
        player.join(timeout=30.0)
        harness.node.wait_idle(30.0)
        time.sleep(1.0)
        counters = {k: v - before.get(k, 0) for k, v in harness.node.counters.items()}
        outputs = harness.outputs("dense")
    finally:
        harness.close()
    latencies = sorted(arrival - sent_at[stamp] for arrival, stamp in outputs if stamp in sent_at)
    drops = {k: v for k, v in counters.items() if k.startswith(_SWEEP_DROPS) and v}
    after = [kb for t, kb in samples if t >= seconds / 4] or [kb for _, kb in samples] or [rss_kb()]
    warm = after[: max(1, len(after) // 10)]
    tail = after[-max(1, len(after) // 10):]
    start_kb, end_kb = int(np.median(warm)), int(np.median(tail))
    return OverloadFigures(
        seconds=seconds, rate=rate, sent=len(sent_at), received=counters.get("in:pointcloud", 0),
        published=counters.get("published", 0), dropped=sum(drops.values()), drop_reasons=drops,
        latency_p50_s=float(np.percentile(latencies, 50)) if latencies else float("nan"),
        latency_p99_s=float(np.percentile(latencies, 99)) if latencies else float("nan"),
        latency_max_s=latencies[-1] if latencies else float("nan"),
        rss_start_kb=start_kb, rss_end_kb=end_kb,
        rss_growth_percent=100.0 * (end_kb - start_kb) / max(start_kb, 1),
    )


# ----------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """`python test/reliability/harness.py {fuzz,overload} ...`: longer runs that print figures."""
    parser = argparse.ArgumentParser(prog="python test/reliability/harness.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fuzz_parser = sub.add_parser("fuzz", help="fuzz the message conversions")
    fuzz_parser.add_argument("--examples", type=int, default=2000, help="cases per message type")
    fuzz_parser.add_argument("--kinds", default="image,compressed,pointcloud")
    over = sub.add_parser("overload", help="sustained overload of a node with a slow stub model")
    over.add_argument("--seconds", type=float, default=120.0)
    over.add_argument("--rate", type=float, default=0.0, help="x real time of a 10 Hz stream; 0 = max")
    over.add_argument("--delay-ms", type=float, default=60.0, help="emulated inference time [ms]")
    args = parser.parse_args(argv)
    if args.command == "overload":
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = f"{folder}/calibration.yaml"
            write_rig_calibration(path)
            figures = run_overload(path, seconds=args.seconds, rate=args.rate, delay_s=args.delay_ms / 1e3,
                                   domain_id=150 + os.getpid() % 80)
        print(figures.line(), flush=True)
        return 0
    if args.command == "fuzz":
        failed = 0
        for kind in args.kinds.split(","):
            try:
                report = fuzz(kind, args.examples, min_size=(88, 32) if kind == "compressed" else None)
            except Exception as error:  # print the failing case and go on with the other kinds
                print(f"{kind}: FAILED: {type(error).__name__}: {error}", flush=True)
                failed += 1
                continue
            print(report.line(), flush=True)
        return 1 if failed else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
