"""Speed settings that must not change results: automatic precision, the evaluation batch size and layout,
skipping the final table, the device's channel multiple."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from elasticnet import hardware
from elasticnet.checkpoint import load_checkpoint
from elasticnet.config import build_config, resolve_for_device
from elasticnet.errors import UserError
from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet
from elasticnet.training import precision as precision_mod
from elasticnet.training.evaluate import calibration_batches, evaluate_subnet, inference_layout
from elasticnet.training.precision import Precision, resolve_amp
from elasticnet.training.trainer import train

BASE = {
    "base_width": "8",
    "depths": "2,3",
    "widths": "0.5,1",
    "image_size": "32x32",
    "synthetic_count": "48",
    "batch_size": "4",
    "calib_batches": "2",
}
CPU = torch.device("cpu")


def _flags(monkeypatch, flags: set[str]) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "fma"}, "none"),  # AVX2 only: fp32
        ({"avx2", "avx512f", "avx512bw"}, "none"),  # AVX-512 without BF16: oneDNN would emulate bf16; never chosen
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
        ({"amx_tile", "amx_bf16"}, "bf16"),
        (set(), "none"),  # flags unreadable: fp32
    ],
)
def test_auto_precision_picks_bf16_only_where_the_cpu_computes_in_it(monkeypatch, flags, expected):
    _flags(monkeypatch, flags)
    assert resolve_amp("auto", CPU) == expected
    assert resolve_amp("none", CPU) == "none" and resolve_amp("bf16", CPU) == "bf16"  # explicit choices are kept


def test_explicit_bf16_on_a_gpu_without_bf16_is_refused(monkeypatch):
    monkeypatch.setattr(precision_mod, "native_bf16", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    with pytest.raises(UserError, match="has no bf16; use --amp fp16"):
        resolve_amp("bf16", torch.device("cuda"))
    with pytest.raises(UserError, match="amp must be one of"):
        resolve_amp("fp8", CPU)


def test_emulated_bf16_is_named_in_the_run_header(monkeypatch):
    _flags(monkeypatch, {"avx512f"})
    assert "emulated" in precision_mod.amp_note("bf16", "bf16", CPU)
    assert precision_mod.amp_note("auto", "none", CPU) == "fp32 (auto: no native bf16 on cpu)"


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = hardware.cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this system")
    assert hardware.native_bf16_cpu() == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert hardware.fast_channel_multiple("cpu") in (8, 16) and hardware.fast_channel_multiple("cuda") == 8


def test_a_run_records_the_precision_it_used(tmp_path, monkeypatch):
    _flags(monkeypatch, {"avx2"})  # a CPU without bf16: auto trains in fp32
    cfg = build_config(None, {**BASE, "max_steps": "2", "out": str(tmp_path / "run")})
    ckpt = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    assert ckpt["precision"] == "fp32" and ckpt["config"]["train"]["amp"] == "auto"


def test_bf16_and_fp32_runs_are_both_reproducible_and_differ(tmp_path):
    """bf16 changes the numbers (it is a different precision), but a seed still fixes them."""
    runs = {}
    for name, amp in [("a", "bf16"), ("b", "bf16"), ("c", "none")]:
        cfg = build_config(None, {**BASE, "max_steps": "3", "amp": amp, "out": str(tmp_path / name)})
        runs[name] = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    assert all(torch.equal(runs["a"]["model"][k], runs["b"]["model"][k]) for k in runs["a"]["model"])
    assert runs["a"]["precision"] == "bf16" and runs["c"]["precision"] == "fp32"
    assert any(
        not torch.equal(runs["a"]["model"][k], runs["c"]["model"][k])
        for k in runs["a"]["model"]
        if runs["a"]["model"][k].is_floating_point()
    )


def test_fp16_loss_scaler_state_is_saved_for_resume():
    from elasticnet.training.state import TrainingState

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    prec = Precision("fp16", "cpu", torch.amp.GradScaler("cpu", init_scale=1024.0))
    payload = TrainingState().payload(opt, sched, prec)
    assert payload["precision"] == "fp16" and payload["scaler"]["scale"] == 1024.0
    other = torch.amp.GradScaler("cpu", init_scale=2.0)
    other.load_state_dict(payload["scaler"])
    assert other.get_scale() == 1024.0


@pytest.mark.parametrize(
    "calib, batch, eval_batch, expected", [(16, 8, 32, 4), (16, 8, 8, 16), (1, 8, 32, 1), (3, 8, 32, 1)]
)
def test_calibration_sees_the_images_of_calib_batches_training_batches(calib, batch, eval_batch, expected):
    assert calibration_batches(calib, batch, eval_batch) == expected


def test_evaluation_batch_size_and_layout_do_not_change_the_table(tmp_path):
    """The table (Dice with re-estimated and as-trained BN) is the same for evaluation batches of 4 and 32:
    calibration sees the same images either way."""
    tables = []
    for name, size in [("small", "4"), ("large", "32")]:
        cfg = build_config(
            None, {**BASE, "max_steps": "3", "amp": "none", "eval_batch_size": size, "out": str(tmp_path / name)}
        )
        tables.append(load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")["subnets"])
    for small, large in zip(*tables):
        assert small["dice_bn_as_trained"] == pytest.approx(large["dice_bn_as_trained"], abs=2e-3)
        assert small["dice"] == pytest.approx(large["dice"], abs=0.02)  # per-batch BN variances average differently


@pytest.mark.parametrize(
    "size, batch, expected",
    [((64, 96), 8, 64), ((288, 384), 16, 36), ((1024, 1024), 2, 3), ((2048, 1280), 2, 2), ((32, 32), 8, 64)],
)
def test_automatic_evaluation_batch_fits_a_pixel_budget(size, batch, expected):
    from elasticnet.config import eval_batch_size

    cfg = build_config(None, {"image_size": f"{size[0]}x{size[1]}", "batch_size": str(batch), "depths": "3"})
    assert eval_batch_size(cfg) == expected
    cfg.train.eval_batch_size = 5
    assert eval_batch_size(cfg) == 5


def test_inference_layout_gives_the_same_predictions(tiny_elastic):
    x = torch.randn(3, 3, 32, 32)
    tiny_elastic.eval()
    with torch.no_grad():
        for subnet in tiny_elastic.config.subnets():
            torch.testing.assert_close(
                tiny_elastic(inference_layout(x), subnet), tiny_elastic(x, subnet), rtol=1e-5, atol=1e-5
            )
    masks = (torch.rand(3, 1, 32, 32) > 0.5).float()
    result = evaluate_subnet(tiny_elastic, SubNet(4, 0.5), [(x, masks)], CPU)
    assert result.images == 3


@pytest.mark.slow
def test_no_final_table_then_recalibrate_then_export(tmp_path):
    """--no-final-table skips calibration and the table; export refuses until `eval --recalibrate` made them."""
    run = tmp_path / "run"
    common = [sys.executable, "-m", "elasticnet"]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in BASE.items()]
    done = subprocess.run(
        [*common, "train", *flags, "--max-steps", "2", "--no-final-table", "--out", str(run), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (run / "subnets.csv").exists() and load_checkpoint(run / "checkpoint.pt")["subnets"] == []
    refused = subprocess.run(
        [*common, "export", "--checkpoint", str(run), "--depth", "3", "--target", "torch"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0 and "--recalibrate" in refused.stderr and "Traceback" not in refused.stderr
    assert not list(run.glob("export-*"))
    done = subprocess.run(
        [*common, "eval", "--checkpoint", str(run), "--recalibrate"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(load_checkpoint(run / "checkpoint.pt")["subnets"]) == 4 and (run / "subnets.csv").exists()
    done = subprocess.run(
        [*common, "export", "--checkpoint", str(run), "--depth", "3", "--target", "torch"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_channel_multiple_zero_takes_the_devices_multiple_and_is_recorded(tmp_path, monkeypatch):
    _flags(monkeypatch, {"avx2"})  # an AVX2 CPU: multiples of 8
    cfg = build_config(None, {**BASE, "channel_multiple": "0"})
    assert resolve_for_device(cfg, "cpu").model.channel_multiple == 8
    cfg.train.out = str(tmp_path / "run")
    cfg.train.max_steps = 1
    ckpt = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    assert ckpt["config"]["model"]["channel_multiple"] == 8
    assert {r["channels"] for r in ckpt["subnets"] if r["width"] == 0.5} == {"8-8", "8-8-16"}
    with pytest.raises(UserError, match="must be resolved"):
        ElasticUNet(ElasticUNetConfig(channel_multiple=0))


def test_widths_that_rounding_makes_identical_are_refused():
    with pytest.raises(UserError, match=r"widths 0.25 and 0.5 give the same channels.*--channel-multiple"):
        build_config(
            None,
            {
                "base_width": "16",
                "depths": "2",
                "widths": "0.25,0.5,1",
                "channel_multiple": "16",
                "image_size": "32x32",
            },
        )


def test_bn_calibration_is_the_cumulative_average_of_its_batches():
    """calibrate_bn's statistics equal PyTorch's cumulative average (momentum None), without reading the batch
    counter back per layer (momentum 1/k is set for the k-th batch instead)."""
    from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet
    from elasticnet.training.calibration import calibrate_bn

    model = ElasticUNet(ElasticUNetConfig(base_width=8, depths=[2, 3], widths=[0.5, 1.0]))
    batches = [torch.randn(3, 3, 16, 16) * (k + 1) + k for k in range(4)]
    subnet = SubNet(3, 1.0)
    assert calibrate_bn(model, subnet, batches, 4) == 4
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))  # restored
    mine = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x.contiguous(memory_format=torch.channels_last), subnet)
    for k, v in model.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(mine[k], v, rtol=1e-5, atol=1e-6, msg=k)
