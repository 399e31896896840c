"""End-to-end demo: a synthetic nuScenes scene -> rosbag2 -> the occupancy node over real rclpy -> summary.

Generates (or reuses) a small synthetic nuScenes-format scene, converts it to a bag with `fusionocc convert`'s
code, starts `fusionocc node` with the shipped tiny checkpoint in its own process (as `ros2 run` would),
replays the bag from the demo's process through rclpy at real-time speed, collects the node's outputs and ends
with a summary: frames in/out, messages lost in transport, per-stage latency p50/p95, mIoU of the node's outputs
against the Occ3D ground truth (next to the offline evaluation of the same checkpoint on the same keyframes), and
PNG renders. Everything lands in --out (default outputs/demo).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionocc_core.cli_options import add_device, image_size
from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_ros.node_process import transport_losses

REPO = Path(__file__).resolve().parents[1]
# The redesigned `tiny` preset (every sweep in real time on 2 cores); tiny_synth.pt beside it is the older,
# slower `tiny_v1` model, kept for comparison.
SHIPPED_CHECKPOINT = REPO / "fusionocc_core" / "assets" / "tiny_synth_v2.pt"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs on. The defaults finish in a few minutes on 2 CPU cores."""

    out_dir: Path = Path("outputs/demo")
    cache_dir: Path = Path(".cache/synth")
    keyframes: int = 8  # 2 Hz keyframes of the scene (8 = 3.5 s of driving)
    seed: int = 2026  # scene seed; the shipped checkpoint was trained on other seeds (held-out scene)
    image_width: int = 704
    image_height: int = 396
    checkpoint: Path | None = None  # None = the shipped tiny checkpoint
    device: str = "auto"
    rate: float = 1.0  # replay speed factor (1.0 = real time)


@dataclass
class DemoSummary:
    dataroot: str
    bag: str
    checkpoint: str
    frames_published: int
    frames_out: int
    node_counters: dict[str, int]
    latency_ms: dict[str, dict[str, float]]
    node_miou_camera_mask: float
    node_miou_no_mask: float
    offline_miou_camera_mask: float | None
    offline_miou_no_mask: float | None
    node_offline_voxel_agreement: float | None
    node_offline_voxel_agreement_camera_mask: float | None
    messages_sent: dict[str, int] = field(default_factory=dict)  # by the replay, per node input
    transport_lost: dict[str, int] = field(default_factory=dict)  # sent but never counted in by the node
    renders: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _stamp_us(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000 + msg.header.stamp.nanosec // 1000


def _keyframe_truth(nusc: Any, dataroot: Path, scene: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """lidar stamp [us] -> {token, semantics, mask_camera} for each keyframe of the scene."""
    truth = {}
    token = scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])
        with np.load(dataroot / "gts" / scene["name"] / token / "labels.npz") as gts:
            truth[lidar["timestamp"]] = {"token": token, "semantics": gts["semantics"],
                                         "mask_camera": gts["mask_camera"].astype(bool)}
        token = sample["next"]
    return truth


# The node counters the summary prints: outcomes and losses, not the per-input arrival counts.
SUMMARY_COUNTERS = ("dropped", "rejected", "published", "inference", "sync:", "no_odometry", "lost:")
NodeRun = tuple[dict[int, np.ndarray], dict[str, list[float]], dict[str, int], dict[str, int]]


