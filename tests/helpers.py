"""Helpers the tests share: tiny grids, data sets written on the fly, BN randomisation (no fixtures here;
those live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

DEPTHS = [2, 3, 4]
WIDTHS = [0.25, 0.5, 1.0]
# a tiny elastic run on the built-in synthetic data, as command-line flags
TINY = "--base-width 8 --depths 2,3 --widths 0.5,1 --image-size 32x32 --synthetic-count 24 --batch-size 4 --calib-batches 2 --quiet".split()
# the same run as config overrides (build_config), for tests that train in-process
TINY_CONFIG = {
    "base_width": "8",
    "depths": "2,3",
    "widths": "0.5,1",
    "image_size": "32x32",
    "synthetic_count": "48",
    "batch_size": "8",
    "calib_batches": "1",
}
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so equality tests mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def write_folder_dataset(root: Path, count: int = 6, size: tuple[int, int] = (40, 48), suffix: str = ".png") -> Path:
    """A small images/ + masks/ data set of random frames with one bright square each."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(count):
        image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        mask[y : y + h // 3, x : x + w // 3] = 255
        image[mask > 0] += 100
        cv2.imwrite(str(root / "images" / f"{i + 1}{suffix}"), image)
        cv2.imwrite(str(root / "masks" / f"{i + 1}.png"), mask)
    return root


def write_fake_cvc(data: Path) -> Path:
    """A CVC-ClinicDB-like folder: 4 frames of each of 5 video sequences (numbered as in the real set)."""
    from elasticnet.data.synthetic import synthetic_polyp_set

    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    frames = [first + k for first in (1, 26, 51, 68, 79) for k in range(4)]
    images, masks = synthetic_polyp_set(len(frames), 32, 32, seed=0)
    for frame, image, mask in zip(frames, images, masks):
        cv2.imwrite(str(data / "images" / f"{frame}.png"), image)
        cv2.imwrite(str(data / "masks" / f"{frame}.png"), mask)
    return data
