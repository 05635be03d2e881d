"""``elasticnet info``: what a checkpoint or an export bundle holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elasticnet.site.bundle import Description


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a checkpoint or an export bundle", description=__doc__)
    p.add_argument("path", nargs="?", help="checkpoint, run folder or export bundle (default: the newest run)")
    p.add_argument("--json", action="store_true", help="print the full description as JSON")


def printable(text: str) -> str:
    """``text`` with control characters escaped: strings from a file must not drive the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in str(text))


def say(text: str) -> None:
    """Print a line of this command's output, control characters escaped."""
    print(printable(text))


def run(args: argparse.Namespace) -> int:

    from elasticnet.site.bundle import MODEL_FILES, read_description

    path = Path(args.path) if args.path else None
    if path is not None and path.name in MODEL_FILES.values() and (path.parent / "model.json").is_file():
        path = path.parent  # the model file of a bundle (model.onnx, model.pt): describe the bundle it belongs to
    if path is not None and (path.name == "model.json" or (path / "model.json").exists()):
        folder, desc = read_description(path)  # checked and typed: nothing below can meet a missing field
        if args.json:
            say(json.dumps(desc.to_dict(), indent=2))
            return 0
        describe_bundle(folder, desc)
        return 0
    return describe_checkpoint(path, args.json)


def describe_bundle(folder: Path, desc: Description) -> None:
    say(
        f"export bundle {folder}: {desc.model_file} for {desc.runtime} "
        f"(elasticnet {desc.elasticnet_version}, {desc.exported_at})"
    )
    say(
        f"sub-net depth {desc.subnet.depth}, width {desc.subnet.width:g}, channels {desc.channels}, "
        f"{desc.params} params, {desc.mflops} MFLOPs"
    )
    i = desc.input
    say(f"input {i.layout} {i.channels}x{i.height}x{i.width} {i.color}, {i.normalisation}, mean {i.mean}, std {i.std}")
    say(f"output {desc.output.name} -> {desc.output.activation} > {desc.output.threshold}")
    say(metrics_text(desc.metrics))
    source = desc.source_checkpoint
    say(f"source: {source.get('path')} (sha256 {str(source.get('sha256', ''))[:16]}...)")


def metrics_text(metrics: dict) -> str:
    """The bundle's validation record in words: Dice and IoU, on how many images, with which BN statistics."""
    if not metrics:
        return "validation: none recorded (exported from a run without a sub-net table)"
    known = ("dice", "iou", "val_images", "split", "bn", "dice_bn_as_trained")
    words = [f"{metrics.get('split', 'validation')}: Dice {metrics.get('dice', '?')}, IoU {metrics.get('iou', '?')}"]
    if "val_images" in metrics:
        words[0] += f" on {metrics['val_images']} images"
    if "bn" in metrics:
        words.append(f"BN statistics {metrics['bn']}")
    if "dice_bn_as_trained" in metrics and metrics.get("bn") != "as trained":
        words.append(f"Dice {metrics['dice_bn_as_trained']} with the BN statistics as trained")
    words += [f"{k} {v}" for k, v in metrics.items() if k not in known]
    return "; ".join(words)


def describe_checkpoint(path: Path | None, as_json: bool) -> int:
    from elasticnet.checkpoint import DESCRIBED_KEYS, load_checkpoint, resolve_checkpoint
    from elasticnet.run_files import STATE_NAME
    from elasticnet.subnet_row import rows_from
    from elasticnet.training.tables import show

    checkpoint = resolve_checkpoint(path)
    ckpt = load_checkpoint(checkpoint)
    if as_json:
        say(json.dumps({k: ckpt.get(k) for k in DESCRIBED_KEYS}, indent=2))
        return 0
    cfg = ckpt["config"]
    say(f"checkpoint {checkpoint} (elasticnet {ckpt.get('elasticnet_version')}, format {ckpt.get('format_version')})")
    say(
        f"model: base width {cfg['model']['base_width']}, depths {cfg['model']['depths']}, widths {cfg['model']['widths']}, "
        f"BN {cfg['model']['bn_mode']}, junction {cfg['model'].get('junction', 'shared')}, "
        f"bottleneck {cfg['model'].get('bottleneck', 'shared')}"
    )
    say(f"data: {cfg['data']['data']} at {cfg['data']['image_size'][0]}x{cfg['data']['image_size'][1]}")
    t = cfg["train"]
    seconds = ckpt.get("train_seconds")
    say(
        f"training: {ckpt.get('step')} steps ({ckpt.get('epoch')} epochs) in "
        f"{f'{seconds:.0f}' if isinstance(seconds, (int, float)) else '?'} s, strategy "
        f"{t['strategy']}{' + distill' if t['distill'] else ''}, batch {t['batch_size']}, lr {t['lr']}, seed {t['seed']}"
        + (f", {ckpt['precision']}" if ckpt.get("precision") else "")
        + (f", {ckpt['train_tflops']} TFLOPs (model count)" if ckpt.get("train_tflops") is not None else "")
    )
    if Path(checkpoint).name == STATE_NAME:
        say(
            f"the training state of an unfinished run: no sub-net table yet (finish it with "
            f"`elasticnet train --resume {Path(checkpoint).parent}`)"
        )
    if ckpt.get("subnets"):
        say("\nsub-nets (validation, BN re-estimated per sub-net):")
        say(show(rows_from(ckpt["subnets"], str(checkpoint))))
    return 0
