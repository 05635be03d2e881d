"""Config profiles and the experiment configs shipped in experiments/."""

from __future__ import annotations

from pathlib import Path

import pytest

from elasticnet.config import build_config
from elasticnet.errors import UserError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_profile_overrides_base_and_flags_override_profile(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {base_width: 8}\ntrain: {epochs: 2}\ndefault_profile: small\n"
        "profiles:\n  small: {train: {epochs: 3}}\n  big: {model: {base_width: 32}}\n"
    )
    assert build_config(str(path)).train.epochs == 3
    big = build_config(str(path), profile="big")
    assert big.model.base_width == 32 and big.train.epochs == 2
    assert build_config(str(path), {"epochs": "9"}, profile="small").train.epochs == 9
    with pytest.raises(UserError, match="no profile 'huge'"):
        build_config(str(path), profile="huge")


@pytest.mark.parametrize("name", sorted(p.name for p in EXPERIMENTS.glob("*.yaml")))
def test_every_experiment_profile_is_valid(name):
    import yaml

    loaded = yaml.safe_load((EXPERIMENTS / name).read_text())
    for profile in loaded.get("profiles") or {None: None}:
        cfg = build_config(str(EXPERIMENTS / name), profile=profile)
        assert cfg.model.max_depth >= 3


def test_cvc_profiles_match_the_issue():
    cpu = build_config(str(EXPERIMENTS / "cvc_clinicdb.yaml"), profile="cpu")
    paper = build_config(str(EXPERIMENTS / "cvc_clinicdb.yaml"), profile="paper")
    assert paper.data.image_size == [288, 384] and paper.model.base_width == 64
    assert cpu.data.image_size[0] < 288 and cpu.data.split == paper.data.split == "grouped"
