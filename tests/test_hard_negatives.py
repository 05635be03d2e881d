"""Hard-negative mining for patch training: the maps, the patches centred on them, and the training loop."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIG
from torch import nn

from elasticnet.checkpoint import load_checkpoint
from elasticnet.config import build_config
from elasticnet.data import augment
from elasticnet.data.dataset import PatchDataset, SegmentationDataset
from elasticnet.errors import UserError
from elasticnet.models import SubNet
from elasticnet.training import step, trainer
from elasticnet.training.hard_negatives import false_positive_maps, pack, unpack
from elasticnet.training.signals import TrainingInterrupted

QUIET = {"echo": lambda s: None, "progress": False}


def _films(count: int, visible_lesion: bool = False, seed: int = 0) -> SegmentationDataset:
    """64x64 grey films of tissue (value 40) with a 4x4 bright spot (255) at a random place in rows/cols
    20-59; the even films hold a 6x6 lesion at rows/cols 8-13 (in the mask; in the image too, as bright as
    the spot, with ``visible_lesion``)."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for k in range(count):
        image = np.full((64, 64), 40, np.uint8)
        y, x = rng.integers(20, 56, size=2)
        image[y : y + 4, x : x + 4] = 255
        mask = np.zeros((64, 64), np.uint8)
        if k % 2 == 0:
            mask[8:14, 8:14] = 255
            if visible_lesion:
                image[8:14, 8:14] = 255
        images.append(image)
        masks.append(mask)
    return SegmentationDataset(images, masks, [f"f{k}" for k in range(count)], [0.0], [1.0])


BRIGHT = 130 / 255  # above any augmented tissue (40 -> <= 100), below any augmented spot (255 -> >= 165)


