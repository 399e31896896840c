"""Kill-and-resume: a run killed in the middle of a step and resumed with `--resume auto` continues with
exactly the losses, weights and EMA of the uninterrupted run (data order, augmentation, model randomness,
optimizer, schedule and EMA all restored), across an epoch boundary and past a newer truncated checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import CPU, MicroOcc, micro_config

from fusionocc_ros.cli import main as cli_main
from training import train as T
from training.checkpointing import checkpoint_name, read_checkpoint


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def infos(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(out), "--no-progress"]) == 0
    return out / "fusionocc_infos.pkl"


class Killed(Exception):
    pass


def killed_at(train_forward: int):
    """A MicroOcc factory whose model dies inside its `train_forward`-th training forward pass."""
    calls = {"n": 0}

    class Dying(MicroOcc):
        def forward_with_aux(self, *inputs):
            if self.training:
                calls["n"] += 1
                if calls["n"] == train_forward:
                    raise Killed(f"killed in training forward {train_forward}")
            return super().forward_with_aux(*inputs)

    return Dying


def test_kill_and_resume_reproduces_the_uninterrupted_run(infos, tmp_path):
    # 4 train samples, batch 1: 4 steps per epoch; 6 steps cross an epoch boundary. Checkpoint + EMA
    # validation every 3 steps; the kill comes during step 4, after the step-3 checkpoint.
    options = dict(max_iters=6, ckpt_interval=3, eval_interval=3, ema=True, ema_decay=0.9, ema_ramp=2)
    torch.manual_seed(123)  # the run must not depend on the caller's RNG: train() seeds itself
    straight = T.train(micro_config(infos, tmp_path / "straight", **options), CPU, model_factory=MicroOcc,
                       log=lambda *_: None)

    run_dir = tmp_path / "killed"
    config = micro_config(infos, run_dir, **options)
    with pytest.raises(Killed):
        T.train(config, CPU, model_factory=killed_at(4), log=lambda *_: None)
    assert [p.name for p in sorted(run_dir.glob("step_*.pt"))] == [checkpoint_name(3)]
    # A newer checkpoint that was cut short (e.g. copied while being written): reported and skipped.
    good = (run_dir / checkpoint_name(3)).read_bytes()
    (run_dir / checkpoint_name(4)).write_bytes(good[: len(good) // 3])
    messages: list[str] = []
    torch.manual_seed(999)
    resumed = T.train(config, CPU, resume="auto", model_factory=MicroOcc,
                      log=lambda m: messages.append(str(m)))

    assert any("skipping" in m and checkpoint_name(4) in m and "truncated" in m for m in messages), messages
    assert any(f"resuming from {run_dir / checkpoint_name(3)}" in m for m in messages), messages
    want = [h["loss/total"] for h in straight["history"][3:]]
    got = [h["loss/total"] for h in resumed["history"]]
    assert len(got) == 3
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64),
                               torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-6)
    a = read_checkpoint(tmp_path / "straight" / checkpoint_name(6))
    b = read_checkpoint(run_dir / checkpoint_name(6))
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=1e-6)
        torch.testing.assert_close(b["ema"]["module"][key], a["ema"]["module"][key], rtol=0, atol=1e-6)
    assert b["ema"]["updates"] == a["ema"]["updates"] == 6
    assert b["optimizer"]["state"][0]["step"] == a["optimizer"]["state"][0]["step"] == 6
    assert resumed["val"] == pytest.approx(straight["val"], nan_ok=True)


def test_resume_explicit_bad_path_is_a_clear_error(infos, tmp_path):
    bad = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"img_backbone.x": torch.zeros(1)}}, bad)
    with pytest.raises(T.TrainingCheckpointError, match="not a fusionocc training checkpoint.*--init-from"):
        T.train(micro_config(infos, tmp_path / "run"), CPU, resume=str(bad), model_factory=MicroOcc)


def test_command_line_resume_continues_the_run_folders_config(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("lr: 0.125\nout_dir: somewhere\n")
    assert T.resume_base_config("auto", None, str(run_dir)) == run_dir / "config.yaml"
    assert T.resume_base_config(str(run_dir / "step_00000003.pt"), None, None) == run_dir / "config.yaml"
    assert T.resume_base_config("auto", tmp_path / "given.yaml", None) == tmp_path / "given.yaml"
    assert T.resume_base_config("", None, str(run_dir)) is None  # a fresh run starts from the defaults
    with pytest.raises(T.ConfigError, match="--resume auto needs --out RUN"):
        T.resume_base_config("auto", None, None)


def test_resume_names_changed_options_including_ones_the_checkpoint_predates(infos, tmp_path):
    run_dir = tmp_path / "run"
    T.train(micro_config(infos, run_dir, max_iters=1, ckpt_interval=1), CPU, model_factory=MicroOcc,
            log=lambda *_: None)
    path = run_dir / checkpoint_name(1)
    old = torch.load(path, weights_only=True)
    del old["config"]["lovasz_weight"]  # written before the option existed: it ran without the term
    torch.save(old, path)
    messages: list[str] = []
    summary = T.train(micro_config(infos, run_dir, max_iters=2, ckpt_interval=1, lovasz_weight=0.5), CPU,
                      resume=str(path), model_factory=MicroOcc, log=lambda m: messages.append(str(m)))
    changed = [m for m in messages if m.startswith("resuming with changed options")]
    assert len(changed) == 1 and "max_iters 1 -> 2" in changed[0] and "lovasz_weight 0.0 -> 0.5" in changed[0]
    assert summary["history"][-1]["loss/loss_lovasz"] > 0
