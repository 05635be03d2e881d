"""Cutting one sub-net out of a checkpoint and writing it as a bundle (ONNX for CPU sites, or PyTorch)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from elasticnet import __version__, shapes
from elasticnet.checkpoint import cut_subnet, load_checkpoint, model_from_checkpoint
from elasticnet.errors import UserError
from elasticnet.export.measure import machine, measure
from elasticnet.export.onnx_export import check_onnx, export_onnx
from elasticnet.export.torch_export import save_unet
from elasticnet.files import atomic_write_text, respect_umask
from elasticnet.models.subnet import SubNet
from elasticnet.models.unet import UNet
from elasticnet.site.bundle import MODEL_FILES, Description, InputSpec, OutputSpec, SubnetRef, sha256, write_description
from elasticnet.site.model import onnx_predict, onnx_session
from elasticnet.subnet_row import SubnetRow, find_row, rows_from
from elasticnet.training.recipe import sampler_for

TARGETS = {"cpu": "onnx", "onnx": "onnx", "torch": "torch"}
ONNX_TOLERANCE = 1e-4


@dataclass
class ExportOptions:
    """How to export: target runtime, int8, and where to find images for int8 calibration and checking."""

    target: str = "cpu"
    int8: bool = False
    int8_max_drop: float = 1.0  # Dice points the int8 model may lose on the validation split
    calib_images: int = 32  # training images used to calibrate int8 activation ranges
    data: str | None = None  # data path if it moved since training (int8 only)
    threads: int = 0  # threads for the latency measurement (0: the runtime's default)
    latency: bool = True  # measure the exported model's latency on this machine


def export_subnet(
    checkpoint: Path,
    depth: int,
    width: float | None,
    target: str = "cpu",
    out: Path | None = None,
    echo: Callable[[str], None] = print,
    options: ExportOptions | None = None,
) -> Path:
    """Write the bundle for (depth, width) of ``checkpoint``; returns its folder."""
    options = dataclasses.replace(options or ExportOptions(), target=target)
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    kind = TARGETS[target]
    if options.int8 and kind != "onnx":
        raise UserError("--int8 needs --target cpu (ONNX Runtime quantisation)")
    ckpt = load_checkpoint(checkpoint)
    if not ckpt.get("subnets") and ckpt["config"].get("train", {}).get("final_table") is False:
        raise UserError(
            f"{checkpoint} has no sub-net table (trained with --no-final-table), so no sub-net has its "
            f"BatchNorm statistics re-estimated yet; run `elasticnet eval --checkpoint {checkpoint.parent} "
            "--recalibrate` first"
        )
    cfg, model = model_from_checkpoint(ckpt)
    subnet = model.check_subnet(SubNet(depth, max(cfg.model.widths) if width is None else float(width)))
    static = cut_subnet(ckpt, subnet)
    row = find_row(rows_from(ckpt.get("subnets", []), str(checkpoint)), subnet.depth, subnet.width)
    trained = sampler_for(cfg).trained
    if subnet not in trained:
        echo(
            f"note: {subnet.key} was never trained directly (the run's sandwich has --num-random 0 and trains "
            f"{', '.join(s.key for s in trained)}); it works only through the weights it shares: check its "
            "validation Dice in the bundle's model.json before deploying it"
        )
    suffix = "-int8" if options.int8 else ""
    out = Path(out) if out else checkpoint.parent / f"export-{subnet.key}-{target}{suffix}"

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_killed_exports(out)
    # same file system: the rename is atomic; the pid in the name lets a later export clean up after a killed one
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.parent))
    respect_umask(tmp, directory=True)
    try:
        model_path = tmp / MODEL_FILES[kind]
        check, int8 = _write_model(static, model_path, cfg, options, echo, checkpoint.parent)
        latency = _latency(model_path, kind, cfg, options) if options.latency else {}
        calibrated = subnet.key in ckpt.get("bn_stats", {})
        parts = _Parts(static, subnet, row, check, int8, latency, calibrated)
        description = _describe(parts, model_path, cfg, target, checkpoint)
        write_description(tmp, description)
        atomic_write_text(tmp / "README.md", bundle_readme(description))
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    echo(_summary(parts, out / model_path.name))
    return out


@dataclass(frozen=True)
class _Parts:
    """What an export measured and wrote, for the description and the summary line."""

    static: UNet
    subnet: SubNet
    row: SubnetRow | None  # the sub-net's row of the run's table (None: trained without one)
    check: dict[str, Any]  # ONNX Runtime vs PyTorch (ONNX targets)
    int8: dict[str, Any]  # the int8 record (--int8)
    latency: dict[str, Any]  # measured here (unless --no-latency)
    calibrated: bool  # BN statistics re-estimated for this sub-net


def _write_model(
    static: UNet, model_path: Path, cfg, options: ExportOptions, echo: Callable[[str], None], run_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the model file; an ONNX one only once ONNX Runtime reproduces PyTorch. Returns (check, int8)."""
    if TARGETS[options.target] != "onnx":
        save_unet(static, model_path)
        return {}, {}
    image_size = (cfg.data.image_size[0], cfg.data.image_size[1])
    export_onnx(static, model_path, image_size)
    diff = check_onnx(static, model_path, image_size)
    if diff > ONNX_TOLERANCE:
        raise UserError(
            f"ONNX Runtime output differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE}); "
            "the export is not trustworthy, nothing was written"
        )
    check = {"runtime": "onnxruntime", "max_abs_diff_vs_torch": diff, "tolerance": ONNX_TOLERANCE}
    return check, (_quantize(model_path, cfg, options, echo, run_dir) if options.int8 else {})


