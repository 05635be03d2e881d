"""ONNX export of a static U-Net, checked against PyTorch with ONNX Runtime before it counts as done."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from elasticnet.errors import UserError
from elasticnet.files import atomic_write
from elasticnet.models.unet import UNet
from elasticnet.site.bundle import INPUT_NAME, OUTPUT_NAME
from elasticnet.site.model import onnx_predict, onnx_session

OPSET = 18  # the lowest opset PyTorch's ONNX exporter (torch.export based) writes


def export_onnx(model: UNet, path: Path, image_size: tuple[int, int]) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch dimension and dynamic H, W.

    Uses PyTorch's current exporter (``torch.export`` + onnxscript; the TorchScript one is deprecated). It
    traces at ``image_size``; the graph stays valid at any H, W divisible by 2**(depth-1), which
    the tests verify at another size.
    """
    if importlib.util.find_spec("onnxscript") is None:
        raise UserError(
            "ONNX export needs onnxscript (PyTorch's ONNX exporter uses it): pip install 'elasticnet[train]'"
        )
    model = model.eval()
    example = torch.zeros(1, model.config.in_channels, *image_size, device=next(model.parameters()).device)
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "onnxscript"):
            warnings.simplefilter("ignore")  # notices about optional operators (torchvision) and tracing
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=(dims,),
                external_data=False,  # one self-contained file (weights inside), as the bundle's hash covers
                verbose=False,
            )

    return atomic_write(path, write)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Hide the exporter's informational logging (it is not the user's business) for the block."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def check_onnx(model: UNet, path: Path, image_size: tuple[int, int], batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between ONNX Runtime and PyTorch logits on a random batch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, model.config.in_channels, *image_size)).astype(np.float32)
    with torch.no_grad():  # on the model's device (a GPU-trained sub-net is checked where it lives)
        expected = model.eval()(torch.from_numpy(x).to(next(model.parameters()).device)).float().cpu().numpy()
    got = onnx_predict(onnx_session(path))(x)
    return float(np.abs(got - expected).max())
