"""An in-memory segmentation data set: decoded uint8 arrays, augmented and normalised on the fly.

Items are fetched by index, or by ``(index, seed)`` as the training sampler
(:class:`elasticnet.training.order.EpochSampler`) yields them: the seed fixes that item's augmentation
(and patch crop), so a sample looks the same whichever worker loads it and whether or not the run was
interrupted and resumed in between.
"""

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

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        names: list[str],
        mean: Sequence[float],
        std: Sequence[float],
        pipeline=None,
        groups: list[str] | None = None,
        unlocated: Sequence[str] = (),
    ):
        assert len(images) == len(masks) == len(names)
        self.images, self.masks, self.names = images, masks, names
        self.groups = list(groups) if groups is not None else list(names)
        # names of images whose annotation names a lesion it does not locate (Record.unlocated)
        self.unlocated = frozenset(unlocated) & frozenset(names)
        self.mean, self.std, self.pipeline = tuple(mean), tuple(std), pipeline

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = split_key(key)
        image, mask = augment.apply(self.pipeline, self.images[i], self.masks[i], seed)
        target = torch.from_numpy((mask > 127).astype(np.float32))[None]
        return to_tensor(image, self.mean, self.std), target

    def subset(self, indices: Sequence[int], pipeline=None) -> SegmentationDataset:
        """The images at ``indices`` (decoded lazily if this set is), with ``pipeline`` as augmentation."""
        indices = list(indices)
        if isinstance(self.images, list):
            images, masks = [self.images[i] for i in indices], [self.masks[i] for i in indices]
        else:
            images, masks = _Subset(self.images, indices), _Subset(self.masks, indices)
        return SegmentationDataset(
            images,
            masks,
            [self.names[i] for i in indices],
            self.mean,
            self.std,
            pipeline,
            [self.groups[i] for i in indices],
            self.unlocated,
        )

    def any_lesion(self) -> bool:
        """Whether some mask marks a lesion; stops at the first that does (lazy sets decode until then)."""
        return any(bool(np.any(mask > 127)) for mask in self.masks)

    def located(self) -> list[int]:
        """Indices of the images whose masks mark every annotated lesion: those that can be trained on and scored."""
        return [i for i, n in enumerate(self.names) if n not in self.unlocated]


def split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """``index`` or ``(index, seed)`` -> (index, seed or None)."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), None


class _Subset(Sequence):
    def __init__(self, items: Sequence, indices: list[int]):
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[self.indices[i]]


class PatchDataset(Dataset):
    """Random ``patch`` (H, W) crops of a :class:`SegmentationDataset`, for images too large to train whole.

    With probability ``lesion_fraction`` an item is replaced by a crop centred near a random foreground pixel
    of a random image that has one (image-level oversampling), so lesions (often < 1 % of a mammogram, on a
    sixth of the films) make up that share of the patches whatever their prevalence. Other crops keep the
    item's image; with ``tissue_threshold`` > 0 they are centred on a pixel brighter than that share of the
    image's maximum (the breast, not the film's black background). With probability ``hard_fraction`` a
    crop is centred on a hard negative instead: a pixel of a random image of :attr:`hard_negatives` (set
    between epochs by :mod:`elasticnet.training.hard_negatives`: where the model marked a lesion that is
    not there), followed through the image's augmentation. A crop is a function of the item's seed and the
    hard negatives (``(index, seed)`` keys); a bare index draws one from torch's global RNG.
    """

    HARD = 128  # the hard-negative pixels' value in the mask the augmentation carries (lesion: 255)

    def __init__(
        self,
        base: SegmentationDataset,
        patch: Sequence[int],
        lesion_fraction: float = 0.5,
        tissue_threshold: float = 0.0,
        hard_fraction: float = 0.0,
    ):
        self.base, self.patch, self.lesion_fraction = base, (int(patch[0]), int(patch[1])), lesion_fraction
        self.tissue_threshold, self.hard_fraction = tissue_threshold, hard_fraction
        # image index -> bool map of hard negatives, one cell per hard_stride x hard_stride pixels (none before
        # the first mining; a coarse grid keeps thousands of large films' maps small)
        self.hard_negatives: dict[int, np.ndarray] = {}
        self.hard_stride = 1
        self.names = base.names
        # Read once: which images hold a lesion (masks are small next to the images, even decoded lazily).
        self.lesion_items = [i for i in range(len(base)) if np.any(np.asarray(base.masks[i]) > 127)]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = split_key(key)
        rng = np.random.default_rng([seed if seed is not None else int(torch.randint(0, 2**31 - 1, (1,))), 1])
        hard = sorted(self.hard_negatives) if self.hard_fraction > 0 else []
        u = rng.random() if self.lesion_items or hard else 1.0  # no draw when neither exists (as before mining)
        on_lesion = bool(self.lesion_items) and u < self.lesion_fraction
        on_hard = bool(hard) and self.lesion_fraction <= u < self.lesion_fraction + self.hard_fraction
        if on_lesion:
            i = self.lesion_items[int(rng.integers(len(self.lesion_items)))]
        elif on_hard:
            i = hard[int(rng.integers(len(hard)))]
        mask = self.base.masks[i]
        if on_hard:  # the hard pixels ride along in the mask, so the augmentation moves them with the image
            mask = np.asarray(mask)
            cells, k = self.hard_negatives[i], self.hard_stride
            hard_pixels = np.repeat(np.repeat(cells, k, axis=0), k, axis=1)[: mask.shape[0], : mask.shape[1]]
            mask = np.where(mask > 127, 255, np.where(hard_pixels, self.HARD, 0)).astype(np.uint8)
        image, mask = augment.apply(self.base.pipeline, self.base.images[i], mask, seed)
        ph, pw = self.patch
        h, w = mask.shape[:2]
        ys, xs = np.nonzero(mask > 127) if on_lesion else ((), ())
        if on_hard:
            ys, xs = np.nonzero((mask > self.HARD // 2) & (mask <= (self.HARD + 255) // 2))
            mask = np.where(mask > (self.HARD + 255) // 2, 255, 0).astype(np.uint8)
        if not len(ys) and self.tissue_threshold > 0:
            grey = image if image.ndim == 2 else image.max(axis=2)
            ys, xs = np.nonzero(grey > self.tissue_threshold * max(int(grey.max()), 1))
        if len(ys):  # centred near the chosen pixel, jittered by up to a quarter patch
            k = rng.integers(len(ys))
            top = int(np.clip(ys[k] - ph // 2 + rng.integers(-ph // 4, ph // 4 + 1), 0, h - ph))
            left = int(np.clip(xs[k] - pw // 2 + rng.integers(-pw // 4, pw // 4 + 1), 0, w - pw))
        else:
            top, left = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        image, mask = image[top : top + ph, left : left + pw], mask[top : top + ph, left : left + pw]
        target = torch.from_numpy((mask > 127).astype(np.float32))[None]
        return to_tensor(image, self.base.mean, self.base.std), target
