"""The demo end to end on a small setting: synthetic scene -> bag -> node (own process) over rclpy -> summary and
renders.

The node's outputs must agree with what the offline evaluation of the same checkpoint predicts on the same keyframes
(same preprocessing, same temporal window), so both mIoUs agree.
"""
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy")

from fusionocc_core.model.checkpoint import save_checkpoint
from fusionocc_core.model.presets import build_model
from fusionocc_ros.demo import SHIPPED_CHECKPOINT, DemoOptions, format_summary, run_demo


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    if SHIPPED_CHECKPOINT.is_file():
        return SHIPPED_CHECKPOINT
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model("tiny"))
    return path


def test_demo_outputs_match_the_offline_evaluation(tmp_path, checkpoint):
    torch.set_num_threads(2)
    # slow replay so the node has time for every keyframe (no worker_busy drops) on a loaded CPU
    options = DemoOptions(out_dir=tmp_path / "demo", keyframes=3, seed=7, checkpoint=checkpoint, device="cpu",
                          rate=0.05)
    summary = run_demo(options)
    text = format_summary(summary)
    assert summary.frames_published == 3
    # player (this process) and node (its own process) over the middleware: nothing lost in transport, and
    # every input the replay sent was counted in by the node
    assert summary.transport_lost == {}, text
    assert summary.node_counters["in:pointcloud"] == 3 and summary.messages_sent["pointcloud"] == 3
    assert all(summary.node_counters[f"in:{key}"] == n for key, n in summary.messages_sent.items()), text
    assert not any(key.startswith("lost:") for key in summary.node_counters), text
    assert summary.frames_out == 3, text
    # Same pixels (shared antialiased resize), same per-camera ego poses (odometry at each image stamp) and the
    # same temporal window as the offline path: measured 100 % identical voxels. The bound leaves room only for
    # a few near-tie logits flipping with a different thread count (below 1 voxel in 10,000).
    assert summary.node_offline_voxel_agreement is not None and summary.node_offline_voxel_agreement > 0.9999, text
    assert summary.node_offline_voxel_agreement_camera_mask > 0.9999, text
    for node, offline, tol in ((summary.node_miou_camera_mask, summary.offline_miou_camera_mask, 0.01),
                               (summary.node_miou_no_mask, summary.offline_miou_no_mask, 0.01)):
        assert math.isclose(node, offline, abs_tol=tol) or (np.isnan(node) and np.isnan(offline)), text
    assert {"inference", "processing_time"} <= set(summary.latency_ms)
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["frames_out"] == 3
    for render in summary.renders:
        with open(render, "rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
