"""The training recipe of the parity work: sampling rules, loss weights, phases, schedules, the EMA teacher,
and the compute a run records."""

from __future__ import annotations

import collections

import pytest
import torch
from helpers import TINY_CONFIG

from elasticnet.checkpoint import load_checkpoint, model_from_checkpoint
from elasticnet.config import FORMER_DEFAULTS, RunConfig, build_config
from elasticnet.errors import UserError
from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet
from elasticnet.training.compute import subnet_flops
from elasticnet.training.losses import distillation_loss
from elasticnet.training.precision import Precision
from elasticnet.training.projection import GradientProjection, project
from elasticnet.training.recipe import Recipe
from elasticnet.training.sampler import SubNetSampler, parse_subnets, parse_weights
from elasticnet.training.schedule import build_optimizer, cosine_with_warmup, distill_weight_at
from elasticnet.training.step import forward_backward
from elasticnet.training.teacher import EmaTeacher
from elasticnet.training.trainer import train

DEPTHS, WIDTHS = (3, 4, 5), (0.25, 0.5, 0.75, 1.0)
FULL = parse_subnets(["d4-w1", "d3-w1"])
BASE = {**TINY_CONFIG}


def _sampler(**kw) -> SubNetSampler:
    return SubNetSampler(DEPTHS, WIDTHS, "sandwich", **kw)


def test_always_subnets_run_every_step_with_weight_one_and_nothing_twice():
    sampler = _sampler(always=FULL, num_random=2, weight_smallest=0.5, weight_random=0.7, seed=3)
    for step in range(100):
        picked = sampler.sample_weighted(step)
        subnets = [s for s, _ in picked]
        assert len(subnets) == len(set(subnets)) == 6  # largest + 2 always + smallest + 2 random
        weights = dict(picked)
        assert weights[SubNet(5, 1.0)] == weights[SubNet(4, 1.0)] == weights[SubNet(3, 1.0)] == 1.0
        assert weights[SubNet(3, 0.25)] == 0.5
        assert sorted(w for s, w in picked if s not in (*FULL, SubNet(5, 1.0), SubNet(3, 0.25))) == [0.7, 0.7]
        assert picked == sampler.sample_weighted(step)  # a function of (seed, step)


def test_a_subnets_own_weight_overrides_its_rule_whenever_it_runs_and_draws_nothing_else():
    own = parse_weights(["d4-w0.5=2", "d3-w0.25=0.25", "d5-w1=1.5", "d5-w0.75=3"])
    plain = _sampler(always=(*FULL, SubNet(4, 0.5)), num_random=1, weight_smallest=0.5, seed=4)
    weighted = _sampler(always=(*FULL, SubNet(4, 0.5)), num_random=1, weight_smallest=0.5, seed=4, weights=own)
    expected = dict(own)
    drawn = set()
    for step in range(200):
        a, b = plain.sample_weighted(step), weighted.sample_weighted(step)
        assert [s for s, _ in a] == [s for s, _ in b]  # the same sub-nets every step
        for (s, w), (_, v) in zip(a, b):
            assert v == expected.get(s, w)
        drawn |= {s for s, _ in b}
    assert SubNet(5, 0.75) in drawn  # the random draw's weight was overridden too
    with pytest.raises(UserError, match="not in the grid"):
        _sampler(weights=parse_weights(["d6-w1=2"]))


def test_without_the_new_options_the_sandwich_draws_what_it_always_drew():
    import numpy as np

    sampler = _sampler(num_random=1, seed=5)
    choices = sampler.choices
    for step in range(50):  # the rule of the earlier versions, written out
        rng = np.random.default_rng([5, step])
        middle = [s for s in choices if s not in (SubNet(5, 1.0), SubNet(3, 0.25))]
        expected = [SubNet(5, 1.0), SubNet(3, 0.25), middle[rng.choice(len(middle), size=1, replace=False)[0]]]
        assert sampler.sample(step) == expected


def test_random_subnets_in_proportion_to_their_flops():
    flops = subnet_flops(ElasticUNetConfig(base_width=16), (64, 96))
    sampler = _sampler(random_by_flops=True, flops=flops, num_random=1)
    counts = collections.Counter(sampler.sample(step)[2] for step in range(6000))
    middle = [s for s in sampler.choices if s not in (SubNet(5, 1.0), SubNet(3, 0.25))]
    total = sum(flops[s] for s in middle)
    for s in middle:
        assert counts[s] / 6000 == pytest.approx(flops[s] / total, abs=0.02), s
    assert counts[SubNet(5, 0.75)] > 5 * counts[SubNet(4, 0.25)]


