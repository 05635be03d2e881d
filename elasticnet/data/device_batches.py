"""Training batches made on the training device (``augment_on: device``).

For data sets that fit in the accelerator's memory (CVC-ClinicDB at 288x384 is ~270 MB as uint8), the
decoded training images live there once; each batch is gathered and augmented there
(:class:`~elasticnet.data.batch_augment.BatchAugment`), so no loader process, pinned copy or per-image CPU
work stands between two steps. It iterates like the ``DataLoader`` it replaces: the sampler's
``(index, seed)`` keys in order, whole batches only (``drop_last``), ``(images, masks)`` on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch

from elasticnet.data.augment import AugmentSpec
from elasticnet.data.batch_augment import BatchAugment, upload
from elasticnet.data.dataset import SegmentationDataset
from elasticnet.errors import UserError

DEVICE_SHARE = 0.25  # of the device's free memory the images may take (the rest is the training's)


def image_layout(dataset: SegmentationDataset) -> tuple[int, int, int]:
    """(channels, height, width) of the set's images (all resized alike; read from the first)."""
    first = np.asarray(dataset.images[0])
    return (1 if first.ndim == 2 else first.shape[2]), first.shape[0], first.shape[1]


def stacked_bytes(dataset: SegmentationDataset) -> int:
    """Bytes of the set's images and masks as uint8 (what :class:`DeviceBatches` puts on the device)."""
    if not len(dataset):
        return 0
    channels, height, width = image_layout(dataset)
    return len(dataset) * height * width * (channels + 1)


def check_fits(dataset: SegmentationDataset, device: torch.device) -> None:
    """Refuse, naming the fix, a set that would take more than :data:`DEVICE_SHARE` of a GPU's free memory."""
    if device.type != "cuda":
        return  # on the CPU the images are in host memory already
    free, _ = torch.cuda.mem_get_info(device)
    needed = stacked_bytes(dataset)
    if needed > DEVICE_SHARE * free:
        raise UserError(
            f"the training images take {needed / 2**30:.2f} GiB as uint8, more than {DEVICE_SHARE:.0%} of the "
            f"{free / 2**30:.1f} GiB free on {device}; use --augment-on loader (augmentation in loader processes)"
        )


class DeviceBatches:
    """``(images, masks)`` batches of ``dataset`` built on ``device`` in ``sampler``'s order."""

    def __init__(
        self,
        dataset: SegmentationDataset,
        sampler: Sized,
        batch_size: int,
        device: torch.device,
        spec: AugmentSpec | None,
    ):
        check_fits(dataset, device)
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size
        channels, height, width = image_layout(dataset)
        # filled one image at a time: a set decoded from disk never has to fit in host memory at once
        self.images = torch.empty((len(dataset), channels, height, width), dtype=torch.uint8, device=device)
        self.masks = torch.empty((len(dataset), 1, height, width), dtype=torch.uint8, device=device)
        for i in range(len(dataset)):
            image = torch.from_numpy(np.asarray(dataset.images[i]).reshape(height, width, channels))
            self.images[i] = image.permute(2, 0, 1)
            self.masks[i, 0] = torch.from_numpy(np.asarray(dataset.masks[i]))
        self.augment = BatchAugment(spec, dataset.mean, dataset.std)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        keys = iter(self.sampler)
        for _ in range(len(self)):
            batch = [next(keys) for _ in range(self.batch_size)]
            index = upload(np.array([i for i, _ in batch], dtype=np.int64), self.images.device)
            yield self.augment(
                self.images.index_select(0, index), self.masks.index_select(0, index), [s for _, s in batch]
            )
