"""The export bundle: a folder with the model file and ``model.json`` describing it.

``model.json`` holds everything a site needs to run the model correctly without the training code:
the sub-net, its channels, the input size and normalisation, the threshold, its validation Dice, its
params and FLOPs, the sha256 of the model file (checked on every load), the source checkpoint (path and
sha256), the package version and the full training config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from elasticnet.errors import UserError
from elasticnet.files import atomic_write_text

DESCRIPTION = "model.json"
FORMAT = "elasticnet-export"
MODEL_FILES = {"onnx": "model.onnx", "torch": "model.pt"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_description(out_dir: Path, description: dict[str, Any]) -> Path:
    return atomic_write_text(out_dir / DESCRIPTION, json.dumps(description, indent=2) + "\n")


def read_description(bundle: str | Path) -> tuple[Path, dict[str, Any]]:
    """(bundle folder, description); clear errors for a missing or foreign bundle."""
    bundle = Path(bundle)
    path = bundle / DESCRIPTION if bundle.is_dir() else bundle
    if not path.is_file():
        raise UserError(f"{bundle} is not an export bundle: {DESCRIPTION} is missing; run elasticnet export first")
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-export the model") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise UserError(f"{path} is not an elasticnet export description")
    model_file = path.parent / description.get("model_file", "")
    if not model_file.is_file():
        raise UserError(f"bundle {path.parent} lacks its model file {description.get('model_file')}; re-export the model")
    expected = description.get("model_sha256")
    if expected is not None and sha256(model_file) != expected:
        raise UserError(f"{model_file} does not match the sha256 recorded in {DESCRIPTION} (a damaged or altered copy); "
                        "copy the bundle again or re-export it")
    return path.parent, description
