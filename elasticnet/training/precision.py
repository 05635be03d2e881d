"""Mixed precision for training: the autocast dtype, and the loss scaler that fp16 needs.

``amp="auto"`` (the default) trains in bf16 where the device computes in it natively, in fp32 elsewhere:
CUDA GPUs with bf16 (Ampere and newer), CPUs with AVX512_BF16 or AMX-BF16
(:func:`elasticnet.hardware.native_bf16_cpu`). It never picks emulated bf16, which is slower than fp32.
The losses, the BN statistics and every evaluation stay in fp32, so an exported model is the fp32 model.

:class:`Precision` hides the difference between the modes from the training loop: ``autocast()``,
``backward(loss)`` and ``step(optimizer)`` do the right thing for each.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch

from elasticnet import hardware
from elasticnet.errors import UserError

AMP_MODES = ("auto", "none", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 in hardware (not by conversion in software)."""
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.4 has no including_emulation (and counted emulation as no)
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return hardware.native_bf16_cpu()
    return False


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision a run uses on ``device``: ``none`` (fp32), ``bf16`` or ``fp16``."""
    if amp not in AMP_MODES:
        raise UserError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    if amp == "bf16" and device.type == "cuda" and not native_bf16(device):
        raise UserError(
            f"--amp bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bf16; use --amp fp16 or --amp none"
        )
    return amp


def amp_note(amp: str, used: str, device: torch.device) -> str:
    """Why the run trains in ``used``: for the run header (and a warning for emulated bf16)."""
    name = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}[used]
    if amp == "auto":
        reason = "native bf16" if used == "bf16" else "no native bf16"
        return f"{name} (auto: {reason} on {device.type})"
    if used == "bf16" and device.type == "cpu" and not native_bf16(device):
        return (
            f"{name} (warning: this CPU has no AVX512_BF16/AMX, so bf16 is emulated and trains several times "
            "slower than fp32; use --amp auto)"
        )
    if used == "fp16" and device.type == "cpu":
        return f"{name} (warning: fp16 training on a CPU is emulated and slow; fp16 is for GPUs, use --amp auto)"
    return name


@dataclass
class Precision:
    """The precision of one run. ``used`` is ``none``, ``bf16`` or ``fp16`` (with a GradScaler)."""

    used: str
    device_type: str
    scaler: torch.amp.GradScaler | None = field(default=None, repr=False)

    @classmethod
    def for_device(cls, amp: str, device: torch.device) -> Precision:
        used = resolve_amp(amp, device)
        scaler = torch.amp.GradScaler(device.type) if used == "fp16" else None
        return cls(used, device.type, scaler)

    @property
    def name(self) -> str:
        return {"none": "fp32"}.get(self.used, self.used)

    def autocast(self) -> AbstractContextManager:
        dtype = _DTYPES.get(self.used)
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, clip_params=None, max_norm: float = 0.0) -> None:
        """The optimiser step; with ``max_norm`` the gradients of ``clip_params`` are first clipped to that
        global norm (unscaled first under fp16)."""
        if clip_params is not None and max_norm > 0:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(clip_params), max_norm)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
