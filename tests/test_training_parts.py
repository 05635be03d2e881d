"""Sampler, optimiser guard, BN calibration, metrics and losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import DEPTHS, WIDTHS

from elasticnet.errors import UserError
from elasticnet.models import SubNet
from elasticnet.training.calibration import bn_state, calibrate_bn
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.losses import segmentation_loss
from elasticnet.training.metrics import dice_iou_per_image
from elasticnet.training.sampler import SubNetSampler

# --- sampler -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["uniform", "sandwich"])
def test_sampler_is_reproducible_and_rank_independent(strategy):
    """Two processes (ranks) with the same seed draw the same sub-nets, whatever else touches the RNGs."""
    rank0 = SubNetSampler((3, 4, 5), (0.25, 0.5, 1.0), strategy, seed=7)
    rank1 = SubNetSampler((3, 4, 5), (0.25, 0.5, 1.0), strategy, seed=7)
    draws0 = [rank0.sample(s) for s in range(200)]
    torch.manual_seed(123)
    np.random.seed(123)
    torch.rand(10)  # data order / augmentation on "rank 1" consume the global RNGs differently
    np.random.rand(10)
    draws1 = [rank1.sample(s) for s in reversed(range(200))][::-1]  # any order: resume from any step
    assert draws0 == draws1
    other_seed = [SubNetSampler((3, 4, 5), (0.25, 0.5, 1.0), strategy, seed=8).sample(s) for s in range(200)]
    assert other_seed != draws0


def test_uniform_draws_every_subnet_about_equally():
    sampler = SubNetSampler((3, 4, 5), (0.5, 1.0), "uniform", seed=0)
    counts: dict[SubNet, int] = {}
    for step in range(3000):
        (s,) = sampler.sample(step)
        counts[s] = counts.get(s, 0) + 1
    assert set(counts) == set(sampler.choices)
    assert max(counts.values()) / min(counts.values()) < 1.3


def test_sandwich_has_largest_first_then_smallest_and_distinct_randoms():
    sampler = SubNetSampler((3, 4, 5), (0.25, 0.5, 1.0), "sandwich", num_random=2, seed=0)
    for step in range(100):
        picked = sampler.sample(step)
        assert picked[0] == SubNet(5, 1.0) and picked[1] == SubNet(3, 0.25)
        assert len(picked) == 4 and len(set(picked)) == 4


def test_sampler_rejects_unknown_strategy():
    with pytest.raises(UserError, match="unknown strategy"):
        SubNetSampler((3,), (1.0,), "random")


# --- inactive weights ----------------------------------------------------------------------------------


def _adam_steps(model, freeze: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    guard = InactiveWeightFreezer(model, opt)
    x = torch.randn(2, 3, 16, 16)
    full, half = SubNet(3, 1.0), SubNet(3, 0.5)
    for subnet in (full, half):
        opt.zero_grad(set_to_none=True)
        model(x, subnet).square().mean().backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        if freeze:
            with guard.step([subnet]):
                opt.step()
        else:
            opt.step()
    return before, guard.inactive_masks([half])


def test_freeze_keeps_weights_a_step_did_not_use(tiny_elastic):
    before, inactive = _adam_steps(tiny_elastic, freeze=True)
    assert inactive, "a half-width sub-net must leave some entries inactive"
    params = dict(tiny_elastic.named_parameters())
    for name, mask in inactive.items():
        assert torch.equal(params[name].detach()[mask], before[name][mask]), name
        active = ~mask
        assert not torch.equal(params[name].detach()[active], before[name][active]), f"{name}: active part must move"


def test_without_freeze_adam_moves_unused_weights(tiny_elastic):
    """The pitfall the freezer exists for: documented here so a change in PyTorch would show."""
    before, inactive = _adam_steps(tiny_elastic, freeze=False)
    params = dict(tiny_elastic.named_parameters())
    moved = sum(int((params[n].detach()[m] != before[n][m]).sum()) for n, m in inactive.items())
    total = sum(int(m.sum()) for m in inactive.values())
    assert moved > 0.9 * total


def test_freeze_restores_optimizer_state(tiny_elastic):
    opt = torch.optim.Adam(tiny_elastic.parameters(), lr=1e-2)
    guard = InactiveWeightFreezer(tiny_elastic, opt)
    x = torch.randn(2, 3, 16, 16)
    tiny_elastic(x, SubNet(3, 1.0)).mean().backward()
    opt.step()
    state_before = {n: opt.state[p]["exp_avg"].clone() for n, p in tiny_elastic.named_parameters() if p in opt.state}
    opt.zero_grad(set_to_none=True)
    tiny_elastic(x, SubNet(3, 0.5)).mean().backward()
    with guard.step([SubNet(3, 0.5)]):
        opt.step()
    params = dict(tiny_elastic.named_parameters())
    for name, mask in guard.inactive_masks([SubNet(3, 0.5)]).items():
        assert torch.equal(opt.state[params[name]]["exp_avg"][mask], state_before[name][mask])


# --- BN calibration --------------------------------------------------------------------------------------


def test_calibration_gives_the_average_of_batch_statistics(tiny_elastic):
    subnet = SubNet(2, 0.5)
    batches = [torch.randn(4, 3, 8, 8) * (i + 1) + i for i in range(3)]
    tiny_elastic.eval()
    calibrate_bn(tiny_elastic, subnet, batches, num_batches=3)
    bn = tiny_elastic.encoder[0].bn1[0]
    c = tiny_elastic.config.channels(subnet)[0]
    conv = tiny_elastic.encoder[0].conv1
    with torch.no_grad():
        means = [conv(b, (3,), c).mean(dim=(0, 2, 3)) for b in batches]
    assert torch.allclose(bn.running_mean[:c], torch.stack(means).mean(0), atol=1e-5)
    assert not tiny_elastic.training  # the mode it had is restored


def test_calibration_uses_at_most_num_batches(tiny_elastic):
    used = calibrate_bn(tiny_elastic, SubNet(2, 1.0), (torch.randn(2, 3, 8, 8) for _ in range(10)), num_batches=4)
    assert used == 4


def test_subnet_table_leaves_as_trained_statistics(tiny_elastic):
    from torch.utils.data import DataLoader, TensorDataset

    from elasticnet.training.evaluate import subnet_table

    data = TensorDataset(torch.randn(8, 3, 16, 16), (torch.rand(8, 1, 16, 16) > 0.5).float())
    loader = DataLoader(data, batch_size=4)
    before = bn_state(tiny_elastic)
    rows, stats = subnet_table(tiny_elastic, loader, loader, torch.device("cpu"), (16, 16), calib_batches=2)
    after = bn_state(tiny_elastic)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(rows) == len(DEPTHS) * len(WIDTHS) == len(stats)
    assert {r.calib_batches for r in rows} == {2}


# --- metrics and losses --------------------------------------------------------------------------------


def test_dice_iou_known_values():
    target = torch.zeros(3, 1, 4, 4)
    prob = torch.zeros(3, 1, 4, 4)
    target[0, 0, :2] = 1  # 8 pixels
    prob[0, 0, :1] = 0.9  # 4 pixels, all inside
    prob[1, 0, 0, 0] = 0.9  # prediction on an empty mask
    dice, iou = dice_iou_per_image(prob, target)  # image 2: both empty
    assert dice.tolist() == pytest.approx([2 * 4 / 12, 0.0, 1.0])
    assert iou.tolist() == pytest.approx([4 / 8, 0.0, 1.0])


def test_loss_is_lower_for_better_predictions():
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    good = segmentation_loss((target * 2 - 1) * 5, target)
    bad = segmentation_loss(-(target * 2 - 1) * 5, target)
    assert good < 0.1 < bad


def test_batch_dice_pools_the_batch_and_spares_empty_images():
    from elasticnet.training.losses import soft_dice_loss

    logits = torch.randn(1, 1, 8, 8)
    target = (torch.rand(1, 1, 8, 8) > 0.5).float()
    assert torch.allclose(soft_dice_loss(logits, target), soft_dice_loss(logits, target, per_image=False))
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, :4] = 1  # image 0 has a lesion, image 1 is empty
    logits = (target * 2 - 1) * 6
    logits[1, 0, 0, :3] = 6  # three false-positive pixels on the empty image
    per_image = soft_dice_loss(logits, target)
    batch = soft_dice_loss(logits, target, per_image=False)
    assert batch < 0.1 < per_image


def test_focal_tversky_weighs_missed_lesion_pixels_above_false_alarms():
    """Missing half of a small lesion costs more than the same number of false-positive pixels; a perfect
    prediction costs ~0; BCE's pos_weight scales the loss of lesion pixels only."""
    from elasticnet.training.losses import TaskLoss, focal_tversky_loss

    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:8, 4:8] = 1  # 16 lesion pixels
    missed = (target * 2 - 1) * 8
    missed[..., 4:8, 4:6] = -8  # 8 lesion pixels missed
    alarm = (target * 2 - 1) * 8
    alarm[..., 10:12, 10:14] = 8  # 8 false-positive pixels
    assert focal_tversky_loss(missed, target) > focal_tversky_loss(alarm, target)
    assert focal_tversky_loss((target * 2 - 1) * 20, target) < 1e-3
    logits = torch.zeros(1, 1, 16, 16)
    plain, weighted = TaskLoss(pos_weight=1.0), TaskLoss(pos_weight=10.0)
    empty = torch.zeros_like(target)
    assert weighted(logits, target) > plain(logits, target)  # lesion pixels weigh 10x in BCE
    torch.testing.assert_close(weighted(logits, empty), plain(logits, empty))  # nothing to weigh


def test_the_configured_loss_reaches_the_training_step(tmp_path):
    from elasticnet.config import build_config
    from elasticnet.training.recipe import Recipe

    cfg = build_config(None, {"loss": "bce_focal_tversky", "pos_weight": "5", "dice_loss": "batch"})
    task = Recipe(cfg, None, 10, (32, 32)).plan(0).options.task
    assert (task.kind, task.region, task.pos_weight) == ("bce_focal_tversky", "batch", 5.0)
