"""`fusionocc bench --quick` runs every suite, prints its table and writes JSON (the CI-sized benchmark)."""
import json

import pytest

from fusionocc_ros.bench import SUITES, Row, main_args, run


def test_quick_benchmark_runs_every_suite(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run(main_args(["--quick", "--json", str(out)])) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    names = [suite["name"] for suite in report["suites"]]
    assert names == list(SUITES)
    for suite in report["suites"]:
        assert f"== {suite['name']}" in printed
        if suite["skipped"]:
            assert suite["name"] == "gpu"  # the only suite allowed to skip here (no CUDA)
            continue
        assert suite["rows"], suite["name"]
        for row in suite["rows"]:
            assert row["median_ms"] > 0
    outputs = next(s for s in report["suites"] if s["name"] == "outputs")
    assert any(row["speedup"] and row["speedup"] > 1 for row in outputs["rows"])


def test_speedup_is_baseline_over_median():
    assert Row("x", median_ms=2.0, p95_ms=3.0, baseline_ms=10.0).speedup == pytest.approx(5.0)
    assert Row("x", median_ms=2.0, p95_ms=3.0).speedup is None
