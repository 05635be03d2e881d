"""Shared fixtures: tiny models and small data that the tests generate themselves (helpers: helpers.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import DEPTHS, WIDTHS, randomise_bn

from elasticnet.models import ElasticUNet, ElasticUNetConfig


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_elastic() -> ElasticUNet:
    model = ElasticUNet(ElasticUNetConfig(base_width=8, depths=DEPTHS, widths=WIDTHS))
    randomise_bn(model)
    return model
