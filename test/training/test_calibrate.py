"""fusionocc adjust-logits: the tau sweep picks the scale that undoes a known prior, the offsets are folded
into the head exactly, and the command writes a loadable checkpoint that records what it did (and refuses
twice)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from fusionocc_core import occ3d
from fusionocc_core.model.checkpoint import load_checkpoint_with_extra, save_checkpoint
from fusionocc_core.model.presets import build_model
from fusionocc_ros.cli import main as cli_main
from training.calibrate import (
    LogitAdjustmentError,
    LogitCache,
    choose_tau,
    prior_offsets,
    refine_class_offsets,
    sweep_taus,
)
from training.evaluate import MODEL_INPUTS

BARRIER, CAR, MANMADE, FREE = 1, 4, 15, occ3d.FREE_LABEL


class FixedLogits(nn.Module):
    """Returns the logits stored in the batch: a model whose outputs the test chooses."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return inputs[0]


def class_bias(model: nn.Module) -> torch.Tensor:
    """The head's last bias as (sub-voxels, classes): an upsampling head has one bias per class and sub-voxel."""
    return model.head.predicter[-1].bias.view(-1, occ3d.NUM_CLASSES)


def _batch(logits: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    batch = {key: torch.zeros(1) for key in MODEL_INPUTS}
    batch["images"] = logits
    batch["voxel_semantics"] = gt
    batch["mask_camera"] = torch.ones_like(gt, dtype=torch.bool)
    return batch


def test_sweep_finds_the_scale_that_undoes_a_known_prior():
    # Ground truth: a car block in free space. The "model" scores the true class 1.0 and adds a learnt prior
    # of log w = 1.5 for car everywhere (what a loss with w_car = e^1.5 x w_free teaches): as trained, every
    # voxel is called car. tau * (-1.5) removes it once tau > 1/3; 0.5 is the smallest such grid value.
    gt = torch.full((1, 200, 200, 16), FREE, dtype=torch.long)
    gt[0, 90:110, 90:110, 2:6] = CAR
    weights = torch.ones(occ3d.NUM_CLASSES)
    weights[CAR] = math.exp(1.5)
    logits = torch.nn.functional.one_hot(gt, occ3d.NUM_CLASSES).float() + torch.log(weights)
    scores = sweep_taus(FixedLogits(), [_batch(logits, gt)], prior_offsets(weights), [0, 0.25, 0.5, 0.75, 1],
                        progress=False)
    car_share = (gt == CAR).float().mean().item()
    assert scores[0].camera_mask.iou[CAR] == pytest.approx(car_share)  # everything is car
    assert scores[1].camera_mask.miou == pytest.approx(car_share)  # 1.125 > 1: still everything car
    assert [s.camera_mask.miou for s in scores[2:]] == pytest.approx([1.0, 1.0, 1.0])
    assert [s.no_mask.miou for s in scores[2:]] == pytest.approx([1.0, 1.0, 1.0])
    assert choose_tau(scores).tau == 0.5  # the best, and the smallest of the tied ones


def test_offsets_fold_into_the_head_exactly():
    head = build_model("tiny").head.eval()
    volume = torch.randn(1, head.final_conv.in_channels, 3, 4, 5)
    offsets = torch.linspace(-2.0, 1.0, occ3d.NUM_CLASSES)
    with torch.no_grad():
        before = head(volume)
        head.add_class_offsets(offsets)
        after = head(volume)
    torch.testing.assert_close(after, before + offsets, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(18,\) finite values"):
        head.add_class_offsets(torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        head.add_class_offsets(torch.full((occ3d.NUM_CLASSES,), float("nan")))


def test_prior_offsets_and_choice_reject_bad_input():
    assert prior_offsets([1.0, math.e]).tolist() == pytest.approx([0.0, -1.0])
    with pytest.raises(LogitAdjustmentError, match="finite positive"):
        prior_offsets([1.0, 0.0])
    with pytest.raises(LogitAdjustmentError, match="nothing was scored"):
        choose_tau([])


def _scene_with_an_under_scored_class() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Car and barrier blocks in free space, half of it outside the camera mask. The "model" scores the true
    class 2.0 above the rest (plus noise of std 0.1, never enough to flip a voxel) but barrier 2.5 lower
    everywhere, and free 1.0 on the barrier voxels: as is, barrier is called free; its offset needs a shift in
    (1.5, 4.5) and nothing else needs one."""
    torch.manual_seed(1)
    gt = torch.full((1, 60, 60, 4), FREE, dtype=torch.long)
    gt[0, 10:20, 10:20, :2] = CAR
    gt[0, 40:44, 20:40, :1] = BARRIER  # half of it camera-visible
    logits = 2.0 * torch.nn.functional.one_hot(gt, occ3d.NUM_CLASSES).float()
    logits += 0.1 * torch.randn(logits.shape)
    logits[..., BARRIER] -= 2.5
    logits[..., FREE] += (gt == BARRIER).float()
    mask = torch.zeros_like(gt, dtype=torch.bool)
    mask[:, :, :30] = True
    return logits, gt, mask


def test_per_class_refinement_restores_an_under_scored_class_and_leaves_the_rest():
    logits, gt, mask = _scene_with_an_under_scored_class()
    batch = _batch(logits, gt)
    batch["mask_camera"] = mask
    cache = LogitCache(use_camera_mask=True)
    scores = sweep_taus(FixedLogits(), [batch], torch.zeros(occ3d.NUM_CLASSES), [0.0], progress=False,
                        cache=cache)
    assert scores[0].camera_mask.iou[BARRIER] == 0.0
    _, cached_labels = cache.tensors()
    assert cached_labels.numel() == int(mask.sum())  # only the camera-visible voxels
    offsets, record = refine_class_offsets(cache, torch.zeros(occ3d.NUM_CLASSES), progress=False)
    assert 1.5 < offsets[BARRIER] < 4.5 and offsets[FREE] == 0.0
    assert record["miou"] > record["miou_before"] and record["miou"] > 95.0
    assert [a["class"] for a in record["accepted"]] == [BARRIER]  # no shift for classes already right
    rescored = sweep_taus(FixedLogits(), [batch], offsets, [1.0], progress=False)[0]
    assert 100 * rescored.camera_mask.miou == pytest.approx(record["miou"])
    # Nothing to gain: a correct model keeps its offsets exactly.
    exact = LogitCache(use_camera_mask=False)
    exact.add(torch.nn.functional.one_hot(gt, occ3d.NUM_CLASSES).float(), gt, mask)
    unchanged, record = refine_class_offsets(exact, torch.zeros(occ3d.NUM_CLASSES), progress=False)
    assert unchanged.tolist() == [0.0] * occ3d.NUM_CLASSES and record["accepted"] == []
    with pytest.raises(LogitAdjustmentError, match="nothing was cached"):
        refine_class_offsets(LogitCache(use_camera_mask=True), torch.zeros(occ3d.NUM_CLASSES))


def _scene_where_the_fix_fills_unobserved_space() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Barrier is under-scored (a shift above 1.5 recovers it, as above) but a block of manmade outside the camera
    mask scores barrier only 1.0 below manmade: any shift that fixes the visible barrier voxels also paints that
    unobserved block barrier."""
    torch.manual_seed(2)
    gt = torch.full((1, 60, 60, 4), FREE, dtype=torch.long)
    gt[0, 10:20, 10:20, :2] = CAR
    gt[0, 40:44, 20:40, :1] = BARRIER
    gt[0, 10:30, 40:55, :3] = MANMADE  # all of it outside the mask
    logits = 2.0 * torch.nn.functional.one_hot(gt, occ3d.NUM_CLASSES).float()
    logits += 0.05 * torch.randn(logits.shape)
    logits[..., BARRIER] -= 3.0
    logits[..., FREE] += 0.5 * (gt == BARRIER).float()
    logits[..., BARRIER] += 4.0 * (gt == MANMADE).float()
    mask = torch.zeros_like(gt, dtype=torch.bool)
    mask[:, :, :30] = True
    return logits, gt, mask


def test_guard_refuses_a_shift_that_paints_unobserved_space():
    logits, gt, mask = _scene_where_the_fix_fills_unobserved_space()

    def no_mask_miou(offsets: torch.Tensor) -> float:
        return sweep_taus(FixedLogits(), [{**_batch(logits, gt), "mask_camera": mask}], offsets, [1.0],
                          progress=False)[0].no_mask.miou

    plain, guarded = LogitCache(use_camera_mask=True), LogitCache(use_camera_mask=True, keep_unobserved=True)
    for cache in (plain, guarded):
        cache.add(logits, gt, mask)
    assert guarded.tensors()[1].numel() == int(mask.sum())
    assert guarded.unobserved()[1].numel() == int((~mask).sum()) and plain.unobserved() is None
    zero = torch.zeros(occ3d.NUM_CLASSES)
    # Unguarded, the camera-mask objective takes the shift and the unobserved manmade block turns barrier.
    unguarded, record = refine_class_offsets(plain, zero, progress=False)
    assert unguarded[BARRIER] > 1.0 and record["miou"] > record["miou_before"] and "guard" not in record
    assert no_mask_miou(unguarded) < no_mask_miou(zero) - 0.05
    # Guarded, every shift that would do so is refused; the no-mask mIoU is where it started.
    offsets, record = refine_class_offsets(guarded, zero, progress=False)
    assert offsets[BARRIER] <= 1.0 and record["guard"]["refused"] > 0
    assert record["guard"]["miou_no_mask"] >= record["guard"]["miou_no_mask_before"]
    assert 100 * no_mask_miou(offsets) == pytest.approx(record["guard"]["miou_no_mask"])
    assert 100 * no_mask_miou(zero) == pytest.approx(record["guard"]["miou_no_mask_before"])
    with pytest.raises(LogitAdjustmentError, match="keep_unobserved needs the camera-mask protocol"):
        LogitCache(use_camera_mask=False, keep_unobserved=True)


@pytest.fixture(scope="module")
def infos(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calibrate_prepared")
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(out), "--no-progress", "--no-imgseg"]) == 0
    return out / "fusionocc_infos.pkl"


def test_cli_writes_a_calibrated_checkpoint(infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    weights = torch.linspace(1.5, 40.0, occ3d.NUM_CLASSES)
    source = tmp_path / "trained.pth"
    save_checkpoint(source, model, step=7, val={"miou_mask": 1.0}, class_weights=weights.tolist())
    out = tmp_path / "calibrated.pth"
    args = ["adjust-logits", "--checkpoint", str(source), "--infos", str(infos), "--out", str(out),
            "--limit", "1", "--taus", "0:1:0.5", "--workers", "0", "--no-progress",
            "--json", str(tmp_path / "sweep.json")]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "class weights (stored in the checkpoint)" in printed and "<- chosen" in printed
    calibrated, extra = load_checkpoint_with_extra(out)
    record = extra["logit_adjustment"]
    assert record["tau"] in (0.0, 0.5, 1.0) and [s["tau"] for s in record["sweep"]] == [0.0, 0.5, 1.0]
    assert extra["step"] == 7 and "val" not in extra  # the old scores described the uncalibrated model
    expected = class_bias(model) - record["tau"] * torch.log(weights)
    torch.testing.assert_close(class_bias(calibrated), expected)
    assert (tmp_path / "sweep.json").is_file() and record["per_class"] is None
    # Calibrating twice would subtract the prior twice; writing over the input would lose the original.
    again = [*args[:2], str(out), *args[3:6], str(tmp_path / "twice.pth"), *args[7:]]
    assert cli_main(again) == 2
    assert "already logit-adjusted" in capsys.readouterr().err
    assert cli_main([*args[:6], str(source), *args[7:]]) == 2
    assert "--out must differ" in capsys.readouterr().err


def test_cli_recomputes_the_weights_of_an_old_checkpoint(infos: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]):
    from fusionocc_core.data.dataset import DatasetConfig, OccupancyDataset
    from fusionocc_core.model.losses import enet_class_weights

    source = tmp_path / "old.pth"
    save_checkpoint(source, build_model("tiny"))
    out = tmp_path / "calibrated.pth"
    assert cli_main(["adjust-logits", "--checkpoint", str(source), "--infos", str(infos), "--out", str(out),
                     "--limit", "1", "--taus", "0,1", "--workers", "0", "--no-progress", "--half"]) == 0
    assert "recomputed: ENet weights" in capsys.readouterr().out
    train = OccupancyDataset(infos, input_size=(32, 32), train=False, split="train",
                             config=DatasetConfig(with_imgseg=False))
    expected = enet_class_weights(train.class_counts(use_camera_mask=True))
    _, extra = load_checkpoint_with_extra(out)
    assert extra["logit_adjustment"]["class_weights"] == pytest.approx(expected.tolist())
    assert torch.load(out, weights_only=True)["state_dict"]["head.predicter.2.bias"].dtype == torch.float16


def test_cli_per_class_folds_the_refined_offsets(infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    source = tmp_path / "trained.pth"
    weights = torch.linspace(1.5, 40.0, occ3d.NUM_CLASSES)
    save_checkpoint(source, model, class_weights=weights.tolist())
    out = tmp_path / "calibrated.pth"
    assert cli_main(["adjust-logits", "--checkpoint", str(source), "--infos", str(infos), "--out", str(out),
                     "--limit", "1", "--taus", "0,1", "--workers", "0", "--no-progress", "--per-class"]) == 0
    assert "per-class refinement: camera mask mIoU" in capsys.readouterr().out
    calibrated, extra = load_checkpoint_with_extra(out)
    record = extra["logit_adjustment"]
    assert record["per_class"]["miou"] >= record["per_class"]["miou_before"]
    tau_only = -record["tau"] * torch.log(weights)
    shifts = torch.zeros(occ3d.NUM_CLASSES)
    for accepted in record["per_class"]["accepted"]:
        shifts[accepted["class"]] += accepted["shift"]
    torch.testing.assert_close(torch.tensor(record["offsets"]), tau_only + shifts)
    torch.testing.assert_close(class_bias(calibrated), class_bias(model) + tau_only + shifts)


def test_cli_guard_unobserved(infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    torch.manual_seed(0)
    source = tmp_path / "trained.pth"
    save_checkpoint(source, build_model("tiny").eval(), class_weights=torch.linspace(1.5, 40.0, 18).tolist())
    args = ["adjust-logits", "--checkpoint", str(source), "--infos", str(infos), "--limit", "1",
            "--taus", "0,1", "--workers", "0", "--no-progress", "--guard-unobserved"]
    assert cli_main([*args, "--out", str(tmp_path / "no_per_class.pth")]) == 2
    assert "needs --per-class" in capsys.readouterr().err and not (tmp_path / "no_per_class.pth").exists()
    out = tmp_path / "guarded.pth"
    assert cli_main([*args, "--per-class", "--out", str(out)]) == 0
    assert "guard: no-mask mIoU" in capsys.readouterr().out
    guard = load_checkpoint_with_extra(out)[1]["logit_adjustment"]["per_class"]["guard"]
    assert guard["miou_no_mask"] >= guard["miou_no_mask_before"]