def _spots(films: SegmentationDataset, stride: int = 1) -> dict[int, np.ndarray]:
    """The bright spots as hard negatives (as if the model had marked them), on a grid of ``stride`` pixels."""
    maps = {i: (np.asarray(films.images[i]) == 255) & (np.asarray(films.masks[i]) == 0) for i in range(len(films))}
    return {i: m.reshape(64 // stride, stride, 64 // stride, stride).any(axis=(1, 3)) for i, m in maps.items()}


@pytest.mark.parametrize("shape", [(64, 64), (13, 7), (1, 1)])
def test_pack_unpack_round_trip(shape):
    rng = np.random.default_rng(1)
    maps = {3: rng.random(shape) < 0.3, 0: np.ones(shape, bool), 7: rng.random(shape) < 0.01}
    back = unpack(pack(maps))
    assert sorted(back) == sorted(maps) and all(np.array_equal(back[i], maps[i]) for i in maps)
    assert unpack(pack({})) == {}


def test_maps_of_several_sizes_are_refused():
    with pytest.raises(ValueError, match="several sizes"):
        pack({0: np.zeros((4, 4), bool), 1: np.zeros((4, 5), bool)})


@pytest.mark.parametrize("pipeline, stride", [(None, 1), ("mammography", 1), ("mammography", 4)])
def test_hard_patches_hold_the_hard_negative_and_no_false_lesion(pipeline, stride):
    films = _films(12)
    base = films.subset(range(12), augment.build(pipeline, 0) if pipeline else None)
    patches = PatchDataset(base, [16, 16], lesion_fraction=0.0, hard_fraction=1.0)
    patches.hard_negatives, patches.hard_stride = _spots(films, stride), stride
    for seed in range(60):
        image, target = patches[(seed % 12, seed)]
        # centred on the spot (jittered by a quarter patch): the patch shows it, the augmentation moved it along
        spot = image[0] > BRIGHT
        assert bool(spot.any()), seed
        # the hard pixels are not a lesion in the target
        assert not bool((target[0] > 0.5)[spot].any()), seed


def test_hard_share_is_the_fraction_and_zero_fraction_changes_nothing():
    films = _films(20)
    plain = PatchDataset(films, [16, 16], lesion_fraction=0.3)
    off = PatchDataset(films, [16, 16], lesion_fraction=0.3, hard_fraction=0.0)
    off.hard_negatives = _spots(films)
    keys = [(i, 100 * e + i) for e in range(15) for i in range(20)]
    for key in keys:  # fraction 0: the same crops as without maps
        assert all(torch.equal(a, b) for a, b in zip(plain[key], off[key]))
    on = PatchDataset(films, [16, 16], lesion_fraction=0.3, hard_fraction=0.4)
    on.hard_negatives = {i: m for i, m in _spots(films).items() if i % 2}  # the spots of the films without lesion
    shows_spot = np.mean([float(on[key][0].max() > BRIGHT) for key in keys])
    chance = np.mean([float(plain[key][0].max() > BRIGHT) for key in keys])
    # 40 % centred on a spot, the other 60 % hold one as often as patches not centred on it
    assert chance < 0.5 and abs(shows_spot - (0.4 + 0.6 * chance)) < 0.08, (shows_spot, chance)
    lesion = [np.mean([float(ds[key][1].sum() > 0) for key in keys]) for ds in (plain, on)]
    assert lesion[0] >= 0.3 and abs(lesion[1] - lesion[0]) < 0.1  # the lesion share is kept


class _Bright(nn.Module):
    """A stand-in model: logit > 0 where the image is brighter than 0.6 (the spots, visible lesions)."""

    def forward(self, x, subnet):
        return (x - 0.6) * 50


def test_false_positive_maps_are_marks_outside_lesions():
    films = _films(6, visible_lesion=True)
    for tile, stride in [((32, 32), 1), (None, 1), ((32, 32), 4)]:
        maps = false_positive_maps(_Bright(), SubNet(3, 1.0), films, torch.device("cpu"), 0.5, tile, 4, stride)
        assert sorted(maps) == list(range(6))
        for i, fp in maps.items():  # the spots (their cells); the lesions are marked too, but rightly
            assert np.array_equal(fp, _spots(films, stride)[i])
    blank = SegmentationDataset([np.zeros((64, 64), np.uint8)], [np.zeros((64, 64), np.uint8)], ["b"], [0.0], [1.0])
    assert false_positive_maps(_Bright(), SubNet(3, 1.0), blank, torch.device("cpu"), 0.5, None, 1) == {}


def test_a_training_run_mines_and_saves_the_maps(tmp_path):
    settings = {
        **TINY_CONFIG,
        "epochs": "2",
        "patch_size": "16x16",
        "patch_hard_fraction": "0.5",
        "threshold": "0.05",  # an untrained model marks much at this threshold: there is something to mine
        "out": str(tmp_path / "r"),
    }
    lines: list[str] = []
    trainer.train(build_config(None, {**settings, "checkpoint_every": "0"}), echo=lines.append, progress=False)
    mined = [line.split("hard negatives: ")[1] for line in lines if "hard negatives: " in line]
    assert len(mined) == 1  # after epoch 1 (none after the last)
    assert int(mined[0].split()[0]) > 0, mined
    cfg = load_checkpoint(tmp_path / "r" / "checkpoint.pt")["config"]
    assert cfg["data"]["patch_hard_fraction"] == 0.5


def test_a_run_resumed_inside_an_epoch_draws_the_same_hard_patches(tmp_path, monkeypatch):
    """Stopped in the middle of epoch 2, whose patches are drawn on the maps mined after epoch 1: the maps
    come back from the saved state, so the resumed run ends with the uninterrupted run's weights."""
    settings = {**TINY_CONFIG, "epochs": "2", "patch_size": "16x16", "patch_hard_fraction": "0.5"}
    settings |= {"threshold": "0.05", "checkpoint_every": "1"}
    reference = trainer.train(build_config(None, {**settings, "out": str(tmp_path / "ref")}), **QUIET)
    original, calls = step.forward_backward, {"n": 0}
    steps_per_epoch = load_checkpoint(reference / "checkpoint.pt")["step"] // 2

    def forward_backward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(step, "forward_backward", forward_backward)
        with pytest.raises(TrainingInterrupted):
            trainer.train(build_config(None, {**settings, "out": str(tmp_path / "run")}), **QUIET)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["epoch"] == 1 and len(saved["hard_negatives"]["index"]) > 0
    trainer.resume(tmp_path / "run", **QUIET)
    a, b = (load_checkpoint(r / "checkpoint.pt")["model"] for r in (reference, tmp_path / "run"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"patch_hard_fraction": "0.3"}, "--patch-size"),
        ({"patch_size": "16x16", "patch_lesion_fraction": "0.8", "patch_hard_fraction": "0.3"}, "sum to <= 1"),
        ({"patch_size": "16x16", "patch_hard_fraction": "1.5"}, "patch_hard_fraction must be"),
    ],
)
def test_hard_fraction_refusals(tmp_path, settings, message):
    with pytest.raises(UserError, match=message):
        trainer.train(build_config(None, {**TINY_CONFIG, **settings, "out": str(tmp_path / "r")}), **QUIET)
    assert not (tmp_path / "r").exists()
