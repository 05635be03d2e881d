"""Gradient synchronisation for elastic sub-nets: one explicit all-reduce per step (what the trainer does)
vs PyTorch DDP with ``find_unused_parameters=True``.

    python benchmarks/ddp.py [--steps 8] [--size 96x128] [--base 16]

Two CPU processes (gloo, 1 thread each) train the same elastic U-Net from the same start on the same
shards, once per method and sampling strategy (uniform: 1 sub-net per step; sandwich: largest, smallest
and one random sub-net per step, i.e. three backward passes per step — DDP then needs ``no_sync`` for
all but the last). Prints the median step time and, for correctness, how far the two methods' weights
end apart and how often a parameter that the step's sub-nets did not use at all was moved anyway
(``unused_param_steps``: such (step, parameter) pairs; ``moved_*``: how many of them changed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticnet.cli.arguments import hxw
from elasticnet.errors import run_script
from elasticnet.hardware import cpu_summary
from elasticnet.models import ElasticUNet, ElasticUNetConfig
from elasticnet.training.distributed import Dist, average_gradients
from elasticnet.training.losses import segmentation_loss
from elasticnet.training.sampler import SubNetSampler


def worker(rank: int, world: int, init: str, args, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    size = args.size
    g = torch.Generator().manual_seed(100 + rank)
    data = [
        (torch.randn(4, 3, *size, generator=g), (torch.rand(4, 1, *size, generator=g) > 0.8).float())
        for _ in range(args.steps + 1)
    ]
    out = {}
    for strategy, num_random in (("uniform", 1), ("sandwich", 1)):
        sampler = SubNetSampler((3, 4, 5), (0.5, 1.0), strategy, num_random, seed=0)
        finals = {}
        for method in ("allreduce", "ddp"):
            torch.manual_seed(0)
            model = ElasticUNet(ElasticUNetConfig(base_width=args.base, depths=[3, 4, 5], widths=[0.5, 1.0]))
            net = (
                torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
                if method == "ddp"
                else model
            )
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            times = []
            unused_steps = moved = 0
            params = dict(model.named_parameters())
            for step, (x, y) in enumerate(data):
                subnets = sampler.sample(step)
                unused = [k for k in params if k not in model.active_masks(subnets)]
                before = {k: params[k].detach().clone() for k in unused}
                dist.barrier()
                t0 = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                for i, subnet in enumerate(subnets):
                    sync = nullcontext() if (method == "allreduce" or i == len(subnets) - 1) else net.no_sync()
                    with sync:
                        segmentation_loss(net(x, subnet), y).backward()
                if method == "allreduce":
                    average_gradients(model, Dist(rank, world))
                optimizer.step()
                if step:  # the first step warms up
                    times.append(time.perf_counter() - t0)
                unused_steps += len(unused)
                moved += sum(not torch.equal(before[k], params[k]) for k in unused)
            finals[method] = ({k: v.detach().clone() for k, v in model.named_parameters()}, statistics.median(times))
            out[(strategy, method)] = {
                "step_ms": 1000 * statistics.median(times),
                "unused": unused_steps,
                "moved": moved,
            }
        a, b = finals["allreduce"][0], finals["ddp"][0]
        out[(strategy, "diff")] = max((a[k] - b[k]).abs().max().item() for k in a)
    if rank == 0:
        results.update(out)
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--size", type=hxw, default="96x128")
    p.add_argument("--base", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, args=(2, f"file://{os.path.join(tmp, 'rendezvous')}", args, results), nprocs=2)
        results = dict(results)
    from elasticnet.reporting import text_table

    rows = []
    for strategy in ("uniform", "sandwich"):
        a, d = results[(strategy, "allreduce")], results[(strategy, "ddp")]
        rows.append(
            {
                "strategy": strategy,
                "allreduce_ms": round(a["step_ms"], 1),
                "ddp_unused_ms": round(d["step_ms"], 1),
                "ddp/allreduce": round(d["step_ms"] / a["step_ms"], 2),
                "max_weight_diff": f"{results[(strategy, 'diff')]:.1e}",
                "unused_param_steps": a["unused"],
                "moved_allreduce": a["moved"],
                "moved_ddp": d["moved"],
            }
        )
    print(f"CPU: {cpu_summary()}")
    print(
        f"2 processes x 1 thread (gloo), batch 4 per process at {args.size[0]}x{args.size[1]}, base {args.base}, "
        f"{args.steps} timed steps, AdamW"
    )
    print(text_table(rows))


if __name__ == "__main__":
    run_script(main)
