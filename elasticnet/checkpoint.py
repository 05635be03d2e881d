"""The checkpoint format: weights plus everything that describes them.

A checkpoint is a plain dict of tensors and plain data (readable with ``weights_only=True``):
``format``, ``format_version``, ``elasticnet_version``, ``config`` (the resolved :class:`RunConfig`),
``model`` (state dict), ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``subnets`` (the evaluated
sub-net table), ``bn_stats`` (calibrated BN buffers per sub-net key) and ``train_seconds``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from elasticnet import __version__
from elasticnet.config import RunConfig
from elasticnet.errors import UserError
from elasticnet.files import load_torch, save_torch
from elasticnet.models.elastic_unet import ElasticUNet

FORMAT = "elasticnet-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, cfg: RunConfig, model: ElasticUNet, **state: Any) -> Path:
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "elasticnet_version": __version__,
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    return save_torch(payload, path)


def resolve_checkpoint(path: str | Path | None, runs_dir: Path = Path("runs")) -> Path:
    """A checkpoint file, a run folder holding one, or (None) the newest run under ``runs_dir``."""
    if path is None:
        candidates = sorted(runs_dir.glob(f"*/{CHECKPOINT_NAME}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"no checkpoint found under {runs_dir}/; train first or pass --checkpoint PATH")
        return candidates[-1]
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass a run folder or its {CHECKPOINT_NAME}")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = load_torch(path, "checkpoint")
    if ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not an elasticnet checkpoint (format {ckpt.get('format')!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer elasticnet (format {ckpt['format_version']}); upgrade elasticnet")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu") -> tuple[RunConfig, ElasticUNet]:
    cfg = RunConfig.from_dict(ckpt["config"], source="checkpoint config")
    model = ElasticUNet(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not match its config: {str(e)[:300]}") from None
    return cfg, model.to(device).eval()
