"""CPU threading for inference on cores shared with other work: passive OpenMP waits, a thread count the
process may actually use, one inter-op thread. Imports no torch at module level (see
`prepare_openmp_environment`).

Why: on a 2-core robot one other CPU-bound job (two busy processes) made a tiny-preset frame ~10x slower
(0.9-1.0 s -> 10.4 s; the image backbone 69 -> 2,179 ms), where a fair share of the cores explains ~2-3x.
torch's CPU kernels run in OpenMP parallel regions (GNU libgomp in the Linux pip wheels; their MKL uses the
same runtime), and libgomp's default wait policy *spins* at the end of each region until every thread has
finished. With the cores oversubscribed, the thread that finishes first burns its time slice spinning for a
sibling the kernel has descheduled, often in favour of the spinner itself, and that repeats for each of the
thousands of small regions of a frame. `OMP_WAIT_POLICY=PASSIVE` makes a waiting thread sleep on a futex
instead, so the core goes to the sibling (or to the other job). `fusionocc bench --suite contention` on the
2-core development VM, tiny-model frames beside 2 busy processes, each setup against its own quiet figure in
the same run: default threading with spconv Native 5.8x slower (1.95 -> 11.3 s, the issue's collapse),
default threading with the torch sparse path 2.75x, this configuration 1.95x (1.56 -> 3.05 s; target 2.5x).
One thread instead of two was no better overall (1.5x-3.1x slower under that load in exploratory runs)
and gives up the second core whenever it is free.

A purely passive wait has its own cost on an idle machine: every parallel region then starts by waking the
sleeping workers (a futex wake-up, tens of microseconds on a VM), and a frame runs thousands of small regions,
most of them in the lidar encoder's gathers and GEMM chunks. On the node's path that made a quiet frame ~1.5x
slower than the spinning default. libgomp's GOMP_SPINCOUNT bounds the spin before a waiting thread sleeps
(GOMP_SPINCOUNT wins over the policy's default spin count, 0 for PASSIVE); about 100,000 spins take a
millisecond, so `SPIN_COUNT` (2,000, ~20 us) bridges the gap between back-to-back kernels of a frame but sleeps
long before a descheduled sibling returns. Exploratory runs (2-core VM, node path, beside 2 busy processes):
spin 0 (pure passive) 570-700 ms quiet / 1,165-1,226 loaded, spin 1,000-3,000 360-530 / 950-1,100, spin 5,000+
worse under load (1,450-1,950); `fusionocc bench --suite contention` compares the configured setup with spin 0.

libgomp reads OMP_WAIT_POLICY once, when the library is loaded, i.e. during `import torch`, so the variable
must be in the environment *before* that import: call `prepare_openmp_environment()` (or
`configure_cpu_inference()`, which calls it) first thing in the process, before anything imports torch. Once
an OpenMP runtime is loaded both say so instead of pretending: the report's `wait_policy_applied` is False.
KMP_BLOCKTIME=0 is the same setting for Intel's OpenMP (libiomp5, e.g. conda builds of torch); libgomp ignores
it. `torch.__config__.parallel_info()` names the runtime (here "ATen parallel backend: OpenMP", MKL and oneDNN
on it) but not the wait policy, so the policy in force is the environment the runtime saw when it loaded
(`wait_policy_in_force`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

SPIN_COUNT = 2000  # libgomp spins before a waiting thread sleeps (~20 us; its spinning default is 300,000)
WAIT_POLICY_VARIABLES: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT),
                                         "KMP_BLOCKTIME": "0"}
_OPENMP_LIBRARIES = ("libgomp", "libiomp5", "libomp.so", "libomp-")  # GNU, Intel, LLVM runtimes
# What prepare_openmp_environment had in place before any OpenMP runtime loaded (i.e. what the runtime read).
_prepared_before_load: dict[str, str] = {}


def loaded_openmp_runtimes(maps_path: str | Path = "/proc/self/maps") -> list[str]:
    """Names of the OpenMP runtimes mapped into this process (Linux; [] where /proc is unavailable)."""
    try:
        text = Path(maps_path).read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        name = line.rsplit("/", 1)[-1]
        if any(marker in name for marker in _OPENMP_LIBRARIES) and name not in found:
            found.append(name)
    return found


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup CPU quota (containers started with --cpus), None when unlimited or unknown."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on: its affinity mask (taskset, cpusets) capped by a cgroup quota, >= 1.

    os.cpu_count() is the machine's count, which oversubscribes a container or a pinned process."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def prepare_openmp_environment(variables: dict[str, str] | None = None) -> bool:
    """Puts the passive wait policy into the environment for the OpenMP runtime torch is about to load.

    Variables the user already set are left alone (an explicit OMP_WAIT_POLICY=ACTIVE wins). Child processes
    inherit them too.

    Returns:
        True if no OpenMP runtime was loaded yet, i.e. the settings will apply to this process; False if one
        is loaded already (too late for this process: import this module and call it before `import torch`).
    """
    for name, value in (variables if variables is not None else WAIT_POLICY_VARIABLES).items():
        os.environ.setdefault(name, value)
    if loaded_openmp_runtimes():
        return False
    _prepared_before_load.update(
        {name: os.environ[name] for name in WAIT_POLICY_VARIABLES if name in os.environ})
    return True


def _initial_environment(path: str | Path = "/proc/self/environ") -> dict[str, str]:
    """The environment this process started with (exported by its parent), unaffected by os.environ edits."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def _read_at_load(name: str) -> str | None:
    """Environment variable `name` as the loaded OpenMP runtime read it: set by `prepare_openmp_environment`
    before the runtime loaded, or exported to the process at start; None if neither or if it cannot be told."""
    if name in _prepared_before_load:
        return _prepared_before_load[name]
    if not loaded_openmp_runtimes():  # nothing loaded yet: whatever is set now is what will be read
        return os.environ.get(name)
    return _initial_environment().get(name)


