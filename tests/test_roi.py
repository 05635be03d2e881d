"""Region-of-interest cropping (a mammogram's breast): the box, and that training, evaluation and a site's
predict all see the same crop."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from elasticnet.checkpoint import cut_subnet, load_checkpoint
from elasticnet.config import DataConfig, build_config
from elasticnet.data.build import load_all
from elasticnet.data.roi import THRESHOLD, cut, foreground_box, paste, region_box
from elasticnet.export.export import export_subnet
from elasticnet.models.subnet import SubNet
from elasticnet.site.model import SiteModel
from elasticnet.site.predict import predict_files
from elasticnet.training.trainer import train

QUIET = {"echo": lambda s: None}


def film(h: int, w: int, side: str = "left", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A grey film: black background with noise, a bright half-ellipse breast against one edge, a small bright
    label in the opposite corner, and a mass (the mask) inside the breast."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 12, (h, w), dtype=np.uint8)
    cx = 0 if side == "left" else w - 1
    cv2.ellipse(image, (cx, h // 2), (w // 3, int(h * 0.4)), 0, 0, 360, 150, -1)
    label_x = w - w // 10 if side == "left" else 2
    cv2.rectangle(image, (label_x, 3), (label_x + w // 14, 3 + h // 20), 255, -1)
    mask = np.zeros((h, w), np.uint8)
    mx = w // 8 if side == "left" else w - w // 8
    cv2.circle(mask, (mx, h // 2), max(2, h // 20), 255, -1)
    image[mask > 0] = 200
    return image, mask


@pytest.mark.parametrize("shape", [(120, 90), (256, 160), (1024, 640), (90, 300)])
@pytest.mark.parametrize("side", ["left", "right"])
def test_the_box_holds_the_breast_and_its_lesions_and_leaves_out_background_and_labels(shape, side):
    image, mask = film(*shape, side=side)
    top, bottom, left, right = foreground_box(image)
    breast = image > THRESHOLD * 255 + 20  # the ellipse and the mass (and the label)
    inside = np.zeros_like(breast)
    inside[top:bottom, left:right] = True
    label = np.zeros_like(breast)
    label_x = shape[1] - shape[1] // 10 if side == "left" else 2
    label[3 : 4 + shape[0] // 20, label_x : label_x + shape[1] // 14 + 1] = True
    assert (breast & ~label & ~inside).sum() <= 0.01 * (breast & ~label).sum()  # the breast (blur at its rim)
    assert not (mask.astype(bool) & ~inside).any()  # every lesion pixel
    assert (label & inside).sum() == 0  # not the label
    assert (bottom - top) * (right - left) < 0.6 * shape[0] * shape[1]  # most of the background is gone


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((40, 60), np.uint8),  # all dark
        np.full((40, 60), 128, np.uint8),  # uniform
        np.pad(np.full((1, 1), 255, np.uint8), ((20, 19), (30, 29))),  # one bright pixel: too small a region
        np.zeros((0, 5), np.uint8),
    ],
)
def test_an_image_without_a_region_keeps_its_whole_extent(image):
    assert foreground_box(image) == (0, image.shape[0], 0, image.shape[1])


def test_crop_none_is_the_whole_image_and_paste_inverts_cut():
    image, _ = film(64, 48, seed=3)
    assert region_box(image, "none") == (0, 64, 0, 48)
    box = region_box(np.dstack([image] * 3), "foreground")
    assert box == region_box(image, "foreground")  # colour or grey: the same box
    part = cut(image, box)
    back = paste(part, box, image.shape)
    assert np.array_equal(back[box[0] : box[1], box[2] : box[3]], part) and back.sum() == part.astype(np.int64).sum()
    with pytest.raises(ValueError, match="foreground"):
        region_box(image, "breast")


def write_films(root: Path, count: int, size: tuple[int, int]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image, mask = film(*size, side="left" if i % 2 else "right", seed=i)
        cv2.imwrite(str(root / "images" / f"f{i:02d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"f{i:02d}.png"), mask)
    return root


def test_loaded_films_are_their_cropped_breasts(tmp_path):
    data = write_films(tmp_path / "films", 4, (96, 80))
    plain = load_all(DataConfig(data=str(data), image_size=[48, 40], mean=[0.2], std=[0.25]), 1)
    cropped = load_all(DataConfig(data=str(data), image_size=[48, 40], mean=[0.2], std=[0.25], crop="foreground"), 1)
    for i in range(4):
        image, mask = film(96, 80, side="left" if i % 2 else "right", seed=i)
        box = foreground_box(image)
        expected = cv2.resize(cut(image, box), (40, 48), interpolation=cv2.INTER_AREA)
        assert np.array_equal(cropped.images[i], expected)
        assert np.array_equal(cropped.masks[i], cv2.resize(cut(mask, box), (40, 48), interpolation=cv2.INTER_NEAREST))
        # the breast fills more of the working size, so does the mass
        assert (cropped.masks[i] > 0).sum() > (plain.masks[i] > 0).sum()


@pytest.mark.slow  # trains, exports to ONNX and predicts (~10 s)
@pytest.mark.parametrize("contrast", ["none", "clahe"])
def test_a_site_predicts_on_the_crop_the_model_was_trained_on(tmp_path, contrast):
    data = write_films(tmp_path / "films", 12, (96, 80))
    cfg = build_config(
        None,
        {
            "data": str(data),
            "crop": "foreground",
            "contrast": contrast,
            "in_channels": "1",
            "mean": "0.2",
            "std": "0.25",
            "base_width": "4",
            "depths": "2",
            "widths": "1",
            "image_size": "48x40",
            "batch_size": "4",
            "calib_batches": "1",
            "epochs": "1",
            "out": str(tmp_path / "run"),
        },
    )
    run = train(cfg, progress=False, **QUIET)
    bundle = export_subnet(run / "checkpoint.pt", 2, 1.0, "cpu", tmp_path / "bundle", **QUIET)
    site = SiteModel(bundle)
    assert (site.crop, site.contrast) == ("foreground", contrast)
    trained_on = load_all(cfg.data, 1)  # the site prepares a film as training did
    for i in range(3):
        image = cv2.imread(str(data / "images" / f"{trained_on.names[i]}.png"), cv2.IMREAD_GRAYSCALE)
        x = site.frame(image).x[0, 0]
        assert np.allclose(x, (trained_on.images[i].astype(np.float32) / 255 - 0.2) / 0.25, atol=1e-5)
    static = cut_subnet(load_checkpoint(run / "checkpoint.pt"), SubNet(2, 1.0))
    rows = predict_files(bundle, [data / "images"], tmp_path / "out", **QUIET)
    for row in rows:
        image = cv2.imread(str(data / "images" / f"{row['name']}.png"), cv2.IMREAD_GRAYSCALE)
        box = foreground_box(image)
        part = cut(image, box)
        with torch.no_grad():
            logits = static(torch.from_numpy(site.prepare(part))).numpy()[0, 0]
        prob = paste(site.probability_map(logits, part.shape), box, image.shape)
        assert np.allclose(site.probability(image), prob, atol=1e-4)
        got = cv2.imread(str(tmp_path / "out" / "masks" / f"{row['name']}.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == image.shape
        outside = np.ones(image.shape, bool)
        outside[box[0] : box[1], box[2] : box[3]] = False
        assert not got[outside].any()  # nothing is marked outside the breast's box
        undecided = np.abs(prob - site.threshold) < 1e-4
        assert np.array_equal(got[~undecided] > 0, (prob > site.threshold)[~undecided])
