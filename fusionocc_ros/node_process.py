"""`fusionocc node` in its own OS process, as `ros2 run` or `ros2 launch` starts it: for the demo and tests that
walk the user's path (player and node in separate processes, talking over the middleware).

The node prints one machine-readable line when it stops (`fusionocc node counters: {...}`); `NodeProcess.stop`
sends SIGINT as Ctrl-C would, waits, and returns those counters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fusionocc_core.errors import FusionOccError
from fusionocc_ros.transport import PROFILE_VARIABLES

COUNTERS_PREFIX = "fusionocc node counters: "
READY_MARK = "]: ready: "


class NodeProcessError(FusionOccError, RuntimeError):
    """The node process did not start or stop as expected; the message carries the end of its output."""


class NodeProcess:
    """Runs `python -m fusionocc_ros.cli node ARGS` with its output collected.

    Args:
        args: arguments after `fusionocc node` (e.g. --checkpoint, --calibration, --ros-args -p ...).
        domain_id: ROS_DOMAIN_ID of the process (None: inherited).
        env: extra environment; fusionocc's transport variables set in this process are not inherited, so the
            node chooses its own profile as it would when started from a shell.
    """

    def __init__(self, args: Sequence[str], *, domain_id: int | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
        if domain_id is not None:
            environment["ROS_DOMAIN_ID"] = str(domain_id)
        environment.update(env or {})
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.command = [sys.executable, "-m", "fusionocc_ros.cli", "node", *args]
        self.lines: list[str] = []
        self.counters: dict[str, int] | None = None
        self._ready = threading.Event()
        self._process = subprocess.Popen(self.command, env=environment, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="node-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if READY_MARK in line:
                self._ready.set()
            if line.startswith(COUNTERS_PREFIX):
                self.counters = json.loads(line[len(COUNTERS_PREFIX):])

    @property
    def pid(self) -> int:
        return self._process.pid

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.lines[-lines:])

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Blocks until the node logged `ready`; raises NodeProcessError when it exited or timed out."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=2.0)
                state = f"exited with {self._process.returncode}" if self._process.poll() is not None else "timed out"
                raise NodeProcessError(f"fusionocc node {state} before it was ready:\n{self.tail()}")

    def stop(self, timeout_s: float = 60.0) -> dict[str, int]:
        """Ctrl-C (SIGINT), wait for the exit, return the counters it printed."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise NodeProcessError(f"fusionocc node did not stop within {timeout_s:.0f} s:\n{self.tail()}") from None
        self._reader.join(timeout=5.0)
        if self.counters is None:
            raise NodeProcessError(f"fusionocc node exited with {self._process.returncode} without counters:\n"
                                   f"{self.tail()}")
        return self.counters

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def transport_losses(sent: Mapping[str, int], counters: Mapping[str, int]) -> dict[str, int]:
    """Messages a player sent minus what the node counted in, per node input (`pointcloud`, each camera...),
    only where something was lost; `sent` maps the node's counter key (`in:<key>`) to the count sent."""
    return {key: count - counters.get(f"in:{key}", 0) for key, count in sent.items()
            if count - counters.get(f"in:{key}", 0) > 0}


# The synchroniser's per-sweep fates (node counter keys): each sweep it took in ends in exactly one of them.
SWEEP_FATES = ("sync:synced", "sync:incomplete_sweeps", "sync:dropped:late_lidar", "sync:dropped:duplicate_lidar",
               "sync:dropped:lidar_queue_full", "sync:dropped:superseded")


def settle_path(counters: Mapping[str, int], sweeps: int | None = None) -> bool:
    """True when nothing is in flight: every synchronised group has been published or dropped with a reason and,
    given the number of sweeps sent, the synchroniser has decided on each of them (a sweep counted in but still
    waiting for its images is in flight too)."""
    if sweeps is not None and sum(counters.get(key, 0) for key in SWEEP_FATES) < sweeps:
        return False
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped:"))
    return counters.get("published", 0) + dropped + counters.get("inference_failures", 0) >= counters.get(
        "sync:synced", 0)


def wait_for_publishers(node: Any, topics: Sequence[str], timeout_s: float = 20.0) -> bool:
    """Waits until every topic has a publisher in `node`'s view of the graph, then a moment for the match to
    complete both ways (a listener started after the node would otherwise miss its first outputs). False on
    timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(node.count_publishers(topic) > 0 for topic in topics):
            time.sleep(0.5)
            return True
        time.sleep(0.05)
    return False