def _latency(model_path: Path, kind: str, cfg, options: ExportOptions) -> dict[str, Any]:
    """Batch-1 latency and peak memory of the written model on this machine."""
    runtime = "onnxruntime" if kind == "onnx" else "torch"
    image_size = [cfg.data.image_size[0], cfg.data.image_size[1]]
    m = measure(runtime, model_path, (cfg.model.in_channels, *image_size), [1], options.threads)
    return {
        "batch1_median_ms": round(m["b1_median_ms"], 3),
        "batch1_p90_ms": round(m["b1_p90_ms"], 3),
        "peak_mb": round(m.get("peak_mb", float("nan")), 1),
        "input_size": image_size,
        "threads": options.threads or "default",
        "machine": machine(),
        "runtime": runtime,
    }


def _describe(parts: _Parts, model_path: Path, cfg, target: str, checkpoint: Path) -> Description:
    """The bundle's model.json: what a site needs to run, check and trust the model."""
    height, width = cfg.data.image_size[0], cfg.data.image_size[1]
    onnx = TARGETS[target] == "onnx"
    row = parts.row
    return Description(
        elasticnet_version=__version__,
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model_file=model_path.name,
        model_sha256=sha256(model_path),
        target=target,
        runtime="onnxruntime" if onnx else "torch",
        precision="int8" if parts.int8 else "fp32",
        subnet=SubnetRef(parts.subnet.depth, parts.subnet.width, parts.subnet.key),
        channels=parts.static.config.channels,
        input=InputSpec(
            height=height,
            width=width,
            channels=cfg.model.in_channels,
            color="RGB" if cfg.model.in_channels == 3 else "grey",
            mean=cfg.data.mean,
            std=cfg.data.std,
            tile=list(cfg.data.tile) if cfg.data.tile else None,
            crop=cfg.data.crop,
            contrast=cfg.data.contrast,
            size_rule=f"{shapes.size_rule(parts.subnet.depth)}; trained at {height}x{width}",
        ),
        output=OutputSpec(threshold=cfg.train.threshold),
        metrics=_validation_metrics(row)
        | {"split": "validation", "bn": "re-estimated for this sub-net" if parts.calibrated else "as trained"},
        int8=parts.int8 or None,
        params=row.params if row else None,
        mflops=row.mflops if row else None,
        latency=parts.latency or None,
        check=parts.check,
        source_checkpoint={"path": str(checkpoint), "sha256": sha256(checkpoint)},
        training_config=cfg.to_dict(),
    )


