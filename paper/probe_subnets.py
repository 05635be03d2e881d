"""Why does a sub-net predict nothing? Probe a trained run: dead channels per block and the output's logits.

    python paper/probe_subnets.py --checkpoint RUN [--subnets d3-w0.25,d3-w1] [--images 16]

For each sub-net, on the first ``--images`` validation images of the run, with batch statistics (train-mode
BatchNorm, so the as-trained running statistics play no part): per encoder/decoder block the share of output
channels that are zero on every pixel of every image (dead ReLUs) and the mean activation, then the mean,
standard deviation and maximum of the logits and the share of pixels above the threshold. A sub-net whose
channels are alive but whose logits never cross the threshold is slow, not dead (the pilot's empty narrow
sub-nets at 8 epochs were of this kind, see README Results).
"""

from __future__ import annotations

import argparse

import torch

from elasticnet.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
from elasticnet.cli.arguments import at_least
from elasticnet.data import build_datasets
from elasticnet.errors import run_script
from elasticnet.training.sampler import parse_subnets


@torch.no_grad()
def probe(model, subnet, images: torch.Tensor, threshold: float) -> dict:
    blocks, hooks = [], []

    def hook(module, inputs, output):
        blocks.append((float((output.amax(dim=(0, 2, 3)) <= 0).float().mean()), float(output.mean())))

    for block in [*model.encoder, *model.decoder, *model.junctions.values(), *model.bottlenecks.values()]:
        hooks.append(block.register_forward_hook(hook))
    try:
        model.train()
        logits = model(images, subnet).float()
    finally:
        for h in hooks:
            h.remove()
    prob = torch.sigmoid(logits)
    return {
        "dead": [round(d, 2) for d, _ in blocks],
        "mean_activation": [round(m, 3) for _, m in blocks],
        "logit_mean": round(float(logits.mean()), 3),
        "logit_std": round(float(logits.std()), 3),
        "logit_max": round(float(logits.max()), 3),
        "above_threshold": round(float((prob > threshold).float().mean()), 4),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--subnets", default="", help="comma-separated keys like d3-w0.25 (default: all)")
    p.add_argument("--images", type=at_least(1), default=16, help="validation images to probe (default %(default)s)")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    cfg, model = model_from_checkpoint(ckpt)
    subnets = parse_subnets([s for s in args.subnets.split(",") if s]) or cfg.model.subnets()
    val = build_datasets(cfg.data, cfg.model.in_channels, cfg.train.seed).val
    images = torch.stack([val[i][0] for i in range(min(args.images, len(val)))])
    print(f"{args.checkpoint}: {len(images)} validation images, batch statistics, threshold {cfg.train.threshold}")
    for subnet in subnets:
        r = probe(model, model.check_subnet(subnet), images, cfg.train.threshold)
        print(
            f"{subnet.key:>9}: dead channels per block {r['dead']}; logits mean {r['logit_mean']} sd "
            f"{r['logit_std']} max {r['logit_max']}; pixels above threshold {r['above_threshold']}"
        )


if __name__ == "__main__":
    run_script(main)
