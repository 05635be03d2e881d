"""``elasticnet measure``: measure every sub-net of a checkpoint on this machine (latency, memory, FLOPs,
stored Dice), write a CSV and a Pareto plot (Dice vs latency), print the table.

Called ``profile`` before 0.2 (still accepted); renamed because ``--profile`` names a config preset."""

from __future__ import annotations

import argparse

from elasticnet.cli.arguments import at_least, hxw


def add_parser(sub) -> None:
    p = sub.add_parser(
        "measure",
        aliases=["profile"],
        help="measure every sub-net on this machine; CSV + Pareto plot",
        description=__doc__,
    )
    p.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest run under runs/)")
    p.add_argument(
        "--input-size", type=hxw, metavar="HxW", help="input size to measure at (default: the training size)"
    )
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch"])
    p.add_argument("--threads", type=at_least(0), default=0, help="intra-op threads (default: the runtime's default)")
    p.add_argument("--batch", type=at_least(1), default=1, help="also measure this batch size (default: batch 1 only)")
    p.add_argument("--repeats", type=at_least(1), default=20, help="timed runs per sub-net (after 3 warm-up runs)")
    p.add_argument("--out", help="folder for profile-<runtime>.csv/.png (default: the run folder)")
    p.add_argument("--overwrite", action="store_true", help="replace profile-<runtime>.csv/.png that exist in --out")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from elasticnet.checkpoint import load_checkpoint, resolve_checkpoint
    from elasticnet.config import RunConfig
    from elasticnet.deploy.pareto import plot_pareto
    from elasticnet.deploy.profile import COLUMNS, profile_checkpoint
    from elasticnet.export.measure import machine
    from elasticnet.files import check_outside_data, prepare_outputs
    from elasticnet.reporting import text_table, write_csv

    checkpoint = resolve_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(checkpoint)  # a file that is not a checkpoint is refused before anything else
    names = [f"profile-{args.runtime}.csv", f"profile-{args.runtime}.png"]
    # checked before measuring for minutes: a folder that cannot take the results fails now, not at the end
    out = prepare_outputs(Path(args.out) if args.out else checkpoint.parent, names, args.overwrite)
    check_outside_data(out, RunConfig.from_saved(ckpt["config"], str(checkpoint)).data.data)
    print(f"profiling {checkpoint} with {args.runtime} on {machine()} (each sub-net in a fresh process)")
    rows = profile_checkpoint(
        checkpoint,
        list(args.input_size) if args.input_size else None,
        args.runtime,
        args.threads,
        args.batch,
        repeats=args.repeats,
    )
    csv_path = write_csv(rows, out / f"profile-{args.runtime}.csv")
    png = plot_pareto(
        rows,
        out / f"profile-{args.runtime}.png",
        f"{checkpoint.parent.name}: {args.runtime}, {rows[0]['input_size']}, batch 1, {machine()}",
    )
    extra = [c for c in rows[0] if c.startswith("b") and c.endswith("_ms")]
    print(text_table(rows, COLUMNS[:-1] + extra + ["pareto"]))
    print(f"wrote {csv_path} and {png}")
    return 0
