"""Data-parallel training under torchrun: one process per device, gradients averaged by DistributedDataParallel.

    torchrun --nproc-per-node 2 -m archviz.cli train lenet --dataset digits -o runs/lenet-ddp

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; `train` sees WORLD_SIZE > 1 and joins the
process group (NCCL when the processes run on CUDA devices, gloo on the CPU). What each rank does:

- reads the whole preloaded dataset and draws the same seeded permutation each epoch, then keeps its shard as
  torch's DistributedSampler does (the permutation padded by repeating its start to a multiple of the world size,
  then every world-th index from its rank), so every rank runs the same number of batches;
- --batch-size is per process (torch's and timm's convention): one optimiser step sees world x batch images;
- the per-batch loss and accuracy sums, the validation and test figures and the stop requests (Ctrl-C) are summed
  over the ranks, so every rank takes the same decisions (NaN stop, best epoch, time budget, interruption);
- only rank 0 prints and writes files; a checkpoint holds rank 0's weights (every rank holds the same weights) and
  each rank's random states, so --resume, run with the same number of processes, continues exactly;
- a rank that fails takes the group down: its exception leaves the process group (gloo's peers see their
  connection close and raise; torchrun also stops the other workers when one exits non-zero), and every collective
  has a timeout, so no rank waits for a dead one for ever.
"""

from __future__ import annotations

import atexit
import inspect
import os
from dataclasses import dataclass

COLLECTIVE_TIMEOUT_SECONDS = 300  # longer than any wait for rank 0 (a checkpoint write); a dead peer fails by then


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in a data-parallel run; Ranks() is a run of one process, where every method is a no-op.

    >>> Ranks().shard_size(10), Ranks(rank=1, world=4).shard_size(10)
    (10, 3)
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None  # "nccl" or "gloo"; None in a run of one process

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world}"

    # --- the data -------------------------------------------------------------------------------------------------
    def shard_size(self, count: int) -> int:
        """Images per rank: ceil(count / world), the padded share every rank gets."""
        return -(-count // self.world)

    def shard(self, order):
        """This rank's share of a permutation, as DistributedSampler(drop_last=False) takes it."""
        if not self.distributed:
            return order
        size = self.shard_size(len(order)) * self.world
        if size > len(order):  # pad by repeating the start, so that every rank runs the same number of batches
            repeats = -(-size // len(order))
            order = order.repeat(repeats)[:size]
        return order[self.rank::self.world]

    # --- collectives ----------------------------------------------------------------------------------------------
    def sum_(self, tensor):
        """Sum a tensor over the ranks, in place; returns it."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max(self, value: float, device) -> float:
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor[0])

    def any(self, flag: bool, device) -> bool:
        return self.max(1.0 if flag else 0.0, device) > 0 if self.distributed else flag

    def gather_strided(self, local, count: int):
        """The whole of a tensor whose rows rank r holds at r, r + world, ... (count rows in all), on every rank."""
        if not self.distributed:
            return local
        import torch
        import torch.distributed as dist

        size = self.shard_size(count)
        padded = torch.full((size, *local.shape[1:]), -1, dtype=local.dtype, device=local.device)
        padded[:len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        whole = torch.empty((count, *local.shape[1:]), dtype=local.dtype, device=local.device)
        for rank, part in enumerate(parts):
            whole[rank::self.world] = part[:len(range(rank, count, self.world))]
        return whole

    def barrier(self) -> None:
        """Wait for every rank: after rank 0 writes files that the others read next (a checkpoint to resume)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def gather_objects(self, value) -> list:
        """Every rank's value (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        found = [None] * self.world
        dist.all_gather_object(found, value)
        return found

    def broadcast_module(self, module, *, buffers_only: bool = False) -> None:
        """Give every rank rank 0's weights and buffers (batch norm's running statistics)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        tensors = list(module.buffers()) if buffers_only else list(module.state_dict().values())
        for tensor in tensors:  # state_dict's tensors share the weights' storage: broadcast writes into the module
            dist.broadcast(tensor, src=0)

    def wrap(self, module, device):
        """The module as DistributedDataParallel (gradients averaged over the ranks in backward)."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def from_environment() -> tuple[int, int, int, int]:
    """(rank, world, local rank, local world) from the variables torchrun sets; (0, 1, 0, 1) without them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return (int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")), local_world)


def is_main_process() -> bool:
    """Whether this process prints a run's results: rank 0, or a run of one process."""
    return from_environment()[0] == 0


def join(*, cuda: bool) -> Ranks:
    """Join the process group torchrun's variables describe (once per process; later calls reuse it)."""
    rank, world, local_rank, local_world = from_environment()
    if world <= 1:
        return Ranks()
    import datetime

    import torch
    import torch.distributed as dist

    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        options = {"timeout": datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_SECONDS)}
        if cuda and "device_id" in inspect.signature(dist.init_process_group).parameters:  # torch 2.3 and later
            options["device_id"] = torch.device("cuda", local_rank)  # NCCL's barrier then knows the device
        dist.init_process_group(backend, **options)
        atexit.register(leave)
    else:
        backend = dist.get_backend()
    return Ranks(rank, world, local_rank, local_world, backend)


def leave(*, failed: bool = False) -> None:
    """Leave the process group. After a failure NCCL's group is aborted, so that no kernel waits on a dead peer."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return
    if failed and dist.get_backend() == "nccl":
        from torch.distributed import distributed_c10d

        abort = getattr(distributed_c10d, "_abort_process_group", None)  # experimental in torch 2.5 and later
        if abort is not None:
            abort()
            return
    dist.destroy_process_group()


def is_collective_failure(error: BaseException) -> bool:
    """Whether an exception is a collective that failed because another rank died or timed out."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("Connection closed by peer", "Connection reset by peer", "Timed out", "NCCL error",
                                  "[gloo/", "gloo/transport"))


def failure_text(error: BaseException) -> str:
    """The gist of a failed collective's message: gloo's first sentence, without its source location.

    >>> failure_text(RuntimeError("[/x/gloo/pair.cc:561] Connection closed by peer [127.0.0.1]:83. This is typically"))
    'Connection closed by peer [127.0.0.1]:83'
    """
    import re

    lines = str(error).strip().splitlines()
    text = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(error).__name__
    return text.split(". ")[0].rstrip(".")


def rank_seed(seed: int, rank: int, stream: int) -> int:
    """A seed for rank `rank`'s random stream `stream` (0: torch's global RNG, 1: augmentation), apart from every
    other (seed, rank, stream); numpy's SeedSequence mixes them."""
    import numpy as np

    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)
