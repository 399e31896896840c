"""The training loop end to end on the real OccupancyDataset over the synthetic world: a few dozen steps on
one sample drive the loss down, the CLI rejects bad options clearly, and `torchrun --nproc-per-node 2 -m
training.train` runs the real tiny preset on CPU.

The full FusionOcc keeps its 200 x 200 x 16 grid even in the tiny preset (seconds to tens of seconds per CPU
step here), so the multi-step tests train `MicroOcc`: FusionOcc's exact forward contract (same inputs, same
`FusionOccOutput`, the real `FusionOccLoss` with its depth and image-seg terms) at a fraction of the cost.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core import occ3d
from fusionocc_core.model.fusionocc import FusionOccOutput
from fusionocc_core.model.presets import get_config
from fusionocc_ros.cli import main as cli_main
from training import train as T
from training.config import TrainConfig, load_config
from training.distributed import DistInfo

REPO = Path(__file__).resolve().parents[2]
INPUT_SIZE = (64, 176)  # 4 x 11 feature grid at stride 16


class MicroOcc(nn.Module):
    """A stand-in with FusionOcc's forward contract. Logits = a linear head over [mean embedded lidar point of
    the voxel, z-level embedding, pooled key-frame image features], computed as a broadcast sum plus a scatter
    at the voxels holding points (the same function as the head on the concatenation, without a 640k x 24
    tensor); depth and seg heads on stride-16 average-pooled images."""

    def __init__(self, config: TrainConfig | None = None, *, patch_dropout: float = 0.3) -> None:
        super().__init__()
        self.patch_dropout = patch_dropout
        tiny = get_config("tiny_v1")  # shapes only; pinned so the loss scales the tests were tuned on stay put
        self.config = replace(tiny, camera=replace(tiny.camera, input_size=INPUT_SIZE))
        classes = occ3d.NUM_CLASSES
        self.image = nn.Conv2d(3, 8, kernel_size=1)
        self.depth = nn.Conv2d(8, self.config.camera.num_depth_bins, kernel_size=1)
        self.seg = nn.Conv2d(8, classes, kernel_size=1)
        self.point = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, classes))
        self.z_logits = nn.Parameter(torch.zeros(occ3d.GRID_SHAPE[2], classes))
        self.image_head = nn.Linear(8, classes)

    def forward(self, images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points, sparse_depth):
        return self.forward_with_aux(images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points,
                                     sparse_depth).logits

    def forward_with_aux(self, images, intrinsics, cam_to_key_ego, post_rots, post_trans, bda, points,
                         sparse_depth):
        b, _, n = images.shape[:3]
        feat = F.relu(self.image(F.avg_pool2d(images[:, 0].flatten(0, 1), 16)))  # (B*N, 8, h, w)
        if self.training and self.patch_dropout:  # like the depth-patch dropout: resume must restore the RNG
            feat = feat * (torch.rand_like(feat[:, :1]) >= self.patch_dropout)
        image_term = self.image_head(feat.mean((2, 3)).view(b, n, 8).mean(1))  # (B, C)
        x, y, z = occ3d.GRID_SHAPE
        lo = torch.tensor(occ3d.POINT_CLOUD_RANGE[:3])
        idx = ((points[:, 1:4] - lo) / occ3d.VOXEL_SIZE).floor().long()
        keep = ((idx >= 0) & (idx < torch.tensor([x, y, z]))).all(1)
        idx, pts = idx[keep], points[keep]
        lin = ((pts[:, 0].long() * x + idx[:, 0]) * y + idx[:, 1]) * z + idx[:, 2]
        voxels, inverse = torch.unique(lin, return_inverse=True)
        classes = self.z_logits.shape[1]
        mean = torch.zeros(len(voxels), classes).index_add_(0, inverse, self.point(pts[:, 1:6]))
        mean = mean / torch.bincount(inverse, minlength=len(voxels)).clamp(min=1)[:, None]
        base = self.z_logits.view(1, 1, 1, z, classes) + image_term.view(b, 1, 1, 1, classes)
        base = base.expand(b, x, y, z, classes)
        logits = base.reshape(-1, classes).index_add(0, voxels, mean).view(b, x, y, z, classes)
        empty = torch.zeros(0)
        return FusionOccOutput(logits, self.depth(feat).softmax(1), self.seg(feat), empty, empty, empty)


def micro_config(info_path: Path, out_dir: Path, **changes) -> TrainConfig:
    """A CPU test run: batch 1, no workers, tiny input, short warm-up."""
    base = dict(info_path=str(info_path), out_dir=str(out_dir), input_height=INPUT_SIZE[0],
                input_width=INPUT_SIZE[1], num_workers=0, warmup_iters=2, lr=1e-2, weight_decay=0.0,
                progress=False, log_interval=1, eval_interval=0, ckpt_interval=0, max_val_samples=1)
    return load_config(None, {**base, **changes})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine more threads only add contention (5x slower here)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def infos(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(out), "--no-progress"]) == 0
    return out / "fusionocc_infos.pkl"


def test_overfit_one_sample_drives_the_loss_down(infos, tmp_path):
    # One training sample (val split as the train split has 4; max_iters keeps it to 30 steps on sample 0).
    config = micro_config(infos, tmp_path, train_split="val", max_iters=30, ema=False, lr=2e-2)
    config = replace(config, info_path=str(infos))
    from fusionocc_core.data.dataset import OccupancyDataset

    real_build = T.build_datasets

    def one_sample(cfg, size):
        train_set, val_set = real_build(cfg, size)
        train_set.samples = train_set.samples[:1]
        return train_set, val_set

    T.build_datasets, saved = one_sample, T.build_datasets
    try:
        torch.manual_seed(0)
        summary = T.train(config, CPU, model_factory=MicroOcc, log=lambda *_: None)
    finally:
        T.build_datasets = saved
    losses = [h["loss/total"] for h in summary["history"]]
    occ = [h["loss/loss_occ"] for h in summary["history"]]
    assert {"loss/loss_occ", "loss/loss_depth", "loss/loss_seg"} <= set(summary["history"][0])
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert occ[-1] < 0.5 * occ[0], occ
    assert isinstance(OccupancyDataset, type)
    # The run folder holds what the README promises.
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.jsonl").is_file()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert [p.name for p in tmp_path.glob("step_*.pt")] == ["step_00000030.pt"]


def test_the_summary_keeps_the_losses_of_the_last_steps_only(infos, tmp_path):
    # A 24-epoch nuScenes run has ~0.7M steps: the returned history is bounded, metrics.jsonl has every log line.
    config = micro_config(infos, tmp_path, max_iters=4, ema=False)
    summary = T.train(config, CPU, model_factory=MicroOcc, log=lambda *_: None, history_steps=2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [r["loss/total"] for r in records if r["kind"] == "train"]
    assert len(logged) == 4 and summary["step"] == 4
    assert [h["loss/total"] for h in summary["history"]] == logged[-2:]


def test_each_log_line_is_the_mean_of_its_interval(infos, tmp_path):
    # With batch 1 a single step's loss is noise; the logged value averages every step since the last line.
    config = micro_config(infos, tmp_path, max_iters=5, ema=False, log_interval=2)
    summary = T.train(config, CPU, model_factory=MicroOcc, log=lambda *_: None, history_steps=5)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["loss/total"]) for r in records if r["kind"] == "train"]
    steps = [h["loss/total"] for h in summary["history"]]
    assert [s for s, _ in logged] == [2, 4, 5]  # the last step always logs
    expected = [sum(steps[0:2]) / 2, sum(steps[2:4]) / 2, steps[4]]
    assert [value for _, value in logged] == pytest.approx(expected, rel=1e-6)
    assert logged[0][1] != pytest.approx(steps[1], rel=1e-6)  # not the interval's last step


def test_enet_class_weights_come_from_the_training_labels(infos, tmp_path):
    from fusionocc_core.data.dataset import DatasetConfig, OccupancyDataset
    from fusionocc_core.model.losses import enet_class_weights
    from training.config import ConfigError

    config = micro_config(infos, tmp_path, max_iters=1, ema=False, class_weights="enet", use_mask=True)
    logged = []
    T.train(config, CPU, model_factory=MicroOcc, log=logged.append)
    line = next(m for m in logged if m.startswith("occupancy class weights (enet): "))
    train_set = OccupancyDataset(infos, input_size=INPUT_SIZE, train=True, split="train",
                                 config=DatasetConfig(with_imgseg=False))
    expected = enet_class_weights(train_set.class_counts(use_camera_mask=True))
    assert [float(w) for w in line.split(": ")[1].split()] == pytest.approx(expected.tolist(), abs=0.006)
    assert expected[occ3d.FREE_LABEL] == expected.min() and expected.max() > 10 * expected.min()
    assert T.occupancy_class_weights(replace(config, class_weights="none"), train_set, CPU, progress=False) is None
    with pytest.raises(ConfigError, match="class_weights must be one of"):
        load_config(None, {"class_weights": "inverse"})


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    T.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert T.run(_parse(["--set", "lrate=1"])) == 2
    assert "unknown option 'lrate'" in capsys.readouterr().err
    assert T.run(_parse(["--set", "epochs=two"])) == 2
    assert "'epochs' must be int" in capsys.readouterr().err
    assert T.run(_parse(["--out", str(tmp_path), "--device", "cpu"])) == 1
    assert "no info index given" in capsys.readouterr().err
    missing = tmp_path / "nope.pkl"
    assert T.run(_parse(["--infos", str(missing), "--out", str(tmp_path), "--device", "cpu"])) == 1
    assert "fusionocc prepare" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_tiny_preset(infos, tmp_path):
    """The real tiny FusionOcc, 2 gloo ranks on CPU, 2 steps, a checkpoint and the final export."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "--master-port",
           str(free_port()), "-m", "training.train",
           "--config", str(REPO / "training/configs/tiny_synth.yaml"),
           "--infos", str(infos), "--out", str(tmp_path), "--device", "cpu", "--max-iters", "2",
           "--set", "num_workers=0", "--set", "max_val_samples=2", "--set", "progress=false"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "x 2 rank(s)" in result.stdout
    assert [p.name for p in tmp_path.glob("step_*.pt")] == ["step_00000002.pt"]
    from fusionocc_core.model.checkpoint import load_checkpoint

    model = load_checkpoint(tmp_path / "model_final.pth")
    assert model.config == get_config("tiny")


