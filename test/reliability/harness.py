"""Reliability test harness: malformed-input fuzzing, node overload and sensor-dropout runs.

Test tooling, not part of the product package (it needs hypothesis, a dev dependency). Used by the tests in
`test/reliability/` (short, deterministic runs) and from the command line, in the repository root, for longer
runs that print figures:

    python test/reliability/harness.py fuzz --examples 20000
    python test/reliability/harness.py overload --seconds 120 [--rate 5 | --rate 0]

Modules: `reference` (slow reference decoders, the validity rules), `strategies` (hypothesis message
strategies), `fuzz` (the fuzz driver and its property checks), `memory` (RSS probe), `stub_model` (a fast
deterministic model), `rig` (the synthetic sensor rig and its messages), `node_harness` (NodeHarness: a real
node over DDS), `overload` (the overload player and its figures); this module is their command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from fuzz import FUZZ_KINDS, fuzz


def _fuzz(examples: int, kinds: list[str]) -> int:
    failed = 0
    for kind in kinds:
        try:
            report = fuzz(kind, examples, min_size=(88, 32) if kind == "compressed" else None)
        except Exception as error:  # print the failing case and go on with the other kinds
            print(f"{kind}: FAILED: {type(error).__name__}: {error}", flush=True)
            failed += 1
            continue
        print(report.line(), flush=True)
    return 1 if failed else 0


def _overload(seconds: float, rate: float, delay_ms: float) -> int:
    from overload import run_overload  # rclpy and the node: only for this command
    from rig import write_rig_calibration

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/calibration.yaml"
        write_rig_calibration(path)
        figures = run_overload(path, seconds=seconds, rate=rate, delay_s=delay_ms / 1e3,
                               domain_id=150 + os.getpid() % 80)
    print(figures.line(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python test/reliability/harness.py {fuzz,overload} ...`: longer runs that print figures."""
    parser = argparse.ArgumentParser(prog="python test/reliability/harness.py",
                                     description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fuzz_parser = sub.add_parser("fuzz", help="fuzz the message conversions")
    fuzz_parser.add_argument("--examples", type=int, default=2000, help="cases per message type")
    fuzz_parser.add_argument("--kinds", default=",".join(FUZZ_KINDS))
    over = sub.add_parser("overload", help="sustained overload of a node with a slow stub model")
    over.add_argument("--seconds", type=float, default=120.0)
    over.add_argument("--rate", type=float, default=0.0, help="x real time of a 10 Hz stream; 0 = max")
    over.add_argument("--delay-ms", type=float, default=60.0, help="emulated inference time [ms]")
    args = parser.parse_args(argv)
    if args.command == "overload":
        return _overload(args.seconds, args.rate, args.delay_ms)
    if args.command == "fuzz":
        return _fuzz(args.examples, args.kinds.split(","))
    return 2


if __name__ == "__main__":
    sys.exit(main())
