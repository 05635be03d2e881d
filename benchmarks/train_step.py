"""Training-step speed on this machine: achieved GFLOP/s against the conv peak measured in the same run.

    python benchmarks/train_step.py [--parts peak,step,sliced,sandwich,multiple] [--reps 7]

Parts (each prints a table; ratios are medians of per-rep ratios of variants timed back to back, so the
drift of a shared machine cancels):

- ``peak``: the practical conv peak: 3x3 convolutions of 64-512 channels, batch 8, forward, fp32 and (where
  the CPU computes in it natively) bf16, NCHW and channels_last; the best of each dtype.
- ``step``: one training step (forward, backward, AdamW) of the depth-5 width-1 ElasticUNet at base 32,
  144x192, batch 8 (``--step-size``): fp32, fp32 channels_last, bf16 and bf16 channels_last (bf16 only with
  native support). GFLOP/s counts 3 x the forward conv FLOPs per image; targets: >= 60 % of the fp32
  peak, >= 50 % of the bf16 peak.
- ``sliced``: the training step of every depth x width sub-net, sliced out of the elastic model vs a
  natively built U-Net of the same shape (``--sliced-size``, base ``--sliced-base``). Target <= 1.05.
- ``sandwich``: the trainer's multi-sub-net step (``elasticnet.training.step.train_step``: largest,
  smallest, one middle sub-net, freezer on) vs the sum of the same sub-nets' single steps, at the CVC
  ``cpu`` profile's shape (base 16, 64x96, batch 8). Target <= 1.1.
- ``multiple``: the width-0.75 training step at base 32 with channels rounded to 4, 8 and 16 (which
  multiple keeps the fast kernels on this CPU).

Every line is printed with the CPU's flags; run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from elasticnet import hardware
from elasticnet.cli.arguments import hxw
from elasticnet.errors import run_script
from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet, count_flops, extract
from elasticnet.reporting import text_table
from elasticnet.runtime import tune_malloc
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.losses import segmentation_loss
from elasticnet.training.precision import Precision
from elasticnet.training.step import train_step


def paired(variants: dict[str, Callable[[], None]], reps: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median seconds per variant, and the raw times (variants alternate within every rep)."""
    for fn in variants.values():  # warm-up: oneDNN primitive creation, allocator
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def dtypes() -> list[str]:
    return ["fp32", "bf16"] if hardware.native_bf16_cpu() else ["fp32"]


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def conv_peak(reps: int) -> dict[str, float]:
    """Best forward GFLOP/s of single 3x3 convs per dtype."""
    shapes = [(64, 144, 192), (128, 72, 96), (256, 36, 48), (512, 18, 24)]
    rows, best = [], {}
    for c, h, w in shapes:
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        flops = 2 * c * c * 9 * h * w * 8
        for dtype in dtypes():
            for cl in (False, True):
                x = layout(torch.randn(8, c, h, w), cl)
                mod = conv.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                prec = Precision("bf16" if dtype == "bf16" else "none", "cpu")

                def run(mod=mod, x=x, prec=prec):
                    with torch.no_grad(), prec.autocast():
                        mod(x)

                med, _ = paired({"conv": run}, reps)
                gflops = flops / med["conv"] / 1e9
                best[dtype] = max(best.get(dtype, 0.0), gflops)
                rows.append(
                    {
                        "channels": c,
                        "size": f"{h}x{w}",
                        "dtype": dtype,
                        "layout": "NHWC" if cl else "NCHW",
                        "GFLOP/s": round(gflops, 1),
                    }
                )
    print(text_table(rows))
    print("conv peak: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in best.items()) + "\n", flush=True)
    return best


def elastic_step(
    model: ElasticUNet,
    subnets: list[SubNet],
    x: torch.Tensor,
    y: torch.Tensor,
    precision: Precision,
    freezer: bool = True,
) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    frz = InactiveWeightFreezer(model, optimizer) if freezer else None
    return lambda: train_step(model, optimizer, precision, frz, x, y, subnets, None)


def native_step(static: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: Precision) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(static.parameters(), lr=1e-4)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = static(x)
        precision.backward(segmentation_loss(logits.float(), y))
        precision.step(optimizer)

    return run


def batch(size: tuple[int, int], n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, *size, generator=g), (torch.rand(n, 1, *size, generator=g) > 0.7).float()


def step_part(args, peak: dict[str, float]) -> None:
    size = args.step_size
    cfg = ElasticUNetConfig(base_width=32, depths=[5], widths=[1.0])
    flops = 3 * count_flops(extract(ElasticUNet(cfg), SubNet(5, 1.0)).config, size) * 8
    x, y = batch(size)
    variants = {}
    for dtype in dtypes():
        for cl in (False, True):
            model = ElasticUNet(cfg).train().to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            prec = Precision("bf16" if dtype == "bf16" else "none", "cpu")
            variants[f"{dtype}{' channels_last' if cl else ''}"] = elastic_step(
                model, [SubNet(5, 1.0)], layout(x, cl), y, prec
            )
    med, _ = paired(variants, args.reps)
    rows = []
    for name, seconds in med.items():
        gflops = flops / seconds / 1e9
        dtype = name.split()[0]
        rows.append(
            {
                "variant": name,
                "ms": round(seconds * 1e3, 1),
                "img/s": round(8 / seconds, 1),
                "GFLOP/s": round(gflops, 1),
                "% of its dtype's peak": round(100 * gflops / peak[dtype], 1) if dtype in peak else "-",
            }
        )
    print(
        f"training step, depth 5 width 1, base 32, {size[0]}x{size[1]}, batch 8 "
        f"(targets: fp32 >= 60 %, bf16 >= 50 % of the peak)"
    )
    print(text_table(rows) + "\n", flush=True)


def sliced_part(args) -> None:
    size = args.sliced_size
    cfg = ElasticUNetConfig(base_width=args.sliced_base)
    x, y = batch(size)
    rows = []
    prec = Precision("bf16" if "bf16" in dtypes() and args.bf16 else "none", "cpu")
    for subnet in cfg.subnets():
        model = ElasticUNet(cfg).train()
        static = extract(model, subnet).train()
        med, times = paired(
            {
                "sliced": elastic_step(model, [subnet], x, y, prec, freezer=False),
                "native": native_step(static, x, y, prec),
            },
            args.reps,
        )
        rows.append(
            {
                "depth": subnet.depth,
                "width": subnet.width,
                "native_ms": round(med["native"] * 1e3, 1),
                "sliced_ms": round(med["sliced"] * 1e3, 1),
                "sliced/native": round(ratio(times, "sliced", "native"), 3),
            }
        )
    worst = max(r["sliced/native"] for r in rows)
    print(f"sliced vs native training step, base {args.sliced_base}, {size[0]}x{size[1]}, batch 8, {prec.name}")
    print(text_table(rows))
    print(f"worst sliced/native {worst:.3f} (target <= 1.05): {'met' if worst <= 1.05 else 'MISSED'}\n", flush=True)


def sandwich_part(args) -> None:
    size = (64, 96)
    cfg = ElasticUNetConfig(base_width=16)
    x, y = batch(size)
    subnets = [SubNet(5, 1.0), SubNet(3, 0.25), SubNet(4, 0.5)]
    rows = []
    for dtype, cl in [(d, cl) for d in dtypes() for cl in (False, True)]:
        prec = Precision("bf16" if dtype == "bf16" else "none", "cpu")
        fmt = torch.channels_last if cl else torch.contiguous_format
        xx = layout(x, cl)
        variants = {"sandwich": elastic_step(ElasticUNet(cfg).train().to(memory_format=fmt), subnets, xx, y, prec)}
        for s in subnets:
            variants[s.key] = elastic_step(ElasticUNet(cfg).train().to(memory_format=fmt), [s], xx, y, prec)
        med, times = paired(variants, args.reps)
        total = [sum(times[s.key][i] for s in subnets) for i in range(args.reps)]
        r = statistics.median(a / b for a, b in zip(times["sandwich"], total))
        rows.append(
            {
                "dtype": dtype + (" channels_last" if cl else ""),
                "sandwich_ms": round(med["sandwich"] * 1e3, 1),
                **{f"{s.key}_ms": round(med[s.key] * 1e3, 1) for s in subnets},
                "sandwich/sum": round(r, 3),
                "img/s": round(8 / med["sandwich"], 1),
            }
        )
    print(
        "sandwich step (step.train_step, freezer on) vs the sum of its sub-nets' single steps, base 16, 64x96, "
        "batch 8 (target <= 1.1)"
    )
    print(text_table(rows) + "\n", flush=True)


def multiple_part(args) -> None:
    size = args.step_size
    x, y = batch(size)
    variants, flops = {}, {}
    for multiple in (4, 8, 16):
        cfg = ElasticUNetConfig(base_width=32, depths=[5], widths=[0.75, 1.0], channel_multiple=multiple)
        model = ElasticUNet(cfg).train()
        static = extract(model, SubNet(5, 0.75)).train()
        name = f"{multiple}: {'-'.join(map(str, cfg.channels(SubNet(5, 0.75))))}"
        variants[name] = native_step(static, x, y, Precision("none", "cpu"))
        flops[name] = 3 * count_flops(static.config, size) * 8
    med, _ = paired(variants, args.reps)
    rows = [
        {"multiple: channels": k, "ms": round(v * 1e3, 1), "GFLOP/s": round(flops[k] / v / 1e9, 1)}
        for k, v in med.items()
    ]
    print(
        f"width 0.75 at base 32, {size[0]}x{size[1]}, batch 8, fp32 training step, by channel multiple "
        f"(this package picks {hardware.fast_channel_multiple('cpu')} on this CPU)"
    )
    print(text_table(rows) + "\n", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="peak,step,sliced,sandwich,multiple")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--step-size", type=hxw, default="144x192")
    p.add_argument("--sliced-size", type=hxw, default="64x96")
    p.add_argument("--sliced-base", type=int, default=16)
    p.add_argument("--bf16", action="store_true", help="sliced part in bf16 (where native)")
    args = p.parse_args()
    tune_malloc()
    parts = args.parts.split(",")
    print(
        f"CPU: {hardware.cpu_summary()}\ntorch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
        f"{torch.get_num_threads()} threads, {platform.platform()}\n",
        flush=True,
    )
    peak = conv_peak(args.reps) if "peak" in parts or "step" in parts else {}
    if "step" in parts:
        step_part(args, peak)
    if "sliced" in parts:
        sliced_part(args)
    if "sandwich" in parts:
        sandwich_part(args)
    if "multiple" in parts:
        multiple_part(args)


if __name__ == "__main__":
    run_script(main)
