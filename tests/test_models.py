"""The elastic U-Net: shapes, extraction, gradients, input checks; parametrised over depth x width."""

from __future__ import annotations

import pytest
import torch
from helpers import DEPTHS, WIDTHS, randomise_bn

from elasticnet.errors import UserError
from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet, UNet, UNetConfig, extract, level_channels
from elasticnet.models.elastic_layers import ElasticBatchNorm2d, ElasticConv2d

GRID = [SubNet(d, w) for d in DEPTHS for w in WIDTHS]
SIZE = (16, 24)  # divisible by 2**(4-1)


@pytest.mark.parametrize("subnet", GRID, ids=lambda s: s.key)
def test_output_shape(tiny_elastic, subnet):
    out = tiny_elastic(torch.randn(2, 3, *SIZE), subnet)
    assert out.shape == (2, 1, *SIZE)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("subnet", GRID, ids=lambda s: s.key)
def test_extracted_subnet_equals_elastic(tiny_elastic, subnet):
    tiny_elastic.eval()
    x = torch.randn(2, 3, *SIZE)
    static = extract(tiny_elastic, subnet).eval()
    assert isinstance(static, UNet) and static.depth == subnet.depth
    assert static.config.channels == tiny_elastic.config.channels(subnet)
    assert not any(isinstance(m, (ElasticConv2d, ElasticBatchNorm2d)) for m in static.modules())
    with torch.no_grad():
        assert (static(x) - tiny_elastic(x, subnet)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("subnet", GRID, ids=lambda s: s.key)
def test_extracted_subnet_equals_elastic_in_training_mode(tiny_elastic, subnet):
    """Batch statistics too: the static net is the same function, not only at inference."""
    x = torch.randn(2, 3, *SIZE)
    static = extract(tiny_elastic, subnet).train()
    with torch.no_grad():
        assert (static(x) - tiny_elastic.train()(x, subnet)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("bn_mode", ["per_depth", "per_width", "per_subnet"])
def test_extract_with_private_bn(bn_mode):
    model = ElasticUNet(ElasticUNetConfig(base_width=8, depths=[2, 3], widths=[0.5, 1.0], bn_mode=bn_mode))
    randomise_bn(model, seed=1)
    for subnet in model.config.subnets():
        x = torch.randn(2, 3, 8, 8)
        for mode in ("eval", "train"):
            with torch.no_grad():
                static = extract(model, subnet)
                getattr(static, mode)(), getattr(model, mode)()
                assert (static(x) - model(x, subnet)).abs().max() <= 1e-5, (subnet, mode)
    model.eval()
    # each mode's sub-nets really run different BN layers, and only theirs get gradients
    index = {s: model.bn_index(s) for s in model.config.subnets()}
    private = {
        "per_depth": [(SubNet(2, 1.0), SubNet(3, 1.0))],
        "per_width": [(SubNet(2, 0.5), SubNet(2, 1.0))],
        "per_subnet": [(SubNet(2, 0.5), SubNet(2, 1.0)), (SubNet(2, 1.0), SubNet(3, 1.0))],
    }[bn_mode]
    assert all(index[a] != index[b] for a, b in private)
    assert len(model.encoder[0].bn1) == len(set(index.values()))
    model.train()
    model(torch.randn(2, 3, 8, 8), SubNet(2, 0.5)).square().mean().backward()
    grads = [bn.weight.grad is not None for bn in model.encoder[0].bn1]
    assert grads == [i == index[SubNet(2, 0.5)] for i in range(len(grads))]


@pytest.mark.parametrize("junction", ["shared", "private"])
def test_the_full_width_depths_give_every_parameter_a_gradient(junction):
    """No dead weights: with shared junctions the largest sub-net alone reaches every parameter; with private
    ones (the default) each depth's full-width sub-net reaches its own junction."""
    model = ElasticUNet(ElasticUNetConfig(base_width=8, depths=DEPTHS, widths=WIDTHS, junction=junction))
    randomise_bn(model)
    model.train()
    x = torch.randn(2, 3, *SIZE)
    depths = [max(DEPTHS)] if junction == "shared" else DEPTHS
    sum(model(x, SubNet(d, 1.0)).square().mean() for d in depths).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("subnet", GRID, ids=lambda s: s.key)
def test_parameters_outside_a_subnet_get_no_gradient(tiny_elastic, subnet):
    tiny_elastic.train()
    tiny_elastic(torch.randn(2, 3, *SIZE), subnet).square().mean().backward()
    masks = tiny_elastic.active_masks([subnet])
    for name, p in tiny_elastic.named_parameters():
        if name not in masks:
            assert p.grad is None, f"{name} is outside {subnet} but got a gradient"
            continue
        assert p.grad[~masks[name]].abs().sum() == 0, f"{name}: inactive entries got a gradient"
        assert p.grad[masks[name]].abs().sum() > 0, f"{name}: active entries got no gradient"


def test_smaller_subnet_costs_less():
    from elasticnet.models import count_flops, count_params

    cfg = ElasticUNetConfig(base_width=16, depths=[3, 4, 5], widths=[0.25, 0.5, 1.0])
    model = ElasticUNet(cfg)
    costs = {
        s: (count_params(extract(model, s).config), count_flops(extract(model, s).config, (64, 64)))
        for s in cfg.subnets()
    }
    for s, (params, flops) in costs.items():
        bigger_width = [t for t in costs if t.depth == s.depth and t.width > s.width]
        bigger_depth = [t for t in costs if t.width == s.width and t.depth > s.depth]
        for t in bigger_width + bigger_depth:
            assert costs[t][0] > params and costs[t][1] > flops, (s, t)


def test_channels_rounding():
    assert level_channels(32, 5) == [32, 64, 128, 256, 512]
    assert level_channels(32, 3, 0.5) == [16, 32, 64]
    assert level_channels(8, 3, 0.25, multiple=4) == [4, 4, 8]  # never below one multiple
    assert all(c % 4 == 0 for c in level_channels(24, 5, 0.75))


def test_subnet_key_round_trip():
    s = SubNet(4, 0.75)
    assert SubNet.from_key(s.key) == s and s.key == "d4-w0.75"


@pytest.mark.parametrize("size", [(15, 16), (16, 20), (12, 8)])
def test_input_not_divisible_gives_clear_error(tiny_elastic, size):
    with pytest.raises(UserError, match=r"not divisible by 8 .*pad it, e.g. to"):
        tiny_elastic(torch.randn(1, 3, *size), SubNet(4, 1.0))


def test_input_divisible_for_shallower_subnet_is_accepted(tiny_elastic):
    assert tiny_elastic(torch.randn(1, 3, 12, 12), SubNet(3, 1.0)).shape[-2:] == (12, 12)


def test_wrong_channel_count_gives_clear_error(tiny_elastic):
    with pytest.raises(UserError, match="expected a batch of shape"):
        tiny_elastic(torch.randn(1, 1, 16, 16), SubNet(2, 1.0))


@pytest.mark.parametrize(
    "subnet, message", [(SubNet(5, 1.0), "has no depth 5"), (SubNet(3, 0.75), "not trained at width 0.75")]
)
def test_subnet_the_model_lacks_gives_clear_error(tiny_elastic, subnet, message):
    with pytest.raises(UserError, match=message):
        tiny_elastic(torch.randn(1, 3, 16, 16), subnet)
    with pytest.raises(UserError, match=message):
        extract(tiny_elastic, subnet)


@pytest.mark.parametrize("kwargs", [{"depths": [1, 3]}, {"widths": [0.5]}, {"widths": [0, 1]}, {"bn_mode": "x"}])
def test_invalid_config_is_refused(kwargs):
    with pytest.raises(UserError):
        ElasticUNetConfig(**kwargs)


def test_static_unet_any_channels():
    model = UNet(UNetConfig(channels=[6, 10, 14], in_channels=1, num_classes=2))
    assert model(torch.randn(1, 1, 8, 12)).shape == (1, 2, 8, 12)


@pytest.mark.parametrize(
    "private, module, shared_block",
    [
        ({"junction": "private"}, "junctions", "decoder.1"),  # depth 3's bottleneck feeds its junction
        ({"junction": "shared", "bottleneck": "private"}, "bottlenecks", "encoder.2"),  # depth 3's last encoder level
        ({"junction": "private", "bottleneck": "private"}, "bottlenecks", "encoder.2"),
    ],
)
@pytest.mark.parametrize("bn_mode", ["shared", "per_depth"])
def test_private_blocks_extract_to_the_same_plain_unet_and_train_only_with_their_depth(
    private, module, shared_block, bn_mode
):
    """A private junction (first decoder block) or bottleneck (last encoder block) per depth but the largest:
    the cut sub-net is an ordinary U-Net equal to the elastic model (eval and batch statistics), and a depth's
    step touches only its own private block, never the shared one it replaces."""
    config = ElasticUNetConfig(base_width=8, depths=[2, 3, 4], widths=[0.5, 1.0], bn_mode=bn_mode, **private)
    model = ElasticUNet(config)
    randomise_bn(model, seed=2)
    assert sorted(getattr(model, module)) == ["2", "3"]
    x = torch.randn(2, 3, 16, 16)
    for subnet in config.subnets():
        static = extract(model, subnet)
        assert isinstance(static, UNet) and static.config.channels == config.channels(subnet)
        for mode in ("eval", "train"):
            getattr(static, mode)(), getattr(model, mode)()
            with torch.no_grad():
                assert (static(x) - model(x, subnet)).abs().max() <= 1e-5, (subnet, mode)
    model.train()
    model.zero_grad()
    model(x, SubNet(3, 1.0)).square().mean().backward()
    touched = {
        n.split(".")[1] for n, p in model.named_parameters() if n.startswith(f"{module}.") and p.grad is not None
    }
    assert touched == {"3"}
    assert model.get_submodule(shared_block).conv1.weight.grad is None
    assert model.get_submodule("encoder.1").conv1.weight.grad is not None  # the levels above stay shared
    shared = ElasticUNet(
        ElasticUNetConfig(base_width=8, depths=[2, 3, 4], widths=[0.5, 1.0], bn_mode=bn_mode, junction="shared")
    )
    assert len(shared.junctions) == len(shared.bottlenecks) == 0
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in shared.parameters())


@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (2, 3, 4, 6), (1, 5, 7, 3)])
def test_deterministic_upsampling_is_bilinear(shape):
    """The up-sampling of deterministic training (no atomics in its CUDA backward) is F.interpolate's."""
    import torch.nn.functional as F

    from elasticnet.models.unet import upsample2x

    x = torch.randn(*shape, requires_grad=True)
    reference = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    mine = upsample2x(x, deterministic=True)
    torch.testing.assert_close(mine, reference, rtol=0, atol=1e-6)
    g = torch.randn_like(reference)
    (ga,) = torch.autograd.grad(reference, x, g)
    (gb,) = torch.autograd.grad(mine, x, g)
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size, depth", [((30, 33), 2), ((17, 24), 4), ((16, 20), 4), ((0, 16), 3)])
def test_one_size_rule_everywhere_names_the_nearest_size(size, depth):
    from elasticnet.config import RunConfig, validate
    from elasticnet.shapes import check_size, stride

    s = stride(depth)
    fixed = f"{size[0] + (-size[0] % s)}x{size[1] + (-size[1] % s)}"
    with pytest.raises(UserError, match="positive" if 0 in size else fixed):
        check_size(size, depth)
    cfg = RunConfig()
    cfg.model.depths, cfg.data.image_size = [depth], list(size)
    with pytest.raises(UserError, match="positive" if 0 in size else f"--image-size {fixed}"):
        validate(cfg)
    if 0 not in size:
        model = UNet(UNetConfig(channels=[4 * 2**i for i in range(depth)]))
        with pytest.raises(UserError, match=f"e.g. to {fixed}"):
            model(torch.zeros(1, 3, *size))
