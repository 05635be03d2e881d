"""The export bundle: a folder with the model file and ``model.json`` describing it.

``model.json`` is the contract with hospital sites. It holds everything a site needs to run the model
correctly without the training code: the sub-net, its channels, the input size and normalisation, the
threshold, its validation Dice, its params and FLOPs, the sha256 of the model file (checked on every load),
the source checkpoint (path and sha256), the package version and the full training config. In code it is a
:class:`Description` (torch-free): export builds one, ``to_dict`` writes it, :func:`read_description`
checks the file (hash, schema, model file) and returns one, and the site runtime, ``info``, ``eval`` and the
bundle's README all read its fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticnet.data.contrast import CONTRASTS
from elasticnet.data.roi import CROPS
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


DESCRIPTION_HASH = "description_sha256"
MAX_DESCRIPTION_BYTES = 1 << 20  # a model.json is a few KB; a larger one is not ours


def description_hash(description: dict[str, Any]) -> str:
    """SHA-256 of the description without its own hash, in a canonical form (sorted keys, no spaces)."""
    body = {k: v for k, v in description.items() if k != DESCRIPTION_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# The ONNX model's input and output names: the contract between export and every site runtime.
INPUT_NAME, OUTPUT_NAME = "image", "logits"


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: size, channels, normalisation, tiling."""

    height: int
    width: int
    channels: int
    mean: list[float]
    std: list[float]
    tile: list[int] | None = None  # sliding-window size of a model trained on patches
    crop: str = "none"  # region of interest cropped before resizing (elasticnet.data.roi): none | foreground
    contrast: str = "none"  # after the crop, before resizing (elasticnet.data.contrast): none | clahe
    name: str = INPUT_NAME
    layout: str = "NCHW"
    dtype: str = "float32"
    color: str = ""
    normalisation: str = "x = (pixel / 255 - mean) / std"
    resize: str = "area interpolation to height x width; the probability map is resized back (bilinear)"
    size_rule: str = ""


@dataclass(frozen=True)
class OutputSpec:
    threshold: float
    name: str = OUTPUT_NAME
    activation: str = "sigmoid"


@dataclass(frozen=True)
class SubnetRef:
    depth: int
    width: float
    key: str


@dataclass(frozen=True)
class Description:
    """``model.json`` as a typed record (see the module doc); ``to_dict``/``from_dict`` are its JSON form."""

    model_file: str
    model_sha256: str
    target: str
    runtime: str  # onnxruntime | torch
    precision: str  # fp32 | int8
    subnet: SubnetRef
    channels: list[int]
    input: InputSpec
    output: OutputSpec
    training_config: dict[str, Any]
    elasticnet_version: str
    exported_at: str
    metrics: dict[str, Any] = field(default_factory=dict)  # validation Dice/IoU of the sub-net, as trained
    int8: dict[str, Any] | None = None  # the int8 check (Dice fp32 vs int8), when quantised
    params: int | None = None
    mflops: float | None = None
    latency: dict[str, Any] | None = None  # measured on the exporting machine
    check: dict[str, Any] = field(default_factory=dict)  # ONNX Runtime vs PyTorch
    source_checkpoint: dict[str, Any] = field(default_factory=dict)  # path and sha256
    format: str = FORMAT
    format_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path) -> Description:
        """The description of a checked ``model.json`` (:func:`check_description` first); unknown keys of newer
        exports are ignored."""
        check_description(d, path)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        try:
            sub = d["subnet"]
            values["subnet"] = SubnetRef(int(sub["depth"]), float(sub["width"]), str(sub["key"]))
            values["input"] = InputSpec(**{k: v for k, v in d["input"].items() if k in _names(InputSpec)})
            values["output"] = OutputSpec(**{k: v for k, v in d["output"].items() if k in _names(OutputSpec)})
            return cls(**values)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"{path} is not a valid export description ({type(e).__name__}: {e}); re-export the bundle"
            ) from None


