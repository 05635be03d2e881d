"""The prepared device check: what only a GPU can show, in one bounded run that writes its figures to files.

    python benchmarks/gpu_check.py --out DIR [--device cuda] [--budget-s 420]     # on a GPU machine
    python benchmarks/gpu_check.py --out /tmp/check --device cpu --tiny           # the same steps, tiny, on a CPU

Parts (each writes a JSON file into DIR; a part that fails writes its error and the next part still runs;
parts are skipped once ``--budget-s`` is spent):
1. ``sync_bn``: synchronised BatchNorm in a one-process group (NCCL on CUDA, gloo on CPU) with fp32, bf16 and
   fp16 input against plain BatchNorm in fp32: max output difference, running statistics finite.
2. ``steps``: 30 training steps of the ``paper`` profile's sandwich run (base 64, 288x384, batch 16; ``--tiny``:
   base 8, 64x64, batch 4) for precision fp32/bf16/fp16 x channels_last on/off x freezer on/off: images/s,
   achieved TFLOP/s from the model's FLOPs (3 x forward per image per sub-net) and the share of ``--peak-tflops``
   (the device's bf16 peak; H200: 989 dense), peak memory, and host-device synchronisations per step (CUDA's
   sync debug mode counts them).
3. ``batches``: training batches per second, augmented per image in loader processes (pinned memory) and per
   batch on the device (``augment_on: device``), and the share of the fastest step's time a batch takes.
4. ``projection``: the ``paper`` Dice table's training time on this device, from its planned TFLOPs
   (``results/cvc_clinicdb/paper/plan.csv``, written by ``paper/dice_table.py --profile paper --plan``) and the
   best TFLOP/s of ``steps`` (a lower bound: evaluation, loading and small sub-nets' lower rate left out).
5. ``determinism``: two runs of 10 steps with one seed, with and without ``--deterministic``: do the weights
   match bit for bit, and what does determinism cost?
6. ``resume``: 6 steps on the device, then the last 4 resumed on the CPU from the saved state: equal weights
   to 1e-5 relative? (different devices: not bit-exact by design)
7. ``export``: the depth-4 sub-net of a device-trained run exported to ONNX and checked with ONNX Runtime.
8. ``tests``: the ``cuda``-marked tests (``pytest -m cuda``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticnet.config import build_config  # noqa: E402
from elasticnet.errors import run_script  # noqa: E402
from elasticnet.models import ElasticUNet, SubNet  # noqa: E402
from elasticnet.training.compute import subnet_flops  # noqa: E402
from elasticnet.training.inactive import InactiveWeightFreezer  # noqa: E402
from elasticnet.training.precision import Precision, native_bf16  # noqa: E402
from elasticnet.training.step import train_step  # noqa: E402


def sync_bn(args) -> dict:
    import torch.distributed as dist

    from elasticnet.models.elastic_layers import ElasticBatchNorm2d

    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"file://{args.out / 'pg-store'}", rank=0, world_size=1)
    result = {}
    try:
        x = torch.randn(8, 16, 96, 128, device=args.device) * 3 + 1
        for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]:
            synced, plain = ElasticBatchNorm2d(16).to(args.device), torch.nn.BatchNorm2d(16).to(args.device)
            synced.sync = True
            out, expected = synced(x.to(dtype)).float(), plain(x)
            result[name] = {
                "max_abs_diff": float((out - expected).abs().max()),
                "running_var_finite": bool(torch.isfinite(synced.running_var).all()),
            }
    finally:
        dist.destroy_process_group()
    return result


def step_runs(args) -> dict:
    size, base, batch = ((64, 64), 8, 4) if args.tiny else ((288, 384), 64, 16)
    cfg = build_config(
        str(ROOT / "experiments" / "cvc_clinicdb.yaml"),
        {"data": "synthetic", "base_width": str(base), "widths": "0.25,0.5,0.75,1"},
        "paper",
    )
    flops = subnet_flops(cfg.model, size)
    device = torch.device(args.device)
    x = torch.randn(batch, 3, *size, device=device)
    y = (torch.rand(batch, 1, *size, device=device) > 0.7).float()
    subnets = [SubNet(5, 1.0), SubNet(3, 0.25), SubNet(4, 0.5)]
    rows = []
    for amp in ("none", "bf16", "fp16"):
        if amp == "bf16" and not native_bf16(device):
            continue
        for channels_last in (False, True):
            for freezer_on in (True, False):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                model = ElasticUNet(cfg.model).to(device).train().to(memory_format=fmt)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                prec = Precision.for_device(amp, device)
                freezer = InactiveWeightFreezer(model, opt) if freezer_on else None
                xx = x.contiguous(memory_format=fmt)
                step = lambda: train_step(model, opt, prec, freezer, xx, y, subnets)
                for _ in range(3):
                    step()
                syncs = count_syncs(step, device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                for _ in range(args.steps):
                    loss = step()
                float(loss)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = (time.perf_counter() - start) / args.steps
                tflops = 3 * sum(flops[s] for s in subnets) * batch / seconds / 1e12
                rows.append(
                    {
                        "precision": prec.name,
                        "channels_last": channels_last,
                        "freezer": freezer_on,
                        "step_ms": round(1e3 * seconds, 2),
                        "images_per_s": round(batch / seconds, 1),
                        "tflops": round(tflops, 3),
                        "share_of_peak": round(tflops / args.peak_tflops, 4),
                        "syncs_per_step": syncs,
                        "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
                        if device.type == "cuda"
                        else None,
                    }
                )
                print(rows[-1], flush=True)
    return {"size": size, "base_width": base, "batch": batch, "subnets": [s.key for s in subnets], "rows": rows}


def count_syncs(step, device: torch.device) -> int | None:
    """Host-device synchronisations in one step (CUDA's sync debug mode warns once per sync)."""
    if device.type != "cuda":
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(1 for w in caught if "synchroniz" in str(w.message))


def train_command(args, out: Path, *extra: str) -> list[str]:
    size = "32x32" if args.tiny else "288x384"
    return [
        sys.executable,
        "-m",
        "elasticnet",
        "train",
        "--data",
        "synthetic",
        "--image-size",
        size,
        "--synthetic-count",
        "48",
        "--base-width",
        "8" if args.tiny else "32",
        "--depths",
        "3,4,5",
        "--widths",
        "0.5,1",
        "--batch-size",
        "4",
        "--calib-batches",
        "1",
        "--device",
        args.device,
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def train_cli(args, out: Path, *extra: str) -> None:
    done = subprocess.run(train_command(args, out, *extra), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:  # the reason, not only the exit status, goes into the part's record
        raise RuntimeError(f"training {out} failed (exit {done.returncode}): {done.stderr.strip()[-600:]}")


def determinism(args) -> dict:
    """Two same-seed runs of 10 steps, with and without --deterministic: bit-equal weights? (and its cost)"""
    from elasticnet.checkpoint import load_checkpoint

    result = {}
    for mode, flags in (("default", ()), ("deterministic", ("--deterministic",))):
        seconds = []
        for name in ("a", "b"):
            start = time.perf_counter()
            train_cli(args, args.out / "runs" / f"det-{mode}-{name}", "--max-steps", "10", "--no-final-table", *flags)
            seconds.append(time.perf_counter() - start)
        a = load_checkpoint(args.out / "runs" / f"det-{mode}-a" / "checkpoint.pt")["model"]
        b = load_checkpoint(args.out / "runs" / f"det-{mode}-b" / "checkpoint.pt")["model"]
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        result[mode] = {
            "bitwise_equal": not differ,
            "differing_tensors": len(differ),
            "of": len(a),
            "wall_s": round(min(seconds), 2),
        }
    return result


def resume(args) -> dict:
    """Train on the device, stop it with SIGTERM after a few saved steps, resume on the CPU; compare with an
    uninterrupted device run (different devices: equal to rounding, not bit for bit)."""
    import signal

    from elasticnet.checkpoint import load_checkpoint

    run, ref = args.out / "runs" / "resume", args.out / "runs" / "resume-ref"
    flags = ("--epochs", "4", "--no-final-table", "--checkpoint-every", "1", "--amp", "none")
    train_cli(args, ref, *flags)
    proc = subprocess.Popen(
        train_command(args, run, *flags), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        state = run / "last.pt"
        try:
            if state.exists() and load_checkpoint(state)["step"] >= 5:
                proc.send_signal(signal.SIGTERM)
                break
        except Exception:  # being written: try again
            pass
        time.sleep(0.2)
    proc.wait()
    stopped_at = load_checkpoint(run / "last.pt")["step"] if (run / "last.pt").exists() else None
    if stopped_at is not None:
        subprocess.run(
            [sys.executable, "-m", "elasticnet", "train", "--resume", str(run), "--device", "cpu", "--quiet"],
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    a, b = load_checkpoint(ref / "checkpoint.pt")["model"], load_checkpoint(run / "checkpoint.pt")["model"]
    worst = max(
        float(((a[k].float() - b[k].float()).abs() / (a[k].float().abs() + 1e-3)).max())
        for k in a
        if a[k].is_floating_point()
    )
    return {"stopped_at_step": stopped_at, "resumed_on": "cpu", "max_relative_difference": worst}


def export(args) -> dict:
    run = args.out / "runs" / "export"
    train_cli(args, run, "--max-steps", "4")
    done = subprocess.run(
        [sys.executable, "-m", "elasticnet", "export", "--checkpoint", str(run), "--depth", "4", "--target", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return {"returncode": done.returncode, "output": done.stdout[-600:] + done.stderr[-600:]}


def batches(args) -> dict:
    """Training batches per second at the ``steps`` part's size, both augmentation paths, against the fastest
    training step measured there: the share of a step a batch takes (target < 5 %)."""
    from loader import batches_per_second  # benchmarks/loader.py: the same timing as its own figures
    from torch.utils.data import DataLoader

    from elasticnet.data import augment
    from elasticnet.data.dataset import SegmentationDataset
    from elasticnet.data.device_batches import DeviceBatches
    from elasticnet.data.synthetic import synthetic_polyp_set
    from elasticnet.training.order import EpochSampler

    size, batch, count = ((64, 64), 4, 32) if args.tiny else ((288, 384), 16, 256)
    images, masks = synthetic_polyp_set(count, *size, seed=0)
    names = [f"s{i}" for i in range(count)]
    pipeline = augment.build("endoscopy", seed=0)
    data = SegmentationDataset(images, masks, names, [0.5] * 3, [0.25] * 3, pipeline)
    device = torch.device(args.device)
    order = EpochSampler(count, seed=0)
    workers = 0 if args.tiny else 4
    paths = {
        f"loader ({workers} workers{', pinned' if device.type == 'cuda' else ''})": DataLoader(
            data, batch_size=batch, sampler=order, drop_last=True, num_workers=workers, pin_memory=device.type == "cuda"
        ),
        "device": DeviceBatches(data, order, batch, device, augment.spec("endoscopy")),
    }
    rates = {}
    for name, source in paths.items():
        for _ in source:  # warm-up: worker start, first kernels
            break
        rates[name] = round(batches_per_second(source, device), 1)
    result: dict = {"size": size, "batch": batch, "images_per_s": rates}
    steps_file = args.out / "steps.json"
    if steps_file.exists() and json.loads(steps_file.read_text()).get("rows"):
        fastest = max(r["images_per_s"] for r in json.loads(steps_file.read_text())["rows"])
        result["fastest_step_images_per_s"] = fastest
        result["batch_share_of_step_percent"] = {k: round(100 * fastest / v, 2) for k, v in rates.items()}
    print(result, flush=True)
    return result


PLAN = ROOT / "results" / "cvc_clinicdb" / "paper" / "plan.csv"  # python paper/dice_table.py --profile paper --plan


def projection(args) -> dict:
    """The ``paper`` Dice table's training time on this device, projected: its planned TFLOPs (every training of
    Tables 1 and 2, 3 seeds, 2 splits, counted from the recipes) over the best TFLOP/s the ``steps`` part
    measured. Evaluation and data loading are not in it, and small sub-nets run below the measured rate, so it
    is a lower bound on the time."""
    import csv

    steps = args.out / "steps.json"
    if not steps.is_file():
        raise SystemExit(f"projection needs the steps part's figures ({steps}); run --parts steps,projection")
    rows = json.loads(steps.read_text())["rows"]
    best = max(rows, key=lambda r: r["tflops"])
    with PLAN.open() as f:
        plan = list(csv.DictReader(f))
    total = sum(float(r["tflops"]) for r in plan)
    hours = total / best["tflops"] / 3600
    result = {
        "plan": str(PLAN.relative_to(ROOT)),
        "trainings": len(plan),
        "planned_tflops": round(total),
        "measured_best": best,
        "projected_hours": round(hours, 2),
        "target_hours": 1.5,
        "met": hours <= 1.5,
    }
    print(result, flush=True)
    return result


def cuda_tests(args) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    return {"returncode": done.returncode, "tail": done.stdout[-1500:]}


PARTS = {
    "sync_bn": sync_bn,
    "steps": step_runs,
    "batches": batches,
    "projection": projection,
    "determinism": determinism,
    "resume": resume,
    "export": export,
    "tests": cuda_tests,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (H200: 989)")
    p.add_argument("--budget-s", type=float, default=420.0)
    p.add_argument("--tiny", action="store_true", help="tiny sizes, for trying the script on a CPU")
    args = p.parse_args()
    if (args.out / "runs").exists():  # the parts' trainings would find the last check's runs and refuse them
        raise SystemExit(f"{args.out} holds an earlier check (runs/); give a new --out, or remove it first")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = {
        "device": args.device,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for name in args.parts.split(","):
        if time.perf_counter() - start > args.budget_s:
            summary[name] = "skipped: time budget spent"
            continue
        t = time.perf_counter()
        try:
            result = PARTS[name](args)
            status = "ok"
        except Exception:  # a part that fails must not stop the others: record why
            result, status = {"error": traceback.format_exc()[-3000:]}, "failed"
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
        summary[name] = f"{status} in {time.perf_counter() - t:.0f} s"
        print(f"{name}: {summary[name]}", flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    run_script(main)
