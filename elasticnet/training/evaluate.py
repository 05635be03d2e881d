"""Evaluation of one model or one sub-net, and the per-sub-net table of an elastic model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from elasticnet.config import RunConfig, eval_batch_size
from elasticnet.data.dataset import PatchDataset
from elasticnet.models.complexity import count_flops, count_params
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.models.surgery import extract
from elasticnet.sliding_window import sliding_window
from elasticnet.subnet_row import SubnetRow
from elasticnet.training import distributed
from elasticnet.training.calibration import (
    bn_state,
    calibrate_bn,
    calibrated,
    inference_layout,
    load_bn_state,
    spread_order,
)
from elasticnet.training.detection import FP_RATES, DetectionTally
from elasticnet.training.metrics import dice_iou_per_image


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured on a set of images (per-image means at the threshold)."""

    dice: float
    iou: float
    images: int
    # where some masks are empty (films without a lesion): mean Dice over the images with a lesion (NaN if
    # none has one) and mean predicted area fraction over the images without one
    dice_lesion: float | None = None
    fp_area: float | None = None
    tally: DetectionTally | None = None  # with detection: the candidates and lesions, for FROC curves
    dice_per_image: tuple[float, ...] | None = None  # with per_image: in the loader's order

    def metrics(self) -> dict[str, float]:
        """The scalar figures by name: dice, iou, and where measured dice_lesion, fp_area and the detection
        summary (sensitivity_at_0.5fp / 1fp / 2fp, fp_rate_normal, lesions)."""
        out = {"dice": self.dice, "iou": self.iou}
        if self.dice_lesion is not None:
            out |= {"dice_lesion": self.dice_lesion, "fp_area": self.fp_area}
        if self.tally is not None:
            out |= self.tally.summary()
        return out


@torch.no_grad()
def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    device: torch.device,
    threshold: float = 0.5,
    tile: tuple[int, int] | None = None,
    detection: bool = False,
    per_image: bool = False,
) -> Evaluation:
    """Mean per-image Dice and IoU at ``threshold``; ``predict`` maps images to logits.

    With ``tile`` the images are predicted by sliding windows of that size. When some masks are empty
    (films without a lesion) the result also holds ``dice_lesion`` and ``fp_area``. With ``detection`` it
    also holds the lesion-level detection ``tally`` (:mod:`elasticnet.training.detection`: sensitivity at
    0.5 / 1 / 2 false positives per film, the share of normal films with a false positive, FROC curves).
    With ``per_image`` it also holds ``dice_per_image``, for paired comparisons of two models on the same
    images.
    """
    tally = DetectionTally(operating_threshold=threshold) if detection else None
    dices, ious, has_lesion, area = [], [], [], []
    for images, masks in loader:
        images, masks = inference_layout(images.to(device)), masks.to(device)
        logits = sliding_window(predict, images, tile) if tile else predict(images)
        prob = torch.sigmoid(logits.float())
        dice, iou = dice_iou_per_image(prob, masks, threshold)
        dices.append(dice.cpu())
        ious.append(iou.cpu())
        has_lesion.append((masks.flatten(1) > 0.5).any(1).cpu())
        area.append((prob > threshold).flatten(1).float().mean(1).cpu())
        if tally is not None:
            for p, m in zip(prob[:, 0].cpu().numpy(), masks[:, 0].cpu().numpy()):
                tally.add(p, m)
    dice, iou, lesion, area_t = torch.cat(dices), torch.cat(ious), torch.cat(has_lesion), torch.cat(area)
    lesion_metrics = {}
    if not bool(lesion.all()):
        lesion_metrics = {
            "dice_lesion": float(dice[lesion].mean()) if bool(lesion.any()) else float("nan"),
            "fp_area": float(area_t[~lesion].mean()),
        }
    return Evaluation(
        dice=float(dice.mean()),
        iou=float(iou.mean()),
        images=int(dice.numel()),
        **lesion_metrics,
        tally=tally,
        dice_per_image=tuple(dice.tolist()) if per_image else None,
    )


def evaluate_subnet(
    model: ElasticUNet,
    subnet: SubNet,
    loader: Iterable,
    device: torch.device,
    threshold: float = 0.5,
    tile: tuple[int, int] | None = None,
    detection: bool = False,
) -> Evaluation:
    was_training = model.training
    model.eval()
    try:
        return evaluate(lambda x: model(x, subnet), loader, device, threshold, tile, detection)
    finally:
        model.train(was_training)


def evaluate_calibrated(
    model: ElasticUNet,
    subnet: SubNet,
    calib_loader: Iterable,
    val_loader: Iterable,
    device: torch.device,
    calib_batches: int,
    threshold: float = 0.5,
    tile: tuple[int, int] | None = None,
    pool: Callable[[], None] | None = None,
) -> Evaluation:
    """Evaluate ``subnet`` with BN statistics re-estimated on ``calib_batches`` batches; the model's own
    statistics are restored afterwards."""
    with calibrated(model, subnet, (images for images, _ in calib_loader), calib_batches, pool):
        return evaluate_subnet(model, subnet, val_loader, device, threshold, tile)


def _lesion_fields(result: Evaluation, prefix: str = "") -> dict[str, float]:
    """The lesion and lesion-level detection metrics of an evaluation, as :class:`SubnetRow` fields (none where
    it has none)."""
    names = {"dice_lesion": "dice_lesion", "fp_area": "fp_area", "fp_rate_normal": "fp_rate"}
    names |= {f"sensitivity_at_{rate:g}fp": f"sens_{rate:g}".replace(".", "") for rate in FP_RATES}
    metrics = result.metrics()
    return {prefix + field: metrics[key] for key, field in names.items() if key in metrics}