def wait_policy_in_force() -> str | None:
    """OMP_WAIT_POLICY as the loaded OpenMP runtime read it (None: unset, the runtime's spinning default)."""
    return _read_at_load("OMP_WAIT_POLICY")


def spin_count_in_force() -> int | None:
    """GOMP_SPINCOUNT as libgomp read it (None: unset or unreadable, the wait policy's default count)."""
    value = _read_at_load("GOMP_SPINCOUNT")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class CpuThreadReport:
    """What `configure_cpu_inference` set and what it could not.

    Attributes:
        threads: torch intra-op threads now in use.
        interop_threads: torch inter-op threads now in use.
        available_cpus: CPUs the process may use (affinity, cgroup quota).
        wait_policy: OMP_WAIT_POLICY as the OpenMP runtime read it at load (`wait_policy_in_force`; None:
            unset, the runtime's default, which spins).
        wait_policy_applied: True when the passive policy is the one in force.
        spin_count: GOMP_SPINCOUNT as libgomp read it (`spin_count_in_force`; None: the policy's default,
            0 for PASSIVE).
        openmp_runtimes: the OpenMP libraries loaded now (e.g. ["libgomp.so.1"] or a hashed wheel name).
        notes: what did not go as asked, one line each (empty when everything applied).
    """

    threads: int
    interop_threads: int
    available_cpus: int
    wait_policy: str | None
    wait_policy_applied: bool
    spin_count: int | None = None
    openmp_runtimes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a log."""
        policy = self.wait_policy or "default (spins)"
        if self.spin_count is not None:
            policy += f", spin {self.spin_count} before sleeping"
        text = (f"torch CPU threads {self.threads} (of {self.available_cpus} available), inter-op "
                f"{self.interop_threads}, OpenMP wait policy {policy}")
        return text + "".join(f"; {note}" for note in self.notes)


def configure_cpu_inference(num_threads: int | None = None, *, interop_threads: int = 1,
                            passive_wait: bool = True) -> CpuThreadReport:
    """Configures torch's CPU threads for inference next to other CPU-bound work.

    Call it first thing in the process, before anything imports torch, so that the passive wait policy reaches
    the OpenMP runtime (see the module docstring); later calls still set the thread counts and report the
    policy as not applied.

    Args:
        num_threads: intra-op threads; None uses every available CPU (affinity and cgroup quota, not the
            machine's count). Values above the available CPUs are capped: extra threads on oversubscribed
            cores only add waiting.
        interop_threads: inter-op pool size (1: inference runs one graph; the pool's extra threads would only
            compete for the same cores). torch accepts this once per process, before any inter-op work.
        passive_wait: put OMP_WAIT_POLICY=PASSIVE with a short spin (GOMP_SPINCOUNT=`SPIN_COUNT`), and
            KMP_BLOCKTIME=0 for Intel's runtime, into the environment first.

    Returns:
        A `CpuThreadReport`; its `notes` say what could not be applied.
    """
    notes: list[str] = []
    if passive_wait:
        prepare_openmp_environment()
    policy = wait_policy_in_force()
    applied = (policy or "").upper() == "PASSIVE"
    if passive_wait and not applied:
        other = os.environ.get("OMP_WAIT_POLICY", "PASSIVE").upper() != "PASSIVE"
        why = ("OMP_WAIT_POLICY is set to something else" if other
               else "an OpenMP runtime was loaded (torch imported) before this call")
        notes.append(f"passive OpenMP wait not in force: {why}; call configure_cpu_inference before "
                     "importing torch, or export OMP_WAIT_POLICY=PASSIVE")
    import torch

    cpus = available_cpus()
    threads = cpus if num_threads is None else max(1, min(int(num_threads), cpus))
    if num_threads is not None and num_threads > cpus:
        notes.append(f"{num_threads} threads asked, {cpus} CPUs available: using {cpus}")
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != interop_threads:
        try:
            torch.set_num_interop_threads(interop_threads)
        except RuntimeError as error:  # already set, or inter-op work already ran in this process
            notes.append(f"inter-op threads stay {torch.get_num_interop_threads()}: {str(error).strip()}")
    return CpuThreadReport(
        threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(), available_cpus=cpus,
        wait_policy=policy, wait_policy_applied=applied, spin_count=spin_count_in_force(),
        openmp_runtimes=loaded_openmp_runtimes(), notes=notes,
    )
