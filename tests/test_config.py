"""Config: YAML + flags precedence, clear errors, every key a flag, round trip through a checkpoint dict."""

from __future__ import annotations

from pathlib import Path

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
        ("train:\n  amp: fp8\n", "amp must be one of auto, none, bf16, fp16"),
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


def test_every_config_key_is_a_train_flag_with_its_help_and_choices(capsys):
    from elasticnet.config import options

    parser = build_parser()
    assert [o.key for o in options()] == list(leaf_keys())
    for o in options():
        value = o.choices[-1] if o.choices else "1"
        args = parser.parse_args(["train", o.flag] if o.type is bool else ["train", o.flag, value])
        assert hasattr(args, o.key), o.key
        assert o.help, f"{o.key} has no help text"
        if o.choices:  # a word outside the vocabulary is refused by the parser, naming the choices
            with pytest.raises(SystemExit):
                parser.parse_args(["train", o.flag, "no-such-choice"])
            err = capsys.readouterr().err
            assert all(c in err for c in o.choices), (o.key, err)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "{uniform,sandwich,slimmable}" in text and "[train; default slimmable]" in text


def test_vocabularies_are_checked_however_the_config_is_made():
    """YAML and flags are coerced; a config built in code is checked by validate: one message either way."""
    from elasticnet.config import RunConfig, TrainConfig, validate

    with pytest.raises(UserError, match="strategy must be one of uniform, sandwich"):
        build_config(None, {"strategy": "fancy"})
    with pytest.raises(UserError, match="optimizer must be one of adamw, sgd"):
        validate(RunConfig(train=TrainConfig(optimizer="adam")))


def test_a_binary_config_file_is_one_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(UserError, match="not a text file"):
        build_config(str(path))


def test_the_readme_lists_every_config_key_as_the_code_defines_it(tmp_path):
    """The README's table of config keys is generated from the dataclasses; a new or changed key must be
    regenerated (`python -m elasticnet.config README.md`)."""
    from elasticnet.config import update_readme

    readme = Path(__file__).resolve().parents[1] / "README.md"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text())
    assert not update_readme(copy), "README.md's config keys are stale: run `python -m elasticnet.config README.md`"


def test_loader_processes_follow_the_device_and_are_recorded():
    from elasticnet.config import RunConfig, resolve_for_device

    cfg = RunConfig()
    assert cfg.data.num_workers == -1  # auto
    assert resolve_for_device(cfg, "cpu").data.num_workers == 0  # the CPU's cores train
    assert 1 <= resolve_for_device(cfg, "cuda").data.num_workers <= 4  # a GPU should not wait for augmentation
    cfg.data.num_workers = 3
    assert resolve_for_device(cfg, "cuda").data.num_workers == 3  # as given


def test_list_values_split_on_x_only_where_they_are_sizes():
    from elasticnet.config import coerce

    assert coerce("96x128", list[int], "data.image_size") == [96, 128]
    assert coerce("d4-w1,xd3", list[str], "train.always_subnets") == ["d4-w1", "xd3"]  # refused later by its reader
    cfg = build_config(None, {"always_subnets": "xx", "strategy": "sandwich"})
    assert cfg.train.always_subnets == ["xx"]