def _summary(parts: _Parts, model_file: Path) -> str:
    """The line that tells the user what was exported and how far to trust it."""
    text = f"exported {parts.subnet} ({'-'.join(map(str, parts.static.config.channels))} channels) to {model_file}"
    if parts.check:
        text += f"; ONNX Runtime matches PyTorch (max abs diff {parts.check['max_abs_diff_vs_torch']:.1e})"
    if parts.row:
        text += f"; validation Dice {parts.row.dice:.4f}"
    if parts.int8:
        i8 = parts.int8
        text += f"; int8 Dice {i8['dice_int8']:.4f} vs fp32 {i8['dice_fp32']:.4f} on {i8['val_images']} images"
    if parts.latency:
        text += f"; {parts.latency['batch1_median_ms']:.1f} ms per image here"
    return text


def _validation_metrics(row: SubnetRow | None) -> dict[str, Any]:
    """What the bundle's model.json copies from the run's sub-net table (nothing for a run without one)."""
    if row is None:
        return {}
    keys = ("dice", "iou", "dice_bn_as_trained", "val_images")
    return {k: v for k, v in row.to_dict().items() if k in keys}


def _quantize(
    model_path: Path, cfg, options: ExportOptions, echo: Callable[[str], None], run_dir: Path
) -> dict[str, Any]:
    """Replace the fp32 ONNX model at ``model_path`` by its int8 version if it keeps the Dice; returns the
    int8 record for model.json. Refuses (UserError, nothing written) when the Dice drops too much, or when the
    split rebuilt from the data is not the run's (the split.csv of ``run_dir``, where the checkpoint has one)."""
    from torch.utils.data import DataLoader

    from elasticnet.data.dataset import PatchDataset
    from elasticnet.export.quantize import quantize_int8
    from elasticnet.training.calibration import spread_order
    from elasticnet.training.evaluate import evaluate
    from elasticnet.training.run_dir import run_split

    data_cfg = dataclasses.replace(cfg.data, data=options.data) if options.data else cfg.data
    split = run_split(
        dataclasses.replace(cfg, data=data_cfg),
        run_dir,
        "--int8 calibrates on the run's training images and measures its Dice drop on its validation images: "
        "restore the data the run was trained on, or give their new place with --data",
    )
    train = split.train.base if isinstance(split.train, PatchDataset) else split.train
    plain = train.subset(spread_order(len(train), cfg.train.seed)[: options.calib_images])  # no augmentation
    echo(f"quantising to int8: calibrating on {len(plain)} training images ...")
    int8_path = model_path.with_name("model.int8.onnx")
    quantize_int8(model_path, int8_path, (plain[i][0].numpy()[None] for i in range(len(plain))))
    tile = cfg.data.tile
    val = DataLoader(split.val, batch_size=8)
    dice = {}
    for name, path in (("fp32", model_path), ("int8", int8_path)):
        run = onnx_predict(onnx_session(path))
        result = evaluate(
            lambda x, run=run: torch.from_numpy(run(x.numpy())), val, torch.device("cpu"), cfg.train.threshold, tile
        )
        dice[name] = result.dice
    drop = 100 * (dice["fp32"] - dice["int8"])
    if drop > options.int8_max_drop:
        raise UserError(
            f"int8 quantisation costs {drop:.2f} Dice points on the {len(split.val)} validation images "
            f"(fp32 {dice['fp32']:.4f}, int8 {dice['int8']:.4f}), more than the allowed "
            f"{options.int8_max_drop:g}; nothing was written. Export fp32 (without --int8) or allow more "
            "with --int8-max-drop"
        )
    os.replace(int8_path, model_path)
    return {
        "dice_fp32": round(dice["fp32"], 4),
        "dice_int8": round(dice["int8"], 4),
        "drop_points": round(drop, 3),
        "max_drop_points": options.int8_max_drop,
        "val_images": len(split.val),
        "calibration_images": len(plain),
        "scheme": "ONNX Runtime static QDQ: int8 weights per channel (7-bit range), uint8 activations, min/max calibration",
    }


