"""The one rule on image sizes: a U-Net of depth ``d`` halves H and W ``d - 1`` times, so both must be
divisible by ``2**(d - 1)``. Torch-free; the config, the model, the profiler and the bundle all use it."""

from __future__ import annotations

from collections.abc import Sequence

from elasticnet.errors import UserError


def stride(depth: int) -> int:
    """The factor H and W must be divisible by at ``depth``."""
    return 2 ** (depth - 1)


def size_rule(depth: int) -> str:
    return f"H and W divisible by {stride(depth)} (= 2**(depth - 1) for depth {depth})"


def check_size(
    size: Sequence[int], depth: int, what: str = "input size", fix: str = "use e.g. --input-size {}"
) -> tuple[int, int]:
    """``size`` as (H, W) if it is two positive sides divisible by :func:`stride`; else one clear error that
    names the nearest larger size, through ``fix`` (the advice, with ``{}`` where that size goes)."""
    if len(size) != 2 or min(size) <= 0:
        given = "x".join(map(str, size))
        example = f"{size[0]}x{size[0]}" if len(size) == 1 and size[0] > 0 else "288x384"
        raise UserError(f"{what} must be HxW with positive sides, got {given or 'nothing'}; give both, e.g. {example}")
    s = stride(depth)
    h, w = int(size[0]), int(size[1])
    if h % s or w % s:
        raise UserError(
            f"{what} {h}x{w} is not divisible by {s} (= 2**(depth - 1) for depth {depth}); "
            + fix.format(f"{h + (-h % s)}x{w + (-w % s)}")
        )
    return h, w
