"""Training: the loss goes down, results are reproducible with a seed, each strategy runs."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_CONFIG

from elasticnet.checkpoint import load_checkpoint
from elasticnet.config import build_config
from elasticnet.training.trainer import train

BASE = {**TINY_CONFIG}


def _train(tmp_path, name, **overrides):
    cfg = build_config(None, {**BASE, **overrides, "out": str(tmp_path / name)})
    return load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")


def test_short_training_lowers_the_loss(tmp_path):
    ckpt = _train(tmp_path, "a", epochs="12", lr="0.01")
    losses = [row["train_loss"] for row in ckpt["log"]]
    assert losses[-1] < 0.85 * losses[0], losses


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = _train(tmp_path, "a", max_steps="4")
    b = _train(tmp_path, "b", max_steps="4")
    c = _train(tmp_path, "c", max_steps="4", seed="1")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["subnets"] == b["subnets"]
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"] if a["model"][k].is_floating_point())


@pytest.mark.parametrize(
    "overrides",
    [
        {"strategy": "sandwich", "num_random": "1"},
        {"strategy": "sandwich", "distill": True},
        {"strategy": "uniform", "distill": True},
        {"bn_mode": "per_depth"},
        {"bn_mode": "per_width"},
        {"junction": "private", "strategy": "sandwich"},
        {"bottleneck": "private", "junction": "private", "inactive_weights": "freeze"},
        {"inactive_weights": "optimizer"},
        {"grad_checkpoint": True},
        {"amp": "bf16"},
        {"amp": "fp16"},
        {"channels_last": True, "grad_checkpoint": True, "amp": "bf16"},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_training_variants_run(tmp_path, overrides):
    ckpt = _train(tmp_path, "v", max_steps="2", **overrides)
    assert ckpt["step"] == 2 and len(ckpt["subnets"]) == 4


def test_gradient_checkpointing_gives_the_same_training(tmp_path):
    """Recomputing the blocks in backward changes memory, not the result (BN running statistics aside)."""
    a = _train(tmp_path, "a", max_steps="3")
    b = _train(tmp_path, "b", max_steps="3", grad_checkpoint=True)
    for key, value in a["model"].items():
        if value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_a_test_split_is_evaluated_with_and_without_bn_re_estimation(tmp_path):
    ckpt = _train(tmp_path, "t", max_steps="2", test_fraction="0.2")
    row = ckpt["subnets"][0]
    assert {"test_dice", "test_iou", "test_dice_bn_as_trained"} <= set(row) and row["test_images"] > 0
    assert 0 <= row["test_dice_bn_as_trained"] <= 1


def test_recalibrate_rewrites_the_table_of_a_finished_run_and_keeps_the_weights(tmp_path):
    from elasticnet.training.recalibrate import recalibrate

    before = _train(tmp_path, "r", max_steps="2", test_fraction="0.2")
    run = tmp_path / "r"
    (run / "subnets.csv").write_text("stale\n")
    recalibrate(run, "cpu", echo=lambda s: None)
    after = load_checkpoint(run / "checkpoint.pt")  # the content hash was rewritten too
    assert all(torch.equal(after["model"][k], v) for k, v in before["model"].items())
    assert after["subnets"] == before["subnets"]  # same version of elasticnet: the same table
    assert after["log"] == before["log"] and after["step"] == before["step"]
    assert (run / "subnets.csv").read_text().startswith("depth,width")


def test_calibration_images_are_spread_over_the_training_set():
    from elasticnet.training.calibration import spread_order

    order = spread_order(100, seed=0)
    assert sorted(order) == list(range(100)) and order == spread_order(100, seed=0)
    assert max(order[:16]) - min(order[:16]) > 50  # not the first few files (one video sequence)


def test_deterministic_mode_trains_reproducibly_and_restores_the_backend_settings(tmp_path):
    """--deterministic: deterministic algorithms only while the run lasts; same seed, same weights."""
    a = _train(tmp_path, "a", max_steps="3", deterministic=True)
    assert not torch.are_deterministic_algorithms_enabled()
    b = _train(tmp_path, "b", max_steps="3", deterministic=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