def test_init_from_errors_are_named(infos, tmp_path):
    config = micro_config(infos, tmp_path / "run", init_from=str(tmp_path / "missing.pth"))
    with pytest.raises(T.TrainError, match="cannot initialise from .*missing.pth"):
        T.train(config, CPU, model_factory=MicroOcc, log=lambda *_: None)
    # A checkpoint holding nothing the camera branch can use: non-strict, but loading nothing is an error.
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"pts_bbox_head.weight": torch.zeros(3)}}, foreign)
    config = micro_config(infos, tmp_path / "run", init_camera_from=str(foreign))
    with pytest.raises(T.TrainError, match="initialised no camera weight"):
        T.train(config, CPU, model_factory=MicroOcc, log=lambda *_: None)


def test_export_stores_the_class_weights_for_calibration(tmp_path):
    from fusionocc_core.model.checkpoint import load_checkpoint_with_extra
    from fusionocc_core.model.presets import build_model

    weights = torch.linspace(1.5, 30.0, occ3d.NUM_CLASSES)
    T.export_model(tmp_path / "weighted.pth", build_model("tiny"), step=3, val=None, class_weights=weights)
    T.export_model(tmp_path / "plain.pth", build_model("tiny"), step=3, val=None)
    assert load_checkpoint_with_extra(tmp_path / "weighted.pth")[1]["class_weights"] == pytest.approx(
        weights.tolist())
    assert "class_weights" not in load_checkpoint_with_extra(tmp_path / "plain.pth")[1]


def test_the_model_is_built_at_the_configs_input_size():
    """An input size set in the config is the model's (and so its checkpoint's) input size; weights fit both."""
    from training.model_setup import build_model as build_for_config

    resized = build_for_config(load_config(None, {"model": "tiny", "input_height": 128, "input_width": 352}))
    preset = build_for_config(load_config(None, {"model": "tiny"}))
    assert resized.config.camera.input_size == (128, 352)
    assert preset.config.camera.input_size == get_config("tiny").camera.input_size
    resized.load_state_dict(preset.state_dict())  # strict: no parameter depends on the input size
    lidar = build_for_config(load_config(None, {"model": "tiny", "modality": "lidar", "input_height": 128,
                                                "input_width": 352}))
    assert not lidar.camera_enabled and lidar.config.camera.input_size == (128, 352)
