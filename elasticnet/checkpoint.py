"""The checkpoint format: weights plus everything that describes them.

A checkpoint is a plain dict of tensors and plain data (readable with ``weights_only=True``):
``format``, ``format_version``, ``elasticnet_version``, ``config`` (the resolved :class:`RunConfig`),
``model`` (state dict), ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``subnets`` (the evaluated
sub-net table), ``bn_stats`` (calibrated BN buffers per sub-net key) and ``train_seconds``; the training
state ``last.pt`` of an unfinished run holds the same plus what an exact resume needs (RNG states, the
current epoch's losses).

Since format 2 every checkpoint carries ``content_sha256``, a SHA-256 over all its other entries
(tensor bytes, dtypes, shapes and plain values, in a fixed order). Loading recomputes it, so a file that
was cut short, bit-flipped or edited is refused with a clear message instead of yielding wrong weights.
Format 1 files (no hash) still load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from elasticnet import __version__
from elasticnet.config import RunConfig
from elasticnet.errors import UserError
from elasticnet.files import load_torch, save_torch
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.models.surgery import extract
from elasticnet.models.unet import UNet
from elasticnet.run_files import CHECKPOINT_NAME, STATE_NAME

FORMAT = "elasticnet-checkpoint"
FORMAT_VERSION = 2
HASH_KEY = "content_sha256"
HEADER_KEYS = ("format", "format_version", "elasticnet_version", "config", "model", HASH_KEY)  # save_checkpoint's own


def content_hash(obj: Any) -> str:
    """SHA-256 of a nested structure of dicts, lists, tensors and plain values, independent of pickling."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if torch.is_tensor(x):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k in sorted(x, key=repr):
                feed(k)
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"V{type(x).__name__}:{x!r};".encode())

    feed(obj)
    return h.hexdigest()


def save_checkpoint(path: Path, cfg: RunConfig, model: ElasticUNet, **state: Any) -> Path:
    """Write a checkpoint (atomically, with its content hash)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "elasticnet_version": __version__,
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    payload[HASH_KEY] = content_hash(payload)
    return save_torch(payload, path)


def saved_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a loaded checkpoint holds besides what :func:`save_checkpoint` writes itself (header, config,
    weights): the ``**state`` to pass when saving it again."""
    return {k: v for k, v in ckpt.items() if k not in HEADER_KEYS}


def resolve_checkpoint(path: str | Path | None, runs_dir: Path = Path("runs")) -> Path:
    """A checkpoint file, a run folder holding one, or (None) the newest run under ``runs_dir``."""
    if path is None:
        candidates = sorted(runs_dir.glob(f"*/{CHECKPOINT_NAME}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"no checkpoint found under {runs_dir}/; train first or pass --checkpoint PATH")
        return candidates[-1]
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).exists() and (path / STATE_NAME).is_file():
            raise UserError(
                f"run {path} has not finished ({STATE_NAME} is its training state, there is no {CHECKPOINT_NAME}): "
                f"finish it with `elasticnet train --resume {path}`, or pass {path / STATE_NAME} to use the state "
                "as it is (BatchNorm not re-estimated per sub-net)"
            )
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass a run folder or its {CHECKPOINT_NAME}")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = load_torch(path, "checkpoint")
    if ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not an elasticnet checkpoint (format {ckpt.get('format')!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(
            f"{path} was written by a newer elasticnet (format {ckpt['format_version']}); upgrade elasticnet"
        )
    if ckpt.get("format_version", 0) >= 2:
        stored = ckpt.pop(HASH_KEY, None)
        if stored != content_hash(ckpt):
            raise UserError(
                f"{path} is corrupted: its content does not match the hash stored in it "
                "(a damaged copy or an edited file); use another copy"
            )
    check_structure(ckpt, path)
    return ckpt


# What every checkpoint holds (type) and what some hold (type when present): a file with a valid hash but
# missing or ill-typed entries (written by hand, or by a foreign tool) is refused here, not by a KeyError later.
REQUIRED = {"config": dict, "model": dict}
OPTIONAL = {
    "step": int,
    "epoch": int,
    "subnets": list,
    "bn_stats": dict,
    "log": list,
    "train_seconds": (int, float),
    "optimizer": dict,
    "scheduler": dict,
    "train_tflops": (int, float),
    "precision": str,
}


# What `elasticnet info --json` shows of a checkpoint: its identity and what a person compares runs by.
DESCRIBED_KEYS = ("format", "format_version", "elasticnet_version", "config", "step", "epoch", "train_seconds")
DESCRIBED_KEYS += ("train_tflops", "precision", "subnets")


def check_structure(ckpt: dict[str, Any], path: Path) -> None:
    problems = [f"{key} is missing" for key in REQUIRED if key not in ckpt]
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        if key in ckpt and not isinstance(ckpt[key], kind):
            problems.append(f"{key} is a {type(ckpt[key]).__name__}")
    if isinstance(ckpt.get("model"), dict) and not all(torch.is_tensor(v) for v in ckpt["model"].values()):
        problems.append("model holds entries that are not tensors")
    if isinstance(ckpt.get("subnets"), list) and not all(isinstance(r, dict) for r in ckpt["subnets"]):
        problems.append("subnets holds rows that are not tables")
    if problems:
        raise UserError(f"{path} is not a complete elasticnet checkpoint: {'; '.join(problems)}")


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu") -> tuple[RunConfig, ElasticUNet]:
    cfg = RunConfig.from_saved(ckpt["config"], source="checkpoint config")
    model = ElasticUNet(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not match its config: {str(e)[:300]}") from None
    return cfg, model.to(device).eval()


def cut_subnet(ckpt: dict[str, Any], subnet: SubNet) -> UNet:
    """The static U-Net of ``subnet`` with the BN statistics calibrated for it after training."""
    _, model = model_from_checkpoint(ckpt)
    model.check_subnet(subnet)
    static = extract(model, subnet)
    bn = ckpt.get("bn_stats", {}).get(subnet.key)
    if bn is not None:
        static.load_state_dict(bn, strict=False)
    return static.eval()
