"""Data-parallel training with ``torch.distributed``, launched by ``torchrun`` (one process per GPU or CPU
socket); a single process needs no launcher and none of this.

Design (measured against DDP with ``find_unused_parameters``, see benchmarks/ddp.py):

- Every rank draws the same sub-nets at the same step (the sampler is a function of (seed, step)), while
  data order and augmentation differ per rank (:class:`elasticnet.training.order.EpochSampler` shards the
  shuffled order).
- Gradients are averaged with one explicit all-reduce of all gradients per step, after every sub-net of
  the step has run its backward. Parameters that no sub-net of the step touched have no gradient on any
  rank (all ranks run the same sub-nets), so they are skipped consistently: nothing hangs, nothing is
  sent for them. Sliced parameters send their full tensor (zeros outside the slice).
- The step's loss and a stop flag (SIGTERM/SIGINT on any rank) are all-reduced with it, so all ranks stop
  at the same step, and a non-finite loss anywhere stops every rank.
- Optional synchronised BatchNorm (``--sync-bn``): batch statistics over all ranks (differentiable
  all-reduce), so N processes with batch B train exactly like one with batch N*B.
- BN re-estimation for a sub-net runs on every rank over its own shard and pools the statistics.
- Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from elasticnet.errors import UserError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True when started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun prepared (NCCL on GPUs, gloo on CPUs); returns (Dist, this rank's device)."""
    from elasticnet.runtime import select_device

    if not launched():
        return Dist(), select_device(device_name)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    device = rank_device(device_name, local, int(os.environ.get("LOCAL_WORLD_SIZE", local + 1)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def rank_device(device_name: str, local_rank: int, local_world: int) -> torch.device:
    """The device of local rank ``local_rank`` of ``local_world`` processes on this node: its own GPU, or the
    CPU for every rank of the node when ``auto`` finds fewer GPUs than processes (all ranks of a node see the
    same count, so they agree on one backend); an explicit ``cuda`` with too few GPUs is refused."""
    from elasticnet.runtime import select_device

    device = select_device(device_name)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_world <= count:
        return torch.device("cuda", local_rank)
    if device_name == "auto":
        return torch.device("cpu")
    raise UserError(
        f"torchrun started {local_world} processes on this node but {count} GPU(s) are visible (one per process is "
        f"needed); start at most {count} (--nproc-per-node {count}), or train on the CPU with --device cpu"
    )


def shutdown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def broadcast_object(value, dist: Dist):
    """Rank 0's ``value`` on every rank."""
    if not dist.enabled:
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(model: nn.Module, dist: Dist) -> None:
    """Average every existing gradient over the ranks, in one flat all-reduce."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not dist.enabled or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch_dist.all_reduce(flat)
    flat /= dist.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def reduce_step(loss: float, stop: bool, dist: Dist, device: torch.device) -> tuple[float, bool]:
    """(mean loss over ranks, any rank asked to stop)."""
    if not dist.enabled:
        return loss, stop
    t = torch.tensor([loss, float(stop)], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return float(t[0]) / dist.world, bool(t[1] > 0)


@torch.no_grad()
def pool_bn_statistics(model: nn.Module, dist: Dist) -> None:
    """Replace each BN layer's running mean/var by the pooled statistics of all ranks (equal counts)."""
    if not dist.enabled:
        return
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            mean, var = m.running_mean, m.running_var
            packed = torch.stack([mean, var, mean * mean]).double()
            torch_dist.all_reduce(packed)
            packed /= dist.world
            mean.copy_(packed[0])
            var.copy_(packed[1] + packed[2] - packed[0] * packed[0])  # pooled variance


def set_sync_bn(model: nn.Module, enabled: bool) -> None:
    """Switch synchronised batch statistics on the elastic BN layers on or off."""
    from elasticnet.models.elastic_layers import ElasticBatchNorm2d

    for m in model.modules():
        if isinstance(m, ElasticBatchNorm2d):
            m.sync = enabled
