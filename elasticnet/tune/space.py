"""The search space: which config keys a study varies, and how.

A config file may hold a top-level ``search:`` section mapping config keys (any flag of ``elasticnet
train``) to distributions::

    search:
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size: {type: categorical, choices: [4, 8, 16]}
      num_random: {type: int, low: 1, high: 3}

Without one, :data:`DEFAULT_SPACE` is used: the optimiser, the sub-net sampling and distillation, and the
augmentation strength — what decides how well every sub-net learns, leaving architecture and data alone.
"""

from __future__ import annotations

from typing import Any

from elasticnet.config import leaf_keys, load_yaml
from elasticnet.errors import UserError

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [4, 8, 16]},
    "strategy": {"type": "categorical", "choices": ["uniform", "sandwich", "slimmable"]},
    "num_random": {"type": "int", "low": 1, "high": 3},
    "distill": {"type": "categorical", "choices": [False, True]},
    "distill_weight": {"type": "float", "low": 0.1, "high": 1.0},
    "augment_strength": {"type": "float", "low": 0.0, "high": 1.5},
}
TYPES = ("float", "int", "categorical")


def load_space(config_file: str | None) -> dict[str, dict[str, Any]]:
    """The ``search:`` section of ``config_file`` (checked), or the defaults."""
    space = (load_yaml(config_file).get("search") if config_file else None) or DEFAULT_SPACE
    return check_space(space, config_file or "default search space")


def check_space(space: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(space, dict):
        raise UserError(f"{source}: search must map config keys to distributions")
    keys = leaf_keys()
    for key, spec in space.items():
        if key not in keys:
            raise UserError(f"{source}: search key {key!r} is not a config key; valid: {', '.join(sorted(keys))}")
        if key in ("out", "device", "seed", "data", "dataset"):
            raise UserError(f"{source}: {key} describes the study, not a hyper-parameter; set it on the command line")
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            raise UserError(f"{source}: search.{key} needs type: float, int or categorical")
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise UserError(f"{source}: search.{key} needs a non-empty choices list")
            continue
        try:
            low, high = (int if spec["type"] == "int" else float)(spec["low"]), float(spec["high"])
        except KeyError:
            raise UserError(f"{source}: search.{key} needs low and high") from None
        except (TypeError, ValueError):
            raise UserError(
                f"{source}: search.{key} low and high must be numbers, got {spec.get('low')!r} and {spec.get('high')!r}"
            ) from None
        if not low < high:
            raise UserError(f"{source}: search.{key} needs low < high")
        elif spec.get("log") and low <= 0:
            raise UserError(f"{source}: search.{key} with log: true needs low > 0")
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trial's values for every key of ``space`` (Optuna records them as its params)."""
    values = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
    return values
