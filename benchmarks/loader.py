"""Training-batch throughput of both augmentation paths vs training throughput, for one experiment config.

Target (issue 3): the batches arrive at least 5x as fast as a training step consumes them, so they never
starve training (issue 15: on a GPU, batch time < 5 % of step time). Measured in this process, one after the
other, on the same config (decoded images cached in memory, augmentation on, as in training):
- ``loader``: albumentations per image in a ``DataLoader`` (``--workers`` processes, pinned memory on GPUs),
  batches copied to the device;
- ``device``: the images on the device, each batch gathered and augmented there (``augment_on: device``).

    python benchmarks/loader.py --config experiments/cvc_clinicdb.yaml --data PATH [--profile cpu] [--steps 10]
        [--device cpu|cuda] [--workers N]

Without --data the built-in synthetic set is used.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from elasticnet.config import build_config
from elasticnet.data import augment, build_datasets
from elasticnet.data.build import augmentation_kind
from elasticnet.data.device_batches import DeviceBatches
from elasticnet.errors import run_script
from elasticnet.hardware import cpu_summary
from elasticnet.models import ElasticUNet
from elasticnet.reporting import text_table
from elasticnet.runtime import seed_everything, tune_malloc
from elasticnet.training.order import EpochSampler
from elasticnet.training.sampler import SubNetSampler
from elasticnet.training.step import forward_backward


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches_per_second(batches, device: torch.device, epochs: int = 2) -> float:
    """Images per second delivered on ``device`` over ``epochs`` passes (the copy to the device included)."""
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, masks in batches:
            images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
            n += images.shape[0]
    _sync(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config")
    p.add_argument("--profile")
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=0, help="loader processes for the loader path")
    args = p.parse_args()
    tune_malloc()
    seed_everything(0)
    device = torch.device(args.device)
    cfg = build_config(args.config, {"data": args.data} if args.data else {}, args.profile)
    t0 = time.perf_counter()
    split = build_datasets(cfg.data, cfg.model.in_channels, 0)
    load_s = time.perf_counter() - t0
    bs = cfg.train.batch_size
    order = EpochSampler(len(split.train), seed=0)
    loader = DataLoader(
        split.train,
        batch_size=bs,
        sampler=order,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    paths = {"loader": loader}
    if not any(cfg.data.patch_size):
        spec = augment.spec(augmentation_kind(cfg.data, cfg.model.in_channels), cfg.data.augment_strength)
        paths["device"] = DeviceBatches(split.train, order, bs, device, spec)
    path_rates = {name: batches_per_second(b, device) for name, b in paths.items()}

    model = ElasticUNet(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    sampler = SubNetSampler(
        tuple(cfg.model.depths), tuple(cfg.model.widths), cfg.train.strategy, cfg.train.num_random, 0
    )
    images, masks = (t.to(device) for t in next(iter(loader)))
    rates = {}
    for label, pick in (("largest sub-net", lambda s: [sampler.largest]), ("sampled sub-nets", sampler.sample)):
        opt.zero_grad()
        forward_backward(model, images, masks, pick(0), None)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            forward_backward(model, images, masks, pick(step), None)
            opt.step()
        _sync(device)
        rates[label] = args.steps * bs / (time.perf_counter() - start)

    h, w = cfg.data.image_size
    print(cpu_summary())
    print(
        f"{args.config or 'defaults'} ({args.profile or 'default profile'}), data {cfg.data.data}, on {device}: "
        f"{len(split.train)} training images at {h}x{w}, batch {bs}, {torch.get_num_threads()} threads, "
        f"{args.workers} loader processes; decoding + resizing the whole set took {load_s:.1f} s"
    )
    rows = [{"what": f"batches: {name} path", "samples_per_s": round(r, 1)} for name, r in path_rates.items()]
    rows += [{"what": f"training step, {k}", "samples_per_s": round(v, 1)} for k, v in rates.items()]
    print(text_table(rows))
    fastest_step = max(rates.values())  # the step that asks for batches most often
    for name, rate in path_rates.items():
        ratio = rate / fastest_step
        print(
            f"{name} path: batches / training = {ratio:.1f}x at worst (target >= 5x: "
            f"{'met' if ratio >= 5 else 'MISSED'}); making a batch takes {100 / ratio:.1f} % of a step's time "
            f"(GPU target < 5 %)"
        )


if __name__ == "__main__":
    run_script(main)