def test_phases_warm_start_then_depths_then_widths_with_ramped_weights():
    sampler = _sampler(total_steps=100, shrink_start=0.2, width_start=0.5, ramp=0.1, always=FULL)
    for step in range(20):
        assert sampler.sample_weighted(step) == [(SubNet(5, 1.0), 1.0)]
    for step in range(20, 50):
        picked = dict(sampler.sample_weighted(step))
        assert all(s.width == 1.0 for s in picked) and set(picked) >= {SubNet(3, 1.0), SubNet(4, 1.0)}
    assert dict(sampler.sample_weighted(20))[SubNet(4, 1.0)] == pytest.approx(0.1)  # ramp: 1/10 at its first step
    assert dict(sampler.sample_weighted(29))[SubNet(4, 1.0)] == pytest.approx(1.0)
    late = [sampler.sample_weighted(step) for step in range(50, 100)]
    assert all(SubNet(3, 0.25) in dict(p) for p in late)
    assert dict(late[0])[SubNet(3, 0.25)] == pytest.approx(0.1) and dict(late[-1])[SubNet(3, 0.25)] == 1.0


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"always": parse_subnets(["d6-w1"])}, "not in the grid"),
        ({"shrink_start": 1.0}, "fraction"),
        ({"random_by_flops": True}, "FLOPs"),
    ],
)
def test_sampler_options_are_checked(kw, message):
    with pytest.raises(UserError, match=message):
        _sampler(**kw)
    with pytest.raises(UserError, match="d4-w1"):
        parse_subnets(["4x1"])


@pytest.mark.parametrize(
    "key, value",
    [
        ("optimizer", "adam"),
        ("distill_teacher", "best"),
        ("lr_floor", "1"),
        ("ema_decay", "1"),
        ("grad_clip", "-1"),
        ("always_subnets", "d9-w1"),
        ("grad_projection", "both"),
        ("subnet_weights", "d3-w1"),
        ("subnet_weights", "d9-w1=2"),
        ("subnet_weights", "d3-w1=-1"),
        ("subnet_weights", "d3-w1=2,d3-w1=3"),
    ],
)
def test_bad_recipe_options_are_refused_before_training(key, value, tmp_path):
    with pytest.raises(UserError):
        cfg = build_config(None, {**BASE, "strategy": "sandwich", key: value, "out": str(tmp_path / "r")})
        train(cfg, echo=lambda s: None, progress=False)
    assert not (tmp_path / "r").exists()


def test_cosine_schedule_ends_at_its_floor_and_distillation_starts_late():
    f = cosine_with_warmup(100, 10, floor=0.05)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(100) == pytest.approx(0.05)
    assert min(f(s) for s in range(100)) >= 0.05 and cosine_with_warmup(100, 10)(100) == pytest.approx(0.0)
    assert distill_weight_at(49, 100, 0.5, 0.5, 0.1) is None
    assert distill_weight_at(50, 100, 0.5, 0.5, 0.1) == pytest.approx(0.05)
    assert distill_weight_at(70, 100, 0.5, 0.5, 0.1) == 0.5 and distill_weight_at(0, 100, 0.5, 0.0, 0.1) == 0.5


def test_sgd_arm_and_gradient_clipping():
    model = torch.nn.Linear(4, 1)
    opt = build_optimizer("sgd", model.parameters(), 0.1, 0.0)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    (1000 * model(torch.ones(2, 4)).sum()).backward()
    before = [p.detach().clone() for p in model.parameters()]
    Precision("none", "cpu").step(opt, model.parameters(), max_norm=1.0)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert moved == pytest.approx(0.19, rel=1e-4)  # Nesterov first step: lr x (1 + 0.9) x a gradient of norm 1


def test_bce_distillation_is_per_pixel_bce_to_the_teacher():
    logits, teacher = torch.randn(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, teacher)
    assert torch.equal(distillation_loss(logits, teacher, kind="bce"), expected)
    assert distillation_loss(logits, teacher) > expected  # bce_dice adds the soft Dice term


