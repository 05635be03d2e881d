"""An exported bundle, loaded for prediction with ONNX Runtime (no torch).

Pre-processing repeats what training did, from what ``model.json`` records: grey/RGB conversion to the
model's channels, resizing to the trained input size with area averaging, scaling to [0, 1] and
normalising by the stored mean and std. Models trained on crops of the image's region of interest
(``crop``, :mod:`elasticnet.data.roi`) are given the same crop, and their map is pasted back into the whole
image (zero outside the crop). Models trained on patches predict by sliding windows of the
patch size (:mod:`elasticnet.site.tiling`). The probability map is resized back to the original image
size (bilinear) before the stored threshold is applied, so masks line up with the input image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from elasticnet.data.contrast import equalised
from elasticnet.data.imageio import resize_image, to_channels
from elasticnet.data.roi import Box, cut, paste, region_box
from elasticnet.errors import UserError
from elasticnet.site.bundle import INPUT_NAME, OUTPUT_NAME, Description, read_description
from elasticnet.site.tiling import sliding_window_np


@dataclass(frozen=True)
class Framed:
    """An image as the model sees it: the prepared input of the region the model looks at, and where its map
    goes back (:meth:`SiteModel.frame`, :meth:`SiteModel.unframe`)."""

    x: np.ndarray  # float32 (1, C, h, w), the model's input
    box: Box  # the region of the image, (top, bottom, left, right)
    size: tuple[int, int]  # the whole image's (H, W)

    @property
    def region_size(self) -> tuple[int, int]:
        top, bottom, left, right = self.box
        return bottom - top, right - left


def onnx_session(path: Path, threads: int = 0):
    """An ONNX Runtime CPU session for ``path`` (``threads`` 0: ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise UserError(f"{path} is not a loadable ONNX model ({str(e)[:200]}); re-export it") from None


def onnx_predict(session) -> Callable[[np.ndarray], np.ndarray]:
    """Logits (N, 1, H, W) of prepared float32 images (N, C, H, W) by an exported model's session."""
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def tile_of(description: Description) -> tuple[int, int] | None:
    """The sliding-window size of a bundle: its patch size when trained on patches, else None."""
    tile = description.input.tile
    if tile is None:  # bundles written before "tile" was recorded
        tile = description.training_config.get("data", {}).get("patch_size", [0, 0])
    return (int(tile[0]), int(tile[1])) if tile and any(tile) else None


class SiteModel:
    """A bundle ready to predict: ``mask(image)`` for a uint8 image of any size."""

    def __init__(self, bundle: str | Path, threads: int = 0):
        self.folder, self.description = read_description(bundle)
        if self.description.runtime != "onnxruntime":
            raise UserError(
                f"{bundle} is a {self.description.runtime} bundle; sites run ONNX bundles "
                "(elasticnet export --target cpu)"
            )
        self.session = onnx_session(self.folder / self.description.model_file, threads)
        self.predict = onnx_predict(self.session)
        spec = self.description.input
        self.size = (int(spec.height), int(spec.width))
        self.channels = int(spec.channels)
        self.mean = np.asarray(spec.mean, np.float32)
        self.std = np.asarray(spec.std, np.float32)
        self.threshold = float(self.description.output.threshold)
        self.tile = tile_of(self.description)
        self.crop, self.contrast = spec.crop, spec.contrast

    def converted(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W[, C]) with the model's channels."""
        try:
            return to_channels(image, self.channels)
        except ValueError as e:
            raise UserError(f"image {e}") from None

    def region(self, image: np.ndarray) -> tuple[np.ndarray, Box]:
        """(the image with the model's channels, the box of it the model sees), as in training."""
        image = self.converted(image)
        return image, region_box(image, self.crop)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W[, C]) -> float32 (1, C, h, w) at the trained size, its contrast equalised and normalised
        as in training (the caller crops: :meth:`region`)."""
        x = resize_image(equalised(self.converted(image), self.contrast), self.size).astype(np.float32) / 255.0
        if x.ndim == 2:
            x = x[..., None]
        x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, 1, h, w) of prepared images (N, C, h, w), one plain forward pass."""
        return self.predict(x)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits of prepared images, by sliding windows for models trained on patches."""
        return sliding_window_np(self.run, x, self.tile) if self.tile else self.run(x)

    @staticmethod
    def probability_map(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Sigmoid of (h, w) ``logits``, resized (bilinear) to ``size`` (H, W)."""
        prob = 1.0 / (1.0 + np.exp(-logits))
        h, w = size
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR) if prob.shape != (h, w) else prob

    def frame(self, image: np.ndarray) -> Framed:
        """``image`` cut to its region and prepared for the model."""
        image, box = self.region(image)
        return Framed(self.prepare(cut(image, box)), box, image.shape[:2])

    def unframe(self, framed: Framed, logits: np.ndarray) -> np.ndarray:
        """The (h, w) ``logits`` of ``framed`` as a probability map (H, W) of the whole image (0 outside the
        region)."""
        return paste(self.probability_map(logits, framed.region_size), framed.box, framed.size)

    def probability(self, image: np.ndarray) -> np.ndarray:
        """Lesion probability (H, W) float32 at the size of ``image`` (0 outside the cropped region)."""
        framed = self.frame(image)
        return self.unframe(framed, self.logits(framed.x)[0, 0])

    def mask(self, image: np.ndarray) -> np.ndarray:
        """0/255 uint8 mask (H, W) at the size of ``image``."""
        return np.where(self.probability(image) > self.threshold, 255, 0).astype(np.uint8)