def _run_node_on_bag(bag: Path, calibration: Path, checkpoint: Path | None, options: DemoOptions,
                     domain_id: int) -> NodeRun:
    """Starts `fusionocc node` in its own process (as `ros2 run` would), replays the bag from this process and
    records what the node publishes. Returns the dense grids by stamp, per-stage timings, the node's final
    counters and what the replay sent per node input (counter key -> messages)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64

    from fusionocc_ros.bag_layout import LIDAR_TOPIC, ODOM_TOPIC, camera_info_topic, image_topic
    from fusionocc_ros.conversions import image_to_dense_grid
    from fusionocc_ros.node_process import NodeProcess, settle_path, wait_for_publishers
    from fusionocc_ros.occupancy_node import DEBUG_STAGES
    from fusionocc_ros.replay import replay_bag
    from fusionocc_ros.transport import apply_transport_profile

    stages = (*DEBUG_STAGES, "processing_time")
    args = ["--calibration", str(calibration), "--preset", "tiny", "--device", options.device,
            "--image-transport", "compressed"]
    if checkpoint is not None:
        args += ["--checkpoint", str(checkpoint)]
    args += ["--ros-args", "-p", "jpeg_draft:=false"]  # full JPEG decode, as the offline path it is compared with
    node = NodeProcess(args, domain_id=domain_id)  # started before this process picks its own profile
    grids: dict[int, np.ndarray] = {}
    timings: dict[str, list[float]] = {stage: [] for stage in stages}
    live: dict[str, int] = {}  # the node's counters from /diagnostics
    lock = threading.Lock()
    with node:
        node.wait_ready()
        apply_transport_profile("sender")
        context = Context()
        rclpy.init(context=context, domain_id=domain_id)
        recorder = rclpy.create_node("demo_recorder", context=context)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

        def on_grid(msg: Any) -> None:
            grid = image_to_dense_grid(msg)
            with lock:
                grids[_stamp_us(msg)] = grid

        def on_diagnostics(msg: Any) -> None:
            for status in msg.status:
                if status.name.endswith(": occupancy"):
                    with lock:
                        live.clear()
                        live.update({kv.key: int(kv.value) for kv in status.values if kv.value.isdigit()})

        recorder.create_subscription(Image, "/occupancy_node/output/dense_grid", on_grid, qos)
        recorder.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos)
        for stage in stages:
            def on_timing(msg: Any, stage: str = stage) -> None:
                with lock:
                    timings[stage].append(msg.data)

            recorder.create_subscription(Float64, f"/occupancy_node/debug/{stage}_ms", on_timing, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(recorder)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        try:
            wait_for_publishers(recorder, ["/occupancy_node/output/dense_grid", "/diagnostics"])
            # the node's inputs only: /tf and /tf_static need tf2_msgs, which has no PyPI wheel (and the node reads
            # extrinsics from calibration.yaml), /occ_gt is for the scoring below
            inputs = [LIDAR_TOPIC, ODOM_TOPIC, *(t for name in CAMERA_NAMES
                                                 for t in (image_topic(name), camera_info_topic(name)))]
            report = replay_bag(bag, rate=options.rate, node=recorder, topics=inputs, wait_for_subscribers=10.0,
                                delay=0.5)
            sent = {"pointcloud": report.published.get(LIDAR_TOPIC, 0),
                    "odometry": report.published.get(ODOM_TOPIC, 0)}
            for name in CAMERA_NAMES:
                sent[name] = report.published.get(image_topic(name), 0)
                sent[f"{name}/camera_info"] = report.published.get(camera_info_topic(name), 0)
            # wait (from the node's /diagnostics) until it has taken in the last sweep, finished every synced
            # group and the recorder holds every published grid
            deadline = time.monotonic() + 120.0
            while time.monotonic() < deadline:
                with lock:
                    done = (live.get("in:pointcloud", 0) >= sent["pointcloud"]
                            and settle_path(live, sent["pointcloud"])
                            and live.get("sync:synced", 0) > 0 and len(grids) >= live.get("published", 0))
                if done:
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # the last debug/timing messages
        finally:
            counters = node.stop()
            executor.shutdown()
            recorder.destroy_node()
            context.try_shutdown()
            spin.join(timeout=5)
    return grids, timings, counters, sent


def _offline_scores(dataroot: Path, work: Path, checkpoint: Path | None, device: str) -> tuple[float, float] | None:
    """mIoU (camera mask, no mask) of the same checkpoint through the offline evaluation path (`fusionocc eval`'s
    code); its predictions are saved as `<work>/offline_predictions/<token>.npz`."""
    import torch

    from fusionocc_core.data.collate import collate
    from fusionocc_core.data.dataset import DatasetConfig, OccupancyDataset
    from fusionocc_core.data.infos import build_infos, save_infos
    from fusionocc_core.model.checkpoint import load_checkpoint
    from fusionocc_ros.bag_converter import load_nuscenes
    from training.evaluate import evaluate_model

    if checkpoint is None:
        return None
    nusc = load_nuscenes(dataroot)
    info_path = save_infos(build_infos(nusc, progress=False), work / "fusionocc_infos.pkl")
    resolved = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    model = load_checkpoint(checkpoint, resolved).eval()
    dataset = OccupancyDataset(info_path, input_size=model.config.camera.input_size, train=False, split=None,
                               config=DatasetConfig(with_imgseg=False))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=collate)
    result = evaluate_model(model.predict, loader, device=resolved, split=None, total=len(dataset), progress=False,
                            save_dir=work / "offline_predictions")
    return result.camera_mask.miou, result.no_mask.miou


def run_demo(options: DemoOptions) -> DemoSummary:
    """Runs the whole demo; see the module docstring."""
    from fusionocc_core.metrics import OccupancyMetric
    from fusionocc_core.render import bev_image, render_comparison
    from fusionocc_core.synth import ensure_dataset
    from fusionocc_ros.bag_converter import ConvertOptions, convert_scene, load_nuscenes

    start = time.monotonic()
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = options.checkpoint or (SHIPPED_CHECKPOINT if SHIPPED_CHECKPOINT.is_file() else None)
    if checkpoint is None:
        print("WARNING: no trained checkpoint found; the node runs the tiny preset with RANDOM weights "
              "(the plumbing works, the occupancy is meaningless).", file=sys.stderr)

    print(f"[1/5] synthetic scene (seed {options.seed}, {options.keyframes} keyframes, cached in "
          f"{options.cache_dir})", flush=True)
    dataroot = ensure_dataset(options.cache_dir, num_scenes=1, keyframes_per_scene=options.keyframes,
                              seed=options.seed, image_width=options.image_width,
                              image_height=options.image_height, with_sweeps=False)
    nusc = load_nuscenes(dataroot)
    scene = nusc.scene[0]

    print(f"[2/5] converting {scene['name']} to a rosbag2 (MCAP)", flush=True)
    bag = out / "bag" / scene["name"]
    convert = convert_scene(nusc, scene["name"], bag, options=ConvertOptions(
        keyframes_only=True, with_occ_gt=True, overwrite=True, progress=False))

    print(f"[3/5] occupancy node (own process) + replay at {options.rate}x real time over rclpy", flush=True)
    domain_id = 100 + os.getpid() % 100
    assert convert.calibration_path is not None  # with_calibration is on by default
    grids, timings, counters, sent = _run_node_on_bag(bag, convert.calibration_path, checkpoint, options,
                                                           domain_id)

    print("[4/5] scoring the node's outputs against the Occ3D ground truth", flush=True)
    truth = _keyframe_truth(nusc, dataroot, scene)
    with_mask, without = OccupancyMetric(use_camera_mask=True), OccupancyMetric(use_camera_mask=False)
    for stamp, labels in grids.items():
        if stamp in truth:
            with_mask.update(labels, truth[stamp]["semantics"], truth[stamp]["mask_camera"])
            without.update(labels, truth[stamp]["semantics"])
    offline = _offline_scores(dataroot, out, checkpoint, options.device)
    agreement = agreement_visible = None
    if offline is not None:  # voxel-wise agreement of the node's outputs with the offline predictions
        same = total = same_visible = visible = 0
        for stamp, labels in grids.items():
            if stamp in truth:
                with np.load(out / "offline_predictions" / f"{truth[stamp]['token']}.npz") as offline_pred:
                    equal = offline_pred["semantics"] == labels
                mask = truth[stamp]["mask_camera"].astype(bool)
                same, total = same + int(equal.sum()), total + labels.size
                same_visible, visible = same_visible + int(equal[mask].sum()), visible + int(mask.sum())
        agreement = same / total if total else None
        agreement_visible = same_visible / visible if visible else None

    print("[5/5] rendering", flush=True)
    renders = []
    matched = sorted(stamp for stamp in grids if stamp in truth)
    if matched:
        from PIL import Image as PILImage

        stamp = matched[len(matched) // 2]
        sample = nusc.get("sample", truth[stamp]["token"])
        images = [np.asarray(PILImage.open(nusc.get_sample_data_path(sample["data"][name])).convert("RGB"))
                  for name in CAMERA_NAMES]
        comparison = render_comparison(grids[stamp], truth[stamp]["semantics"], images=images)
        PILImage.fromarray(comparison).save(out / "prediction_vs_ground_truth.png")
        renders.append(str(out / "prediction_vs_ground_truth.png"))
        strip = np.concatenate([np.concatenate([bev_image(grids[s]), bev_image(truth[s]["semantics"])], axis=0)
                                for s in matched], axis=1)
        PILImage.fromarray(strip).save(out / "bev_sequence.png")
        renders.append(str(out / "bev_sequence.png"))

    latency = {stage: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": len(v)}
               for stage, v in timings.items() if v}
    summary = DemoSummary(
        dataroot=str(dataroot), bag=str(bag), checkpoint=str(checkpoint) if checkpoint else "random tiny weights",
        frames_published=sent["pointcloud"], frames_out=len(grids), node_counters=counters, latency_ms=latency,
        messages_sent=sent, transport_lost=transport_losses(sent, counters),
        node_miou_camera_mask=with_mask.compute().miou, node_miou_no_mask=without.compute().miou,
        offline_miou_camera_mask=offline[0] if offline else None,
        offline_miou_no_mask=offline[1] if offline else None,
        node_offline_voxel_agreement=agreement,
        node_offline_voxel_agreement_camera_mask=agreement_visible,
        renders=renders, seconds=time.monotonic() - start)
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=1, default=str))
    return summary


def format_summary(summary: DemoSummary) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None or np.isnan(value) else f"{100 * value:.2f}"

    lines = [
        "",
        "=== fusionocc demo summary ===",
        f"checkpoint          {summary.checkpoint}",
        f"lidar frames        {summary.frames_published} replayed, {summary.frames_out} occupancy outputs",
        f"transport           player and node in separate processes: {sum(summary.messages_sent.values())} "
        f"messages sent, {sum(summary.transport_lost.values())} lost"
        + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(summary.transport_lost.items())) + ")"
           if summary.transport_lost else ""),
        "node counters       " + ", ".join(f"{k}={v}" for k, v in sorted(summary.node_counters.items())
                                             if k.startswith(SUMMARY_COUNTERS)),
        "latency per stage   p50 / p95 [ms]",
    ]
    lines += [f"  {stage:18s}{v['p50']:8.1f} / {v['p95']:8.1f}" for stage, v in summary.latency_ms.items()]
    lines += [
        f"mIoU node outputs   {pct(summary.node_miou_camera_mask)} (camera mask), "
        f"{pct(summary.node_miou_no_mask)} (no mask)",
        f"mIoU offline eval   {pct(summary.offline_miou_camera_mask)} (camera mask), "
        f"{pct(summary.offline_miou_no_mask)} (no mask)",
        f"node vs offline     {pct(summary.node_offline_voxel_agreement)} % of voxels identical "
        f"({pct(summary.node_offline_voxel_agreement_camera_mask)} % inside the camera mask)",
        "files",
        f"  bag               {summary.bag}",
        *[f"  render            {path}" for path in summary.renders],
        f"  summary           {Path(summary.renders[0]).parent / 'summary.json' if summary.renders else ''}",
        f"finished in {summary.seconds:.0f} s",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DemoOptions()
    parser.add_argument("--out", type=Path, default=defaults.out_dir, help="output folder (default: outputs/demo)")
    parser.add_argument("--cache", type=Path, default=defaults.cache_dir,
                        help="where the synthetic scene is generated once and reused (default: .cache/synth)")
    parser.add_argument("--keyframes", type=int, default=defaults.keyframes,
                        help="keyframes of the demo scene, 2 Hz (default: 8)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="scene seed (default: 2026)")
    parser.add_argument("--image-size", type=image_size, metavar="WxH",
                        default=(defaults.image_width, defaults.image_height),
                        help="camera image size (default: 704x396)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="FusionOcc checkpoint (default: the shipped tiny synthetic-world checkpoint)")
    add_device(parser, what="device the node and the offline evaluation run on")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="replay speed factor (default: 1.0)")


def run(args: argparse.Namespace) -> int:
    width, height = args.image_size
    options = DemoOptions(out_dir=args.out, cache_dir=args.cache, keyframes=args.keyframes, seed=args.seed,
                          image_width=width, image_height=height, checkpoint=args.checkpoint,
                          device=args.device, rate=args.rate)
    summary = run_demo(options)
    print(format_summary(summary))
    return 0 if summary.frames_out > 0 else 1
