"""Hard-negative mining for patch training: where a sub-net marks a lesion that is not there.

A network trained on patches of mammograms learns masses, and also marks tissue that looks like them (dense
fibroglandular tissue, on normal films as on films with a mass); patches centred on random tissue rarely
show it those places. After every epoch :meth:`HardNegativeMiner.update` predicts each training image
(un-augmented, whole, by sliding windows as evaluation does) with the largest sub-net, its BatchNorm
statistics re-estimated as for the per-epoch look, and keeps where its false-positive pixels are (probability
above the run's threshold where the mask has no lesion; on a grid of 1/16 patch) for every image that has some.
:class:`~elasticnet.data.dataset.PatchDataset` centres ``patch_hard_fraction`` of the next epoch's patches on
them. The maps are saved with the training state (packed bits), so a resumed run draws the same patches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from elasticnet.data.dataset import PatchDataset, SegmentationDataset
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.sliding_window import sliding_window
from elasticnet.training.calibration import calibrated, inference_layout


@torch.no_grad()
def false_positive_maps(
    model: ElasticUNet,
    subnet: SubNet,
    images: SegmentationDataset,
    device: torch.device,
    threshold: float,
    tile: tuple[int, int] | None,
    batch_size: int,
    stride: int = 1,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[int, np.ndarray]:
    """``{image index: bool map}`` of the pixels ``subnet`` marks (probability > ``threshold``) where the
    image's mask has no lesion, one cell per ``stride`` x ``stride`` pixels (a cell holds one if any of its
    pixels does); images without such a pixel are left out. The model is used as it is (put it in eval mode
    with the statistics wanted; ``autocast``: the training's precision). Windows do not overlap (a 256x256 image
    in 128x128 tiles: 4 windows where evaluation blends 9): a hard negative need not be blended to be found."""
    maps, start = {}, 0
    for x, masks in DataLoader(images, batch_size=batch_size, shuffle=False):
        x = inference_layout(x.to(device))
        with autocast():
            logits = sliding_window(lambda t: model(t, subnet), x, tile, overlap=0.0) if tile else model(x, subnet)
        wrong = ((torch.sigmoid(logits.float()) > threshold) & (masks.to(device) < 0.5)).float()
        if stride > 1:
            wrong = F.max_pool2d(wrong, stride, ceil_mode=True)
        wrong = (wrong[:, 0] > 0).cpu().numpy()
        for k, fp in enumerate(wrong):
            if fp.any():
                maps[start + k] = fp
        start += len(wrong)
    return maps


def pack(maps: dict[int, np.ndarray]) -> dict:
    """The maps as tensors (bits packed 8 to a byte) for a ``weights_only`` checkpoint."""
    shapes = {m.shape for m in maps.values()}
    if len(shapes) > 1:  # a patch training's images are resized to one size
        raise ValueError(f"hard-negative maps of several sizes: {sorted(shapes)}")
    shape = shapes.pop() if shapes else (0, 0)
    indices = sorted(maps)
    bits = np.stack([np.packbits(maps[i].reshape(-1)) for i in indices]) if indices else np.zeros((0, 0), np.uint8)
    return {"index": torch.tensor(indices, dtype=torch.int64), "bits": torch.from_numpy(bits), "shape": list(shape)}


def unpack(packed: dict) -> dict[int, np.ndarray]:
    h, w = (int(v) for v in packed["shape"])
    bits = packed["bits"].numpy()
    return {
        int(i): np.unpackbits(row, count=h * w).reshape(h, w).astype(bool)
        for i, row in zip(packed["index"].tolist(), bits)
    }


class HardNegativeMiner:
    """Refreshes the hard negatives of a :class:`PatchDataset` after every epoch, with one sub-net."""

    def __init__(self, patches: PatchDataset, subnet: SubNet, threshold: float, batch_size: int):
        self.patches, self.subnet, self.threshold, self.batch_size = patches, subnet, threshold, batch_size
        self.images = patches.base.subset(range(len(patches.base)))  # the training images, un-augmented
        # maps on a grid of 1/16 patch: finer than the quarter-patch jitter of a patch centre, and small
        # (2800 films of 2048x1280 with 256x256 patches: 28 MB, not 7 GB of full-size maps)
        patches.hard_stride = max(1, min(patches.patch) // 16)

    def update(
        self,
        model: ElasticUNet,
        calib_loader: Iterable,
        calib_batches: int,
        device: torch.device,
        pool: Callable[[], None] | None = None,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> str:
        """Mine with the model as it stands (BN re-estimated for the sub-net, restored afterwards; in the
        training's precision, ``autocast``); returns a line for the log."""
        with calibrated(model, self.subnet, (x for x, _ in calib_loader), calib_batches, pool):
            maps = false_positive_maps(
                model,
                self.subnet,
                self.images,
                device,
                self.threshold,
                self.patches.patch,
                self.batch_size,
                self.patches.hard_stride,
                autocast,
            )
        self.patches.hard_negatives = maps
        share = sum(float(m.mean()) for m in maps.values()) / max(1, len(self.images))
        return f"hard negatives: {len(maps)} of {len(self.images)} training images, {100 * share:.1f} % of their area"

    def state_dict(self) -> dict:
        return pack(self.patches.hard_negatives)

    def load_state_dict(self, state: dict) -> None:
        self.patches.hard_negatives = unpack(state)
