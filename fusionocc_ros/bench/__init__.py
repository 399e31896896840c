"""Benchmarks: where the milliseconds go, as ratios against straightforward baselines measured in the same run.

Each suite prints a table (median, p95, ratio against its baseline) and the whole run is written as JSON.
`--quick` shrinks repeats and sizes so every suite finishes in seconds (CI); the figures in docs/benchmarks.md
come from a full run. Suites whose part of the project is missing, or that need CUDA without it, report
themselves skipped.
"""
from __future__ import annotations

from fusionocc_ros.bench.cli import SUITES, add_arguments, main_args, run
from fusionocc_ros.bench.common import Row, SuiteResult, SuiteSkipped, format_table, machine_description, time_call

# Modules: `common` (Row, SuiteResult, SuiteSkipped, timing, the table), one module per suite (`scatter`,
# `outputs`, `sync`, `lift_splat`, `node`, `lidar`, `contention`, `convert`, `gpu`) and `cli` (SUITES, the
# `fusionocc bench` arguments and run).
__all__ = [
    "SUITES",
    "Row",
    "SuiteResult",
    "SuiteSkipped",
    "add_arguments",
    "format_table",
    "machine_description",
    "main_args",
    "run",
    "time_call",
]
