"""``elasticnet export``: cut one sub-net out of a checkpoint and write it as a standalone bundle."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export one sub-net (ONNX for CPU sites, or PyTorch)", description=__doc__)
    p.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest run under runs/)")
    p.add_argument("--depth", type=int, required=True, help="number of resolution levels of the sub-net")
    p.add_argument("--width", type=float, help="channel multiplier of the sub-net (default: the full width)")
    p.add_argument("--target", default="cpu", choices=["cpu", "onnx", "torch"],
                   help="cpu/onnx: ONNX model checked with ONNX Runtime; torch: PyTorch file without elastic code")
    p.add_argument("--out", help="bundle folder (default: <run>/export-d<D>-w<W>-<target>)")


def run(args: argparse.Namespace) -> int:
    from elasticnet.checkpoint import resolve_checkpoint
    from elasticnet.export.export import export_subnet

    checkpoint = resolve_checkpoint(args.checkpoint)
    if args.checkpoint is None:
        print(f"using the newest checkpoint: {checkpoint}")
    export_subnet(checkpoint, args.depth, args.width, args.target, Path(args.out) if args.out else None)
    return 0
