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
from collections.abc import Iterator
from contextlib import contextmanager
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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise UserError(
            f"device {name!r} requested but {torch.cuda.device_count()} GPU(s) are visible"
            + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
            + "; use cuda:0 .. cuda:N-1, or --device cpu"
        )
    return device


@contextmanager
def backend_settings(deterministic: bool) -> Iterator[None]:
    """The cuDNN / TF32 / determinism choices of a run, made explicitly, and restored afterwards.

    ``deterministic``: algorithms with a deterministic backward only (``torch.use_deterministic_algorithms``,
    cuDNN deterministic, no benchmark autotuning, no TF32), so two same-seed GPU runs give the same weights
    (the model's up-sampling switches too, see ``ElasticUNet.deterministic``). Otherwise the fast choices:
    cuDNN autotuning (a run's input sizes are fixed) and TF32 convolutions and matmuls on GPUs that have it.
    On CPUs training is deterministic either way.
    """
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
        cudnn.allow_tf32,
        matmul.allow_tf32,
    )
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(deterministic)
    cudnn.deterministic, cudnn.benchmark = deterministic, not deterministic
    cudnn.allow_tf32 = matmul.allow_tf32 = not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved[1:]


class DevicePool:
    """Devices for parallel training jobs (paper scripts): a job holds one while it runs.

    With several GPUs visible and ``device`` auto or cuda, the jobs go round-robin over ``cuda:0..N-1`` (not all
    onto cuda:0); otherwise every job gets ``device``.
    """

    def __init__(self, device: str, jobs: int):
        import queue

        import torch

        names = [device] * max(1, jobs)
        if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
            names = [f"cuda:{i % torch.cuda.device_count()}" for i in range(max(1, jobs))]
        self.names = names
        self._free: queue.Queue[str] = queue.Queue()
        for name in names:
            self._free.put(name)

    @contextmanager
    def take(self) -> Iterator[str]:
        name = self._free.get()
        try:
            yield name
        finally:
            self._free.put(name)


def with_device(command: list[str], device: str) -> list[str]:
    """``command`` with the value of its ``--device`` flag replaced by ``device`` (appended if absent)."""
    if "--device" in command:
        i = command.index("--device")
        return [*command[: i + 1], device, *command[i + 2 :]]
    return [*command, "--device", device]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation). Data order and sub-net draws have their own."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
