"""Suite `convert`: nuScenes -> rosbag2 throughput and size."""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fusionocc_ros.bench.common import Row, SuiteResult

if TYPE_CHECKING:
    from nuscenes.nuscenes import NuScenes

    from fusionocc_ros.bag_converter import ConvertReport


def _timed_conversion(nusc: NuScenes, scene: str, storage: str) -> tuple[float, ConvertReport]:
    """Converts `scene` into a temporary folder (removed after): wall time [ms] and the report."""
    from fusionocc_ros.bag_converter import ConvertOptions, convert_scene

    out = Path(tempfile.mkdtemp(prefix="fusionocc-bench-"))
    try:
        start = time.perf_counter()
        report = convert_scene(nusc, scene, out / scene, options=ConvertOptions(storage=storage, progress=False))
        return (time.perf_counter() - start) * 1e3, report
    finally:
        shutil.rmtree(out, ignore_errors=True)


def suite_convert(quick: bool) -> SuiteResult:
    from fusionocc_core.synth import ensure_dataset
    from fusionocc_ros.bag_converter import load_nuscenes

    result = SuiteResult("convert")
    dataroot = ensure_dataset(Path(".cache/synth"), num_scenes=1, keyframes_per_scene=4 if quick else 8, seed=7,
                              image_width=704, image_height=396, with_sweeps=True, progress=False)
    nusc = load_nuscenes(dataroot)
    scene = nusc.scene[0]["name"]
    for storage in ("mcap", "sqlite3"):
        runs = [_timed_conversion(nusc, scene, storage) for _ in range(1 if quick else 3)]
        times = [ms for ms, _ in runs]
        report = runs[-1][1]
        frames = sum(count for topic, count in report.message_counts.items()
                     if topic.endswith("compressed") or topic == "/LIDAR_TOP")
        median = statistics.median(times)
        result.rows.append(Row(
            f"{storage}: {frames} sensor frames, {report.bag_bytes / 1e6:.1f} MB bag / "
            f"{report.source_bytes / 1e6:.1f} MB source = {report.bag_bytes / report.source_bytes:.3f}x",
            median, max(times), extra={"frames_per_s": frames / (median / 1e3), "bag_bytes": report.bag_bytes,
                                       "source_bytes": report.source_bytes, "messages": report.messages}))
        result.notes.append(f"{storage}: {frames / (median / 1e3):.0f} sensor frames/s "
                            f"({report.messages} messages incl. camera_info, tf, odom)")
    result.notes.append("synthetic scene with all sweeps, 704x396 JPEGs kept byte for byte (no re-encoding)")
    return result
