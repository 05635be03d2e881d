"""Run configuration: dataclasses in sections, loaded from YAML, overridable key by key on the command line.

A resolved :class:`RunConfig` is written into every run folder, checkpoint and export, so every artefact
says how it was made. Precedence: dataclass defaults < ``--config FILE.yaml`` < command-line flags.
Every key (in any section) is also a flag: ``base_width`` is ``--base-width``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from elasticnet import shapes
from elasticnet.errors import UserError
from elasticnet.models.config import ElasticUNetConfig
from elasticnet.options import choices, opt
from elasticnet.shapes import check_size


@dataclass
class DataConfig:
    """Where the images come from, how they are split, prepared and augmented."""

    data: str = opt("synthetic", "'synthetic' (built-in) or a data set folder")
    dataset: Literal["auto", "folder", "cvc-clinicdb", "mini-mias"] = opt(
        "auto", "the reader; auto: recognised by the folder's files"
    )
    image_size: list[int] = opt(factory=lambda: [96, 128], help="H, W every image is resized to (--image-size HxW)")
    crop: Literal["none", "foreground"] = opt(
        "none",
        "before resizing, crop each image to the box of its largest bright region (foreground: a mammogram's "
        "breast; the aspect is not kept) or not (none); evaluation and a site's predict crop the same way",
    )
    contrast: Literal["none", "clahe"] = opt(
        "none",
        "after cropping, before resizing: clahe equalises each image's local contrast (CLAHE, 8x8 tiles, clip 2; "
        "for mammograms), none keeps it; evaluation and a site's predict do the same",
    )
    synthetic_count: int = opt(480, "frames in the built-in synthetic set")
    synthetic_seed: int = opt(0, "the synthetic set's own seed (independent of the training seed)")
    split: Literal["random", "grouped"] = opt("random", "random: by image; grouped: by video sequence / patient")
    split_seed: int = opt(0, "seed of the train/val/test assignment (independent of the training seed)")
    val_fraction: float = opt(0.2, "share of the images (or groups) held out for validation")
    test_fraction: float = opt(0.0, "held-out test part (ignored when folds >= 2)")
    folds: int = opt(0, "k-fold cross-validation over the split unit (0: one split); the test part is `fold`")
    fold: int = opt(0, "which fold is the test part (folds >= 2)")
    mias_classes: Literal["mass", "all"] = opt(
        "mass", "mini-MIAS lesions drawn into masks: mass (CIRC, SPIC, MISC) or all"
    )
    mean: list[float] = opt(factory=lambda: [0.485, 0.456, 0.406], help="normalisation after /255")
    std: list[float] = opt(factory=lambda: [0.229, 0.224, 0.225], help="normalisation after /255 (per channel)")
    augment: Literal["auto", "endoscopy", "mammography", "none"] = opt(
        "auto", "augmentation pipeline; auto: mammography for mini-MIAS and 1-channel data, else endoscopy"
    )
    augment_strength: float = opt(1.0, "scales every augmentation's magnitude (0: none)")
    augment_on: Literal["auto", "loader", "device"] = opt(
        "auto",
        "where training images are augmented: loader (per image, albumentations, in the loader processes) or "
        "device (per batch, torch, on the training device; whole images only); auto: device on a GPU for whole "
        "images, else loader",
    )
    patch_size: list[int] = opt(factory=lambda: [0, 0], help="train on random HxW patches (0x0: whole images)")
    patch_lesion_fraction: float = opt(
        0.5, "share of patches centred near a lesion (drawn from the images that have one, however few)"
    )
    patch_tissue_threshold: float = opt(
        0.0, "other patches centre on pixels above this share of the image's maximum (0: anywhere)"
    )
    patch_hard_fraction: float = opt(
        0.0,
        "share of patches centred on the last epoch's false positives (hard negatives: where the largest "
        "sub-net marked a lesion on a training image that has none there); 0: off",
    )
    cache: Literal["auto", "memory", "disk"] = opt(
        "auto", "keep decoded images in memory (auto: when they fit) or decode from disk on access"
    )
    num_workers: int = opt(
        -1, "loader processes; -1 (auto): none on a CPU (its cores train), min(4, cores / 2) with a GPU"
    )

    @property
    def tile(self) -> tuple[int, int] | None:
        """The sliding-window size for evaluating a model trained on patches (None: whole images)."""
        return (int(self.patch_size[0]), int(self.patch_size[1])) if any(self.patch_size) else None


@dataclass
class TrainConfig:
    """How the elastic model is trained."""

    epochs: int = opt(12, "passes over the training images")
    max_steps: int = opt(0, "stop after this many optimiser steps (0: no limit); for smoke runs")
    batch_size: int = opt(8, "images per optimiser step (per process)")
    lr: float = opt(2e-3, "peak learning rate (cosine schedule with one epoch of warm-up)")
    weight_decay: float = opt(1e-4, "decoupled weight decay")
    strategy: Literal["uniform", "sandwich", "slimmable"] = opt(
        "slimmable",
        "uniform: one random sub-net per step (the originating study); sandwich: the largest, the smallest and "
        "num_random random ones (+ always_subnets); slimmable: a sandwich that also trains every full-width depth "
        "each step (the parity campaign's grid-free rule)",
    )
    num_random: int = opt(
        1, "sandwich, slimmable: random sub-nets per step besides the largest, the smallest and those every step runs"
    )
    always_subnets: list[str] = opt(
        factory=list, help="sandwich, slimmable: also trained every step (keys like d4-w0.5,d5-w0.25)"
    )
    random_by_flops: bool = opt(
        False, "sandwich: draw the random sub-nets in proportion to their FLOPs (not uniformly)"
    )
    weight_smallest: float = opt(
        0.5, "loss weight of the smallest sub-net in a sandwich (the largest, full-width depths, always_subnets: 1)"
    )
    weight_random: float = opt(1.0, "loss weight of the randomly drawn sub-nets")
    subnet_weights: list[str] = opt(
        factory=list,
        help="sandwich: a sub-net's own loss weight whenever it runs, over the rules above (d4-w0.5=2,...)",
    )
    shrink_start: float = opt(0.0, "fraction of the steps during which only the largest sub-net trains (warm start)")
    width_start: float = opt(0.0, "fraction of the steps before which only full-width sub-nets are drawn")
    ramp: float = opt(
        0.0, "fraction of the steps over which a newly joining kind of sub-net (and distillation) is weighted in"
    )
    distill: bool = opt(False, "smaller sub-nets also learn from the largest one's probabilities")
    distill_weight: float = opt(0.5, "loss = task + distill_weight * distillation (smaller sub-nets only)")
    distill_teacher: Literal["live", "ema"] = opt(
        "live", "live: this step's largest sub-net; ema: the largest of an EMA of the weights"
    )
    distill_loss: Literal["bce_dice", "bce"] = opt(
        "bce_dice", "bce_dice: the task loss on soft targets; bce: per-pixel BCE to the teacher's probabilities"
    )
    distill_start: float = opt(0.0, "fraction of the steps before distillation starts")
    ema_decay: float = opt(0.99, "distill_teacher ema: weight of the old average per step")
    optimizer: Literal["adamw", "sgd"] = opt(
        "adamw", "adamw, or sgd (Nesterov momentum 0.9; summed sub-net gradients are not renormalised)"
    )
    lr_floor: float = opt(0.0, "the cosine schedule decays to lr_floor x lr instead of 0")
    grad_clip: float = opt(0.0, "clip the step's summed gradient to this global norm (0: off)")
    grad_projection: Literal["none", "largest", "subnets"] = opt(
        "none",
        "sandwich: where the largest sub-net's gradient and the others' (summed) conflict in a weight tensor, "
        "keep one whole and remove the conflicting part of the other: largest (NASViT) keeps the largest's, "
        "subnets the smaller sub-nets'",
    )
    loss: Literal["bce_dice", "bce_focal_tversky"] = opt(
        "bce_dice",
        "BCE plus soft Dice, or plus focal Tversky (missed lesion pixels weigh 0.7, false alarms 0.3; for small, "
        "rare lesions)",
    )
    dice_loss: Literal["image", "batch"] = opt(
        "image", "the region term (Dice or Tversky) per image, or over the batch as one region"
    )
    pos_weight: float = opt(1.0, "BCE weight of lesion pixels (> 1 for rare foreground)")
    inactive_weights: Literal["freeze", "optimizer"] = opt(
        "freeze",
        "freeze: weights a step did not use stay exactly put (values and optimiser state); optimizer: the optimiser moves them",
    )
    sync_bn: bool = opt(False, "data-parallel only: batch statistics over all processes")
    grad_checkpoint: bool = opt(False, "recompute each level's block in backward (less memory, more time)")
    amp: Literal["auto", "none", "bf16", "fp16"] = opt(
        "auto", "mixed precision; auto: bf16 where the device computes it natively, else fp32"
    )
    eval_batch_size: int = opt(
        0, "batch of BN calibration and evaluation; 0: auto (no gradients, so larger than training's)"
    )
    final_table: bool = opt(True, "calibrate and evaluate every sub-net at the end (off: smoke and benchmark runs)")
    channels_last: bool = opt(
        True, "NHWC memory layout in training (measured 1.2-1.3x faster steps on CPUs, fp32 and bf16)"
    )
    checkpoint_every: int = opt(50, "steps between saves of the training state (last.pt); 0: at epoch ends only")
    calib_batches: int = opt(16, "training batches used to re-estimate BN statistics per sub-net")
    threshold: float = opt(0.5, "probability threshold for masks and metrics")
    lesion_detection: bool = opt(
        False,
        "also report lesion-level detection per sub-net: sensitivity at 0.5/1/2 false positives per film "
        "(FROC) and the share of normal films with a false positive",
    )
    seed: int = opt(0, "training seed (weights, sub-net draws, data order, augmentation)")
    deterministic: bool = opt(
        False,
        "GPU runs: algorithms with a deterministic backward only (same seed, same weights; slower); CPU runs "
        "are deterministic either way",
    )
    device: str = opt("auto", "auto (CUDA when present) | cpu | cuda | cuda:N")
    out: str = opt("", "run folder; empty: runs/<date-time>")


@dataclass
class RunConfig:
    model: ElasticUNetConfig = field(default_factory=ElasticUNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        values = values or {}
        if not isinstance(values, dict):
            raise UserError(
                f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(values).__name__}"
            )
        unknown = sorted(set(values) - set(SECTIONS))
        if unknown:
            raise UserError(f"{source}: unknown section(s) {unknown}; valid sections: {', '.join(SECTIONS)}")
        parts = {}
        for name, section in SECTIONS.items():
            given = values.get(name) or {}
            if not isinstance(given, dict):
                raise UserError(
                    f"{source}: section {name!r} must be a mapping of keys (e.g. {name}: {{key: value}}), "
                    f"got {type(given).__name__}"
                )
            hints = typing.get_type_hints(section)
            valid = {f.name for f in dataclasses.fields(section)}
            bad = sorted(set(given) - valid)
            if bad:
                raise UserError(
                    f"{source}: unknown key(s) {bad} in section {name!r}; valid keys: {', '.join(sorted(valid))}"
                )
            parts[name] = section(**{k: coerce(v, hints[k], f"{name}.{k}") for k, v in given.items()})
        return validate(cls(**parts))

    @classmethod
    def from_saved(cls, values: dict[str, Any], source: str = "saved config") -> RunConfig:
        """A config saved by an earlier run (checkpoint, run folder, export): a key it lacks was written before
        the key existed and meant that day's default, which ``FORMER_DEFAULTS`` keeps where today's differs."""
        if isinstance(values, dict):
            values = {**values}
            for section, former in FORMER_DEFAULTS.items():
                given = values.get(section) or {}
                if isinstance(given, dict):  # anything else is from_dict's error to report
                    values[section] = {**former, **given}
        return cls.from_dict(values, source)


# Defaults that changed (issue 13 moved `train` to its best grid-free recipe): what a saved config that lacks
# the key meant. Add a key here whenever a default changes.
FORMER_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"junction": "shared"},
    "train": {"strategy": "uniform", "weight_smallest": 1.0},
}

# Top-level sections of a config file that are not part of a run's config (read by other commands).
NON_RUN_SECTIONS = ("search",)  # the hyper-parameter search space of `elasticnet tune`

SECTIONS: dict[str, type] = {"model": ElasticUNetConfig, "data": DataConfig, "train": TrainConfig}


def leaf_keys() -> dict[str, tuple[str, Any]]:
    """Every config key -> (section, type). Keys are unique across sections, so each is one flag."""
    keys: dict[str, tuple[str, Any]] = {}
    for section_name, section in SECTIONS.items():
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            assert f.name not in keys, f"config key {f.name} appears in two sections"
            keys[f.name] = (section_name, hints[f.name])
    return keys


@dataclass(frozen=True)
class Option:
    """One config key as users see it: in YAML, as a flag, in ``--help`` and in the README's table."""

    key: str
    section: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...]

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def kind(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if typing.get_origin(self.type) is list:
            return "comma-separated list" + (" (HxW)" if self.key.endswith("_size") else "")
        return getattr(self.type, "__name__", str(self.type))


def options() -> list[Option]:
    """Every config key with its type, default, help text and vocabulary, in section order."""
    out = []
    for section_name, section in SECTIONS.items():
        hints, defaults = typing.get_type_hints(section), section()
        for f in dataclasses.fields(section):
            out.append(
                Option(
                    f.name,
                    section_name,
                    hints[f.name],
                    getattr(defaults, f.name),
                    f.metadata.get("help", ""),
                    choices(hints[f.name]),
                )
            )
    return out


README_MARKERS = (
    "<!-- config keys: generated by `python -m elasticnet.config README.md` -->",
    "<!-- end of config keys -->",
)


def options_markdown() -> str:
    """The table of every config key (flag, section, type or choices, default, meaning), as in the README."""

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|")

    rows = []
    for o in options():
        default = ",".join(map(str, o.default)) if isinstance(o.default, list) else str(o.default)
        shown = f"`{cell(default)}`" if default else "(empty)"
        rows.append(f"| `{o.flag}` | {o.section} | {cell(o.kind)} | {shown} | {cell(o.help)} |")
    return "\n".join(["| flag (YAML key) | section | type | default | meaning |", "|---|---|---|---|---|", *rows])


def update_readme(path: str | Path) -> bool:
    """Rewrite the generated table of config keys between the README's markers; True if it changed."""
    path = Path(path)
    text = path.read_text()
    start, end = (text.index(m) for m in README_MARKERS)
    new = text[: start + len(README_MARKERS[0])] + "\n" + options_markdown() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML or command-line value to the annotated type, with a clear error."""
    allowed = choices(tp)
    if allowed:
        return check_choice(key.rsplit(".", 1)[-1], str(value), allowed)
    try:
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if isinstance(value, str):
                if item in (int, float):  # sizes: 96x128 reads as 96,128
                    value = value.replace("x", ",").replace("X", ",")
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [coerce(v, item, key) for v in value]
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        raise UserError(f"{key}: cannot read {value!r} as {name}") from None


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise UserError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


# Ranges of the numeric options: (section, key, lowest, highest, the lowest is allowed). Checked before anything
# is written, so a corrected command is never refused by a half-made run folder.
RANGES = [
    ("train", "lr", 0.0, 10.0, False),
    ("train", "weight_decay", 0.0, 10.0, True),
    ("train", "distill_weight", 0.0, 100.0, True),
    ("train", "threshold", 0.0, 0.999999, False),
    ("train", "seed", 0, 2**32 - 1, True),
    ("train", "max_steps", 0, 10**9, True),
    ("train", "calib_batches", 1, 10**6, True),
    ("train", "num_random", 0, 1000, True),
    ("train", "batch_size", 1, 4096, True),
    ("train", "epochs", 1, 10**6, True),
    ("train", "eval_batch_size", 0, 4096, True),
    ("train", "grad_clip", 0.0, 10**6, True),
    ("train", "weight_smallest", 0.0, 100.0, True),
    ("train", "weight_random", 0.0, 100.0, True),
    ("train", "pos_weight", 0.0, 1000.0, False),
    ("data", "num_workers", -1, 256, True),
    ("data", "augment_strength", 0.0, 10.0, True),
    ("data", "synthetic_count", 3, 10**6, True),
    ("data", "patch_lesion_fraction", 0.0, 1.0, True),
    ("data", "patch_tissue_threshold", 0.0, 1.0, True),
    ("data", "patch_hard_fraction", 0.0, 1.0, True),
    ("data", "split_seed", 0, 2**32 - 1, True),
    ("model", "base_width", 1, 1024, True),
    ("model", "channel_multiple", 0, 256, True),
    ("model", "in_channels", 1, 4, True),
]
MAX_SIDE = 16384  # pixels: image_size and patch_size sides


def check_ranges(cfg: RunConfig) -> None:
    for section, key, low, high, low_ok in RANGES:
        value = getattr(getattr(cfg, section), key)
        bad = not math.isfinite(value) or value > high or value < low or (value == low and not low_ok)
        if bad:
            bound = f"{'>=' if low_ok else '>'} {low} and <= {high}"
            raise UserError(
                f"{key} must be {bound}, got {value}; e.g. --{key.replace('_', '-')} "
                f"{getattr(type(getattr(cfg, section))(), key)} (the default)"
            )
    if any(not math.isfinite(v) or v <= 0 for v in cfg.data.std):
        raise UserError(f"std must be positive numbers (one per channel), got {cfg.data.std}")
    if any(not math.isfinite(v) for v in cfg.data.mean):
        raise UserError(f"mean must be numbers, got {cfg.data.mean}")
    if max(cfg.data.image_size + cfg.data.patch_size) > MAX_SIDE:
        raise UserError(
            f"image_size and patch_size sides must be <= {MAX_SIDE} pixels, got {cfg.data.image_size} "
            f"and {cfg.data.patch_size}"
        )


def validate(cfg: RunConfig) -> RunConfig:
    """Cross-field checks that no single dataclass can make."""
    check_ranges(cfg)
    size = check_size(cfg.data.image_size, cfg.model.max_depth, "image_size", "use e.g. --image-size {}")
    stride = shapes.stride(cfg.model.max_depth)
    same = cfg.model.same_channel_widths()
    if same:
        a, b = same[0]
        raise UserError(
            f"widths {a:g} and {b:g} give the same channels at base_width {cfg.model.base_width} with "
            f"channel_multiple {cfg.model.channel_multiple}; use a larger --base-width, a smaller "
            "--channel-multiple, or drop one of the widths"
        )
    if cfg.model.num_classes != 1:
        raise UserError(
            f"num_classes must be 1 (binary segmentation: lesion vs background), got {cfg.model.num_classes}"
        )
    data = cfg.data
    if (
        data.val_fraction <= 0
        or data.val_fraction >= 1
        or data.test_fraction < 0
        or data.val_fraction + data.test_fraction >= 1
    ):
        raise UserError(
            f"val_fraction must lie in (0, 1) and test_fraction in [0, 1) with room left for training, "
            f"got {data.val_fraction} and {data.test_fraction}"
        )
    if data.folds == 0 and data.fold != 0:
        raise UserError(
            f"fold {data.fold} picks the test part of a cross-validation, but folds is 0 (one split); add "
            "--folds K (e.g. --folds 5) or drop --fold"
        )
    patch = data.patch_size
    if len(patch) != 2 or (
        any(patch)
        and (min(patch) <= 0 or patch[0] > size[0] or patch[1] > size[1] or patch[0] % stride or patch[1] % stride)
    ):
        raise UserError(
            f"patch_size {patch} must be 0x0 (whole images) or HxW within image_size {size[0]}x{size[1]} "
            f"and divisible by {stride}"
        )
    for section in (cfg.model, cfg.data, cfg.train):  # the vocabularies (set in code, not only parsed)
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            if choices(hints[f.name]):
                check_choice(f.name, getattr(section, f.name), choices(hints[f.name]))
    t = cfg.train
    fractions = {
        "shrink_start": t.shrink_start,
        "width_start": t.width_start,
        "ramp": t.ramp,
        "distill_start": t.distill_start,
        "lr_floor": t.lr_floor,
    }
    for key, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise UserError(f"{key} must lie in [0, 1) (a fraction), got {value}")
    if t.grad_projection != "none" and t.strategy == "uniform":
        raise UserError(
            "grad_projection combines the largest sub-net's gradient with the others' of a sandwich step; "
            "use --strategy slimmable or sandwich (the uniform strategy runs one sub-net per step)"
        )
    if not 0.0 < t.ema_decay < 1.0:
        raise UserError(f"ema_decay must lie in (0, 1), got {t.ema_decay}")
    if cfg.train.checkpoint_every < 0:
        raise UserError("checkpoint_every must be >= 0 (0: save the training state at epoch ends only)")
    if len(cfg.data.mean) != cfg.model.in_channels or len(cfg.data.std) != cfg.model.in_channels:
        raise UserError(f"mean and std need {cfg.model.in_channels} value(s), one per input channel")
    if data.augment_on == "device" and any(patch):
        raise UserError("augment_on device augments whole images; with patch_size use --augment-on loader (or auto)")
    if data.patch_hard_fraction > 0 and not any(patch):
        raise UserError("patch_hard_fraction centres patches on hard negatives; give --patch-size HxW too")
    if data.patch_lesion_fraction + data.patch_hard_fraction > 1:
        raise UserError(
            f"patch_lesion_fraction + patch_hard_fraction is {data.patch_lesion_fraction + data.patch_hard_fraction:g}"
            ", more than all patches; lower one of them so they sum to <= 1"
        )
    return cfg


MAX_CONFIG_BYTES = 1 << 20  # configs are a few KB; a larger file is not one


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    import yaml

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not a text file (not UTF-8); give a YAML config") from None
    except OSError as e:
        raise UserError(f"config file {path} cannot be read ({e.strerror})") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is {len(text) // 1024} KB; a run config is a few KB: give the right file")
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {path} is not valid YAML: {e}") from None
    except RecursionError:  # brackets nested thousands deep: PyYAML recurses per level
        raise UserError(f"config file {path} is nested too deeply to be a run config; give a YAML config") from None


def merge_profile(loaded: dict[str, Any], profile: str | None, source: str) -> dict[str, Any]:
    """Apply a named profile of a config file: its sections override the file's base sections.

    A file may hold ``profiles: {NAME: {model: ..., data: ..., train: ...}}`` and ``default_profile: NAME``.
    """
    loaded = dict(loaded)
    profiles = loaded.pop("profiles", None) or {}
    default = loaded.pop("default_profile", None)
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) or v is None for v in profiles.values()):
        raise UserError(f"{source}: profiles must be a mapping of NAME: {{section: {{key: value}}}}")
    for pname, sections in profiles.items():
        for section, values in (sections or {}).items():
            if section not in SECTIONS or not isinstance(values, dict):
                raise UserError(
                    f"{source}: profile {pname!r} may only hold the sections {', '.join(SECTIONS)} as "
                    f"mappings, got {section!r}: {type(values).__name__}"
                )
    name = profile or default
    if name is None:
        return loaded
    if name not in profiles:
        raise UserError(f"{source} has no profile {name!r}; profiles: {', '.join(profiles) or 'none'}")
    merged = {k: dict(v or {}) for k, v in loaded.items()}
    for section, values in (profiles[name] or {}).items():
        merged.setdefault(section, {}).update(values or {})
    return merged


def build_config(
    config_file: str | None = None, overrides: dict[str, Any] | None = None, profile: str | None = None
) -> RunConfig:
    """Defaults, then ``config_file`` (with its ``profile``), then ``overrides`` (flat ``key: value``, any section)."""
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    if profile and not config_file:
        raise UserError("--profile needs --config FILE.yaml (profiles live in config files)")
    if config_file:
        loaded = load_yaml(config_file)
        if not isinstance(loaded, dict):
            raise UserError(
                f"{config_file}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(loaded).__name__}"
            )
        loaded = {k: v for k, v in loaded.items() if k not in NON_RUN_SECTIONS}
        loaded = merge_profile(loaded, profile, str(config_file))
        RunConfig.from_dict(loaded, source=str(config_file))  # report its own errors with its name
        for name, section in loaded.items():
            values[name].update(section or {})  # each a mapping: checked by from_dict above
    keys = leaf_keys()
    for key, value in (overrides or {}).items():
        if key not in keys:
            raise UserError(f"unknown config key {key!r}")
        values[keys[key][0]][key] = value
    return RunConfig.from_dict(values, source="command line")


def save_yaml(cfg: RunConfig, path: Path) -> None:
    import yaml

    from elasticnet.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def resolve_for_device(cfg: RunConfig, device_type: str) -> RunConfig:
    """Fill in what a run must record as used: the training device's channel multiple (``channel_multiple:
    0``), so that the extracted sub-nets keep it, the loader processes (``num_workers: -1``), where images
    are augmented (``augment_on: auto``), and the data
    folder as an absolute path, so that ``eval`` and ``--resume`` work from any directory."""
    if cfg.data.data != "synthetic" and not Path(cfg.data.data).is_absolute():
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data=str(Path(cfg.data.data).resolve())))
    if cfg.data.num_workers == -1:  # a GPU waits for a loader in series with it; a CPU trains on every core
        workers = 0 if device_type == "cpu" else min(4, max(1, (os.cpu_count() or 2) // 2))
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=workers))
    if cfg.data.augment_on == "auto":  # a GPU should not wait for per-image augmentation on the host
        where = "device" if device_type == "cuda" and not any(cfg.data.patch_size) else "loader"
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment_on=where))
    if cfg.model.channel_multiple == 0:
        from elasticnet.hardware import fast_channel_multiple

        model = dataclasses.replace(cfg.model, channel_multiple=fast_channel_multiple(device_type))
        cfg = validate(dataclasses.replace(cfg, model=model))
    return cfg


EVAL_PIXELS = 4_000_000  # automatic evaluation batch: about this many input pixels (32 images at 288x384)


def eval_batch_size(cfg: RunConfig) -> int:
    """The evaluation batch: as given, or (0) as many whole images as make ~4 M pixels, between the training
    batch and 64 (one 2048x1280 film stays one film; 64x96 frames go 64 at a time)."""
    t = cfg.train
    if t.eval_batch_size:
        return t.eval_batch_size
    h, w = cfg.data.image_size
    return max(t.batch_size, min(64, EVAL_PIXELS // (h * w)))


if __name__ == "__main__":  # python -m elasticnet.config README.md: regenerate its table of config keys
    import sys

    print("updated" if update_readme(sys.argv[1]) else "up to date", sys.argv[1])
