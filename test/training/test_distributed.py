"""Distributed training on CPU with gloo: 2 DDP ranks of batch 1 produce the first-step gradients of one
process on the same global batch of 2 (same samples, same augmentation); the sampler splits epochs exactly."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_train import CPU, MicroOcc, free_port, micro_config
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from fusionocc_core.data.collate import collate
from fusionocc_core.model.losses import FusionOccLoss
from fusionocc_ros.cli import main as cli_main
from training import train as T
from training.distributed import ResumableSampler, SeededDataset, cleanup_distributed, setup_distributed


@pytest.fixture(scope="module")
def infos(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    assert cli_main(["prepare", str(synth_dataroot), "--out", str(out), "--no-progress"]) == 0
    return out / "fusionocc_infos.pkl"


def first_step_grads(config, info, batch_size: int) -> dict[str, torch.Tensor]:
    """Gradients (after clipping) of the first `train_step` through the training data path."""
    torch.manual_seed(0)
    model = MicroOcc(patch_dropout=0.0)  # no per-rank randomness in the model
    # Occupancy CE only: its mean over a batch is the mean of per-sample means, as DDP averages. The depth and
    # seg terms normalise by per-rank counts (as in the original, batch 1 per GPU), so they differ by design.
    camera = model.config.camera
    loss_model = T.LossModel(model, FusionOccLoss(depth_weight=0.0, seg_weight=0.0, downsample=camera.downsample,
                                                  depth_bins=camera.depth_bins))
    if info.distributed:
        loss_model = DistributedDataParallel(loss_model)
    train_set, _ = T.build_datasets(config, (config.input_height, config.input_width))
    sampler = ResumableSampler(len(train_set), num_replicas=info.world_size, rank=info.rank, seed=config.seed)
    loader = DataLoader(SeededDataset(train_set), batch_size=batch_size, sampler=sampler, collate_fn=collate)
    batch = next(iter(loader))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    values = T.train_step(loss_model, batch, optimizer, config=config, device=info.device)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    grads["__tokens__"] = torch.tensor([int(t[:8], 16) for t in batch["token"]])  # hex sample tokens
    grads["__loss__"] = torch.tensor(values["loss/total"])
    return grads


def _join_gloo(rank: int, world_size: int, port: int):
    """This spawned process as rank `rank` of a CPU (gloo) process group, one torch thread."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    return setup_distributed("cpu")


def _rank_main(rank: int, world_size: int, port: int, config, out: str) -> None:
    info = _join_gloo(rank, world_size, port)
    try:
        torch.save(first_step_grads(config, info, batch_size=1), f"{out}/rank{rank}.pt")
    finally:
        cleanup_distributed()


def test_ddp_two_ranks_match_one_process_on_the_global_batch(infos, tmp_path):
    config = micro_config(infos, tmp_path / "run", seed=5)
    mp.spawn(_rank_main, args=(2, free_port(), config, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = first_step_grads(config, CPU, batch_size=2)
    finally:
        torch.set_num_threads(saved)
    # The two ranks saw the two samples of the single process's batch, in the same order.
    tokens = [t for r in ranks for t in r.pop("__tokens__").tolist()]
    assert tokens == single.pop("__tokens__").tolist()
    rank_losses = [float(r.pop("__loss__")) for r in ranks]
    assert sum(rank_losses) / 2 == pytest.approx(float(single.pop("__loss__")), rel=1e-6)
    assert rank_losses[0] != pytest.approx(rank_losses[1], rel=1e-6)  # different samples, not a trivial match
    assert set(single) == set(ranks[0]) and len(single) >= 6
    for name, grad in single.items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)  # DDP synced them
        # Same sums in another order (float32): tolerance relative to the gradient's scale.
        torch.testing.assert_close(ranks[0][name], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()),
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")
    assert any(float(g.abs().max()) > 0 for g in single.values())


class _CountsOnlyOnMain:
    """A training split whose labels only rank 0 may read."""

    def __init__(self, dataset, rank: int) -> None:
        self.dataset, self.rank = dataset, rank

    def class_counts(self, **kwargs):
        assert self.rank == 0, "a non-main rank read the training labels"
        return self.dataset.class_counts(**kwargs)


def _class_weights_rank(rank: int, world_size: int, port: int, config, out: str) -> None:
    info = _join_gloo(rank, world_size, port)
    try:
        train_set, _ = T.build_datasets(config, (config.input_height, config.input_width))
        weights = T.occupancy_class_weights(config, _CountsOnlyOnMain(train_set, rank), info, progress=False)
        torch.save(weights, f"{out}/weights{rank}.pt")
    finally:
        cleanup_distributed()


def test_class_weights_are_read_by_rank_0_and_broadcast(infos, tmp_path):
    from fusionocc_core.model.losses import enet_class_weights

    config = micro_config(infos, tmp_path / "run", class_weights="enet", use_mask=True)
    mp.spawn(_class_weights_rank, args=(2, free_port(), config, str(tmp_path)), nprocs=2, join=True)
    train_set, _ = T.build_datasets(config, (config.input_height, config.input_width))
    expected = enet_class_weights(train_set.class_counts(use_camera_mask=True))
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"weights{rank}.pt", weights_only=True), expected,
                                   rtol=0, atol=0)


def test_sampler_splits_epochs_and_resumes_mid_epoch():
    size = 7
    parts = [list(ResumableSampler(size, num_replicas=3, rank=r, seed=1)) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]  # padded to a multiple of the ranks, as DistributedSampler
    indices = [i for p in parts for i, _ in p]
    assert set(indices) == set(range(size))
    seeds = [s for p in parts for _, s in p]
    assert len(set(seeds)) == 9  # one seed per position
    sampler = ResumableSampler(size, num_replicas=3, rank=1, seed=1)
    sampler.set_epoch(0, start=2)
    assert list(sampler) == parts[1][2:] and len(sampler) == 1
    sampler.set_epoch(1)
    assert list(sampler) != parts[1]  # a new permutation per epoch
    single = ResumableSampler(size, seed=1)
    assert [i for i, _ in single][:2] == [parts[0][0][0], parts[1][0][0]]  # rank r gets position r
