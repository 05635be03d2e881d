"""Process-level set-up: device choice, seeding, and the allocator fix for eager PyTorch on CPU.

Allocator: with glibc's default malloc, eager PyTorch returns large activation buffers to the OS after
every op and page-faults them back in (0.4-1.3 million minor faults per batch-8 U-Net forward), which
made CPU training and inference 1.7-2.8x slower here. :func:`tune_malloc` tells glibc to keep freed
memory (``mallopt(M_MMAP_MAX, 0)`` and a 2 GiB trim threshold). Cost: peak RSS stays at its high-water
mark. The ``elasticnet`` command applies it on Linux/glibc unless ``ELASTICNET_MALLOC_TUNING=0`` is set
or ``--no-malloc-tuning`` is given; library users may call it themselves. Setting ``MALLOC_MMAP_MAX_=0``
before Python starts has the same effect. (torch is imported only where needed: the ``elasticnet``
command also serves sites that run exported models without torch.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
from typing import TYPE_CHECKING

from elasticnet.errors import UserError

if TYPE_CHECKING:
    import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_malloc() -> bool:
    """Apply the glibc allocator fix to this process. Returns True if it was applied."""
    if os.environ.get("ELASTICNET_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` are taken as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation). Data order and sub-net draws have their own."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
