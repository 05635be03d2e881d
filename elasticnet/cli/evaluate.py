"""``elasticnet eval``: Dice and IoU of a checkpoint's sub-nets or of an exported model on a data set.

Without ``--data`` the validation split of the training run is used (rebuilt from the config stored in
the checkpoint or export); with ``--data`` every image of that data set is used.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from elasticnet.cli.arguments import at_least
from elasticnet.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint or an exported model", description=__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest run)")
    src.add_argument("--model", help="an export bundle folder (ONNX or PyTorch)")
    p.add_argument(
        "--data", help="'synthetic' or a folder with images/ and masks/ (default: the run's validation split)"
    )
    p.add_argument(
        "--run-data",
        help="where the run's own data are now, if they moved since training: its validation split is rebuilt "
        "there (checked against the run's split.csv)",
    )
    p.add_argument(
        "--dataset",
        help="reader for --data: auto, folder, cvc-clinicdb or mini-mias (default: auto, "
        "recognised by the folder's files; another folder is not read with the training run's reader)",
    )
    p.add_argument("--depth", type=int, help="checkpoint only: evaluate this depth (default: every sub-net)")
    p.add_argument("--width", type=float, help="checkpoint only: evaluate this width (default: every trained width)")
    p.add_argument("--batch-size", type=at_least(1), default=8)
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="checkpoint only: re-estimate every sub-net's BN statistics with this version of elasticnet and "
        "rewrite the run's sub-net table (subnets.csv/.md and the checkpoint's table and statistics)",
    )
    p.add_argument("--device", default="auto", help="with --recalibrate: auto (CUDA when present) | cpu | cuda")
    p.add_argument(
        "--lesion-detection",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also report lesion-level detection: sensitivity at 0.5/1/2 false positives per film and the share "
        "of normal films with a false positive (default: as the run was configured, lesion_detection)",
    )


def eval_loader(cfg, data: str | None, batch_size: int, reader: str | None = None, run_dir: Path | None = None):
    """(DataLoader, description): the run's validation split (``data`` None), or every image of ``data``
    read with ``reader``. The run's split is rebuilt from its data and config and checked against the split.csv
    of ``run_dir`` (the checkpoint's folder; an export bundle has none)."""
    from torch.utils.data import DataLoader

    from elasticnet.data import build_datasets
    from elasticnet.data.build import load_all
    from elasticnet.run_files import SPLIT_NAME
    from elasticnet.training.run_dir import run_split

    if data is None:
        if cfg.data.data != "synthetic" and not Path(cfg.data.data).exists():
            raise UserError(
                f"the data folder {cfg.data.data} the run trained on does not exist any more, so its validation "
                "split cannot be rebuilt; if it moved, give its new place with --run-data NEW-PLACE, or evaluate "
                "every image of a folder with --data"
            )
        needs = (
            "its validation images cannot be rebuilt. Restore the data the run was trained on, or evaluate every "
            "image of a folder with --data"
        )
        images = (
            run_split(cfg, run_dir, needs).val
            if run_dir
            else build_datasets(cfg.data, cfg.model.in_channels, cfg.train.seed).val
        )
        what = f"the run's validation split ({len(images)} images of {cfg.data.data})"
        if run_dir is not None and not (run_dir / SPLIT_NAME).is_file():
            what += f"; not checked against the run's split: no {SPLIT_NAME} beside the checkpoint"
    else:
        # every image is evaluated: no split, so the groups of the images do not matter
        data_cfg = dataclasses.replace(cfg.data, data=data, dataset=reader or "auto", split="random")
        everything = load_all(data_cfg, cfg.model.in_channels)
        images = everything.subset(everything.located())
        what = f"all {len(images)} images of {data}"
        if everything.unlocated:
            what += f" (left out, their lesion is not located: {', '.join(sorted(everything.unlocated))})"
    return DataLoader(images, batch_size=batch_size), what


def moved_data(cfg, run_data: str | None):
    """``cfg`` with its data at ``run_data`` (``--run-data``: where the run's data moved), if given."""
    if run_data is None:
        return cfg
    if not Path(run_data).is_dir():
        raise UserError(f"--run-data {run_data} is not a folder: give the folder the run's data moved to")
    cfg.data.data = run_data
    return cfg


def detection_line(metrics: dict[str, float]) -> str:
    """The lesion-level detection metrics of an evaluation (:meth:`Evaluation.metrics`), as one line."""
    return (
        f"lesions {metrics['lesions']}: sensitivity {metrics['sensitivity_at_0.5fp']:.3f} / "
        f"{metrics['sensitivity_at_1fp']:.3f} / {metrics['sensitivity_at_2fp']:.3f} at 0.5 / 1 / 2 false positives "
        f"per film; normal films with a false positive {metrics['fp_rate_normal']:.3f}"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from elasticnet.config import RunConfig
    from elasticnet.reporting import text_table
    from elasticnet.training.evaluate import evaluate

    cpu = torch.device("cpu")
    if args.run_data is not None and (args.data is not None or args.recalibrate):
        raise UserError(
            "--run-data rebuilds the run's own validation split where its data moved; --data evaluates every "
            "image of a folder instead, and --recalibrate rewrites the run's table from the data where it trained: "
            "give --run-data alone"
        )
    if args.model:
        from elasticnet.export.export import load_exported

        predict, bundle = load_exported(args.model)
        cfg = moved_data(RunConfig.from_saved(bundle.training_config, source=f"{args.model}/model.json"), args.run_data)
        loader, what = eval_loader(cfg, args.data, args.batch_size, args.dataset)
        detection = cfg.train.lesion_detection if args.lesion_detection is None else args.lesion_detection
        result = evaluate(predict, loader, cpu, bundle.output.threshold, cfg.data.tile, detection).metrics()
        print(f"{args.model} ({bundle.runtime}, depth {bundle.subnet.depth}, width {bundle.subnet.width:g}) on {what}:")
        print(
            f"Dice {result['dice']:.4f}  IoU {result['iou']:.4f}  (per-image mean at threshold {bundle.output.threshold})"
            + (
                f"; Dice on images with a lesion {result['dice_lesion']:.4f}, false-positive area on images without "
                f"{result['fp_area']:.5f}"
                if "dice_lesion" in result
                else ""
            )
        )
        if detection:
            print(detection_line(result))
        return 0

    from elasticnet.checkpoint import cut_subnet, load_checkpoint, model_from_checkpoint, resolve_checkpoint
    from elasticnet.models.subnet import SubNet

    if args.recalibrate:
        if args.data or args.depth is not None or args.width is not None:
            raise UserError(
                "--recalibrate rewrites the whole table of the run's own split; drop --data/--depth/--width"
            )
        from elasticnet.training.recalibrate import recalibrate

        recalibrate(args.checkpoint, args.device)
        return 0

    checkpoint = resolve_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(checkpoint)
    cfg, model = model_from_checkpoint(ckpt)
    cfg = moved_data(cfg, args.run_data)
    depths = [args.depth] if args.depth is not None else cfg.model.depths
    widths = [args.width] if args.width is not None else cfg.model.widths
    subnets = [model.check_subnet(SubNet(d, w)) for d in depths for w in widths]
    loader, what = eval_loader(cfg, args.data, args.batch_size, args.dataset, checkpoint.parent)
    detection = cfg.train.lesion_detection if args.lesion_detection is None else args.lesion_detection
    rows = []
    for subnet in subnets:
        static = cut_subnet(ckpt, subnet)
        result = evaluate(static, loader, cpu, cfg.train.threshold, cfg.data.tile, detection)
        rows.append(
            {"depth": subnet.depth, "width": subnet.width} | {k: round(v, 4) for k, v in result.metrics().items()}
        )
    print(f"{checkpoint} on {what} (per-image mean at threshold {cfg.train.threshold}, BN re-estimated per sub-net):")
    print(text_table(rows))
    return 0
