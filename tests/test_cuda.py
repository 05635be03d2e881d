"""What needs a real GPU (skipped without one; ``benchmarks/gpu_check.py`` runs them on a lent GPU)."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_CONFIG

from elasticnet.checkpoint import load_checkpoint
from elasticnet.config import build_config
from elasticnet.training.trainer import train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
BASE = {**TINY_CONFIG, "device": "cuda"}


@pytest.mark.parametrize("amp", ["auto", "none", "fp16"])
def test_training_on_the_gpu_runs_and_records_its_precision(tmp_path, amp):
    cfg = build_config(None, {**BASE, "max_steps": "4", "amp": amp, "out": str(tmp_path / "r")})
    ckpt = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    assert ckpt["step"] == 4 and len(ckpt["subnets"]) == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["precision"] == {"none": "fp32", "fp16": "fp16"}.get(amp, ckpt["precision"])


def test_gpu_checkpoints_load_on_the_cpu(tmp_path):
    from elasticnet.checkpoint import model_from_checkpoint

    cfg = build_config(None, {**BASE, "max_steps": "2", "out": str(tmp_path / "r")})
    ckpt = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    _, model = model_from_checkpoint(ckpt, "cpu")
    assert next(model.parameters()).device.type == "cpu"
