"""``elasticnet export``: cut one sub-net out of a checkpoint and write it as a standalone bundle.

Either name the sub-net (``--depth``, ``--width``) or give a budget (``--budget-ms``, ``--budget-mflops``,
``--budget-params``, ``--budget-mb``): the sub-nets are then profiled on this machine (for ms and MB) and
the one with the highest validation Dice within every budget is exported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from elasticnet.cli.arguments import at_least, at_least_number


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export one sub-net (ONNX for CPU sites, or PyTorch)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest run under runs/)")
    p.add_argument("--depth", type=int, help="number of resolution levels of the sub-net")
    p.add_argument("--width", type=float, help="channel multiplier of the sub-net (default: the full width)")
    p.add_argument(
        "--target",
        default="cpu",
        choices=["cpu", "onnx", "torch"],
        help="cpu/onnx: ONNX model checked with ONNX Runtime; torch: PyTorch file without elastic code",
    )
    p.add_argument("--out", help="bundle folder (default: <run>/export-d<D>-w<W>-<target>)")
    budget = p.add_argument_group("budget (instead of --depth/--width): the most accurate sub-net that fits")
    positive = at_least_number(0, inclusive=False)
    budget.add_argument("--budget-ms", type=positive, help="median batch-1 latency on this machine (ms)")
    budget.add_argument("--budget-mflops", type=positive, help="MFLOPs per image at the training size")
    budget.add_argument("--budget-params", type=positive, help="number of parameters")
    budget.add_argument("--budget-mb", type=positive, help="peak memory on this machine (MB)")
    budget.add_argument(
        "--threads", type=at_least(0), default=0, help="threads for latency measurements (default: runtime's)"
    )
    q = p.add_argument_group("int8 (target cpu)")
    q.add_argument("--int8", action="store_true", help="static int8 quantisation, checked on the validation images")
    q.add_argument(
        "--int8-max-drop", type=at_least_number(0), default=1.0, help="refuse if int8 loses more Dice points than this"
    )
    q.add_argument("--calib-images", type=at_least(1), default=32, help="training images to calibrate int8 ranges on")
    q.add_argument("--data", help="where the training data are now, if they moved (int8 calibration/check)")


def run(args: argparse.Namespace) -> int:
    from elasticnet.checkpoint import resolve_checkpoint
    from elasticnet.errors import UserError
    from elasticnet.export.export import ExportOptions, export_subnet

    budgets = {
        k: getattr(args, f"budget_{k}")
        for k in ("ms", "mflops", "params", "mb")
        if getattr(args, f"budget_{k}") is not None
    }
    if budgets and (args.depth is not None or args.width is not None):
        raise UserError("give either --depth/--width or a --budget-*, not both")
    if not budgets and args.depth is None:
        raise UserError("say which sub-net to export: --depth D [--width W], or a budget such as --budget-ms 50")
    checkpoint = resolve_checkpoint(args.checkpoint)
    if args.checkpoint is None:
        print(f"using the newest checkpoint: {checkpoint}")
    depth, width = args.depth, args.width
    if budgets:
        depth, width = choose_for_budget(checkpoint, budgets, args)
    options = ExportOptions(
        int8=args.int8,
        int8_max_drop=args.int8_max_drop,
        calib_images=args.calib_images,
        data=args.data,
        threads=args.threads,
    )
    export_subnet(checkpoint, depth, width, args.target, Path(args.out) if args.out else None, options=options)
    return 0


def choose_for_budget(checkpoint: Path, budgets: dict[str, float], args: argparse.Namespace) -> tuple[int, float]:
    from elasticnet.checkpoint import load_checkpoint
    from elasticnet.deploy.budget import MEASURED, choose
    from elasticnet.deploy.profile import profile_checkpoint
    from elasticnet.subnet_row import as_dicts, rows_from

    if MEASURED & set(budgets):
        runtime = "torch" if args.target == "torch" else "onnxruntime"
        print(f"profiling every sub-net with {runtime} on this machine ...")
        rows = profile_checkpoint(checkpoint, runtime=runtime, threads=args.threads)
    else:  # FLOPs and params need no measurement
        rows = as_dicts(rows_from(load_checkpoint(checkpoint).get("subnets", []), str(checkpoint)))
    choice = choose(rows, budgets)
    print(choice.message)
    return choice.row["depth"], choice.row["width"]
