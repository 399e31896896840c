"""The conversion fuzz: derandomised hypothesis runs of the message strategies through the product's decoders.

Property: every generated message either raises `ConversionError` whose reason is one of the problems the
message really has, or decodes to exactly what the independent slow reference decoder (`reference`) computes.
Any other exception, a wrong result or a rejection of a valid message is a failure.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from hypothesis import HealthCheck, given, settings
from memory import rss_kb
from PIL import Image as PILImage
from reference import cloud_problems, image_problems, reference_cloud, reference_image_to_rgb
from strategies import cloud_messages, compressed_messages, image_messages

from fusionocc_ros.conversions import (
    ConversionError,
    compressed_image_to_rgb,
    image_to_rgb,
    pointcloud2_to_xyzir,
)

FUZZ_KINDS = ("image", "compressed", "pointcloud")
KNOWN_REASONS = frozenset(
    {"encoding", "layout", "truncated", "fields", "decode", "empty", "labels", "invalid", "size"}
)


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


def check_image(report: FuzzReport, msg: SimpleNamespace, note: str) -> None:
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
    report: FuzzReport, msg: SimpleNamespace, expected: np.ndarray | None, note: str, min_size: tuple[int, int] | None
) -> None:
    """The CompressedImage property: decode errors are ConversionError; an untouched image decodes to its
    pixels (exact for lossless, mean error < 8 levels for JPEG quality 95); anything decoded is (H, W, 3) uint8
    of the size its header declares (or the draft size)."""
    report.cases += 1
    data = bytes(msg.data)
    problems = {"empty"} if not data else {"decode", "size"}
    try:
        rgb = compressed_image_to_rgb(msg, min_size=min_size)
    except ConversionError as error:
        if expected is not None:  # an intact image has no problem to be rejected for
            problems, note = set(), f"{note} (intact image)"
        _rejected(report, error, problems, note)
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
            mean_error = np.abs(rgb.astype(int) - expected.astype(int)).mean()
            assert mean_error < 8, f"JPEG decoded with mean error {mean_error:.1f}: {note}"
        else:
            np.testing.assert_array_equal(rgb, expected, err_msg=note)
    report.accepted += 1


def check_cloud(report: FuzzReport, msg: SimpleNamespace, note: str) -> None:
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


def _fuzz_run(kind: str, report: FuzzReport, examples: int, min_size: tuple[int, int] | None) -> Callable[[], None]:
    configured = settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    # The lambdas' source seeds the derandomised runs: reworded lambdas draw other examples.
    if kind == "image":
        return configured(given(image_messages())(lambda case: check_image(report, *case)))
    if kind == "compressed":
        return configured(
            given(compressed_messages())(lambda case: check_compressed(report, *case, min_size))
        )
    if kind == "pointcloud":
        return configured(given(cloud_messages())(lambda case: check_cloud(report, *case)))
    raise ValueError(f"unknown fuzz kind {kind!r}; one of {', '.join(FUZZ_KINDS)}")


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