def test_ema_teacher_averages_the_weights():
    model = ElasticUNet(ElasticUNetConfig(base_width=4, depths=[2], widths=[1.0]))
    teacher = EmaTeacher(model, decay=0.9)
    start = [p.detach().clone() for p in teacher.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    teacher.update(model)
    for ema, old, live in zip(teacher.model.parameters(), start, model.parameters()):
        torch.testing.assert_close(ema, 0.9 * old + 0.1 * live)
        assert not ema.requires_grad
    probs = teacher.probabilities(torch.randn(2, 3, 16, 16), SubNet(2, 1.0), Precision("none", "cpu"))
    assert probs.shape == (2, 1, 16, 16) and 0 <= float(probs.min()) and float(probs.max()) <= 1


def test_recipe_plans_and_counts_compute():
    cfg = build_config(
        None,
        {
            **BASE,
            "strategy": "sandwich",
            "distill": True,
            "distill_teacher": "ema",
            "distill_start": "0.5",
            "always_subnets": "d2-w1",
        },
    )
    model = ElasticUNet(cfg.model)
    recipe = Recipe(cfg, model, total_steps=10, image_size=(32, 32))
    early, late = recipe.plan(0), recipe.plan(5)
    assert early.options.distill_weight is None and not early.ema_teacher
    assert late.options.distill_weight == 0.5 and late.ema_teacher
    f = recipe.flops
    assert recipe.step_flops(early, 8) == 8 * 3 * sum(f[s] for s in early.subnets)
    assert recipe.step_flops(late, 8) == 8 * (3 * sum(f[s] for s in late.subnets) + f[SubNet(3, 1.0)])


def test_a_run_records_its_training_compute(tmp_path):
    """An individual U-Net trained for 4 steps: 4 x batch x 3 x its forward FLOPs, in the log and checkpoint."""
    cfg = build_config(None, {**BASE, "depths": "3", "widths": "1", "max_steps": "4", "out": str(tmp_path / "r")})
    ckpt = load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")
    forward = subnet_flops(cfg.model, (32, 32))[SubNet(3, 1.0)]
    assert ckpt["train_tflops"] == pytest.approx(round(4 * 8 * 3 * forward / 1e12, 4))
    assert ckpt["log"][-1]["train_tflops"] == ckpt["train_tflops"]


@pytest.mark.parametrize("depths", [(2, 3), (3, 4, 5), (2, 4, 6)])
@pytest.mark.parametrize("widths", [(1.0,), (0.5, 1.0), (0.25, 0.5, 0.75, 1.0)])
def test_slimmable_is_a_sandwich_that_runs_every_full_width_depth_each_step(depths, widths):
    """The grid-free rule of the built-in default: what the parity campaign's ``slimmable`` arm wrote out by
    hand (always every full-width depth, deepest first) for any grid, and nothing else changes."""
    always = parse_subnets(["d4-w0.5"]) if 4 in depths and 0.5 in widths else ()
    rule = SubNetSampler(depths, widths, "slimmable", 1, 7, always=always, weight_smallest=0.5)
    full = tuple(SubNet(d, 1.0) for d in sorted(depths, reverse=True) if d != max(depths))
    by_hand = SubNetSampler(depths, widths, "sandwich", 1, 7, always=(*full, *always), weight_smallest=0.5)
    for step in range(50):
        picked = rule.sample_weighted(step)
        assert picked == by_hand.sample_weighted(step)
        assert {SubNet(d, 1.0) for d in depths} <= {s for s, _ in picked}
        assert len(picked) == len({s for s, _ in picked})
    assert rule.trained == by_hand.trained


def test_the_builtin_default_is_the_grid_free_parity_recipe_and_old_saved_configs_keep_their_meaning(tmp_path):
    """``train`` without a config trains the parity campaign's slimmable+junction arm (issue 13); a config saved
    before a default changed (it lacks the key) is read with the default of its day."""
    cfg = build_config(None, {})
    assert (cfg.train.strategy, cfg.train.num_random, cfg.train.weight_smallest) == ("slimmable", 1, 0.5)
    assert cfg.model.junction == "private" and cfg.train.always_subnets == []
    old = cfg.to_dict()
    for section, keys in FORMER_DEFAULTS.items():
        for key in keys:
            del old[section][key]
    read = RunConfig.from_saved(old)
    assert (read.model.junction, read.train.strategy, read.train.weight_smallest) == ("shared", "uniform", 1.0)
    assert RunConfig.from_saved(cfg.to_dict()) == cfg  # a saved key always wins
    # a checkpoint written before the junction existed still loads as the architecture it holds
    run = train(
        build_config(
            None, {**BASE, "strategy": "uniform", "junction": "shared", "max_steps": "1", "out": str(tmp_path / "r")}
        ),
        echo=lambda s: None,
        progress=False,
    )
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    del ckpt["config"]["model"]["junction"]
    assert model_from_checkpoint(ckpt)[0].model.junction == "shared"


def test_a_sandwich_without_random_draws_trains_only_its_listed_subnets():
    listed = SubNetSampler((2, 3, 4), (0.5, 1.0), "sandwich", 0, 0, always=parse_subnets(["d3-w1"]))
    assert set(listed.trained) == {SubNet(4, 1.0), SubNet(2, 0.5), SubNet(3, 1.0)}
    assert {s for step in range(100) for s in listed.sample(step)} == set(listed.trained)
    drawing = SubNetSampler((2, 3, 4), (0.5, 1.0), "sandwich", 1, 0, always=parse_subnets(["d3-w1"]))
    assert drawing.trained == drawing.choices
    assert {s for step in range(200) for s in drawing.sample(step)} == set(drawing.choices)


def test_projection_removes_only_the_conflicting_component():
    kept = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(project(kept, torch.tensor([-2.0, 3.0, 1.0])), torch.tensor([0.0, 3.0, 1.0]))
    agreeing = torch.tensor([0.5, -4.0, 2.0])
    assert torch.equal(project(kept, agreeing), agreeing)  # <kept, other> >= 0: untouched
    assert torch.equal(project(torch.zeros(3), agreeing), agreeing)
    with pytest.raises(ValueError, match="largest, subnets"):
        GradientProjection("both", [])


def _grads(model, images, masks, subnets, mode=None):
    model.zero_grad(set_to_none=True)
    projection = GradientProjection(mode, model.parameters()) if mode else None
    forward_backward(model, images, masks, subnets, None, weights=[1.0, 0.5, 1.0], projection=projection)
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("mode", ["largest", "subnets"])
def test_a_projected_step_keeps_one_gradient_whole_and_never_opposes_it(mode):
    """Per weight tensor: the combined gradient is the kept gradient plus the other's part that does not
    oppose it, computed from the two backward passes run apart (the largest alone, the others alone)."""
    torch.manual_seed(0)
    model = ElasticUNet(ElasticUNetConfig(base_width=4, depths=[2, 3], widths=[0.5, 1.0]))
    images, masks = torch.randn(4, 3, 16, 16), (torch.rand(4, 1, 16, 16) > 0.7).float()
    largest, others = [SubNet(3, 1.0)], [SubNet(2, 0.5), SubNet(2, 1.0)]
    model.zero_grad(set_to_none=True)
    forward_backward(model, images, masks, largest, None)
    big = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    forward_backward(model, images, masks, others, None, weights=[0.5, 1.0])
    small = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    combined = _grads(model, images, masks, largest + others, mode)
    plain = _grads(model, images, masks, largest + others)
    conflicts = 0
    for b, s, c, p in zip(big, small, combined, plain):
        if b is None or s is None:  # one side only: the plain sum
            assert (c is None and p is None) or torch.allclose(c, p, atol=1e-6)
            continue
        keep, other = (b, s) if mode == "largest" else (s, b)
        torch.testing.assert_close(c, keep + project(keep, other), rtol=1e-5, atol=1e-6)
        assert float(torch.sum((c - keep) * keep)) >= -1e-6  # the rest never opposes the kept gradient
        conflicts += float(torch.sum(b * s)) < 0
    assert conflicts > 0  # the check saw projections, not only agreeing tensors


def test_projection_needs_a_sandwich(tmp_path):
    with pytest.raises(UserError, match="--strategy slimmable or sandwich"):
        build_config(None, {**BASE, "strategy": "uniform", "grad_projection": "subnets", "out": str(tmp_path / "r")})
    cfg = build_config(
        None,
        {**BASE, "strategy": "sandwich", "grad_projection": "subnets", "max_steps": "2", "out": str(tmp_path / "r")},
    )
    assert (
        load_checkpoint(train(cfg, echo=lambda s: None, progress=False) / "checkpoint.pt")["config"]["train"][
            "grad_projection"
        ]
        == "subnets"
    )
