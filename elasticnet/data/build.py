"""From a :class:`DataConfig` to train / validation / test data sets, with the split written down."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from elasticnet.config import DataConfig
from elasticnet.data import augment
from elasticnet.data.cvc import find_cvc, is_official_layout
from elasticnet.data.dataset import PatchDataset, SegmentationDataset
from elasticnet.data.folder import GROUP_FILES, find_samples
from elasticnet.data.mias import find_mias
from elasticnet.data.records import DataProblems, LazyArrays, Record, check_records, load_records, prepared
from elasticnet.data.splits import assign_split
from elasticnet.data.synthetic import synthetic_polyp_set
from elasticnet.errors import UserError

KINDS = ("folder", "cvc-clinicdb", "mini-mias")


@dataclass
class Split:
    train: Dataset  # a SegmentationDataset, or a PatchDataset over one
    val: SegmentationDataset
    test: SegmentationDataset | None
    rows: list[dict[str, str]]  # name, group, split: saved as split.csv
    left_out: tuple[str, ...] = ()  # images in no data set: the annotation names a lesion it does not locate


def dataset_kind(cfg: DataConfig) -> str:
    """The reader for ``cfg.data``: as configured, or recognised by the files in the folder."""
    if cfg.data == "synthetic":
        return "synthetic"
    if cfg.dataset != "auto":
        if cfg.dataset not in KINDS:
            raise UserError(f"unknown dataset {cfg.dataset!r}; use auto or one of {', '.join(KINDS)}")
        return cfg.dataset
    root = Path(cfg.data)
    if (root / "Info.txt").is_file():
        return "mini-mias"
    if is_official_layout(root):
        return "cvc-clinicdb"
    return "folder"


def find_records(cfg: DataConfig) -> list[Record]:
    kind = dataset_kind(cfg)
    if kind == "mini-mias":
        return find_mias(cfg.data, cfg.mias_classes)
    if kind == "cvc-clinicdb":
        return find_cvc(cfg.data)
    return find_samples(cfg.data, grouped=cfg.split == "grouped")


def check_groups(cfg: DataConfig) -> None:
    """A grouped split of a folder data set needs its group file."""
    if cfg.split != "grouped" or dataset_kind(cfg) != "folder" or not Path(cfg.data).is_dir():
        return
    if not any((Path(cfg.data) / name).is_file() for name in GROUP_FILES):
        raise UserError(
            f"--split grouped needs the groups of {cfg.data} (video sequence, patient): with no "
            f"{' or '.join(GROUP_FILES)} beside images/ and masks/ every image would be its own group and the "
            "split a random one. Add groups.csv (name,group), or use --split random"
        )


def augmentation_kind(cfg: DataConfig, in_channels: int = 3) -> str:
    """The pipeline ``auto`` means: the grey one (no colour jitter) for mini-MIAS and any 1-channel data
    (converted mammograms), the endoscopy one for colour frames."""
    if cfg.augment != "auto":
        return cfg.augment
    return "mammography" if dataset_kind(cfg) == "mini-mias" or in_channels == 1 else "endoscopy"


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``, free pages where that is unknown), or
    None when the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _fits_in_memory(records: list[Record], in_channels: int, size: tuple[int, int]) -> bool:
    needed = len(records) * size[0] * size[1] * (in_channels + 1)
    available = available_memory()
    return available is None or needed < 0.5 * available


def _check_fits(needed: int, what: str, fix: str) -> None:
    """Refuse data that must be held in memory and cannot fit, instead of being killed for memory later."""
    available = available_memory()
    if available is not None and needed > 0.8 * available:
        raise UserError(
            f"{what} needs {needed / 2**30:.1f} GiB of memory; {available / 2**30:.1f} GiB is available here. {fix}"
        )


def load_all(cfg: DataConfig, in_channels: int) -> SegmentationDataset:
    """Every image of the data set, checked, cropped (``cfg.crop``), equalised (``cfg.contrast``) and resized to
    ``cfg.image_size``; decoded
    into memory when it fits (``cache``), else decoded on access after a full check."""
    size = (cfg.image_size[0], cfg.image_size[1])
    if cfg.data == "synthetic":
        _check_fits(  # generated into memory as 3-channel frames and masks
            cfg.synthetic_count * size[0] * size[1] * 4,
            f"the synthetic set of {cfg.synthetic_count} frames at {size[0]}x{size[1]}",
            "Lower --synthetic-count or --image-size",
        )
        images, masks = synthetic_polyp_set(cfg.synthetic_count, *size, seed=cfg.synthetic_seed)
        if in_channels == 1:
            images = [im.mean(axis=2).astype(np.uint8) for im in images]
        if cfg.crop != "none" or cfg.contrast != "none":  # prepared as a site's predict would prepare them
            images, masks = (
                list(part)
                for part in zip(*(prepared(i, m, size, cfg.crop, cfg.contrast) for i, m in zip(images, masks)))
            )
        names = [f"synthetic-{i:05d}" for i in range(len(images))]
        return SegmentationDataset(images, masks, names, cfg.mean, cfg.std, groups=names)
    try:
        records, listed = find_records(cfg), []
    except DataProblems as e:  # unpaired files: check the pairs too, then report everything at once
        records, listed = e.records, e.problems
        if not records:
            raise
    names, groups = [r.name for r in records], [r.group for r in records]
    if cfg.cache == "memory":
        _check_fits(
            len(records) * size[0] * size[1] * (in_channels + 1),
            f"--cache memory for {len(records)} images at {size[0]}x{size[1]}",
            "Use --cache disk (or auto), or a smaller --image-size",
        )
    in_memory = cfg.cache == "memory" or (cfg.cache == "auto" and _fits_in_memory(records, in_channels, size))
    if in_memory:
        images, masks = load_records(
            records, in_channels, size, root=cfg.data, known=listed, crop=cfg.crop, contrast=cfg.contrast
        )
    else:
        check_records(records, in_channels, cfg.data, known=listed)
        images = LazyArrays(records, in_channels, size, 0, cfg.crop, cfg.contrast)
        masks = LazyArrays(records, in_channels, size, 1, cfg.crop, cfg.contrast)
    unlocated = [r.name for r in records if r.unlocated]
    return SegmentationDataset(images, masks, names, cfg.mean, cfg.std, groups=groups, unlocated=unlocated)


def split_sizes(cfg: DataConfig) -> dict[str, int]:
    """Images in each part of the split (train, val, test) from the file listing alone, nothing decoded: for
    planning a run's steps before it starts. Images with an unlocated lesion are not counted (not used)."""
    check_groups(cfg)
    if cfg.data == "synthetic":
        groups = [f"synthetic-{i:05d}" for i in range(cfg.synthetic_count)]
        used = [True] * len(groups)
    else:
        try:
            records = find_records(cfg)
        except DataProblems as e:  # the pairs found are what a run would train on, once the listing is fixed
            records = e.records
        groups, used = [r.group for r in records], [not r.unlocated for r in records]
    parts = assign_split(groups, cfg.split, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.folds, cfg.fold)
    return {p: sum(q == p and u for q, u in zip(parts, used)) for p in ("train", "val", "test")}


