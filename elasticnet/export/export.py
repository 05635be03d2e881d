"""Cutting one sub-net out of a checkpoint and writing it as a bundle (ONNX for CPU sites, or PyTorch)."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from elasticnet import __version__
from elasticnet.checkpoint import load_checkpoint, model_from_checkpoint
from elasticnet.errors import UserError
from elasticnet.export.bundle import FORMAT, MODEL_FILES, sha256, write_description
from elasticnet.export.onnx_export import check_onnx, export_onnx
from elasticnet.export.torch_export import save_unet
from elasticnet.models.surgery import extract
from elasticnet.models.subnet import SubNet
from elasticnet.models.unet import UNet

TARGETS = {"cpu": "onnx", "onnx": "onnx", "torch": "torch"}
ONNX_TOLERANCE = 1e-4


def cut_subnet(ckpt: dict[str, Any], subnet: SubNet) -> UNet:
    """The static U-Net of ``subnet`` with the BN statistics calibrated for it after training."""
    _, model = model_from_checkpoint(ckpt)
    model.check_subnet(subnet)
    static = extract(model, subnet)
    bn = ckpt.get("bn_stats", {}).get(subnet.key)
    if bn is not None:
        static.load_state_dict(bn, strict=False)
    return static.eval()


def export_subnet(checkpoint: Path, depth: int, width: float | None, target: str, out: Path | None,
                  echo=print) -> Path:
    """Write the bundle for (depth, width) of ``checkpoint``; returns its folder."""
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    kind = TARGETS[target]
    ckpt = load_checkpoint(checkpoint)
    cfg, model = model_from_checkpoint(ckpt)
    subnet = model.check_subnet(SubNet(depth, max(cfg.model.widths) if width is None else float(width)))
    static = cut_subnet(ckpt, subnet)
    image_size = (cfg.data.image_size[0], cfg.data.image_size[1])
    row = next((r for r in ckpt.get("subnets", []) if r["depth"] == subnet.depth and r["width"] == subnet.width), {})
    out = Path(out) if out else checkpoint.parent / f"export-{subnet.key}-{target}"

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same file system: rename is atomic
    try:
        model_path = tmp / MODEL_FILES[kind]
        check: dict[str, Any] = {}
        if kind == "onnx":
            export_onnx(static, model_path, image_size)
            diff = check_onnx(static, model_path, image_size)
            if diff > ONNX_TOLERANCE:
                raise UserError(f"ONNX Runtime output differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE}); "
                                "the export is not trustworthy, nothing was written")
            check = {"runtime": "onnxruntime", "max_abs_diff_vs_torch": diff, "tolerance": ONNX_TOLERANCE}
        else:
            save_unet(static, model_path)
        description = {
            "format": FORMAT,
            "format_version": 1,
            "elasticnet_version": __version__,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_file": model_path.name,
            "model_sha256": sha256(model_path),
            "target": target,
            "runtime": "onnxruntime" if kind == "onnx" else "torch",
            "subnet": {"depth": subnet.depth, "width": subnet.width, "key": subnet.key},
            "channels": static.config.channels,
            "input": {
                "name": "image", "layout": "NCHW", "dtype": "float32", "height": image_size[0], "width": image_size[1],
                "channels": cfg.model.in_channels, "color": "RGB" if cfg.model.in_channels == 3 else "grey",
                "normalisation": "x = (pixel / 255 - mean) / std", "mean": cfg.data.mean, "std": cfg.data.std,
                "size_rule": f"H and W divisible by {2 ** (subnet.depth - 1)}; trained at {image_size[0]}x{image_size[1]}",
            },
            "output": {"name": "logits", "activation": "sigmoid", "threshold": cfg.train.threshold},
            "metrics": {k: row[k] for k in ("dice", "iou", "dice_bn_as_trained", "val_images") if k in row}
            | {"split": "validation", "bn": "re-estimated for this sub-net" if subnet.key in ckpt.get("bn_stats", {}) else "as trained"},
            "params": row.get("params"),
            "mflops": row.get("mflops"),
            "check": check,
            "source_checkpoint": {"path": str(checkpoint), "sha256": sha256(checkpoint)},
            "training_config": cfg.to_dict(),
        }
        write_description(tmp, description)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = f"exported {subnet} ({'-'.join(map(str, static.config.channels))} channels) to {out}/{model_path.name}"
    if check:
        summary += f"; ONNX Runtime matches PyTorch (max abs diff {check['max_abs_diff_vs_torch']:.1e})"
    if "dice" in row:
        summary += f"; validation Dice {row['dice']:.4f}"
    echo(summary)
    return out


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``, replacing an older export there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        if not (target / "model.json").exists() and any(target.iterdir()):
            raise UserError(f"{target} exists and is not an export bundle; choose another --out")
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_exported(bundle: str | Path):
    """(predict function images->logits as torch tensors, description) for an ONNX or torch bundle."""
    from elasticnet.export.bundle import read_description

    folder, description = read_description(bundle)
    model_file = folder / description["model_file"]
    if description["runtime"] == "onnxruntime":
        from elasticnet.export.onnx_export import onnx_session

        session = onnx_session(model_file)

        def predict(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(["logits"], {"image": x.cpu().numpy().astype("float32")})[0])
    else:
        from elasticnet.export.torch_export import load_unet

        model = load_unet(model_file)

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x.cpu())
    return predict, description
