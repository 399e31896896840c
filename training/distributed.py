"""torch.distributed set-up for torchrun (NCCL on GPUs, gloo on CPU) and a resumable, seeded sampler.

Exact resume needs the data order and the augmentation of every sample to be a function of (seed, epoch,
position) only, not of how many samples a worker happened to draw before. `ResumableSampler` therefore yields
(index, sample_seed) pairs, can start in the middle of an epoch, and `SeededDataset` seeds torch's RNG with
the sample seed around each `__getitem__` (the dataset draws its augmentation from torch's RNG).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: rank, number of processes, local rank on its node and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process (collectives are needed)."""
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistInfo:
    """Joins the process group when launched by torchrun (WORLD_SIZE > 1), else describes a single process.

    Args:
        device: "auto" (CUDA when available), "cpu", "cuda" (cuda:LOCAL_RANK) or "cuda:N" (one process only).

    Raises:
        RuntimeError: CUDA was asked for but is not available, fewer GPUs than local ranks, or cuda:N under
            torchrun.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' was asked for but torch.cuda.is_available() is False")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        index = local_rank
        if device.startswith("cuda:"):
            if world_size > 1:
                raise RuntimeError(f"--device {device} picks one GPU; under torchrun pass --device cuda "
                                   "(each rank takes cuda:LOCAL_RANK)")
            index = int(device.partition(":")[2])
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"GPU {index} asked for but only {torch.cuda.device_count()} GPUs are visible")
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Leaves the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean of scalar values over ranks (for logging); identity in a single process."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    flat = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(flat)
    return {k: float(v) / info.world_size for k, v in zip(keys, flat.tolist(), strict=True)}


def broadcast_from_main(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Rank 0's `tensor` on every rank (each rank passes one of the same shape and dtype; only rank 0's values
    matter); the tensor itself in a single process. Returned on the CPU."""
    if not info.distributed:
        return tensor
    buffer = tensor.to(info.device).contiguous()
    dist.broadcast(buffer, src=0)
    return buffer.cpu()


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, dtype=np.uint64)[0]) >> 1


class ResumableSampler(Sampler[tuple[int, int]]):
    """This rank's share of a (shuffled) epoch as (index, sample_seed) pairs, optionally from a start step.

    Like `DistributedSampler`: a permutation seeded by seed + epoch, padded by repetition to a multiple of
    num_replicas, every num_replicas-th entry for this rank, so ranks together see the whole epoch.

    Args:
        size: dataset length.
        num_replicas, rank: the process group's size and this process's rank.
        shuffle: permute per epoch (training) or keep the order.
        seed: base seed shared by all ranks.
    """

    def __init__(self, size: int, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        if size < 1:
            raise ValueError("ResumableSampler needs a non-empty dataset")
        self.size, self.num_replicas, self.rank = size, num_replicas, rank
        self.shuffle, self.seed = shuffle, seed
        self.epoch, self.start = 0, 0

    def per_rank(self) -> int:
        """Samples per rank and epoch (the epoch padded to a multiple of num_replicas)."""
        return -(-self.size // self.num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Selects the epoch and skips its first `start` samples of this rank (a resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank() * self.num_replicas
        order = (order * (-(-total // self.size)))[:total]
        positions = range(self.rank, total, self.num_replicas)
        for pos in list(positions)[self.start:]:
            yield order[pos], sample_seed(self.seed, self.epoch, pos)

    def __len__(self) -> int:
        return max(self.per_rank() - self.start, 0)


class SizedDataset(Protocol):
    """A map-style dataset with a length (torch's `Dataset` type declares no `__len__`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class SeededDataset(Dataset):
    """Wraps a dataset so that item (index, seed) is drawn with torch's RNG seeded by `seed`.

    The caller's RNG state is restored afterwards, so loading in the main process (num_workers=0) does not
    disturb the model's own randomness.
    """

    def __init__(self, dataset: SizedDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
