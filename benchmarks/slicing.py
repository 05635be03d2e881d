"""Forward time of sub-nets run by weight slicing vs natively built static U-Nets of the same shape.

Target (issue 2): sliced / native <= 1.05 at every depth x width. For reference the script also times
the alternative that slicing replaces (running the full-width layers and multiplying dropped channels
by a zero mask), and prints each sub-net's params and FLOPs.

    python benchmarks/slicing.py [--size 288x384] [--base-width 32] [--batch 1] [--reps 15]

Timings alternate between the variants rep by rep; times are medians, ratios are medians of the
per-rep ratios (sliced and native run back to back), so drift of a noisy machine cancels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from elasticnet.cli.arguments import hxw, number_list
from elasticnet.errors import run_script
from elasticnet.hardware import cpu_summary
from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet, count_flops, count_params, extract
from elasticnet.models.elastic_layers import ElasticConv2d
from elasticnet.reporting import text_table
from elasticnet.runtime import tune_malloc


def masked_forward(model: ElasticUNet, x: torch.Tensor, subnet: SubNet) -> torch.Tensor:
    """The full-width net with dropped channels zeroed after every conv (what slicing avoids)."""
    full = model.config.channels(SubNet(subnet.depth, 1.0))
    active = model.config.channels(subnet)
    original = ElasticConv2d.forward

    def conv_then_mask(self, inp, active_in, active_out):
        out = original(self, inp, active_in, active_out)
        keep = lookup.get(active_out)
        if keep is not None and keep < active_out:
            out = out * (torch.arange(active_out, device=out.device) < keep).to(out.dtype)[None, :, None, None]
        return out

    lookup = {f: a for f, a in zip(full, active)}
    ElasticConv2d.forward = conv_then_mask
    try:
        return model(x, SubNet(subnet.depth, 1.0))
    finally:
        ElasticConv2d.forward = original


def timed(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=hxw, default="288x384")
    p.add_argument("--base-width", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--depths", type=number_list(int, "3,4,5"), default="3,4,5")
    p.add_argument("--widths", type=number_list(float, "0.5,1"), default="0.25,0.5,0.75,1.0")
    p.add_argument("--no-malloc-tuning", action="store_true")
    args = p.parse_args()
    if not args.no_malloc_tuning:
        tune_malloc()
    h, w = args.size
    cfg = ElasticUNetConfig(base_width=args.base_width, depths=args.depths, widths=args.widths)
    model = ElasticUNet(cfg).eval()
    x = torch.randn(args.batch, 3, h, w)
    print(
        f"CPU: {cpu_summary()}\ntorch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"input {args.batch}x3x{h}x{w}, base width {args.base_width}, eval forward, median of {args.reps}"
    )
    rows = []
    with torch.inference_mode():
        for subnet in cfg.subnets():
            static = extract(model, subnet).eval()
            variants = {"sliced": lambda t, s=subnet: model(t, s), "native": static}
            if subnet.width < 1.0:
                variants["masked"] = lambda t, s=subnet: masked_forward(model, t, s)
            for fn in variants.values():  # warm-up
                fn(x)
                fn(x)
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.reps):
                for name, fn in variants.items():
                    times[name].append(timed(fn, x))
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            # paired ratios (same rep, back to back) cancel most of the machine's drift
            ratio = {k: statistics.median(a / b for a, b in zip(times[k], times["native"])) for k in times}
            gflops = count_flops(static.config, (h, w)) * args.batch / 1e9
            rows.append(
                {
                    "depth": subnet.depth,
                    "width": subnet.width,
                    "params": count_params(static.config),
                    "GFLOPs": round(gflops, 2),
                    "native_ms": round(med["native"], 1),
                    "sliced_ms": round(med["sliced"], 1),
                    "sliced/native": round(ratio["sliced"], 3),
                    "masked/native": round(ratio["masked"], 2) if "masked" in ratio else "-",
                    "GFLOP/s": round(gflops / med["sliced"] * 1e3, 1),
                }
            )
            print(f"  {subnet}: native {med['native']:.1f} ms, sliced {med['sliced']:.1f} ms", flush=True)
    print()
    print(text_table(rows))
    worst = max(r["sliced/native"] for r in rows)
    print(f"\nworst sliced/native ratio {worst:.3f} (target <= 1.05): {'met' if worst <= 1.05 else 'MISSED'}")


if __name__ == "__main__":
    run_script(main)
