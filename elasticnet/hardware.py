"""What the processor can do natively: the facts speed features are switched on by (no torch needed).

Speed features must follow what the CPU really has, never what a library can emulate: oneDNN runs bf16
on any AVX-512 CPU by converting to fp32 in software, which trains several times *slower* than fp32. So
bf16 counts as native only with the instructions that compute in it (AVX512_BF16, AMX-BF16).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# CPU flags (as /proc/cpuinfo spells them) that matter for this package's kernels.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "avx_vnni")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: /proc/cpuinfo). Empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM
            return frozenset(value.split())
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16_cpu() -> bool:
    """Whether this CPU computes in bf16 (AVX512_BF16 or AMX-BF16); unknown counts as no."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def cpu_summary() -> str:
    """One line for benchmark outputs and run logs: the CPU and the speed flags it has and lacks."""
    flags = cpu_flags()
    have = [f for f in SPEED_FLAGS if f in flags]
    lack = [f for f in SPEED_FLAGS if f not in flags]
    return f"{cpu_name()} ({platform.machine()}); has {' '.join(have) or 'none of'}; lacks {' '.join(lack) or 'none'}"


def fast_channel_multiple(device_type: str) -> int:
    """The channel multiple that keeps convolutions on the fast kernels of ``device_type``.

    oneDNN blocks channels by the vector width: 16 fp32 lanes with AVX-512, 8 with AVX2; CUDA tensor cores
    want multiples of 8 (bf16/fp16). Measured by ``benchmarks/train_step.py --channel-multiples``.
    """
    if device_type == "cpu":
        return 16 if "avx512f" in cpu_flags() else 8
    return 8
