"""Suite `contention`: a frame next to a competing CPU-bound load, default threading against
`configure_cpu_inference`. Each setup runs in a fresh process: the OpenMP wait policy is fixed when torch loads."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from fusionocc_ros.bench.common import Row, SuiteResult

if TYPE_CHECKING:
    import torch

CONTENTION_TARGET = 2.5  # frame time under the load / quiet, with the configuration
_HOG_CODE = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"
_REPOSITORY = Path(__file__).resolve().parents[2]


class ContentionTimings(TypedDict):
    """What `contention_child` measured (JSON from the child process)."""

    quiet_ms: list[float]
    loaded_ms: list[float]
    threads: int
    interop_threads: int
    wait_policy: str | None
    spin_count: int | None
    report: str | None  # CpuThreadReport.summary() of the configured setup


def _workload(workload: str, backend: str, calls: int) -> Callable[[], None]:
    """The timed call: "frame", one keyframe through the node's path (`Predictor.predict` of the tiny model:
    preprocessing, temporal history, model) on the synthetic world, the lidar history already full, a new
    keyframe at each of the `calls` calls; "backbone", the 12 tiny-preset images through ResNet-18 (the stage
    most hurt by spinning threads)."""
    import torch

    from fusionocc_core.model.presets import build_model, get_config

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    model.lidar_encoder.sparse_backend = backend
    if workload == "frame":
        return _node_frames(model, calls)
    height, width = get_config("tiny").camera.input_size
    images = torch.randn(12, 3, height, width)

    def backbone() -> None:
        with torch.inference_mode():
            model.camera.backbone(images)

    return backbone


def _node_frames(model: torch.nn.Module, calls: int) -> Callable[[], None]:
    """`calls` successive keyframes through a Predictor, after NUM_LIDAR_KEYFRAMES untimed ones (history full).
    JPEG decoding happens here, untimed: the node decodes on its own thread."""
    from fusionocc_core.predictor import NUM_LIDAR_KEYFRAMES, Predictor
    from fusionocc_ros.bench.node import decode_jpegs, synthetic_frames, with_images

    predictor = Predictor(model, device="cpu")
    frames = [with_images(frame, decode_jpegs(jpegs, predictor.input_size))
              for jpegs, frame in synthetic_frames(NUM_LIDAR_KEYFRAMES + calls)]
    stream = iter(frames)
    for _ in range(NUM_LIDAR_KEYFRAMES):
        predictor.predict(next(stream))

    def next_frame() -> None:
        predictor.predict(next(stream))

    return next_frame


def contention_child(configured: bool, workload: str, repeats: int, hogs: int, hog_limit_s: float,
                     backend: str = "auto") -> ContentionTimings:
    """Runs in a fresh process (the wait policy is fixed when torch loads): times `workload` quietly, then
    with `hogs` busy-looping processes beside it. Returns the timings and the threading actually in force.

    `backend` is the lidar encoder's sparse backend for the "frame" workload ("spconv": spconv's CPU Native
    algorithm, "auto": the torch rulebooks on CPU)."""
    report = None
    if configured:
        from fusionocc_core.cpu_threads import configure_cpu_inference

        report = configure_cpu_inference()  # before torch loads, as the node
    import torch

    from fusionocc_core.cpu_threads import spin_count_in_force, wait_policy_in_force

    run = _workload(workload, backend, calls=1 + 2 * repeats)

    def measure() -> list[float]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        return times

    run()  # warm-up
    quiet = measure()
    load = [subprocess.Popen([sys.executable, "-c", _HOG_CODE, str(hog_limit_s)]) for _ in range(hogs)]
    try:
        time.sleep(0.3)  # let the scheduler see the hogs
        loaded = measure()
    finally:
        for process in load:
            process.kill()
            process.wait()
    return {"quiet_ms": quiet, "loaded_ms": loaded, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "wait_policy": wait_policy_in_force(),
            "spin_count": spin_count_in_force(),
            "report": report.summary() if report else None}


def _run_contention_child(configured: bool, workload: str, repeats: int, hogs: int, backend: str,
                          spin_count: int | None = None) -> ContentionTimings:
    """One setup in a fresh process. `spin_count`: GOMP_SPINCOUNT exported to it (for a configured setup:
    in place of `cpu_threads.SPIN_COUNT`; 0 is the purely passive wait)."""
    env = dict(os.environ)
    for name in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        env.pop(name, None)  # "default" means the runtime's defaults; "configured" sets its own
    if spin_count is not None:
        env["GOMP_SPINCOUNT"] = str(spin_count)
    call = f"contention_child({configured}, {workload!r}, {repeats}, {hogs}, 600.0, {backend!r})"
    code = ("import json; from fusionocc_ros.bench.contention import contention_child; "
            f"print('CONTENTION ' + json.dumps({call}))")
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               timeout=1800, cwd=str(_REPOSITORY))
    lines = [line for line in completed.stdout.splitlines() if line.startswith("CONTENTION ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"contention child failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(lines[-1][len("CONTENTION "):])


def suite_contention(quick: bool) -> SuiteResult:
    result = SuiteResult("contention")
    # quick: the image backbone only (seconds); full: whole tiny-model frames, first with default threading and
    # spconv Native, then default threading with the torch sparse path, then configured.
    workload = "backbone" if quick else "frame"
    repeats, hogs = (3, 2) if quick else (5, 2)
    setups: list[tuple[str, str, int | None]] = [("default", "auto", None), ("configured", "auto", None)]
    if not quick:  # also spconv Native, and the purely passive wait (no spin before sleeping)
        setups = [("default", "spconv", None), *setups, ("configured, GOMP_SPINCOUNT=0", "auto", 0)]
    quiet_first = None
    for name, backend, spin_count in setups:
        child = _run_contention_child(name.startswith("configured"), workload, repeats, hogs, backend,
                                      spin_count)
        quiet, loaded = statistics.median(child["quiet_ms"]), statistics.median(child["loaded_ms"])
        quiet_first = quiet_first if quiet_first is not None else quiet
        label = f"{name}{', spconv Native' if backend == 'spconv' else ''}: {workload}"
        setting = (f"{child['threads']} threads, inter-op {child['interop_threads']}, "
                   f"wait {child['wait_policy'] or 'default'}"
                   + (f", spin {child['spin_count']}" if child["spin_count"] is not None else ""))
        result.rows.append(Row(f"{label} quiet ({setting})", quiet,
                               float(np.percentile(child["quiet_ms"], 95)), baseline_ms=quiet_first,
                               extra={"threads": child["threads"], "backend": backend}))
        result.rows.append(Row(f"{label} beside {hogs} busy processes", loaded,
                               float(np.percentile(child["loaded_ms"], 95)), baseline_ms=quiet,
                               extra={"slowdown": loaded / quiet, "target": CONTENTION_TARGET,
                                      "backend": backend}))
        result.notes.append(f"{label}: {loaded / quiet:.2f}x slower beside {hogs} busy processes than quiet"
                            + (f" (target <= {CONTENTION_TARGET}x); {child['report']}"
                               if child["report"] else ""))
    result.notes.append("each setup in a fresh process (the OpenMP wait policy is read when torch loads); "
                        "ratio column = quiet / this row (below 1: slower), quiet rows against the first "
                        "setup's quiet figure. 'frame': one keyframe through the node's path (Predictor, tiny preset, "
                        "synthetic world, 8 lidar sweeps fused); 'backbone': ResNet-18 on the 12 tiny-preset images")
    return result
