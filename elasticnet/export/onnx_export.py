"""ONNX export of a static U-Net, checked against PyTorch with ONNX Runtime before it counts as done."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from elasticnet.files import atomic_write
from elasticnet.models.unet import UNet
from elasticnet.site.model import onnx_session

OPSET = 17


def export_onnx(model: UNet, path: Path, image_size: tuple[int, int]) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch dimension and dynamic H, W.

    Uses PyTorch's TorchScript-based exporter (``dynamo=False``), which needs no extra dependency and
    handles this architecture exactly.
    """
    model = model.eval()
    example = torch.zeros(1, model.config.in_channels, *image_size)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={
                    "image": {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 2: "height", 3: "width"},
                },
            )

    return atomic_write(path, write)


def check_onnx(model: UNet, path: Path, image_size: tuple[int, int], batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between ONNX Runtime and PyTorch logits on a random batch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, model.config.in_channels, *image_size)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    got = onnx_session(path).run(["logits"], {"image": x})[0]
    return float(np.abs(got - expected).max())