def _test_fields(test: Evaluation, raw_test: Evaluation) -> dict[str, float]:
    return {
        "test_dice": test.dice,
        "test_iou": test.iou,
        "test_dice_bn_as_trained": raw_test.dice,
        "test_iou_bn_as_trained": raw_test.iou,
        **_lesion_fields(test, "test_"),
        "test_images": test.images,
    }


def static_bn_buffers(static: nn.Module) -> dict[str, torch.Tensor]:
    """The BatchNorm buffers of a static U-Net (what calibration changes), on the CPU."""
    return {
        k: v.detach().cpu().clone() for k, v in static.state_dict().items() if "running_" in k or "num_batches" in k
    }


def subnet_table(
    model: ElasticUNet,
    calib_loader: DataLoader,
    val_loader: DataLoader,
    device: torch.device,
    image_size: tuple[int, int],
    calib_batches: int,
    threshold: float = 0.5,
    test_loader: DataLoader | None = None,
    tile: tuple[int, int] | None = None,
    progress: Callable[[str], None] = lambda s: None,
    pool: Callable[[], None] | None = None,
    detection: bool = False,
) -> tuple[list[SubnetRow], dict[str, dict[str, torch.Tensor]]]:
    """Calibrate and evaluate every configured sub-net on the validation (and test) images (with
    ``detection`` also the lesion-level detection columns).

    Returns the table (one row per sub-net, smallest first) and, per sub-net key, the calibrated BN
    buffers of its static U-Net, so that export reproduces exactly the evaluated model without data.
    The model's own (as-trained) BN statistics are left as they were.
    """
    as_trained = bn_state(model)
    rows, calibrated = [], {}
    try:
        for subnet in model.config.subnets():
            progress(f"evaluating {subnet}")

            def on(loader: DataLoader | None, lesions: bool = False, subnet: SubNet = subnet) -> Evaluation | None:
                return (
                    evaluate_subnet(model, subnet, loader, device, threshold, tile, lesions)
                    if loader is not None
                    else None
                )

            load_bn_state(model, as_trained)
            raw, raw_test = on(val_loader), on(test_loader)  # with the BN statistics as trained
            used = calibrate_bn(model, subnet, (images for images, _ in calib_loader), calib_batches, pool)
            static = extract(model, subnet)
            calibrated[subnet.key] = static_bn_buffers(static)
            cal, test = on(val_loader, detection), on(test_loader, detection)
            rows.append(_row(static.config, subnet, image_size, raw, cal, raw_test, test, used))
    finally:
        load_bn_state(model, as_trained)
    return rows, calibrated


def _row(
    cfg,
    subnet: SubNet,
    image_size,
    raw: Evaluation,
    cal: Evaluation,
    raw_test: Evaluation | None,
    test: Evaluation | None,
    used: int,
) -> SubnetRow:
    """The table row of one sub-net (static U-Net config ``cfg``) from its evaluations."""
    return SubnetRow(
        depth=subnet.depth,
        width=subnet.width,
        channels="-".join(map(str, cfg.channels)),
        params=count_params(cfg),
        mflops=count_flops(cfg, image_size) / 1e6,
        dice=cal.dice,
        iou=cal.iou,
        dice_bn_as_trained=raw.dice,
        **_lesion_fields(cal),
        **(_test_fields(test, raw_test) if test is not None and raw_test is not None else {}),
        calib_batches=used,
        val_images=cal.images,
    )


# ---- the loaders of a run's evaluation ----


def evaluation_setup(
    split, cfg: RunConfig, batch_size: int, dist: distributed.Dist | None = None
) -> tuple[DataLoader, DataLoader, DataLoader | None, int]:
    """(calibration, validation, test loaders, calibration batches) of a run whose per-process training batch
    is ``batch_size``: evaluation runs in batches of :func:`eval_batch_size`, and BN calibration sees as many
    images as ``calib_batches`` training batches, whatever that evaluation batch is."""
    t = cfg.train
    eval_batch = eval_batch_size(cfg)
    loaders = evaluation_loaders(split, eval_batch, t.seed, dist, t.calib_batches * batch_size)
    return (*loaders, calibration_batches(t.calib_batches, batch_size, eval_batch))


def evaluation_loaders(
    split, batch_size: int, seed: int, dist: distributed.Dist | None = None, calib_images: int | None = None
) -> tuple[DataLoader, DataLoader, DataLoader | None]:
    """(calibration, validation, test) loaders. BN calibration sees training images without augmentation,
    in a fixed seeded order spread over the whole set, at most ``calib_images`` of them per process; each
    data-parallel rank calibrates on its share (the statistics are pooled)."""
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    train_images = split.train.base if isinstance(split.train, PatchDataset) else split.train
    share = spread_order(len(train_images), seed)[rank::world][:calib_images]
    calib = DataLoader(train_images.subset(share), batch_size=batch_size, shuffle=False)
    val = DataLoader(split.val, batch_size=batch_size, shuffle=False)
    test = DataLoader(split.test, batch_size=batch_size, shuffle=False) if split.test is not None else None
    return calib, val, test


def calibration_batches(calib_batches: int, batch_size: int, eval_batch_size: int) -> int:
    """Batches of ``eval_batch_size`` that hold as many images as ``calib_batches`` training batches (BN
    calibration sees the same images whatever the evaluation batch size; the loader holds no more)."""
    return max(1, -(-calib_batches * batch_size // eval_batch_size))
