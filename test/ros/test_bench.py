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
    visibility = next(s for s in report["suites"] if s["name"] == "visibility")
    for row in visibility["rows"]:  # the fast columns agree with the marched rays, and are faster
        assert row["extra"]["agreement"] > 0.99 and row["speedup"] > 1, row


def test_speedup_is_baseline_over_median():
    assert Row("x", median_ms=2.0, p95_ms=3.0, baseline_ms=10.0).speedup == pytest.approx(5.0)
    assert Row("x", median_ms=2.0, p95_ms=3.0).speedup is None


def test_lidar_and_contention_suites_compare_against_their_baselines(tmp_path):
    """The lidar suite times both sparse backends on the node's fused sweep (outputs checked equal inside the
    suite); the contention suite runs default and configured threading in fresh processes, quiet and
    loaded."""
    out = tmp_path / "bench.json"
    assert run(main_args(["--quick", "--suite", "lidar", "--suite", "contention", "--json", str(out)])) == 0
    suites = {suite["name"]: suite for suite in json.loads(out.read_text())["suites"]}
    lidar = suites["lidar"]["rows"]
    assert [row["case"].rsplit(", ", 1)[-1] for row in lidar] == ["spconv Native", "torch rulebooks"]
    assert lidar[0]["extra"]["voxels"] > 10_000  # a real fused sweep, not a toy cloud
    assert lidar[1]["baseline_ms"] == lidar[0]["median_ms"]
    contention = suites["contention"]["rows"]
    setups = [row["case"].split(":")[0] for row in contention]
    assert setups == ["default", "default", "configured", "configured"]
    assert "wait PASSIVE" in contention[2]["case"] and "inter-op 1" in contention[2]["case"]
    assert "wait default" in contention[0]["case"]
    for quiet, loaded in (contention[0:2], contention[2:4]):
        assert loaded["baseline_ms"] == quiet["median_ms"]
        assert loaded["extra"]["slowdown"] == pytest.approx(loaded["median_ms"] / quiet["median_ms"])
