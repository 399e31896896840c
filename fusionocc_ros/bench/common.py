"""What every benchmark suite shares: the result records, the timer, the table and the machine description."""
from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Row:
    """One measured case of a suite."""

    case: str
    median_ms: float
    p95_ms: float
    baseline_ms: float | None = None  # the baseline's median for the same case, when the suite has one
    extra: dict[str, Any] = field(default_factory=dict)  # JSON values specific to the suite

    @property
    def speedup(self) -> float | None:
        return None if self.baseline_ms is None else self.baseline_ms / self.median_ms


@dataclass
class SuiteResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


class SuiteSkipped(Exception):
    """Raised by a suite that cannot run here (missing part, no CUDA)."""


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> tuple[float, float, list[float]]:
    """Median and p95 wall time [ms] of `fn()` over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), float(np.percentile(times, 95)), times


def format_table(result: SuiteResult) -> str:
    if result.skipped:
        return f"== {result.name}: skipped ({result.skipped})"
    lines = [f"== {result.name}", f"{'case':58s} {'median ms':>10s} {'p95 ms':>9s} {'baseline ms':>12s} {'ratio':>7s}"]
    for row in result.rows:
        base = f"{row.baseline_ms:12.2f}" if row.baseline_ms is not None else f"{'-':>12s}"
        ratio = f"{row.speedup:6.1f}x" if row.speedup is not None else f"{'-':>7s}"
        lines.append(f"{row.case:58s} {row.median_ms:10.2f} {row.p95_ms:9.2f} {base} {ratio}")
    lines.extend(f"   note: {note}" for note in result.notes)
    return "\n".join(lines)


def machine_description() -> dict[str, str | int | None]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
