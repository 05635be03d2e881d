"""Augmentation per batch on the training device (``augment_on: device``): the spec's transforms, ranges and
probabilities, image/mask alignment, per-item seeding, and the loader it replaces."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from elasticnet.config import DataConfig, RunConfig, resolve_for_device, validate
from elasticnet.data import augment
from elasticnet.data.batch_augment import BatchAugment, _hue_saturation_value, draws, sampling_grids
from elasticnet.data.dataset import SegmentationDataset, to_tensor
from elasticnet.data.device_batches import DeviceBatches, check_fits
from elasticnet.errors import UserError
from elasticnet.training.order import EpochSampler

GEOMETRY_ONLY = dataclasses.replace(augment.endoscopy_spec(), intensity_p=0.0, hsv_p=0.0)
NORMALISE = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])


def _discs(n: int, h: int = 40, w: int = 56, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 masks of one random disc each, and images that are the mask in every channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    masks = (
        np.stack(
            [
                ((yy - rng.integers(h // 4, h - h // 4)) ** 2 + (xx - rng.integers(w // 4, w - w // 4)) ** 2)
                < (min(h, w) // 5) ** 2
                for _ in range(n)
            ]
        ).astype(np.uint8)[:, None]
        * 255
    )
    return torch.from_numpy(np.repeat(masks, 3, axis=1)), torch.from_numpy(masks)


@pytest.mark.parametrize("axis", ["hflip", "vflip"])
def test_a_flip_alone_moves_pixels_exactly(axis):
    spec = dataclasses.replace(GEOMETRY_ONLY, **{"hflip": 0.0, "vflip": 0.0, "affine_p": 0.0, axis: 1.0})
    images = torch.randint(0, 256, (3, 3, 6, 10), dtype=torch.uint8)
    masks = (torch.rand(3, 1, 6, 10) > 0.5).to(torch.uint8) * 255
    out, out_masks = BatchAugment(spec, [0, 0, 0], [1, 1, 1])(images, masks, [1, 2, 3])
    dim = 3 if axis == "hflip" else 2
    torch.testing.assert_close(out, images.float().flip(dim) / 255, atol=1e-6, rtol=0)
    assert torch.equal(out_masks, (masks.flip(dim) > 0).float())


@pytest.mark.parametrize("size", [(40, 56), (64, 32)])
def test_image_and_mask_move_together(size):
    images, masks = _discs(64, *size)
    out, out_masks = BatchAugment(GEOMETRY_ONLY, [0, 0, 0], [1, 1, 1])(images, masks, range(64))
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    moved = (out[:, :1] > 0.5).float()
    inter, union = (moved * out_masks).sum(), ((moved + out_masks) > 0).float().sum()
    assert inter / union > 0.97  # bilinear image vs nearest mask differ at the edge only
    assert not torch.equal(out_masks, (masks > 0).float())  # and something did move


def test_an_item_is_augmented_by_its_own_seed_only():
    images, masks = _discs(5)
    aug = BatchAugment(augment.endoscopy_spec(), *NORMALISE)
    a, am = aug(images, masks, [11, 12, 13, 14, 15])
    b, bm = aug(images[[3, 0]], masks[[3, 0]], [14, 11])
    torch.testing.assert_close(b, a[[3, 0]], atol=1e-6, rtol=0)
    assert torch.equal(bm, am[[3, 0]])
    c, _ = aug(images, masks, [21, 22, 23, 24, 25])
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("kind", ["endoscopy", "mammography"])
def test_draws_follow_the_spec_s_probabilities_and_ranges(kind):
    spec = augment.spec(kind)
    u = draws(range(4000))
    grids = sampling_grids(spec, u, 40, 60)
    det = np.abs(np.linalg.det(grids[:, :, :2]))  # 1 / zoom^2
    zoom = 1 / np.sqrt(det)
    assert zoom.min() >= 1 - spec.scale - 1e-9 and zoom.max() <= 1 + spec.scale + 1e-9
    moved = ~np.isclose(zoom, 1.0) | (np.abs(grids[:, 0, 1]) > 1e-9)
    assert abs(moved.mean() - spec.affine_p) < 0.03
    flipped_x = (grids[:, 0, 0] < 0) & ~moved  # unmoved items: the sign of x's scale is the flip
    assert abs(flipped_x.sum() / (~moved).sum() - spec.hflip) < 0.04
    half = np.diag([30.0, 20.0])  # back to pixels: the forward move's shift is -A^-1 t
    inverse = half @ grids[:, :, :2] @ np.linalg.inv(half)
    shift = -np.einsum("bij,bj->bi", np.linalg.inv(inverse), grids[:, :, 2] @ half)
    assert np.all(np.abs(shift) <= spec.translate * np.array([60, 40]) + 1e-9)
    assert spec.translate == 0 or np.abs(shift[:, 0]).max() > 0.8 * spec.translate * 60


def test_intensity_changes_stay_in_range():
    spec = dataclasses.replace(GEOMETRY_ONLY, affine_p=0.0, hflip=0.0, vflip=0.0, intensity_p=1.0)
    grey = torch.full((500, 3, 4, 4), 128, dtype=torch.uint8)
    out, _ = BatchAugment(spec, [0, 0, 0], [1, 1, 1])(grey, torch.zeros(500, 1, 4, 4, dtype=torch.uint8), range(500))
    v = out[:, 0, 0, 0]
    x = 128 / 255
    low, high = x * (1 - spec.contrast) - spec.brightness, x * (1 + spec.contrast) + spec.brightness
    assert v.min() >= low - 1e-6 and v.max() <= high + 1e-6
    assert v.max() - v.min() > 0.5 * (high - low)  # the range is used, not just allowed


def test_hue_saturation_value_matches_colorsys():
    x = torch.rand(1, 3, 5, 7)
    hue, sat, val = 0.13, -0.1, 0.05
    out = _hue_saturation_value(x, *(torch.full((1, 1, 1, 1), v) for v in (hue, sat, val)))
    for i in range(5):
        for j in range(7):
            h, s, v = colorsys.rgb_to_hsv(*x[0, :, i, j].tolist())
            expected = colorsys.hsv_to_rgb((h + hue) % 1, min(max(s + sat, 0), 1), min(max(v + val, 0), 1))
            torch.testing.assert_close(out[0, :, i, j], torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_without_a_spec_only_normalises_as_the_loader_does(channels):
    mean, std = NORMALISE[0][:channels], NORMALISE[1][:channels]
    images = torch.randint(0, 256, (2, channels, 8, 12), dtype=torch.uint8)
    masks = (torch.rand(2, 1, 8, 12) > 0.5).to(torch.uint8) * 255
    out, out_masks = BatchAugment(None, mean, std)(images, masks, [0, 1])
    for i in range(2):
        expected = to_tensor(images[i].permute(1, 2, 0).numpy().squeeze(), mean, std)
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)
    assert torch.equal(out_masks, (masks > 127).float())


def test_grey_images_take_the_mammography_pipeline():
    images, masks = _discs(16)
    out, out_masks = BatchAugment(augment.mammography_spec(), [0.5], [0.25])(images[:, :1], masks, range(16))
    assert out.shape == (16, 1, 40, 56) and out_masks.shape == (16, 1, 40, 56)
    assert torch.isfinite(out).all()


def _dataset(n: int = 10, channels: int = 3) -> SegmentationDataset:
    images, masks = _discs(n, 16, 24)
    arrays = [im.permute(1, 2, 0).numpy()[..., :channels].squeeze() for im in images]
    names = [f"im{i}" for i in range(n)]
    return SegmentationDataset(arrays, [m[0].numpy() for m in masks], names, *(v[:channels] for v in NORMALISE))


@pytest.mark.parametrize("channels", [1, 3])
def test_device_batches_equal_the_loader_s_batches_without_augmentation(channels):
    data = _dataset(10, channels)
    order = EpochSampler(len(data), seed=3)
    order.set_epoch(2, start=2)  # a resumed epoch: from its third item
    loader = list(DataLoader(data, batch_size=3, sampler=order, drop_last=True))
    device = list(DeviceBatches(data, order, 3, torch.device("cpu"), None))
    assert len(device) == len(loader) == 2
    for (a, am), (b, bm) in zip(loader, device):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
        assert torch.equal(bm, am)


def test_a_set_too_large_for_the_gpu_is_refused_naming_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 2000))
    with pytest.raises(UserError, match="--augment-on loader"):
        check_fits(_dataset(), torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10**9, 2 * 10**9))
    check_fits(_dataset(), torch.device("cuda"))


def test_augment_on_auto_and_its_refusal():
    cfg = RunConfig()
    assert resolve_for_device(cfg, "cuda").data.augment_on == "device"
    assert resolve_for_device(cfg, "cpu").data.augment_on == "loader"  # runs on record keep their images
    patches = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=[64, 64], patch_size=[32, 32]))
    assert resolve_for_device(patches, "cuda").data.augment_on == "loader"
    with pytest.raises(UserError, match="--augment-on loader"):
        validate(dataclasses.replace(patches, data=dataclasses.replace(patches.data, augment_on="device")))
    assert DataConfig().augment_on == "auto"
