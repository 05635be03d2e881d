"""The glibc allocator effect on eager PyTorch, measured with the package's own model and training step.

Each variant runs in a fresh process (malloc settings are per process): the default allocator, the
in-process fix the ``elasticnet`` command applies (:func:`elasticnet.runtime.tune_malloc`), and the
environment-variable form (``MALLOC_MMAP_MAX_=0``). Reported: median time of an eval forward and of a
training step, minor page faults per step, and peak RSS.

    python benchmarks/allocator.py [--size 144x192] [--batch 8] [--base-width 16] [--reps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from elasticnet.cli.arguments import hxw
from elasticnet.errors import run_script
from elasticnet.hardware import cpu_summary
from elasticnet.reporting import text_table

CHILD = r"""
import json, resource, statistics, sys, time
import torch
from elasticnet.models import ElasticUNet, ElasticUNetConfig
from elasticnet.runtime import tune_malloc
from elasticnet.training.losses import segmentation_loss
args = json.loads(sys.argv[1])
if args["tune"]:
    tune_malloc()
h, w = args["size"]
model = ElasticUNet(ElasticUNetConfig(base_width=args["base_width"], depths=[3, 4, 5], widths=[1.0]))
opt = torch.optim.AdamW(model.parameters())
x = torch.randn(args["batch"], 3, h, w)
y = (torch.rand(args["batch"], 1, h, w) > 0.5).float()
def step():
    opt.zero_grad(set_to_none=True)
    segmentation_loss(model(x), y).backward()
    opt.step()
def forward():
    with torch.no_grad():
        model.eval(); model(x); model.train()
out = {}
for name, fn in (("forward", forward), ("step", step)):
    fn(); fn()
    times, faults = [], []
    for _ in range(args["reps"]):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    out[name] = (statistics.median(times), statistics.median(faults))
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=hxw, default="144x192")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--base-width", type=int, default=16)
    p.add_argument("--reps", type=int, default=6)
    args = p.parse_args()
    h, w = args.size
    variants = {
        "glibc default": ({}, False),
        "tune_malloc() (elasticnet default)": ({}, True),
        "MALLOC_MMAP_MAX_=0": ({"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}, False),
    }
    results = {}
    for name, (env, tune) in variants.items():
        params = json.dumps(
            {"tune": tune, "size": [h, w], "batch": args.batch, "base_width": args.base_width, "reps": args.reps}
        )
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
        out = subprocess.run(
            [sys.executable, "-c", CHILD, params], capture_output=True, text=True, env=child_env, check=True
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {name}: done", flush=True)
    base = results["glibc default"]
    rows = [
        {
            "allocator": name,
            "forward_ms": round(r["forward"][0] * 1e3, 1),
            "step_ms": round(r["step"][0] * 1e3, 1),
            "faults_per_step": int(r["step"][1]),
            "step_speedup": round(base["step"][0] / r["step"][0], 2),
            "forward_speedup": round(base["forward"][0] / r["forward"][0], 2),
            "peak_rss_mb": round(r["rss_mb"]),
        }
        for name, r in results.items()
    ]
    print(f"\nCPU: {cpu_summary()}")
    print(f"elastic U-Net depth 5, base width {args.base_width}, batch {args.batch}x3x{h}x{w}, median of {args.reps}")
    print(text_table(rows))


if __name__ == "__main__":
    run_script(main)
