"""A static U-Net as a PyTorch file: config + weights, loadable without the elastic code or pickled code."""

from __future__ import annotations

from pathlib import Path

from elasticnet.errors import UserError
from elasticnet.files import load_torch, save_torch
from elasticnet.models.unet import UNet, UNetConfig

FORMAT = "elasticnet-unet"


def save_unet(model: UNet, path: Path) -> Path:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_torch({"format": FORMAT, "config": model.config.to_dict(), "state_dict": state}, path)


def load_unet(path: str | Path) -> UNet:
    """Rebuild a :class:`UNet` from a file written by :func:`save_unet` (``weights_only=True``)."""
    payload = load_torch(path, "model")
    if payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an exported elasticnet U-Net (format {payload.get('format')!r})")
    model = UNet(UNetConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()