def _names(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


def write_description(out_dir: Path, description: Description | dict[str, Any]) -> Path:
    body = description.to_dict() if isinstance(description, Description) else dict(description)
    body = {**body, DESCRIPTION_HASH: description_hash(body)}
    return atomic_write_text(out_dir / DESCRIPTION, json.dumps(body, indent=2) + "\n")


def _number(value: Any, low: float, high: float) -> bool:
    import math

    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def check_description(d: dict[str, Any], path: Path) -> None:
    """The fields a site relies on, with types and ranges: an edited or foreign model.json is refused here, not
    by a traceback (or silently empty masks) later."""
    problems = []
    spec, out = d.get("input"), d.get("output")
    if not isinstance(spec, dict):
        problems.append("input is missing")
    else:
        channels = spec.get("channels")
        if channels not in (1, 3):
            problems.append(f"input.channels must be 1 or 3, got {channels!r}")
        for key in ("height", "width"):
            if not (isinstance(spec.get(key), int) and 1 <= spec[key] <= 16384):
                problems.append(f"input.{key} must be a whole number of pixels in 1..16384, got {spec.get(key)!r}")
        for key, low in (("mean", -1e6), ("std", 1e-12)):
            values = spec.get(key)
            if not (isinstance(values, list) and len(values) == channels and all(_number(v, low, 1e6) for v in values)):
                problems.append(
                    f"input.{key} must be {channels!r} number(s){' > 0' if key == 'std' else ''}, got {values!r}"
                )
        tile = spec.get("tile")
        if tile is not None and not (
            isinstance(tile, list) and len(tile) == 2 and all(isinstance(t, int) and 0 <= t <= 16384 for t in tile)
        ):
            problems.append(f"input.tile must be null or [height, width], got {tile!r}")
        if spec.get("crop", "none") not in CROPS:
            problems.append(f"input.crop must be one of {', '.join(CROPS)}, got {spec.get('crop')!r}")
        if spec.get("contrast", "none") not in CONTRASTS:
            problems.append(f"input.contrast must be one of {', '.join(CONTRASTS)}, got {spec.get('contrast')!r}")
    if not isinstance(out, dict) or not _number(out.get("threshold"), 1e-9, 1 - 1e-9):
        problems.append(
            f"output.threshold must be a number in (0, 1), got {out.get('threshold') if isinstance(out, dict) else out!r}"
        )
    if not isinstance(d.get("runtime"), str) or not isinstance(d.get("model_sha256"), str):
        problems.append("runtime and model_sha256 must be present (a bundle without its model's hash is not checked)")
    sub = d.get("subnet")
    if not (isinstance(sub, dict) and isinstance(sub.get("depth"), int) and _number(sub.get("width"), 1e-9, 1.0)):
        problems.append(f"subnet must hold a depth and a width in (0, 1], got {sub!r}")
    if not isinstance(d.get("training_config"), dict):
        problems.append("training_config is missing")
    if problems:
        raise UserError(f"{path} is not a valid export description: {'; '.join(problems)}; re-export the bundle")


def model_path(folder: Path, description: dict[str, Any], path: Path) -> Path:  # the raw, unchecked dict
    """The model file, which must be a plain file name inside the bundle folder (never ../x or /etc/passwd)."""
    name = description.get("model_file")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise UserError(f"{path}: model_file must be the name of a file in the bundle folder, got {name!r}")
    candidate = folder / name
    if candidate.is_symlink() or candidate.resolve().parent != folder.resolve():
        raise UserError(f"{path}: model_file {name!r} leads outside the bundle folder; re-export the bundle")
    return candidate


def read_description(bundle: str | Path) -> tuple[Path, Description]:
    """(bundle folder, description) of a bundle whose description hash, schema and model file check out;
    clear errors for a missing, foreign, edited or damaged bundle."""
    bundle = Path(bundle)
    path = bundle / DESCRIPTION if bundle.is_dir() else bundle
    if not path.is_file():
        raise UserError(f"{bundle} is not an export bundle: {DESCRIPTION} is missing; run elasticnet export first")
    if path.stat().st_size > MAX_DESCRIPTION_BYTES:
        raise UserError(f"{path} is {path.stat().st_size:,} bytes, not an elasticnet export description")
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path} is not valid JSON ({type(e).__name__}); re-export the model") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise UserError(f"{path} is not an elasticnet export description")
    stored = description.get(DESCRIPTION_HASH)
    if stored is None:
        raise UserError(
            f"{path} carries no {DESCRIPTION_HASH} (exported by an older elasticnet, or edited); re-export "
            "the bundle with this version"
        )
    if stored != description_hash(description):
        raise UserError(
            f"{path} was changed after export (its content does not match {DESCRIPTION_HASH}); copy the "
            "bundle again or re-export it"
        )
    typed = Description.from_dict(description, path)  # the schema (types, ranges), then the typed record
    model_file = model_path(path.parent, description, path)
    if not model_file.is_file():
        raise UserError(
            f"bundle {path.parent} lacks its model file {description.get('model_file')}; re-export the model"
        )
    expected = description["model_sha256"]
    if sha256(model_file) != expected:
        raise UserError(
            f"{model_file} does not match the sha256 recorded in {DESCRIPTION} (a damaged or altered copy); "
            "copy the bundle again or re-export it"
        )
    return path.parent, typed
