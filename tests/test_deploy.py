"""Deployment: profiling, budget-matched export, int8, and torch-free prediction at a site."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from elasticnet.checkpoint import cut_subnet, load_checkpoint
from elasticnet.cli import main
from elasticnet.config import build_config
from elasticnet.deploy.budget import choose
from elasticnet.deploy.pareto import pareto_front
from elasticnet.deploy.profile import profile_checkpoint
from elasticnet.errors import UserError
from elasticnet.export.export import ExportOptions, export_subnet
from elasticnet.models.subnet import SubNet
from elasticnet.site.model import SiteModel
from elasticnet.site.predict import predict_files
from elasticnet.site.tiling import sliding_window_np
from elasticnet.sliding_window import sliding_window
from elasticnet.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"echo": lambda s: None}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny trained run (4 sub-nets) with its table and calibrated BN statistics."""
    out = tmp_path_factory.mktemp("deploy") / "run"
    cfg = build_config(
        None,
        {
            "base_width": "8",
            "depths": "2,3",
            "widths": "0.5,1",
            "image_size": "32x48",
            "synthetic_count": "40",
            "batch_size": "8",
            "calib_batches": "1",
            "epochs": "2",
            "out": str(out),
        },
    )
    return train(cfg, progress=False, **QUIET)


@pytest.fixture(scope="module")
def bundle(run) -> Path:
    return export_subnet(run / "checkpoint.pt", 3, 0.5, "cpu", run / "bundle", **QUIET)


def _images(folder: Path, count: int = 3, size: tuple[int, int] = (50, 70)) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        cv2.circle(image, (20 + 5 * i, 25), 12, (200, 90, 80), -1)
        cv2.imwrite(str(folder / f"img{i}.png"), image)
    return folder


# --- budget selection ----------------------------------------------------------------------------------

TABLE = [
    {"depth": 3, "width": 0.5, "dice": 0.60, "latency_ms": 10.0, "mflops": 100.0, "params": 1e4, "peak_mb": 50.0},
    {"depth": 3, "width": 1.0, "dice": 0.66, "latency_ms": 20.0, "mflops": 400.0, "params": 4e4, "peak_mb": 60.0},
    {"depth": 4, "width": 0.5, "dice": 0.70, "latency_ms": 18.0, "mflops": 150.0, "params": 5e4, "peak_mb": 55.0},
    {"depth": 4, "width": 1.0, "dice": 0.74, "latency_ms": 45.0, "mflops": 600.0, "params": 2e5, "peak_mb": 80.0},
    {"depth": 5, "width": 1.0, "dice": 0.80, "latency_ms": 90.0, "mflops": 900.0, "params": 8e5, "peak_mb": 120.0},
]


@pytest.mark.parametrize(
    "budgets, chosen, better",
    [
        ({"ms": 19}, (4, 0.5), (4, 1.0)),  # the more accurate of the two fitting, not the slowest fitting
        ({"ms": 50}, (4, 1.0), (5, 1.0)),
        ({"ms": 1000}, (5, 1.0), None),
        ({"mflops": 420}, (4, 0.5), (4, 1.0)),
        ({"ms": 50, "mb": 70}, (4, 0.5), (4, 1.0)),  # every budget must hold
        ({"params": 1e4}, (3, 0.5), (3, 1.0)),  # the limit itself fits
    ],
)
def test_budget_picks_the_most_accurate_sub_net_that_fits(budgets, chosen, better):
    choice = choose(TABLE, budgets)
    assert (choice.row["depth"], choice.row["width"]) == chosen
    assert (better is None and choice.better is None) or (choice.better["depth"], choice.better["width"]) == better
    assert f"depth {chosen[0]} width {chosen[1]:g}" in choice.message
    assert ("would need" in choice.message) == (better is not None)


def test_budget_that_nothing_fits_is_refused():
    with pytest.raises(
        UserError, match=r"no sub-net fits the budget \(5 ms\); the cheapest, depth 3 width 0.5, needs 10 ms"
    ):
        choose(TABLE, {"ms": 5})
    with pytest.raises(UserError, match="no validation Dice"):
        choose([{**TABLE[0], "dice": math.nan}], {"ms": 100})


