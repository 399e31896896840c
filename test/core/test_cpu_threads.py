"""configure_cpu_inference: CPUs from affinity and cgroup quota, the passive OpenMP wait policy only when it
can still reach the runtime (checked in fresh processes: it is read when torch loads), honest reports
otherwise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusionocc_core import cpu_threads
from fusionocc_core.cpu_threads import available_cpus, configure_cpu_inference, loaded_openmp_runtimes

ROOT = Path(__file__).resolve().parents[2]


def _fresh_python(code: str, env_extra: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")}
    env.update(env_extra or {})
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                               cwd=ROOT, timeout=300, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


REPORT = "import dataclasses, json; print(json.dumps(dataclasses.asdict(report)))"


def test_configured_before_torch_is_passive_with_one_interop_thread():
    report = _fresh_python("from fusionocc_core.cpu_threads import configure_cpu_inference\n"
                           "report = configure_cpu_inference()\n" + REPORT)
    assert report["wait_policy"] == "PASSIVE" and report["wait_policy_applied"]
    assert report["spin_count"] == cpu_threads.SPIN_COUNT  # a short spin before sleeping (module docstring)
    assert report["interop_threads"] == 1
    assert report["threads"] == available_cpus()
    assert any("gomp" in name or "omp" in name for name in report["openmp_runtimes"])
    assert report["notes"] == []


def test_configured_after_torch_says_the_policy_did_not_apply():
    report = _fresh_python("import torch\nfrom fusionocc_core.cpu_threads import configure_cpu_inference\n"
                           "report = configure_cpu_inference()\n" + REPORT)
    assert report["wait_policy"] is None and not report["wait_policy_applied"]
    assert any("before importing torch" in note for note in report["notes"])


def test_policy_exported_at_process_start_counts_as_in_force():
    report = _fresh_python("import torch\nfrom fusionocc_core.cpu_threads import configure_cpu_inference\n"
                           "report = configure_cpu_inference()\n" + REPORT, {"OMP_WAIT_POLICY": "passive"})
    assert report["wait_policy_applied"] and report["notes"] == []


def test_an_explicit_user_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)
    monkeypatch.setattr(cpu_threads, "loaded_openmp_runtimes", lambda: [])
    monkeypatch.setattr(cpu_threads, "_prepared_before_load", {})
    assert cpu_threads.prepare_openmp_environment() is True
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and os.environ["KMP_BLOCKTIME"] == "0"
    assert cpu_threads.spin_count_in_force() == 0  # the user's spin count, not ours
    monkeypatch.setattr(cpu_threads, "loaded_openmp_runtimes", lambda: ["libgomp.so.1"])
    assert cpu_threads.prepare_openmp_environment() is False  # a runtime is loaded: too late


def test_available_cpus_uses_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # --cpus=1.5
    assert available_cpus(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})  # taskset -c 3
    assert available_cpus(tmp_path) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert available_cpus(v1) == 1


def test_thread_count_is_capped_at_the_available_cpus():
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    try:
        interop = torch.get_num_interop_threads()
        report = configure_cpu_inference(available_cpus() + 7, interop_threads=interop, passive_wait=False)
        assert report.threads == available_cpus() == torch.get_num_threads()
        assert any("CPUs available" in note for note in report.notes)
        assert configure_cpu_inference(1, interop_threads=torch.get_num_interop_threads(),
                                       passive_wait=False).threads == 1
    finally:
        torch.set_num_threads(previous)


def test_loaded_openmp_runtimes_reads_the_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /venv/torch/lib/libgomp.so.1\n"
                    "7f01-7f02 r-xp 0 08:01 2 /venv/torch/lib/libgomp.so.1\n"
                    "7f02-7f03 r-xp 0 08:01 3 /usr/lib/libc.so.6\n")
    assert loaded_openmp_runtimes(maps) == ["libgomp.so.1"]
    assert loaded_openmp_runtimes(tmp_path / "missing") == []
