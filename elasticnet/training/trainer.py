"""The training loop: structural dropout over sub-nets, then calibration and the per-sub-net table."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from elasticnet.checkpoint import CHECKPOINT_NAME, save_checkpoint
from elasticnet.config import RunConfig, save_yaml
from elasticnet.data import build_datasets
from elasticnet.data.dataset import PatchDataset
from elasticnet.errors import UserError
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.reporting import markdown_table, plot_training_curve, text_table, write_csv
from elasticnet.runtime import seed_everything, select_device
from elasticnet.training.evaluate import evaluate_calibrated, subnet_table
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.losses import distillation_loss, segmentation_loss
from elasticnet.training.sampler import SubNetSampler

TABLE_COLUMNS = ["depth", "width", "channels", "params", "mflops", "dice", "iou", "dice_bn_as_trained", "dice_lesion",
                 "fp_area", "test_dice", "test_iou", "test_dice_lesion", "test_fp_area"]


def table_columns(rows: Sequence[dict]) -> list[str]:
    """The columns of the sub-net table worth showing: those present in ``rows``."""
    return [c for c in TABLE_COLUMNS if rows and c in rows[0]]


def sampler_for(cfg: RunConfig) -> SubNetSampler:
    return SubNetSampler(tuple(cfg.model.depths), tuple(cfg.model.widths), cfg.train.strategy,
                         cfg.train.num_random, cfg.train.seed)


def forward_backward(model: ElasticUNet, images: torch.Tensor, masks: torch.Tensor, subnets: Sequence[SubNet],
                     distill_weight: float | None, dice: str = "image") -> float:
    """Run each sub-net on the batch and accumulate its gradients; returns the mean loss.

    With ``distill_weight``, every sub-net other than the largest also matches the largest one's
    detached probabilities (taken from this step's largest forward, or computed without gradient when
    the largest is not among ``subnets``).
    """
    largest = model.config.largest
    teacher = None
    total = 0.0
    for subnet in subnets:
        logits = model(images, subnet)
        loss = segmentation_loss(logits, masks, dice)
        if distill_weight is not None:
            if subnet == largest:
                teacher = torch.sigmoid(logits).detach()
            else:
                if teacher is None:
                    with torch.no_grad():
                        teacher = torch.sigmoid(model(images, largest))
                loss = loss + distill_weight * distillation_loss(logits, teacher, dice)
        if not torch.isfinite(loss):
            raise UserError(f"the loss became {loss.item()} at {subnet}; lower --lr or check the data for broken images")
        loss.backward()
        total += float(loss.detach())
    return total / len(subnets)


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_run_dir(out: str) -> Path:
    run_dir = Path(out) if out else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"run folder {run_dir} already holds a finished run; choose another --out or delete it")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(cfg: RunConfig, echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Train an elastic U-Net as ``cfg`` says; returns the run folder (config, checkpoint, log, table, plot)."""
    t_cfg = cfg.train
    device = select_device(t_cfg.device)
    seed_everything(t_cfg.seed)
    # Everything that can refuse the config or the data runs before any file is written.
    sampler = sampler_for(cfg)
    split = build_datasets(cfg.data, cfg.model.in_channels, t_cfg.seed)
    run_dir = make_run_dir(t_cfg.out)
    save_yaml(cfg, run_dir / "config.yaml")
    write_csv(split.rows, run_dir / "split.csv")

    model = ElasticUNet(cfg.model).to(device)
    loader_rng = torch.Generator().manual_seed(t_cfg.seed)
    batch_size = min(t_cfg.batch_size, len(split.train))
    train_loader = DataLoader(split.train, batch_size=batch_size, shuffle=True, drop_last=True,
                              generator=loader_rng, num_workers=cfg.data.num_workers)
    # BN calibration sees training images without augmentation, always in the same order.
    train_images = split.train.base if isinstance(split.train, PatchDataset) else split.train
    calib_loader = DataLoader(train_images.subset(range(len(train_images))), batch_size=batch_size, shuffle=False)
    val_loader = DataLoader(split.val, batch_size=batch_size, shuffle=False)
    test_loader = DataLoader(split.test, batch_size=batch_size, shuffle=False) if split.test is not None else None
    tile = tuple(cfg.data.patch_size) if any(cfg.data.patch_size) else None  # sliding-window evaluation

    steps_per_epoch = len(train_loader)
    total_steps = t_cfg.epochs * steps_per_epoch
    if t_cfg.max_steps:
        total_steps = min(total_steps, t_cfg.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t_cfg.lr, weight_decay=t_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(total_steps, min(steps_per_epoch, max(1, total_steps // 20))))
    freezer = InactiveWeightFreezer(model, optimizer) if t_cfg.inactive_weights == "freeze" else None
    distill_weight = t_cfg.distill_weight if t_cfg.distill else None

    echo(f"run folder {run_dir} | device {device} | {len(split.train)} train / {len(split.val)} val images "
         f"at {cfg.data.image_size[0]}x{cfg.data.image_size[1]} | {total_steps} steps | strategy {t_cfg.strategy}"
         f"{' + distill' if distill_weight is not None else ''} | sub-nets {len(sampler.choices)}")
    log: list[dict] = []
    step, start = 0, time.perf_counter()
    epochs = math.ceil(total_steps / steps_per_epoch)
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start, losses, seen = time.perf_counter(), [], 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress,
                   total=min(steps_per_epoch, total_steps - step), unit="batch")
        for images, masks in bar:
            images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
            subnets = sampler.sample(step)
            optimizer.zero_grad(set_to_none=True)
            losses.append(forward_backward(model, images, masks, subnets, distill_weight, t_cfg.dice_loss))
            if freezer is None:
                optimizer.step()
            else:
                with freezer.step(subnets):
                    optimizer.step()
            scheduler.step()
            step += 1
            seen += images.shape[0]
            bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{seen / (time.perf_counter() - epoch_start):.1f}")
            if step >= total_steps:
                break
        bar.close()
        seconds = time.perf_counter() - epoch_start
        # A quick look at the two extremes, with BN re-estimated on a few batches (shared statistics
        # mix all sub-nets and say little about any one of them).
        quick = {s: evaluate_calibrated(model, s, calib_loader, val_loader, device, min(4, t_cfg.calib_batches),
                                        t_cfg.threshold, tile)["dice"] for s in (sampler.largest, sampler.smallest)}
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": round(sum(losses) / max(1, len(losses)), 5),
            "val_dice_largest": round(quick[sampler.largest], 4),
            "val_dice_smallest": round(quick[sampler.smallest], 4),
            "lr": round(scheduler.get_last_lr()[0], 7),
            "seconds": round(seconds, 2),
            "images_per_s": round(seen / seconds, 2),
        }
        log.append(row)
        write_csv(log, run_dir / "log.csv")
        echo(f"epoch {epoch}/{epochs}  loss {row['train_loss']:.4f}  val Dice largest {row['val_dice_largest']:.3f} "
             f"smallest {row['val_dice_smallest']:.3f}  ({seconds:.1f} s, {row['images_per_s']:.1f} img/s)")
        if step >= total_steps:
            break
    train_seconds = time.perf_counter() - start
    plot_training_curve(log, run_dir / "curve.png")

    echo(f"calibrating BatchNorm ({t_cfg.calib_batches} batches) and evaluating {len(sampler.choices)} sub-nets ...")
    rows, bn_stats = subnet_table(model, calib_loader, val_loader, device, tuple(cfg.data.image_size),
                                  t_cfg.calib_batches, t_cfg.threshold, test_loader, tile)
    write_csv(rows, run_dir / "subnets.csv")
    (run_dir / "subnets.md").write_text(
        f"Validation ({rows[0]['val_images']} images"
        + (f"; test: {rows[0]['test_images']} images" if "test_images" in rows[0] else "")
        + f"), per-image mean Dice/IoU at threshold {t_cfg.threshold}; "
        f"BN re-estimated per sub-net on {rows[0]['calib_batches']} training batches "
        f"(`dice_bn_as_trained`: without). `dice_lesion`: mean over images with a lesion; `fp_area`: predicted "
        f"area fraction on images without one. MFLOPs at {cfg.data.image_size[0]}x{cfg.data.image_size[1]}.\n\n"
        + markdown_table(rows, table_columns(rows)))
    save_checkpoint(run_dir / CHECKPOINT_NAME, cfg, model, optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), step=step, epoch=len(log), subnets=rows, bn_stats=bn_stats,
                    log=log, train_seconds=round(train_seconds, 2))
    echo("\nper-sub-net validation results (mean over images of per-image Dice/IoU at threshold "
         f"{t_cfg.threshold}, BN re-estimated per sub-net):\n" + text_table(rows, table_columns(rows)))
    echo(f"\ntrained in {train_seconds:.0f} s; wrote {run_dir}/ (checkpoint.pt, config.yaml, log.csv, "
         "subnets.csv, subnets.md, split.csv, curve.png)")
    return run_dir
