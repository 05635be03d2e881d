"""Deployment speed: ONNX Runtime vs eager PyTorch, share of the conv peak, int8, and predict overhead.

    python benchmarks/deploy.py [--checkpoint RUN_ON_REAL_DATA] [--size 288x384] [--base 32]

Prints one table per target of the deployment issue, all measured in this one process, one after the
other (never two at once: on 2 cores they would slow each other):

1. Practical fp32 conv peak: a 3x3 convolution (64 -> 64 channels at the input size, and 128 -> 128 at
   half of it) in ONNX Runtime and in PyTorch; the fastest GFLOP/s is the reference.
2. Sub-nets of an elastic U-Net (``--base``, random weights with non-trivial BN statistics: speed does
   not depend on the values) at the input size, batch 1: eager PyTorch vs ONNX Runtime fp32 vs int8
   timed in interleaved rounds (ratios: median of per-round ratios), and the achieved GFLOP/s as a share
   of the peak.
3. With ``--checkpoint`` (a run on real images): the int8 export of its largest sub-net, Dice fp32 vs int8
   on that run's validation split (through ``elasticnet export --int8``).
4. ``elasticnet predict`` on PNG files of the input size: time outside the model (reading, pre- and
   post-processing, writing masks and overlays) relative to the model's own time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticnet.cli.arguments import hxw
from elasticnet.errors import run_script
from elasticnet.export.measure import machine, timings
from elasticnet.export.onnx_export import OPSET, export_onnx
from elasticnet.export.quantize import quantize_int8
from elasticnet.hardware import cpu_summary
from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet, count_flops, extract
from elasticnet.reporting import text_table
from elasticnet.runtime import tune_malloc
from elasticnet.site.bundle import read_description
from elasticnet.site.model import onnx_session


def paired(fns: dict, warmup: int, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each function, timed in interleaved rounds, and the median of the per-round ratios to
    the first function (robust to the machine slowing down for a while: both sides of a ratio share it)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    first = next(iter(fns))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(t, times[first])) for name, t in times.items()}
    return medians, ratios


def conv_peak(size: tuple[int, int], repeats: int) -> list[dict]:
    rows = []
    for channels, scale in ((64, 1), (128, 2)):
        h, w = size[0] // scale, size[1] // scale
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
        x = torch.randn(1, channels, h, w)
        flops = 2 * channels * channels * 9 * h * w
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "conv.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(conv, (x,), str(path), dynamo=True, opset_version=OPSET, verbose=False)
            session = onnx_session(path)
            feed = {session.get_inputs()[0].name: x.numpy()}
            ort_ms = timings(lambda: session.run(None, feed), 3, repeats)["median_ms"]
        with torch.no_grad():
            eager_ms = timings(lambda: conv(x), 3, repeats)["median_ms"]
            xl, convl = x.to(memory_format=torch.channels_last), conv.to(memory_format=torch.channels_last)
            cl_ms = timings(lambda: convl(xl), 3, repeats)["median_ms"]
        for runtime, ms in (("onnxruntime", ort_ms), ("torch NCHW", eager_ms), ("torch channels_last", cl_ms)):
            rows.append(
                {
                    "conv": f"{channels}->{channels} @ {h}x{w}",
                    "runtime": runtime,
                    "ms": round(ms, 2),
                    "gflop_s": round(flops / ms / 1e6, 1),
                }
            )
    return rows


def subnet_speed(size: tuple[int, int], base: int, repeats: int, peak: float, tmp: Path) -> list[dict]:
    torch.manual_seed(0)
    model = ElasticUNet(ElasticUNetConfig(base_width=base, depths=[3, 4, 5], widths=[0.5, 1.0]))
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, *size)).astype(np.float32)
    calibration = [rng.standard_normal((1, 3, *size)).astype(np.float32) for _ in range(8)]
    rows = []
    for subnet in (SubNet(3, 1.0), SubNet(4, 1.0), SubNet(5, 0.5), SubNet(5, 1.0)):
        static = extract(model.eval(), subnet).eval()
        fp32, int8 = tmp / f"{subnet.key}.onnx", tmp / f"{subnet.key}.int8.onnx"
        export_onnx(static, fp32, size)
        quantize_int8(fp32, int8, calibration)
        xt = torch.from_numpy(x)
        s32, s8 = onnx_session(fp32), onnx_session(int8)

        def eager_run():
            with torch.no_grad():
                static(xt)

        ms, ratio = paired(
            {
                "eager": eager_run,
                "ort": lambda: s32.run(None, {"image": x}),
                "int8": lambda: s8.run(None, {"image": x}),
            },
            3,
            repeats,
        )
        eager, ort, q = ms["eager"], ms["ort"], ms["int8"]
        gflop = count_flops(static.config, size) / 1e9
        rows.append(
            {
                "subnet": subnet.key,
                "gflop": round(gflop, 2),
                "eager_ms": round(eager, 1),
                "ort_ms": round(ort, 1),
                "int8_ms": round(q, 1),
                "ort/eager": round(ratio["ort"], 3),
                "fp32/int8": round(ratio["ort"] / ratio["int8"], 2),
                "ort_gflop_s": round(gflop / ort * 1e3, 1),
                "of_peak": f"{100 * gflop / ort * 1e3 / peak:.0f}%",
            }
        )
    return rows


def int8_dice(checkpoint: Path, tmp: Path) -> dict:
    from elasticnet.checkpoint import load_checkpoint, resolve_checkpoint
    from elasticnet.export.export import ExportOptions, export_subnet

    path = resolve_checkpoint(checkpoint)
    largest = load_checkpoint(path)["config"]["model"]["depths"][-1]
    bundle = export_subnet(
        path,
        largest,
        None,
        "cpu",
        tmp / "int8",
        echo=lambda s: None,
        options=ExportOptions(int8=True, int8_max_drop=100.0, latency=False),
    )
    fp32 = export_subnet(
        path, largest, None, "cpu", tmp / "fp32", echo=lambda s: None, options=ExportOptions(latency=False)
    )
    _, d = read_description(bundle)
    size = (d.input.height, d.input.width)
    x = np.random.default_rng(0).standard_normal((1, d.input.channels, *size)).astype(np.float32)
    s8, s32 = onnx_session(bundle / "model.onnx"), onnx_session(fp32 / "model.onnx")
    ms, _ = paired({"fp32": lambda: s32.run(None, {"image": x}), "int8": lambda: s8.run(None, {"image": x})}, 3, 30)
    ms8, ms32 = ms["int8"], ms["fp32"]
    q = d.int8
    return {
        "checkpoint": str(checkpoint),
        "subnet": d.subnet.key,
        "input": f"{size[0]}x{size[1]}",
        "val_images": q["val_images"],
        "dice_fp32": q["dice_fp32"],
        "dice_int8": q["dice_int8"],
        "drop_points": q["drop_points"],
        "fp32_ms": round(ms32, 1),
        "int8_ms": round(ms8, 1),
        "fp32/int8": round(ms32 / ms8, 2),
    }


def predict_overhead(size: tuple[int, int], base: int, tmp: Path, count: int) -> dict:
    """Export the depth-4 sub-net at the input size as a bundle and predict ``count`` PNGs with it."""
    from elasticnet.checkpoint import save_checkpoint
    from elasticnet.config import RunConfig
    from elasticnet.export.export import ExportOptions, export_subnet
    from elasticnet.site.predict import predict_files

    cfg = RunConfig.from_dict(
        {"model": {"base_width": base, "depths": [3, 4, 5], "widths": [0.5, 1.0]}, "data": {"image_size": list(size)}}
    )
    torch.manual_seed(0)
    save_checkpoint(tmp / "ckpt.pt", cfg, ElasticUNet(cfg.model), subnets=[])
    bundle = export_subnet(
        tmp / "ckpt.pt", 4, 1.0, "cpu", tmp / "bundle", echo=lambda s: None, options=ExportOptions(latency=False)
    )
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(images / f"{i:03d}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    start = time.perf_counter()
    rows = predict_files(bundle, [images], tmp / "out", echo=lambda s: None)
    wall = time.perf_counter() - start
    model = statistics.median(r["model_ms"] for r in rows)
    total = statistics.median(r["total_ms"] for r in rows)
    return {
        "images": count,
        "size": f"{size[0]}x{size[1]}",
        "model_ms": round(model, 1),
        "total_ms": round(total, 1),
        "overhead": f"{100 * (total - model) / model:.1f}%",
        "wall_s": round(wall, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=hxw, default="288x384")
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--checkpoint", type=Path, help="a run on real data, for the int8 Dice check")
    p.add_argument("--predict-images", type=int, default=20)
    a = p.parse_args()
    if a.checkpoint:  # before the minutes of the first parts: a wrong path is named at once
        from elasticnet.checkpoint import resolve_checkpoint

        a.checkpoint = resolve_checkpoint(a.checkpoint)
    tune_malloc()
    size = a.size
    print(f"machine: {machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}\nCPU: {cpu_summary()}")
    peak_rows = conv_peak(size, a.repeats)
    peak = max(r["gflop_s"] for r in peak_rows)
    print("\n1. practical fp32 conv peak\n" + text_table(peak_rows) + f"\npeak: {peak} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        rows = subnet_speed(size, a.base, a.repeats, peak, Path(tmp))
        print(f"\n2. sub-nets at {size[0]}x{size[1]}, base {a.base}, batch 1 (median ms)\n" + text_table(rows))
    if a.checkpoint:
        with tempfile.TemporaryDirectory() as tmp:
            print("\n3. int8 on real validation images\n" + text_table([int8_dice(a.checkpoint, Path(tmp))]))
    with tempfile.TemporaryDirectory() as tmp:
        print(
            "\n4. elasticnet predict (median per image)\n"
            + text_table([predict_overhead(size, a.base, Path(tmp), a.predict_images)])
        )


if __name__ == "__main__":
    run_script(main)
