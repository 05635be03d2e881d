"""Config: YAML + flags precedence, clear errors, every key a flag, round trip through a checkpoint dict."""

from __future__ import annotations

import pytest

from elasticnet.cli import build_parser
from elasticnet.config import RunConfig, build_config, leaf_keys
from elasticnet.errors import UserError


def test_precedence_defaults_yaml_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  base_width: 16\n  depths: [3, 4]\ntrain:\n  lr: 0.01\n  epochs: 3\n")
    cfg = build_config(str(path), {"lr": "0.5", "image_size": "64x96"})
    assert cfg.model.base_width == 16 and cfg.model.depths == [3, 4]
    assert cfg.train.lr == 0.5 and cfg.train.epochs == 3
    assert cfg.data.image_size == [64, 96]


def test_round_trip_through_dict():
    cfg = build_config(None, {"widths": "0.5,1", "distill": True})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("model:\n  base_widht: 16\n", "unknown key"),
        ("modle:\n  base_width: 16\n", "unknown section"),
        ("train:\n  epochs: many\n", "cannot read 'many' as int"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("model: [1\n", "not valid YAML"),
        ("train:\n  amp: fp8\n", "amp must be auto, none, bf16 or fp16"),
        ("train:\n  checkpoint_every: -1\n", "checkpoint_every must be >= 0"),
        ("model: 5\n", "section 'model' must be a mapping"),
        ("profiles: 5\n", "profiles must be a mapping"),
        ("profiles:\n  a: {model: 3}\n", "profile 'a' may only hold"),
        ("train:\n  lr: -1\n", "lr must be > 0"),
    ],
)
def test_bad_yaml_gives_clear_error(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(UserError, match=message):
        build_config(str(path))


def test_yaml_is_parsed_safely(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        build_config(str(path))


def test_image_size_must_suit_the_deepest_subnet():
    with pytest.raises(UserError, match=r"not divisible by 16 .* --image-size 112x112"):
        build_config(None, {"image_size": "100x100"})


def test_every_config_key_is_a_train_flag():
    parser = build_parser()
    for key, (_, tp) in leaf_keys().items():
        flag = "--" + key.replace("_", "-")
        args = parser.parse_args(["train", flag] if tp is bool else ["train", flag, "1"])
        assert hasattr(args, key), key


def test_a_binary_config_file_is_one_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(UserError, match="not a text file"):
        build_config(str(path))