def build_datasets(cfg: DataConfig, in_channels: int, seed: int, require_lesions: bool = False) -> Split:
    """Split as configured (by ``cfg.split_seed``, so every training seed sees the same test images);
    augmentation (seeded by ``seed``) and patches on the training part only. Images with an unlocated lesion
    (:attr:`Record.unlocated`) keep their part in ``rows`` but are in none of the data sets.
    ``require_lesions`` (training) refuses a training part whose masks are all empty."""
    check_groups(cfg)
    full = load_all(cfg, in_channels)
    parts = assign_split(
        full.groups, cfg.split, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.folds, cfg.fold
    )
    # every image keeps its part (the split does not depend on the annotation); unlocated lesions are not used
    located = set(full.located())
    index = {p: [i for i, q in enumerate(parts) if q == p and i in located] for p in ("train", "val", "test")}
    pipeline = augment.build(augmentation_kind(cfg, in_channels), seed, cfg.augment_strength)
    train: Dataset = full.subset(index["train"], pipeline)
    if require_lesions and index["train"] and not train.any_lesion():
        raise UserError(
            f"no mask of the {len(index['train'])} training images of {cfg.data} marks a lesion: every one is "
            f"empty at {cfg.image_size[0]}x{cfg.image_size[1]}. Masks must mark the lesion in white (255, or 1 "
            "in 0/1 masks) on black (0); check the masks' pixel values (a label map such as 0/100 reads as empty)"
        )
    if any(cfg.patch_size):
        train = PatchDataset(
            train, cfg.patch_size, cfg.patch_lesion_fraction, cfg.patch_tissue_threshold, cfg.patch_hard_fraction
        )
    rows = [{"name": n, "group": g, "split": p} for n, g, p in zip(full.names, full.groups, parts)]
    return Split(
        train=train,
        val=full.subset(index["val"]),
        test=full.subset(index["test"]) if index["test"] else None,
        rows=rows,
        left_out=tuple(sorted(full.unlocated)),
    )
