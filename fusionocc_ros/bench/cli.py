"""`fusionocc bench`: the suite table, the arguments and the run that prints each suite and writes the JSON."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from fusionocc_ros.bench.common import SuiteResult, SuiteSkipped, format_table, machine_description
from fusionocc_ros.bench.contention import suite_contention
from fusionocc_ros.bench.convert import suite_convert
from fusionocc_ros.bench.gpu import suite_gpu
from fusionocc_ros.bench.lidar import suite_lidar
from fusionocc_ros.bench.lift_splat import suite_lift_splat
from fusionocc_ros.bench.node import suite_node
from fusionocc_ros.bench.outputs import suite_outputs
from fusionocc_ros.bench.scatter import suite_scatter
from fusionocc_ros.bench.sync import suite_sync
from fusionocc_ros.bench.visibility import suite_visibility

SUITES: dict[str, Callable[[bool], SuiteResult]] = {
    "scatter": suite_scatter,
    "outputs": suite_outputs,
    "sync": suite_sync,
    "lift_splat": suite_lift_splat,
    "node": suite_node,
    "lidar": suite_lidar,
    "contention": suite_contention,
    "convert": suite_convert,
    "visibility": suite_visibility,
    "gpu": suite_gpu,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), default=None,
                        help="suite to run (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI, under 2 minutes)")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench.json"),
                        help="where to write the results as JSON (default: outputs/bench.json)")


def run(args: argparse.Namespace) -> int:
    names = args.suite or list(SUITES)
    results = []
    for name in names:
        try:
            result = SUITES[name](args.quick)
        except SuiteSkipped as skipped:
            result = SuiteResult(name, skipped=str(skipped))
        print(format_table(result), flush=True)
        results.append(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_description(), "quick": args.quick,
              "suites": [asdict(r) | {"rows": [asdict(row) | {"speedup": row.speedup} for row in r.rows]}
                         for r in results]}
    args.json.write_text(json.dumps(report, indent=1))
    print(f"results written to {args.json}")
    return 0


def main_args(argv: list[str]) -> argparse.Namespace:
    """Parses `fusionocc bench` arguments (for scripts and tests)."""
    from fusionocc_ros import bench

    parser = argparse.ArgumentParser(prog="fusionocc bench", description=bench.__doc__)
    add_arguments(parser)
    return parser.parse_args(argv)