def test_pareto_front():
    assert pareto_front(TABLE) == [True, False, True, True, True]


@pytest.mark.slow  # exports every sub-net to ONNX (PyTorch's exporter: seconds each)
def test_budget_on_a_real_profile(run):
    rows = profile_checkpoint(run / "checkpoint.pt", repeats=3, **QUIET)
    assert len(rows) == 4 and all(r["latency_ms"] > 0 and r["peak_mb"] > 0 for r in rows)
    budget = sorted(r["latency_ms"] for r in rows)[1]
    choice = choose(rows, {"ms": budget})
    fitting = [r for r in rows if r["latency_ms"] <= budget]
    assert choice.row["latency_ms"] <= budget and choice.row["dice"] == max(r["dice"] for r in fitting)


def test_profile_refuses_an_output_it_cannot_use_before_measuring(run, tmp_path, capsys):
    """A file as --out, an unwritable folder, or results that exist: one clear error at once, nothing replaced."""
    (tmp_path / "file").write_text("mine")
    assert main(["measure", "--checkpoint", str(run), "--out", str(tmp_path / "file")]) == 2
    assert main(["profile", "--checkpoint", str(run), "--out", str(tmp_path / "file")]) == 2  # the old name
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "profile-torch.csv").write_text("a site's own notes")
    assert main(["measure", "--checkpoint", str(run), "--runtime", "torch", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and "--overwrite" in err and "profiling" not in err
    assert (mine / "profile-torch.csv").read_text() == "a site's own notes"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["measure", "--checkpoint", str(run), "--out", str(locked)]) == 2
        assert "cannot write" in capsys.readouterr().err


@pytest.mark.slow  # exports every sub-net to ONNX (PyTorch's exporter: seconds each)
def test_profile_and_budget_export_commands(run, tmp_path, capsys):
    assert main(["measure", "--checkpoint", str(run), "--repeats", "3", "--batch", "2", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "profile-onnxruntime.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"latency_ms", "p90_ms", "peak_mb", "dice", "pareto", "b2_ms"} <= set(rows[0])
    assert (tmp_path / "profile-onnxruntime.png").stat().st_size > 10_000
    table = load_checkpoint(run / "checkpoint.pt")["subnets"]
    budget = sorted(r["mflops"] for r in table)[1]
    assert main(["export", "--checkpoint", str(run), "--budget-mflops", str(budget), "--out", str(tmp_path / "b")]) == 0
    best = max((r for r in table if r["mflops"] <= budget), key=lambda r: r["dice"])
    assert "chose depth" in capsys.readouterr().out
    assert json.loads((tmp_path / "b" / "model.json").read_text())["subnet"] == {
        "depth": best["depth"],
        "width": best["width"],
        "key": SubNet(best["depth"], best["width"]).key,
    }
    assert main(["export", "--checkpoint", str(run), "--budget-mflops", "0.001", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()
    assert main(["export", "--checkpoint", str(run)]) == 2  # neither a sub-net nor a budget


# --- the bundle and predict -----------------------------------------------------------------------------


def test_bundle_holds_model_description_and_readme(bundle):
    d = json.loads((bundle / "model.json").read_text())
    assert d["precision"] == "fp32" and d["latency"]["batch1_median_ms"] > 0 and d["latency"]["machine"]
    assert d["input"]["tile"] is None and d["model_sha256"]
    assert "elasticnet predict --model" in (bundle / "README.md").read_text()
    # one self-contained model file (weights inside, as the hash covers), nothing else left next to it
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "model.json", "model.onnx"]
    assert [p.name for p in bundle.parent.iterdir() if ".tmp" in p.name or p.name.startswith(f".{bundle.name}")] == []


def test_predict_equals_the_pytorch_sub_net(run, bundle, tmp_path):
    images = _images(tmp_path / "in")
    rows = predict_files(bundle, [images], tmp_path / "out", **QUIET)
    assert [r["name"] for r in rows] == ["img0", "img1", "img2"]
    static = cut_subnet(load_checkpoint(run / "checkpoint.pt"), SubNet(3, 0.5))
    site = SiteModel(bundle)
    for row in rows:
        image = cv2.cvtColor(cv2.imread(str(images / f"{row['name']}.png")), cv2.COLOR_BGR2RGB)
        with torch.no_grad():
            logits = static(torch.from_numpy(site.prepare(image))).numpy()[0, 0]
        prob = site.probability_map(logits, image.shape[:2])
        expected = np.where(prob > site.threshold, 255, 0)
        got = cv2.imread(str(tmp_path / "out" / "masks" / f"{row['name']}.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == image.shape[:2]
        undecided = np.abs(prob - site.threshold) < 1e-4  # fp32 rounding between runtimes
        assert np.array_equal(got[~undecided], expected[~undecided])
        assert row["lesion_pixels"] == int((got > 0).sum())
        assert (tmp_path / "out" / "overlays" / f"{row['name']}.png").exists()
    with open(tmp_path / "out" / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


TRAINING_ONLY = ["torch", "yaml", "albumentations", "matplotlib", "tqdm", "pandas", "onnx", "tifffile"]


def test_predict_runs_with_the_site_install_only(bundle, tmp_path):
    """`elasticnet predict` works when nothing but numpy, OpenCV and ONNX Runtime is importable."""
    images = _images(tmp_path / "in", count=1)
    code = (
        "import sys\n"
        f"BLOCKED = {TRAINING_ONLY!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(name + ' is not part of the site install')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from elasticnet.cli import main\n"
        f"rc = main(['predict', '--model', {str(bundle)!r}, {str(images)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
        "assert rc == 0, rc\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    assert (tmp_path / "out" / "masks" / "img0.png").exists()


def test_sliding_window_numpy_matches_torch_and_whole_image():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)

    def conv_np(x: np.ndarray) -> np.ndarray:  # a pointwise model: tiling must not change its output
        return (x * weight).sum(1, keepdims=True)

    x = rng.standard_normal((1, 3, 64, 96)).astype(np.float32)
    np.testing.assert_allclose(sliding_window_np(conv_np, x, (32, 32)), conv_np(x), rtol=1e-5, atol=1e-5)
    assert np.array_equal(sliding_window_np(conv_np, x, (64, 96)), conv_np(x))  # one window: exactly whole-image
    calls = []

    def varying(x: np.ndarray) -> np.ndarray:  # differs per window, so blending weights matter
        calls.append(1)
        return x[:, :1] * len(calls)

    def varying_t(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x[:, :1] * len(calls)

    a = sliding_window_np(varying, x, (32, 48))
    calls.clear()
    b = sliding_window(varying_t, torch.from_numpy(x), (32, 48)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# --- int8 ----------------------------------------------------------------------------------------------


def test_int8_export_records_both_dice_and_refuses_a_large_drop(run, tmp_path):
    out = export_subnet(
        run / "checkpoint.pt",
        3,
        1.0,
        "cpu",
        tmp_path / "q",
        options=ExportOptions(int8=True, int8_max_drop=100.0, calib_images=8),
        **QUIET,
    )
    d = json.loads((out / "model.json").read_text())
    assert d["precision"] == "int8" and {"dice_fp32", "dice_int8", "drop_points", "val_images"} <= set(d["int8"])
    assert abs(d["int8"]["dice_fp32"] - d["metrics"]["dice"]) < 1e-3  # ONNX fp32 reproduces the stored Dice
    SiteModel(out).mask(np.zeros((32, 48, 3), np.uint8))  # the int8 model runs
    with pytest.raises(UserError, match=r"int8 quantisation costs .* nothing was written"):
        export_subnet(
            run / "checkpoint.pt",
            3,
            1.0,
            "cpu",
            tmp_path / "r",
            options=ExportOptions(int8=True, int8_max_drop=-101.0, calib_images=8),
            **QUIET,
        )
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))
    with pytest.raises(UserError, match="--int8 needs --target cpu"):
        export_subnet(run / "checkpoint.pt", 3, 1.0, "torch", tmp_path / "s", options=ExportOptions(int8=True), **QUIET)


# --- bad inputs -----------------------------------------------------------------------------------------


def test_predict_reports_bad_images_and_writes_the_rest(bundle, tmp_path):
    images = _images(tmp_path / "in", count=2)
    (images / "broken.png").write_bytes(b"not a png")
    import tifffile

    tifffile.imwrite(images / "twochannel.tif", np.zeros((40, 40, 2), np.uint8))  # no model takes two channels
    with pytest.raises(UserError) as e:
        predict_files(bundle, [images], tmp_path / "out", **QUIET)
    message = str(e.value)
    assert "2 of 4 image(s) could not be predicted (the other 2 were written" in message
    assert (
        "broken.png: unreadable" in message
        and "twochannel.tif: has 2 channels; images must be grey, RGB or RGBA" in message
    )
    assert len(list((tmp_path / "out" / "masks").iterdir())) == 2


def test_predict_input_and_bundle_errors(bundle, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        predict_files(bundle, [tmp_path / "nowhere.png"], tmp_path / "out", **QUIET)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        predict_files(bundle, [tmp_path / "empty"], tmp_path / "out", **QUIET)
    broken = tmp_path / "bundle"
    broken.mkdir()
    (broken / "model.json").write_text((bundle / "model.json").read_text())
    with pytest.raises(UserError, match="lacks its model file"):
        SiteModel(broken)
    (broken / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes()[:-10])
    with pytest.raises(UserError, match="does not match the sha256"):
        SiteModel(broken)
    assert main(["predict", "--model", str(tmp_path / "none"), str(tmp_path)]) == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("a site's notes")
    images = _images(tmp_path / "in", count=1)
    with pytest.raises(UserError, match=r"notes\.txt is a file, not a folder; choose another --out"):
        predict_files(bundle, [images], notes, **QUIET)
    assert notes.read_text() == "a site's notes"


# --- predict never replaces a user's files ------------------------------------------------------------------


def test_predict_refuses_to_replace_existing_files_without_overwrite(bundle, tmp_path):
    images = _images(tmp_path / "in", count=2)
    out = tmp_path / "out"
    predict_files(bundle, [images], out, **QUIET)
    first = (out / "predictions.csv").read_bytes()
    (out / "notes.txt").write_text("a site's notes")
    with pytest.raises(UserError, match=r"exist already .*--overwrite"):
        predict_files(bundle, [images], out, **QUIET)  # a second batch into the same folder
    assert (out / "predictions.csv").read_bytes() == first
    predict_files(bundle, [images], out, overwrite=True, **QUIET)
    assert (out / "notes.txt").read_text() == "a site's notes"  # files predict does not write are never touched


@pytest.mark.parametrize("where", ["root", "inside", "same"])
def test_predict_never_writes_into_the_input_data(bundle, tmp_path, where):
    """Predicting into a data set's root would replace its ground-truth masks/ (a real case): refused, even with
    --overwrite, before anything is written."""
    root = tmp_path / "dataset"
    images = _images(root / "images", count=2)
    (root / "masks").mkdir()
    truth = root / "masks" / "img0.png"
    truth.write_bytes(b"ground truth")
    out = {"root": root, "inside": images / "pred", "same": images}[where]
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match="input folder"):
        predict_files(bundle, [images], out, overwrite=True, **QUIET)
    assert truth.read_bytes() == b"ground truth" and sorted(p for p in tmp_path.rglob("*")) == before


def test_predict_default_output_is_a_new_folder_per_call(bundle, tmp_path, monkeypatch):
    images = _images(tmp_path / "in", count=1)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    folders = []
    for _ in range(2):
        predict_files(bundle, [images], None, chosen=folders.append, **QUIET)
    assert len(set(folders)) == 2 and all((work / f / "predictions.csv").is_file() for f in folders)
    assert all(f.name.startswith("predictions-") for f in folders)


def test_two_inputs_with_one_name_are_refused(bundle, tmp_path):
    a, b = _images(tmp_path / "a", count=1), _images(tmp_path / "b", count=1)
    with pytest.raises(UserError, match=r"would both write img0.png"):
        predict_files(bundle, [a, b], tmp_path / "out", **QUIET)
    assert not (tmp_path / "out").exists()


def test_re_export_into_a_bundle_keeps_the_sites_other_files(run, tmp_path):
    out = tmp_path / "bundle"
    export_subnet(
        run / "checkpoint.pt", 3, 0.5, "torch", out, echo=lambda s: None, options=ExportOptions(latency=False)
    )
    (out / "site-notes.txt").write_text("installed 2026-12-01")
    (out / "results").mkdir()
    (out / "results" / "audit.csv").write_text("case,dice\n")
    export_subnet(
        run / "checkpoint.pt", 3, 1.0, "torch", out, echo=lambda s: None, options=ExportOptions(latency=False)
    )
    assert (out / "site-notes.txt").read_text() == "installed 2026-12-01"
    assert (out / "results" / "audit.csv").read_text() == "case,dice\n"
    assert json.loads((out / "model.json").read_text())["subnet"]["width"] == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden leftovers


def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path):
    from elasticnet.training.run_dir import run_lock

    precious = tmp_path / "thesis.tex"
    precious.write_text("three years of work")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(precious)
    with pytest.raises(UserError, match="lock file"):
        with run_lock(run_dir):
            pass
    os.link(precious, tmp_path / "hard")  # a hard link planted as the lock
    (run_dir / ".lock").unlink()
    os.link(precious, run_dir / ".lock")
    with pytest.raises(UserError, match="not a plain file of its own"):
        with run_lock(run_dir):
            pass
    assert precious.read_text() == "three years of work"


def _png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def test_hostile_image_files_are_listed_and_the_batch_still_written(bundle, tmp_path, monkeypatch):
    """A 200-byte PNG declaring 100000x100000 pixels, a TIFF declaring more pixels than the limit, a FIFO, a
    folder named like an image: each listed by name, never decoded, never a hang; the good images written."""
    import tifffile

    images = _images(tmp_path / "in", count=2)
    (images / "bomb.png").write_bytes(_png_claiming(100000, 100000))
    tifffile.imwrite(images / "large.tif", np.zeros((3000, 3000), np.uint8), compression="zlib")
    os.mkfifo(images / "pipe.png")
    (images / "folder.png").mkdir()
    monkeypatch.setenv("ELASTICNET_MAX_PIXELS", str(2000 * 2000))  # the TIFF (9 M pixels) is over this limit
    with pytest.raises(UserError) as e:
        predict_files(bundle, [images], tmp_path / "out", **QUIET)
    message = str(e.value)
    assert "4 of 6 image(s) could not be predicted (the other 2 were written" in message
    assert "bomb.png: declares 100000x100000 pixels" in message and "large.tif: declares 3000x3000" in message
    assert "pipe.png: not a regular file" in message and "folder.png: not a regular file" in message
    assert len(list((tmp_path / "out" / "masks").iterdir())) == 2


def test_info_escapes_control_characters_and_names_a_malformed_description(bundle, tmp_path, capsys):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    d = json.loads((copy / "model.json").read_text())
    d["exported_at"] = "\x1b[2J\x1b]0;owned\x07"
    _write_rehashed(copy, d)  # a crafted bundle whose hash was recomputed
    assert main(["info", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out
    del d["subnet"]
    _write_rehashed(copy, d)
    assert main(["info", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "model.json is not a valid export description: subnet must hold" in err and "Traceback" not in err


def test_info_on_a_bundle_or_its_model_file_says_what_it_was_validated_on(bundle, capsys):
    """``info site/model.onnx`` describes the bundle the file belongs to; the validation record is in words."""
    from elasticnet.site.bundle import read_description

    _folder, desc = read_description(bundle)
    for target in (bundle, bundle / desc.model_file, bundle / "model.json"):
        assert main(["info", str(target)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"export bundle {bundle}: {desc.model_file}")
        assert f"validation: Dice {desc.metrics['dice']}, IoU {desc.metrics['iou']} on " in out and "{" not in out


def _write_rehashed(folder: Path, d: dict) -> None:
    from elasticnet.site.bundle import DESCRIPTION_HASH, description_hash

    d[DESCRIPTION_HASH] = description_hash(d)
    (folder / "model.json").write_text(json.dumps(d))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(model_file="../other/model.onnx"), "model_file must be the name of a file"),
        (lambda d: d.update(model_file="/etc/passwd"), "model_file must be the name of a file"),
        (lambda d: d.pop("model_sha256"), "model_sha256 must be present"),
        (lambda d: d["output"].update(threshold=float("nan")), "output.threshold"),
        (lambda d: d["output"].update(threshold="0.5"), "output.threshold"),
        (lambda d: d["input"].update(std=[0, 0, 0]), "input.std"),
        (lambda d: d["input"].update(channels="3"), "input.channels"),
        (lambda d: d["input"].update(height=10**9), "input.height"),
        (lambda d: d.pop("input"), "input is missing"),
    ],
    ids=[
        "parent",
        "absolute",
        "no-model-hash",
        "nan-threshold",
        "text-threshold",
        "zero-std",
        "text-channels",
        "huge-height",
        "no-input",
    ],
)
def test_an_edited_bundle_description_is_refused(bundle, tmp_path, edit, message):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    d = json.loads((copy / "model.json").read_text())
    edit(d)
    (copy / "model.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="changed after export"):  # the description's own hash catches any edit
        SiteModel(copy)
    _write_rehashed(copy, d)  # and a crafted one with a recomputed hash is checked field by field
    with pytest.raises(UserError, match=message):
        SiteModel(copy)


def test_a_link_to_a_model_outside_the_bundle_and_deep_json_are_refused(bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "model.onnx").unlink()
    (copy / "model.onnx").symlink_to(bundle / "model.onnx")
    with pytest.raises(UserError, match="leads outside the bundle"):
        SiteModel(copy)
    (copy / "model.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(UserError, match=r"not valid JSON|not an elasticnet export description"):
        SiteModel(copy)


def test_an_export_cleans_up_after_a_killed_one(run, tmp_path):
    out = tmp_path / "bundle"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    stale = [tmp_path / f".bundle.{pid}.abc123", tmp_path / f".bundle.old-{pid}"]
    alive = tmp_path / f".bundle.{os.getpid()}.xyz"  # this process: still running, left alone
    for folder in (*stale, alive):
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"partial")
    export_subnet(
        run / "checkpoint.pt", 3, 0.5, "torch", out, echo=lambda s: None, options=ExportOptions(latency=False)
    )
    assert not any(f.exists() for f in stale) and alive.exists() and (out / "model.json").is_file()


def test_export_notes_a_subnet_the_recipe_never_trained(tmp_path):
    settings = {"base_width": "4", "depths": "2,3", "widths": "0.5,1", "image_size": "32x32", "synthetic_count": "24"}
    settings |= {"batch_size": "8", "calib_batches": "1", "epochs": "1", "strategy": "sandwich", "num_random": "0"}
    run = train(build_config(None, {**settings, "out": str(tmp_path / "r")}), progress=False, **QUIET)
    said: list[str] = []
    export_subnet(run / "checkpoint.pt", 3, 0.5, "torch", tmp_path / "b1", echo=said.append)
    assert any("d3-w0.5 was never trained directly" in line and "d3-w1" in line for line in said)
    said.clear()
    export_subnet(run / "checkpoint.pt", 3, 1.0, "torch", tmp_path / "b2", echo=said.append)  # the largest
    assert not any("never trained" in line for line in said)
