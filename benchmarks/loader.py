"""Data loader throughput vs training throughput, for one experiment config.

Target (issue 3): the loader delivers at least 5x the samples per second that a training step consumes,
so it never starves training. Both are measured in this process, one after the other, on the same
config (decoded images cached in memory, augmentation on, as in training).

    python benchmarks/loader.py --config experiments/cvc_clinicdb.yaml --data PATH [--profile cpu] [--steps 10]

Without --data the built-in synthetic set is used.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from elasticnet.config import build_config
from elasticnet.data import build_datasets
from elasticnet.models import ElasticUNet
from elasticnet.reporting import text_table
from elasticnet.runtime import seed_everything, tune_malloc
from elasticnet.training.sampler import SubNetSampler
from elasticnet.training.step import forward_backward


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config")
    p.add_argument("--profile")
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    tune_malloc()
    seed_everything(0)
    cfg = build_config(args.config, {"data": args.data} if args.data else {}, args.profile)
    t0 = time.perf_counter()
    split = build_datasets(cfg.data, cfg.model.in_channels, 0)
    load_s = time.perf_counter() - t0
    bs = cfg.train.batch_size
    loader = DataLoader(split.train, batch_size=bs, shuffle=True, drop_last=True, num_workers=cfg.data.num_workers)

    n, start = 0, time.perf_counter()
    for _ in range(2):
        for images, _ in loader:
            n += images.shape[0]
    loader_rate = n / (time.perf_counter() - start)

    model = ElasticUNet(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    sampler = SubNetSampler(
        tuple(cfg.model.depths), tuple(cfg.model.widths), cfg.train.strategy, cfg.train.num_random, 0
    )
    batches = iter(loader)
    rates = {}
    for label, pick in (("largest sub-net", lambda s: [sampler.largest]), ("sampled sub-nets", sampler.sample)):
        images, masks = next(batches)
        opt.zero_grad()
        forward_backward(model, images, masks, pick(0), None)  # warm-up
        start = time.perf_counter()
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            forward_backward(model, images, masks, pick(step), None)
            opt.step()
        rates[label] = args.steps * bs / (time.perf_counter() - start)

    h, w = cfg.data.image_size
    print(
        f"{args.config or 'defaults'} ({args.profile or 'default profile'}), data {cfg.data.data}: "
        f"{len(split.train)} training images at {h}x{w}, batch {bs}, {torch.get_num_threads()} threads; "
        f"decoding + resizing the whole set took {load_s:.1f} s"
    )
    rows = [{"what": "loader (augmented, from memory)", "samples_per_s": round(loader_rate, 1), "ratio": "-"}]
    rows += [
        {"what": f"training step, {k}", "samples_per_s": round(v, 1), "ratio": round(loader_rate / v, 1)}
        for k, v in rates.items()
    ]
    print(text_table(rows))
    worst = min(loader_rate / v for v in rates.values())
    print(f"loader / training = {worst:.1f}x at worst (target >= 5x): {'met' if worst >= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
