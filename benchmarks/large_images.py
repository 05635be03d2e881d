"""Training on large images: peak memory and step time of one training step, plain vs gradient
checkpointing vs mixed precision vs both.

    python benchmarks/large_images.py [--size 1280x2048] [--base 32] [--depth 5] [--steps 2]

Each configuration runs in a fresh process (one after the other): a warm-up step, then ``--steps`` timed
steps (median). Memory: the process's peak resident set during a timed step minus its resident set just
before it (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``), i.e. activations, gradients and
temporary buffers of the step; activations: the resident set the autograd graph holds after the forward
pass (what checkpointing trades for recomputation). glibc's allocator is left at its defaults here, so large freed blocks
go back to the system and the peak follows live memory (``elasticnet.runtime.tune_malloc`` would keep
them and hide the difference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from elasticnet.cli.arguments import hxw
from elasticnet.errors import run_script
from elasticnet.hardware import cpu_summary

CONFIGS = {
    "fp32": {},
    "checkpoint": {"grad_checkpoint": True},
    "bf16": {"amp": "bf16"},
    "checkpoint+bf16": {"grad_checkpoint": True, "amp": "bf16"},
}


def one(name: str, size: tuple[int, int], base: int, depth: int, steps: int) -> dict:
    import torch

    from elasticnet.export.measure import status_mb
    from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet
    from elasticnet.training.losses import segmentation_loss

    options = CONFIGS[name]
    torch.manual_seed(0)
    model = ElasticUNet(ElasticUNetConfig(base_width=base, depths=[depth], widths=[1.0], in_channels=1))
    model.grad_checkpoint = options.get("grad_checkpoint", False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(1, 1, *size)
    y = (torch.rand(1, 1, *size) > 0.99).float()
    subnet = SubNet(depth, 1.0)

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.get("amp", "none"))

    def step() -> float:
        """One training step; returns the memory the graph held after the forward pass (MB)."""
        optimizer.zero_grad(set_to_none=True)
        before = status_mb("VmRSS")
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(x, subnet)
        loss = segmentation_loss(logits.float(), y)
        held = status_mb("VmRSS") - before
        loss.backward()
        optimizer.step()
        return held

    step()  # warm-up: optimizer state, allocator, kernels
    times, peaks, held = [], [], []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        before = status_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
        start = time.perf_counter()
        held.append(step())
        times.append(time.perf_counter() - start)
        peaks.append(status_mb("VmHWM") - before)
    return {
        "config": name,
        "step_s": round(statistics.median(times), 2),
        "activations_mb": round(max(held)),
        "peak_mb": round(max(peaks)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=hxw, default="1280x2048")
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument(
        "--timeout", type=float, default=300, help="seconds per configuration before it is reported as too slow"
    )
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--only", help=argparse.SUPPRESS)  # run one configuration in this process (internal)
    a = p.parse_args()
    size = a.size
    if a.only:
        print(json.dumps(one(a.only, size, a.base, a.depth, a.steps)))
        return
    from elasticnet.export.measure import machine
    from elasticnet.reporting import text_table

    rows = []
    for name in a.configs.split(","):
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--only",
                    name,
                    "--size",
                    f"{a.size[0]}x{a.size[1]}",
                    "--base",
                    str(a.base),
                    "--depth",
                    str(a.depth),
                    "--steps",
                    str(a.steps),
                ],
                capture_output=True,
                text=True,
                timeout=a.timeout,
            )
        except subprocess.TimeoutExpired:
            rows.append(
                {
                    "config": name,
                    "step_s": f"> {a.timeout / (a.steps + 1):.0f} (stopped)",
                    "activations_mb": "",
                    "peak_mb": "",
                }
            )
            print(f"{name}: did not finish {a.steps + 1} steps in {a.timeout:.0f} s", flush=True)
            continue
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: {rows[-1]}", flush=True)
    base = rows[0]
    for r in rows:
        if isinstance(r["step_s"], float):
            r["activations_vs_fp32"] = f"{base['activations_mb'] / r['activations_mb']:.2f}x less"
            r["peak_vs_fp32"] = f"{base['peak_mb'] / r['peak_mb']:.2f}x less"
            r["time_vs_fp32"] = f"{r['step_s'] / base['step_s']:.2f}x"
    print(f"\none training step, batch 1 x 1 x {size[0]} x {size[1]}, depth {a.depth}, base {a.base}; {machine()}")
    print(f"CPU: {cpu_summary()}")
    print(text_table(rows))


if __name__ == "__main__":
    run_script(main)
