"""Latency and peak memory of one exported model, measured in a process of its own.

Each model runs in a fresh Python process (``python -m elasticnet.export.measure``), so one model's
memory peak, allocator state or thread pool cannot colour the next one's figures. Latency: ``warmup``
untimed runs, then the median and 90th percentile of ``repeats`` timed runs on random input. Peak
memory: the process's peak resident set (``VmHWM``) minus its resident set after the runtime was
imported and before the model was loaded, i.e. what loading and running the model added (Linux; other
systems report none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def machine() -> str:
    """CPU model and logical CPUs, e.g. 'AMD EPYC 7B13, 2 CPUs'."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs"


def status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def timings(fn: Callable[[], object], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def _runner(runtime: str, model: Path, threads: int) -> Callable[[np.ndarray], object]:
    if runtime == "onnxruntime":
        from elasticnet.site.model import onnx_predict, onnx_session

        return onnx_predict(onnx_session(model, threads))
    import torch

    from elasticnet.export.torch_export import load_unet

    if threads:
        torch.set_num_threads(threads)
    net = load_unet(model).eval()

    def run(x: np.ndarray):
        with torch.no_grad():
            return net(torch.from_numpy(x))

    return run


def measure_here(
    runtime: str,
    model: Path,
    shape: tuple[int, ...],
    batches: list[int],
    threads: int = 0,
    warmup: int = 3,
    repeats: int = 20,
) -> dict[str, float]:
    """Measure in this process (see :func:`measure` for a fresh one)."""
    if runtime == "onnxruntime":
        import onnxruntime  # noqa: F401  (baseline memory includes the runtime itself)
    else:
        import torch  # noqa: F401
    baseline = status_mb("VmRSS")
    run = _runner(runtime, model, threads)
    rng = np.random.default_rng(0)
    result: dict[str, float] = {}
    for batch in batches:
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        t = timings(lambda x=x: run(x), warmup, repeats)
        result[f"b{batch}_median_ms"], result[f"b{batch}_p90_ms"] = t["median_ms"], t["p90_ms"]
    peak = status_mb("VmHWM")
    if peak is not None and baseline is not None:
        result["peak_mb"] = peak - baseline
    return result


def measure(
    runtime: str,
    model: Path,
    shape: tuple[int, ...],
    batches: list[int],
    threads: int = 0,
    warmup: int = 3,
    repeats: int = 20,
) -> dict[str, float]:
    """Measure ``model`` (an ONNX file, or a torch export) in a fresh process; returns latency per batch
    size (``b{N}_median_ms``, ``b{N}_p90_ms``) and ``peak_mb``."""
    command = [
        sys.executable,
        "-m",
        "elasticnet.export.measure",
        runtime,
        str(model),
        ",".join(map(str, shape)),
        ",".join(map(str, batches)),
        str(threads),
        str(warmup),
        str(repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runtime", choices=["onnxruntime", "torch"])
    p.add_argument("model", type=Path)
    p.add_argument("shape")
    p.add_argument("batches")
    p.add_argument("threads", type=int)
    p.add_argument("warmup", type=int)
    p.add_argument("repeats", type=int)
    a = p.parse_args()
    if a.runtime == "torch":
        from elasticnet.runtime import tune_malloc

        tune_malloc()  # as the elasticnet command runs torch
    shape = tuple(int(s) for s in a.shape.split(","))
    batches = [int(b) for b in a.batches.split(",")]
    print(json.dumps(measure_here(a.runtime, a.model, shape, batches, a.threads, a.warmup, a.repeats)))


if __name__ == "__main__":
    main()
