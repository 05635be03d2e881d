"""From a :class:`DataConfig` to train and validation data sets, with the split written down."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elasticnet.config import DataConfig
from elasticnet.data import augment
from elasticnet.data.dataset import SegmentationDataset
from elasticnet.data.folder import find_samples, load_samples
from elasticnet.data.synthetic import synthetic_polyp_set
from elasticnet.errors import UserError


@dataclass
class Split:
    train: SegmentationDataset
    val: SegmentationDataset

    def rows(self) -> list[dict[str, str]]:
        """One row per image: ``name, split`` (saved as ``split.csv`` in the run folder)."""
        return [{"name": n, "split": "train"} for n in self.train.names] + [{"name": n, "split": "val"} for n in self.val.names]


def load_all(cfg: DataConfig, in_channels: int) -> SegmentationDataset:
    """Every image of the data set, decoded, checked and resized to ``cfg.image_size``, in memory."""
    size = (cfg.image_size[0], cfg.image_size[1])
    if cfg.data == "synthetic":
        images, masks = synthetic_polyp_set(cfg.synthetic_count, *size, seed=cfg.synthetic_seed)
        if in_channels == 1:
            images = [im.mean(axis=2).astype(np.uint8) for im in images]
        names = [f"synthetic-{i:05d}" for i in range(len(images))]
    else:
        samples = find_samples(cfg.data)
        images, masks = load_samples(samples, in_channels, size, root=cfg.data)
        names = [s.name for s in samples]
    return SegmentationDataset(images, masks, names, cfg.mean, cfg.std)


def build_datasets(cfg: DataConfig, in_channels: int, seed: int) -> Split:
    """A seeded random split into train and validation; augmentation on the training part only."""
    full = load_all(cfg, in_channels)
    if len(full) < 2:
        raise UserError(f"data set {cfg.data} has {len(full)} image(s); a train/validation split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(full))
    n_val = max(1, int(round(cfg.val_fraction * len(full))))
    pipeline = augment.endoscopy_augmentation(seed) if cfg.augment else None
    return Split(train=full.subset(sorted(order[n_val:]), pipeline), val=full.subset(sorted(order[:n_val])))
