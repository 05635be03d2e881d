"""Local contrast equalisation (CLAHE) before resizing: what it does to an image, and that the loaders apply it
after the crop exactly as a site's predict does (the site half is in test_roi.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_roi import write_films

from elasticnet.config import DataConfig
from elasticnet.data.build import load_all
from elasticnet.data.contrast import equalised
from elasticnet.data.records import prepared
from elasticnet.data.roi import cut, foreground_box
from elasticnet.errors import UserError
from elasticnet.site.bundle import check_description


def dense_film(seed: int = 0) -> np.ndarray:
    """A low-contrast film: grey levels 100-140, a faint round mass (+6) in textured tissue."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :80]
    tissue = 120 + 12 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 3, (96, 80))
    tissue += 6 * (((yy - 40) ** 2 + (xx - 30) ** 2) < 64)
    return np.clip(tissue, 100, 140).astype(np.uint8)


@pytest.mark.parametrize("shape", [(96, 80), (96, 80, 1), (96, 80, 3), (96, 80, 4)])
def test_clahe_keeps_shape_and_type_and_spreads_the_grey_levels(shape):
    grey = dense_film()
    image = grey if len(shape) == 2 else np.repeat(grey[..., None], shape[2], axis=2)
    out = equalised(image, "clahe")
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out.std() > 1.5 * image.std()  # the 40 grey levels of dense tissue spread out
    assert equalised(image, "none") is image


def test_clahe_on_colour_keeps_the_hue_and_grey_stays_grey():
    grey = np.repeat(dense_film()[..., None], 3, axis=2)
    out = equalised(grey, "clahe")
    assert np.abs(out.astype(int) - out[..., :1].astype(int)).max() <= 2  # no colour cast on a grey image
    colour = grey.copy()
    colour[..., 0] = np.clip(colour[..., 0].astype(int) + 40, 0, 255)  # reddish
    out = equalised(colour, "clahe")
    assert (out[..., 0].astype(int) - out[..., 2].astype(int)).mean() > 20  # still reddish


def test_an_empty_or_uniform_image_and_a_bad_name():
    assert equalised(np.zeros((0, 4), np.uint8), "clahe").shape == (0, 4)
    flat = np.full((32, 32), 77, np.uint8)
    out = equalised(flat, "clahe")
    assert out.std() == 0  # nothing to spread, nothing invented
    with pytest.raises(ValueError, match="none, clahe"):
        equalised(flat, "histogram")


def test_loaded_films_are_equalised_after_the_crop_before_resizing(tmp_path):
    data = write_films(tmp_path / "films", 4, (96, 80))
    cfg = DataConfig(data=str(data), image_size=[48, 40], mean=[0.2], std=[0.25], crop="foreground", contrast="clahe")
    loaded = load_all(cfg, 1)
    lazy = load_all(DataConfig(**{**cfg.__dict__, "cache": "disk"}), 1)
    for i in range(4):
        image = cv2.imread(str(data / "images" / f"{loaded.names[i]}.png"), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(data / "masks" / f"{loaded.names[i]}.png"), cv2.IMREAD_GRAYSCALE)
        part = cut(image, foreground_box(image))
        expected = cv2.resize(equalised(part, "clahe"), (40, 48), interpolation=cv2.INTER_AREA)
        assert np.array_equal(loaded.images[i], expected) and np.array_equal(lazy.images[i], expected)
        assert np.array_equal(loaded.masks[i], prepared(image, mask, (48, 40), "foreground")[1])  # masks untouched


def test_a_bundle_with_an_unknown_contrast_is_refused(tmp_path):
    spec = {"height": 8, "width": 8, "channels": 1, "mean": [0.2], "std": [0.25]}
    for contrast, refused in (("clahe", False), ("histogram", True)):
        with pytest.raises(UserError) as e:  # the rest of this description is missing: always refused
            check_description({"input": {**spec, "contrast": contrast}}, tmp_path / "model.json")
        assert ("input.contrast must be one of none, clahe, got 'histogram'" in str(e.value)) == refused
