"""Data-parallel training on this machine: 2 CPU processes (gloo) launched by torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from elasticnet.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
COMMON = [
    "--base-width",
    "8",
    "--depths",
    "2,3",
    "--widths",
    "0.5,1",
    "--image-size",
    "32x32",
    "--synthetic-count",
    "48",
    "--augment",
    "none",
    "--calib-batches",
    "1",
    "--lr",
    "0.001",
    "--amp",
    "none",
    "--device",
    "cpu",
    "--quiet",
]  # equal weights up to fp32 rounding: fp32 on the CPU (gloo)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "elasticnet",
        "train",
        *args,
    ]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "elasticnet", "train", *args], env=_env(), capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_two_processes_with_batch_b_equal_one_process_with_batch_2b(tmp_path):
    """Same sub-nets at every step on both ranks, shards that together are the single process's batch,
    averaged gradients and synchronised BN statistics: the same weights up to float rounding, with the default
    recipe (a slimmable step of four sub-nets, private junctions). SGD: AdamW's first steps move a weight by about
    +-lr whatever its gradient's size, so an entry whose gradient is float noise around 0 (the two summation
    orders differ there) moves by 2 lr; SGD's step is the gradient's own. Two steps (the second uses the
    momentum of the first): the rounding differences grow ~20x per step with the training dynamics (measured:
    3e-6 after one step, 5e-5 after two), while gradients summed instead of averaged differ by 4e-2."""
    sgd = ["--optimizer", "sgd", "--lr", "0.01"]
    two = _torchrun(
        2, *COMMON, *sgd, "--max-steps", "2", "--sync-bn", "--batch-size", "4", "--out", str(tmp_path / "two")
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = _train(*COMMON, *sgd, "--max-steps", "2", "--sync-bn", "--batch-size", "8", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert a["step"] == b["step"] == 2
    for key, value in a["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=2e-4, msg=key)
    # BN re-estimation: each process calibrates on its share of the same images (batch statistics of its own 4
    # images inside the forward) and the statistics are pooled. The first BN layer sees only the images and the
    # first convolution, so its pooled statistics equal one process's (measured 2e-4 apart, the weights 2e-5);
    # deeper layers see activations normalised per 4-image batch, which moves the table of a 2-step net (Dice
    # near 0.1 on 10 tiny images) by ~0.02.
    first = "encoder.0.bn1.running_mean"
    for key, stats in a["bn_stats"].items():
        torch.testing.assert_close(b["bn_stats"][key][first], stats[first], rtol=1e-3, atol=1e-3, msg=key)
    assert [r["dice"] for r in a["subnets"]] == pytest.approx([r["dice"] for r in b["subnets"]], abs=3e-2)
    assert "x 2 processes" in two.stdout and not list((tmp_path / "two").glob("*.tmp"))  # rank 0 wrote alone


@pytest.mark.slow
def test_a_single_process_run_resumes_on_two_processes(tmp_path, monkeypatch):
    import signal

    from elasticnet.config import build_config
    from elasticnet.training import step, trainer
    from elasticnet.training.signals import TrainingInterrupted

    original, calls = step.forward_backward, {"n": 0}

    def forward_backward(*args, **kwargs):  # SIGTERM during step 9, the last of epoch 1
        calls["n"] += 1
        if calls["n"] == 9:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "forward_backward", forward_backward)
    flags = {k.lstrip("-").replace("-", "_"): v for k, v in zip(COMMON[::2], COMMON[1::2]) if k != "--quiet"}
    cfg = build_config(None, {**flags, "epochs": "2", "batch_size": "4", "out": str(tmp_path / "run")})
    with pytest.raises(TrainingInterrupted):
        trainer.train(cfg, echo=lambda s: None, progress=False)  # 38 training images / 4 = 9 steps per epoch
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 9
    done = _torchrun(2, "--resume", str(tmp_path / "run"), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "saved by 1 process(es) at step 9, continuing with 2 at step 4" in done.stdout, done.stdout
    final = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert final["step"] == 8 and len(final["log"]) == 2 and not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_sync_bn_statistics_are_fp32_whatever_the_input_dtype(tmp_path, dtype):
    """A one-process group: synchronised BN on fp16/bf16 input equals plain BatchNorm in fp32 (an fp16 count of
    N*H*W = 8*96*128 would overflow to inf and turn running_var into NaN)."""
    import torch.distributed as dist

    from elasticnet.models.elastic_layers import ElasticBatchNorm2d

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        x = (torch.randn(8, 6, 96, 128) * 3 + 1).to(dtype)
        synced, plain = ElasticBatchNorm2d(8), torch.nn.BatchNorm2d(6)
        synced.sync = True
        synced.train(), plain.train()
        out = synced(x)
        expected = plain(x.float())
        assert out.dtype == dtype and torch.isfinite(synced.running_var).all()
        tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-4}[dtype]
        torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
        torch.testing.assert_close(synced.running_mean[:6], plain.running_mean, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(synced.running_var[:6], plain.running_var, rtol=1e-3, atol=1e-3)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "gpus, local_world, name, expected",
    [
        (2, 2, "auto", "cuda:1"),  # one GPU per process
        (1, 2, "auto", "cpu"),  # fewer GPUs than processes: every rank of the node on the CPU (one backend)
        (0, 2, "cpu", "cpu"),
        (1, 2, "cuda", None),  # explicit cuda with too few GPUs: refused, naming --nproc-per-node
    ],
)
def test_each_rank_gets_a_device_that_exists(monkeypatch, gpus, local_world, name, expected):
    """The device set-up of a torchrun launch, with the GPU count mocked (no GPU needed)."""
    import torch

    from elasticnet.errors import UserError
    from elasticnet.training.distributed import rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    if expected is None:
        with pytest.raises(UserError, match=f"--nproc-per-node {gpus}"):
            rank_device(name, 1, local_world)
    else:
        assert str(rank_device(name, 1, local_world)) == expected


def test_a_gpu_index_that_is_not_visible_is_one_clear_error(monkeypatch):
    import torch

    from elasticnet.errors import UserError
    from elasticnet.runtime import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(UserError, match=r"'cuda:1' requested but 1 GPU\(s\) are visible \(CUDA_VISIBLE_DEVICES=3\)"):
        select_device("cuda:1")
    assert str(select_device("cuda:0")) == "cuda:0"