def bundle_readme(desc: Description) -> str:
    """The bundle's README.md: what the model is and how to run it."""
    spec, sub = desc.input, desc.subnet
    dice = desc.metrics.get("dice")
    lines = [
        f"# Lesion segmentation model: U-Net depth {sub.depth}, width {sub.width:g} ({desc.precision})",
        "",
        f"Cut from an elastic U-Net by elasticnet {desc.elasticnet_version} on {desc.exported_at}. "
        + (f"Validation Dice {dice:.4f} ({desc.metrics.get('val_images', '?')} images)." if dice is not None else ""),
        "Everything about it is in `model.json` (input size, normalisation, threshold, training config, hashes).",
        "",
        "## Run it (no PyTorch needed)",
        "",
        "```bash",
        "pip install 'elasticnet[site]'          # numpy, OpenCV, ONNX Runtime, pydicom",
        "elasticnet predict --model THIS_FOLDER images/ --out predictions/",
        "```",
        "",
        "writes `predictions/masks/*.png`, `predictions/overlays/*.png` and `predictions/predictions.csv` "
        "(lesion area per image).",
        "",
        "## Or call ONNX Runtime yourself",
        "",
        f"Input `image`: float32 NCHW, {spec.channels} channel(s) ({spec.color}), resized to "
        f"{spec.height}x{spec.width} (HxW) with area interpolation, x = (pixel / 255 - mean) / std with "
        f"mean {spec.mean} and std {spec.std}. Output `logits`: N x 1 x H x W; lesion where "
        f"sigmoid(logits) > {desc.output.threshold}."
        + (
            f" Trained on {spec.tile[0]}x{spec.tile[1]} patches: predict by overlapping windows of that "
            "size (`elasticnet predict` does)."
            if spec.tile
            else ""
        ),
    ]
    if desc.latency:
        lat = desc.latency
        lines += [
            "",
            f"Measured where it was exported ({lat['machine']}, {lat['runtime']}, threads {lat['threads']}): "
            f"{lat['batch1_median_ms']:.1f} ms per image (median, batch 1), peak memory {lat['peak_mb']:.0f} MB.",
        ]
    if desc.int8:
        q = desc.int8
        lines += [
            "",
            f"int8: validation Dice {q['dice_int8']:.4f} vs {q['dice_fp32']:.4f} for fp32 "
            f"({q['val_images']} images; allowed drop {q['max_drop_points']:g} points).",
        ]
    lines += [
        "",
        "`model_sha256` and `description_sha256` in model.json are checked on every load, and every field a site "
        "uses is validated: a damaged or edited copy is refused.",
        "",
    ]
    return "\n".join(lines)


def remove_killed_exports(out: Path) -> None:
    """Remove the hidden work folders (``.NAME.PID.*``, ``.NAME.old-PID``) that exports of ``out`` killed before
    they finished left behind; those of a process still running are left alone."""
    for folder in out.parent.glob(f".{out.name}.*"):
        rest = folder.name[len(out.name) + 2 :]
        pid = rest[4:] if rest.startswith("old-") else rest.split(".", 1)[0]
        if not pid.isdigit() or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's running process
            continue


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``, replacing an older export there: only the files this
    export writes are replaced; anything else in the folder (a site's notes, results) is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        if not target.is_dir() or (not (target / "model.json").exists() and any(target.iterdir())):
            raise UserError(f"{target} exists and is not an export bundle; choose another --out")
        written = {p.name for p in new.iterdir()}
        for item in target.iterdir():
            if item.name not in written:
                os.replace(item, new / item.name)  # same file system: a rename, kept in the new bundle
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_exported(bundle: str | Path):
    """(predict function images->logits as torch tensors, description) for an ONNX or torch bundle."""
    from elasticnet.site.bundle import read_description

    folder, description = read_description(bundle)
    model_file = folder / description.model_file
    if description.runtime == "onnxruntime":
        run = onnx_predict(onnx_session(model_file))

        def predict(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(run(x.cpu().numpy()))
    else:
        from elasticnet.export.torch_export import load_unet

        model = load_unet(model_file)

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x.cpu())

    return predict, description
