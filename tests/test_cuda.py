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


def test_device_batches_never_make_the_host_wait():
    """Gathering and augmenting a batch on the GPU queues work only: no host-device synchronisation."""
    import numpy as np

    from elasticnet.data import augment
    from elasticnet.data.dataset import SegmentationDataset
    from elasticnet.data.device_batches import DeviceBatches
    from elasticnet.training.order import EpochSampler

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(8)]
    masks = [(rng.random((32, 48)) > 0.5).astype(np.uint8) * 255 for _ in range(8)]
    data = SegmentationDataset(images, masks, [str(i) for i in range(8)], [0.5] * 3, [0.25] * 3)
    batches = DeviceBatches(data, EpochSampler(8, seed=0), 4, torch.device("cuda"), augment.spec("endoscopy"))
    next(iter(batches))  # first use: allocations, kernel loading
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches:
            assert x.is_cuda and y.is_cuda and x.shape == (4, 3, 32, 48)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_gpu_runs_augment_on_the_device_by_default(tmp_path):
    cfg = build_config(None, {**BASE, "max_steps": "2", "out": str(tmp_path / "r")})
    ckpt = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    assert ckpt["config"]["data"]["augment_on"] == "device"
