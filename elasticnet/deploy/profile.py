"""Profile every sub-net of a checkpoint on this machine: size, FLOPs, latency, memory, stored Dice."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from elasticnet.checkpoint import cut_subnet, load_checkpoint, model_from_checkpoint
from elasticnet.deploy.pareto import pareto_front
from elasticnet.errors import UserError
from elasticnet.export.measure import measure
from elasticnet.export.onnx_export import export_onnx
from elasticnet.export.torch_export import save_unet
from elasticnet.models.complexity import count_flops, count_params
from elasticnet.models.subnet import SubNet
from elasticnet.shapes import check_size
from elasticnet.subnet_row import SubnetRow, find_row, rows_from

RUNTIMES = ("onnxruntime", "torch")
COLUMNS = ["depth", "width", "params", "mflops", "dice", "latency_ms", "p90_ms", "peak_mb", "pareto"]


def _stored_dice(stored: list[SubnetRow], subnet: SubNet) -> float:
    row = find_row(stored, subnet.depth, subnet.width)
    return row.dice if row else float("nan")


def profile_checkpoint(
    checkpoint: Path,
    input_size: Sequence[int] | None = None,
    runtime: str = "onnxruntime",
    threads: int = 0,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    subnets: Sequence[SubNet] | None = None,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One row per sub-net (smallest first): params, MFLOPs at the input size, stored validation Dice,
    median/p90 latency at batch 1 (and at ``batch`` if > 1), peak memory, and whether it is on the
    Pareto front of Dice vs latency."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    ckpt = load_checkpoint(checkpoint)
    cfg, model = model_from_checkpoint(ckpt)
    size = check_size(input_size or cfg.data.image_size, cfg.model.max_depth)
    stored = rows_from(ckpt.get("subnets", []), str(checkpoint))
    batches = [1] + ([batch] if batch > 1 else [])
    rows = []
    chosen = list(subnets) if subnets is not None else cfg.model.subnets()
    with tempfile.TemporaryDirectory(prefix="elasticnet-profile-") as tmp:
        for i, subnet in enumerate(chosen, 1):
            static = cut_subnet(ckpt, model.check_subnet(subnet))
            path = Path(tmp) / f"{subnet.key}.{'onnx' if runtime == 'onnxruntime' else 'pt'}"
            if runtime == "onnxruntime":
                export_onnx(static, path, size)
            else:
                save_unet(static, path)
            m = measure(runtime, path, (cfg.model.in_channels, *size), batches, threads, warmup, repeats)
            row = {
                "depth": subnet.depth,
                "width": subnet.width,
                "params": count_params(static.config),
                "mflops": round(count_flops(static.config, size) / 1e6, 1),
                "dice": _stored_dice(stored, subnet),
                "latency_ms": round(m["b1_median_ms"], 3),
                "p90_ms": round(m["b1_p90_ms"], 3),
                "peak_mb": round(m.get("peak_mb", float("nan")), 1),
            }
            if batch > 1:
                row |= {
                    f"b{batch}_ms": round(m[f"b{batch}_median_ms"], 3),
                    f"b{batch}_ms_per_image": round(m[f"b{batch}_median_ms"] / batch, 3),
                }
            rows.append(row)
            echo(
                f"[{i}/{len(chosen)}] {subnet}: {row['latency_ms']:.2f} ms (p90 {row['p90_ms']:.2f}), "
                f"{row['peak_mb']:.0f} MB, {row['mflops']:.0f} MFLOPs, Dice {row['dice']:.4f}"
            )
    for row, on in zip(rows, pareto_front(rows)):
        row["pareto"] = on
    for row in rows:
        row |= {"runtime": runtime, "threads": threads or "default", "input_size": f"{size[0]}x{size[1]}"}
    return rows
