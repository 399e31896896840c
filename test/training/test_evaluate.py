"""fusionocc eval: saved predictions and a model over the synthetic split, both protocols, JSON, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fusionocc_core.data.collate import collate
from fusionocc_core.data.dataset import DatasetConfig, OccupancyDataset
from fusionocc_core.data.infos import load_infos
from fusionocc_ros.cli import main as cli_main
from training.evaluate import evaluate_model, evaluate_predictions


@pytest.fixture(scope="module")
def infos(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval_prepared")
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(out), "--no-progress", "--no-imgseg"]) == 0
    return out / "fusionocc_infos.pkl"


def _gt(index: dict, info: dict) -> dict[str, np.ndarray]:
    with np.load(Path(index["dataroot"]) / info["occ_path"]) as data:
        return {k: data[k] for k in data}


def test_pred_dir_perfect_and_shifted(
    infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = load_infos(infos)
    val = [i for i in index["samples"] if i["split"] == "val"]
    perfect, wrong = tmp_path / "perfect", tmp_path / "wrong"
    perfect.mkdir(), wrong.mkdir()
    for info in val:
        gt = _gt(index, info)
        np.savez(perfect / f"{info['token']}.npz", semantics=gt["semantics"])
        np.savez(wrong / f"{info['token']}.npz", semantics=np.roll(gt["semantics"], 5, axis=0))
    out = tmp_path / "scores.json"
    assert (
        cli_main(["eval", "--pred-dir", str(perfect), "--infos", str(infos), "--out", str(out),
                  "--no-progress"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "camera mask" in printed and "no mask" in printed and "mIoU (camera mask" in printed
    scores = json.loads(out.read_text())
    assert scores["primary_protocol"] == "camera mask" and scores["split"] == "val"
    assert scores["miou"] == pytest.approx(100.0)
    assert scores["no_mask"]["miou"] == pytest.approx(100.0)
    assert scores["camera_mask"]["num_samples"] == len(val)
    mask_voxels = sum(int(_gt(index, i)["mask_camera"].sum()) for i in val)
    assert np.sum(scores["camera_mask"]["confusion_matrix"]) == mask_voxels
    assert np.sum(scores["no_mask"]["confusion_matrix"]) == len(val) * 200 * 200 * 16
    shifted = evaluate_predictions(index, wrong, split="val", primary="no mask", progress=False)
    assert shifted.headline is shifted.no_mask and 0.0 < shifted.no_mask.miou < 0.9
    assert shifted.to_dict()["miou"] == pytest.approx(100 * shifted.no_mask.miou, abs=1e-3)


def test_by_visibility_splits_the_no_mask_matrix(
    infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Predictions right wherever a sensor saw the voxel and 'free' elsewhere: the observed regions score 100,
    the unobserved one does not, and the three regions' matrices add up to the no-mask one."""
    index = load_infos(infos)
    val = [i for i in index["samples"] if i["split"] == "val"]
    for info in val:
        gt = _gt(index, info)
        seen = (gt["mask_camera"] != 0) | (gt["mask_lidar"] != 0)
        np.savez(tmp_path / f"{info['token']}.npz", semantics=np.where(seen, gt["semantics"], 17).astype(np.uint8))
    out = tmp_path / "scores.json"
    assert cli_main(["eval", "--pred-dir", str(tmp_path), "--infos", str(infos), "--by-visibility", "--out",
                     str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "no mask by what saw each voxel" in printed and "lidar only" in printed
    scores = json.loads(out.read_text())
    regions = scores["visibility_regions"]
    assert list(regions) == ["camera-visible", "lidar only", "unobserved"]
    assert regions["camera-visible"]["miou"] == pytest.approx(100.0)
    assert regions["lidar only"]["miou"] == pytest.approx(100.0)
    assert regions["unobserved"]["miou"] < 50.0 and scores["no_mask"]["miou"] < 100.0
    total = sum(np.array(r["confusion_matrix"]) for r in regions.values())
    np.testing.assert_array_equal(total, scores["no_mask"]["confusion_matrix"])
    assert sum(r["voxels"] for r in regions.values()) == len(val) * 200 * 200 * 16
    unobserved = sum(int(((_gt(index, i)["mask_camera"] == 0) & (_gt(index, i)["mask_lidar"] == 0)).sum())
                     for i in val)
    assert regions["unobserved"]["voxels"] == unobserved
    plain = evaluate_predictions(index, tmp_path, split="val", progress=False)
    assert plain.regions is None and "visibility_regions" not in plain.to_dict()


def test_pred_dir_errors(infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["eval", "--pred-dir", str(tmp_path), "--infos", str(infos), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "lacks predictions for 4 of 4 samples of split 'val'" in err and "--save-pred" in err
    assert cli_main(["eval", "--pred-dir", str(tmp_path), "--infos", str(tmp_path / "no.pkl")]) == 2
    assert "fusionocc prepare" in capsys.readouterr().err
    assert cli_main(["eval", "--pred-dir", str(tmp_path), "--infos", str(infos), "--split", "test"]) == 2
    assert "split 'test'" in capsys.readouterr().err
    index = load_infos(infos)
    for info in index["samples"]:
        np.savez(tmp_path / f"{info['token']}.npz", labels=np.zeros(3))
    assert cli_main(["eval", "--pred-dir", str(tmp_path), "--infos", str(infos), "--no-progress"]) == 2
    assert "has no 'semantics' array" in capsys.readouterr().err


def test_model_path_with_stub_and_saved_predictions(infos: Path, tmp_path: Path) -> None:
    dataset = OccupancyDataset(
        infos, input_size=(64, 176), train=False, split="val", config=DatasetConfig(with_imgseg=False)
    )
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate)
    calls = []

    def predict_all_car(**inputs: torch.Tensor) -> torch.Tensor:
        calls.append(sorted(inputs))
        assert inputs["points"].shape[1] == 6 and inputs["images"].shape[:3] == (2, 2, 6)
        return torch.full((inputs["images"].shape[0], 200, 200, 16), 4, dtype=torch.uint8)

    result = evaluate_model(predict_all_car, loader, split="val", save_dir=tmp_path, progress=False,
                            by_visibility=True)
    assert len(calls) == 2 and "sparse_depth" in calls[0] and "voxel_semantics" not in calls[0]
    index = load_infos(infos)
    gts = [_gt(index, i) for i in index["samples"] if i["split"] == "val"]
    car_column = np.bincount(
        np.concatenate([g["semantics"][g["mask_camera"] != 0] for g in gts]), minlength=18
    )
    np.testing.assert_array_equal(result.camera_mask.confusion[:, 4], car_column)
    assert result.camera_mask.confusion.sum() == car_column.sum()
    assert result.no_mask.geometry_iou == pytest.approx(
        np.mean([(g["semantics"] != 17).mean() for g in gts]), rel=1e-6
    )
    again = evaluate_predictions(index, tmp_path, split="val", progress=False, by_visibility=True)
    np.testing.assert_array_equal(again.camera_mask.confusion, result.camera_mask.confusion)
    assert again.regions is not None and result.regions is not None
    for name, scores in result.regions.items():  # the model path and the saved predictions agree per region
        np.testing.assert_array_equal(again.regions[name].confusion, scores.confusion)
    np.testing.assert_array_equal(result.regions["camera-visible"].confusion, result.camera_mask.confusion)


@pytest.mark.slow
def test_checkpoint_path_with_tiny_model(infos: Path, tmp_path: Path) -> None:
    """The real model path: a tiny-preset checkpoint through the CLI, predictions saved and re-scored."""
    from fusionocc_core.model.checkpoint import save_checkpoint
    from fusionocc_core.model.presets import build_model

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    preds, out = tmp_path / "preds", tmp_path / "scores.json"
    assert (
        cli_main(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "tiny.pt"),
                "--infos",
                str(infos),
                "--device",
                "cpu",
                "--workers",
                "0",
                "--limit",
                "1",
                "--save-pred",
                str(preds),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    assert scores["camera_mask"]["num_samples"] == 1 and scores["source"].endswith("tiny.pt")
    saved = sorted(preds.iterdir())
    assert len(saved) == 1
    with np.load(saved[0]) as data:
        assert data["semantics"].shape == (200, 200, 16) and data["semantics"].dtype == np.uint8
    index = load_infos(infos)
    index["samples"] = [i for i in index["samples"] if i["token"] == saved[0].stem]
    again = evaluate_predictions(index, preds, split="val", progress=False)
    assert again.camera_mask.confusion.tolist() == scores["camera_mask"]["confusion_matrix"]


def test_checkpoint_errors_are_named(infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--infos", str(infos), "--device", "cpu", "--workers", "0", "--no-progress"]
    assert cli_main([*base, "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    assert cli_main([*base, "--checkpoint", str(tmp_path / "foreign.pt")]) == 2
    assert "foreign.pt" in capsys.readouterr().err
    assert cli_main([*base, "--checkpoint", str(tmp_path / "foreign.pt"), "--original", "huge"]) == 2
    assert "unknown model preset 'huge'" in capsys.readouterr().err


def test_dropout_predict_masks_one_camera_or_removes_the_lidar() -> None:
    from training.evaluate import dropout_conditions, dropout_predict

    class Recorder:
        lidar_enabled = True

        def __init__(self) -> None:
            self.calls: list[dict] = []

        def predict(self, **inputs):
            self.calls.append({**inputs, "lidar_enabled": self.lidar_enabled})
            return torch.zeros(1, 200, 200, 16, dtype=torch.uint8)

    names = ("A", "B", "C")
    conditions = dropout_conditions(names)
    assert [c[0] for c in conditions] == ["all sensors", "no A", "no B", "no C", "no lidar (camera only)"]
    inputs = {"images": torch.zeros(1, 2, 3, 3, 8, 8), "points": torch.ones(5, 6),
              "sparse_depth": torch.ones(1, 3, 8, 8)}
    model = Recorder()
    for _, camera, lidar in conditions:
        dropout_predict(model, camera, lidar)(**inputs)
    full, no_b, no_lidar = model.calls[0], model.calls[2], model.calls[4]
    assert "camera_mask" not in full and full["lidar_enabled"] and full["points"].shape[0] == 5
    assert no_b["camera_mask"].tolist() == [[[1, 0, 1], [1, 0, 1]]]  # both frames: the camera is silent
    assert no_lidar["points"].shape[0] == 0 and not no_lidar["sparse_depth"].any()
    assert not no_lidar["lidar_enabled"] and model.lidar_enabled  # switched off for the call only


def test_dropout_study_through_the_cli(infos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fusionocc_core.model.checkpoint import save_checkpoint
    from fusionocc_core.model.presets import build_model

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    out = tmp_path / "dropout.json"
    assert cli_main(["eval", "--checkpoint", str(tmp_path / "tiny.pt"), "--infos", str(infos), "--device", "cpu",
                     "--workers", "0", "--limit", "1", "--dropout", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "no CAM_FRONT " in printed and "no lidar (camera only)" in printed
    scores = json.loads(out.read_text())
    assert len(scores) == 8 and all(s["camera_mask"]["num_samples"] == 1 for s in scores.values())
    assert cli_main(["eval", "--pred-dir", str(tmp_path), "--infos", str(infos), "--dropout"]) == 2
    assert cli_main(["eval", "--checkpoint", str(tmp_path / "tiny.pt"), "--infos", str(infos), "--dropout",
                     "--by-visibility"]) == 2
    assert "without --dropout" in capsys.readouterr().err
