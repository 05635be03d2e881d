"""An in-memory segmentation data set: decoded uint8 arrays, augmented and normalised on the fly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from elasticnet.data import augment


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (H, W[, C]) -> float (C, H, W), scaled to [0, 1] then normalised by ``mean``/``std``."""
    x = image.astype(np.float32) / 255.0
    if x.ndim == 2:
        x = x[..., None]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class SegmentationDataset(Dataset):
    """Images and 0/255 masks held in memory; yields ``(image (C,H,W), mask (1,H,W) in {0,1})``."""

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], names: list[str],
                 mean: Sequence[float], std: Sequence[float], pipeline=None):
        assert len(images) == len(masks) == len(names)
        self.images, self.masks, self.names = images, masks, names
        self.mean, self.std, self.pipeline = tuple(mean), tuple(std), pipeline

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = augment.apply(self.pipeline, self.images[i], self.masks[i])
        target = torch.from_numpy((mask > 127).astype(np.float32))[None]
        return to_tensor(image, self.mean, self.std), target

    def subset(self, indices: Sequence[int], pipeline=None) -> "SegmentationDataset":
        return SegmentationDataset([self.images[i] for i in indices], [self.masks[i] for i in indices],
                                   [self.names[i] for i in indices], self.mean, self.std, pipeline)
