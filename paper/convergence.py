"""How many epochs do the individual U-Nets need on CVC-ClinicDB? The epoch count E of the converged protocol.

    python paper/convergence.py --data PATH [--epochs 16,32,64,128] [--jobs 1 --threads 1]
    python paper/convergence.py --data PATH --lr 0.006 [--epochs ...]   # the same at another learning rate
    python paper/convergence.py --data PATH --profile converged-e128-b32 --epochs 64,256   # another protocol
    python paper/convergence.py --report-only [--profile ...]            # from the committed runs only

The largest and the smallest individual U-Net of the grid, (5,1) and (3,0.25), trained on their own at the
parity profile's size and width (``--profile``, default ``converged``: 64x96, base 16; random split, fold 0,
seed 0) for each epoch count: separate trainings, since the cosine schedule depends on the length. The
trainings are ``paper/dice_table.py --epochs N --only ...`` runs (``runs/convergence/<profile>-eN/...``; the
``converged`` profile's were trained as ``cpu``, the same model and data, and keep that name). The profile's
own E is the parity campaign's random-split seed-0 individual nets (the same trainings), so only the other
counts are trained. E is the smallest count whose doubling adds < 1 validation Dice point to both shapes
(validation only: the test images stay unseen). ``--shapes`` also takes the four other table shapes ((4,1),
(3,1), (4,0.5), (5,0.25)); each shape gets its own E by the same rule (``convergence_epochs.csv``, read by
``paper/parity_table.py --individual-e own``).

Each finished run's small files (config.yaml, log.csv, subnets.csv, wall_seconds.json; no checkpoint) are
copied to ``results/cvc_clinicdb/<profile>/convergence-runs/eN/<run>/`` and read from there when the run
folder is gone, so the study continues on any machine from what is committed. Writes convergence.csv (one
row per shape and epoch count: validation Dice, training seconds; the test images are not looked at), convergence.png (final
validation Dice vs epochs, and the per-epoch validation curves) and convergence.md (the choice of E).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from checkout import ROOT
from runner import check_folder, check_out_folder, claim_out_folder, note_invocation, script_command

from elasticnet.cli.arguments import at_least, number_list
from elasticnet.config import build_config
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.reporting import markdown_table, read_csv, save_figure, write_csv

# E is chosen on the largest and the smallest shape (the protocol); the other table shapes get their own
# convergence point too (E per shape), from the same rule
PROTOCOL_SHAPES = {"individual-d5-w1": (5, 1.0), "individual-d3-w0.25": (3, 0.25)}
SHAPES = {
    **PROTOCOL_SHAPES,
    "individual-d4-w1": (4, 1.0),
    "individual-d3-w1": (3, 1.0),
    "individual-d4-w0.5": (4, 0.5),
    "individual-d5-w0.25": (5, 0.25),
}
SMALL_FILES = ("config.yaml", "log.csv", "subnets.csv", "wall_seconds.json")
CONFIG = ROOT / "paper" / "cvc_clinicdb_study.yaml"
RESULTS = ROOT / "results" / "cvc_clinicdb"
MARGIN = 1.0  # Dice points: doubling E must add less than this
BASE_LR = 0.002  # the studies' learning rate: its runs keep the folder names they were committed under
# the converged profile's convergence runs were trained with the cpu profile and --epochs N (the same model
# and data: base 16, 64x96); they keep that name
TRAIN_PROFILE = {"converged": "cpu"}


@dataclass(frozen=True)
class Study:
    """The convergence study of one parity profile: where it trains and writes, and the profile's E."""

    profile: str  # the parity profile whose E is checked
    out: Path  # results/cvc_clinicdb/<profile>
    epochs: int  # the profile's E: its parity runs (random split, seed 0) are that count's points
    title: str  # the model and data, for the figure

    @property
    def train_profile(self) -> str:
        return TRAIN_PROFILE.get(self.profile, self.profile)


def study(profile: str, results: Path = RESULTS) -> Study:
    """The study of ``profile`` (refuses a profile the studies' config does not define)."""
    cfg = build_config(str(CONFIG), {}, profile)
    if cfg.train.lr != BASE_LR:
        raise UserError(f"profile {profile!r} trains at lr {cfg.train.lr:g}; this study assumes {BASE_LR:g}")
    height, width = cfg.data.image_size
    title = f"{profile} profile ({height}x{width}, base {cfg.model.base_width})"
    return Study(profile, results / profile, cfg.train.epochs, title)


def lr_tag(lr: float) -> str:
    return "" if lr == BASE_LR else f"-lr{lr:g}"


def run_folder(s: Study, runs: Path, epochs: int, name: str, lr: float = BASE_LR) -> Path:
    return runs / f"{s.train_profile}-e{epochs}{lr_tag(lr)}" / "random" / "seed0" / name


def committed(s: Study, epochs: int, name: str, lr: float = BASE_LR) -> Path:
    own = s.out / "convergence-runs" / (f"e{epochs}" if lr == BASE_LR else f"lr{lr:g}-e{epochs}") / name
    parity = s.out / "runs" / "random" / "seed0" / name  # the same training, run by paper/parity_table.py
    if not finished(own) and epochs == s.epochs and lr == BASE_LR and finished(parity):
        return parity
    return own


def finished(folder: Path) -> bool:
    return (folder / "subnets.csv").is_file() and (folder / "log.csv").is_file()


def train(args, s: Study, epochs: int, lr: float) -> None:
    todo = [
        n
        for n in args.shapes
        if not finished(committed(s, epochs, n, lr)) and not finished(run_folder(s, args.runs, epochs, n, lr))
    ]
    if not todo:
        return
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "paper" / "dice_table.py"),
            "--data",
            args.data,
            "--profile",
            s.train_profile,
            "--epochs",
            str(epochs),
            *(["--lr", f"{lr:g}"] if lr != BASE_LR else []),
            "--only",
            ",".join(todo),
            "--split",
            "random",
            "--seeds",
            "0",
            "--jobs",
            str(args.jobs),
            "--threads",
            str(args.threads),
            "--runs",
            str(args.runs),
            "--out",
            str(args.runs / f"tables-e{epochs}{lr_tag(lr)}"),
        ],
        check=True,
        cwd=ROOT,
    )


def to_keep(args, s: Study, epochs: int, lr: float) -> list[str]:
    """The shapes whose run under ``args.runs`` finished and is not in results/ yet."""
    return [
        n
        for n in SHAPES
        if finished(run_folder(s, args.runs, epochs, n, lr)) and not finished(committed(s, epochs, n, lr))
    ]


def keep(args, s: Study, epochs: int, lr: float) -> None:
    """Copy the small files of finished runs into results/ (committed; never checkpoints)."""
    for name in to_keep(args, s, epochs, lr):
        src, dst = run_folder(s, args.runs, epochs, name, lr), committed(s, epochs, name, lr)
        dst.mkdir(parents=True, exist_ok=True)
        for file in SMALL_FILES:
            if (src / file).is_file():
                shutil.copy2(src / file, dst / file)


def committed_lrs(s: Study) -> list[float]:
    """Every learning rate with committed runs (the profile's first)."""
    found = {BASE_LR}
    for folder in (s.out / "convergence-runs").glob("lr*-e*"):
        found.add(float(folder.name[2:].rsplit("-e", 1)[0]))
    return sorted(found, key=lambda lr: (lr != BASE_LR, lr))


def committed_epochs(s: Study, asked: list[int]) -> list[int]:
    """The epoch counts of the report: those asked for and every count with committed runs (the report is the
    same whatever ``--epochs`` a call trains; a shorter list must not drop committed points)."""
    found = set(asked) | {s.epochs}
    for folder in (s.out / "convergence-runs").glob("*e*"):
        tail = folder.name.rsplit("-e", 1)[-1] if "-e" in folder.name else folder.name[1:]
        if folder.is_dir() and tail.isdigit():
            found.add(int(tail))
    return sorted(found)


def collect(s: Study, epoch_counts: list[int]) -> tuple[list[dict], dict[tuple[str, int], list[float]]]:
    rows, curves = [], {}
    for lr in committed_lrs(s):
        for epochs in committed_epochs(s, epoch_counts):
            for name, (depth, width) in SHAPES.items():
                folder = committed(s, epochs, name, lr)
                if not finished(folder):
                    continue
                (row,) = read_csv(folder / "subnets.csv")
                log = read_csv(folder / "log.csv")
                # individual U-Nets are evaluated with their running BN statistics (as in the Dice tables)
                rows.append(
                    {
                        "lr": lr,
                        "depth": depth,
                        "width": width,
                        "epochs": epochs,
                        "val_dice": round(100 * float(row["dice_bn_as_trained"]), 2),
                        "train_seconds": round(sum(float(r["seconds"]) for r in log), 4),
                    }
                )
                curves[(name, epochs, lr)] = [100 * float(r["val_dice_largest"]) for r in log]
    return rows, curves


def best_lr(rows: list[dict], depth: int, width: float) -> float:
    """The learning rate with the best validation Dice at the longest training every swept rate reached."""
    mine = [r for r in rows if (r["depth"], r["width"]) == (depth, width)]
    lrs = sorted({r["lr"] for r in mine})
    common = [
        e
        for e in sorted({r["epochs"] for r in mine})
        if all(any(r["lr"] == lr and r["epochs"] == e for r in mine) for lr in lrs)
    ]
    if not common:
        return BASE_LR
    at = {r["lr"]: r["val_dice"] for r in mine if r["epochs"] == common[-1]}
    return max(at, key=lambda lr: at[lr])


def choose(rows: list[dict]) -> tuple[int | None, dict[tuple[int, float], float], list[str], dict]:
    """(E, each shape's learning rate, the lines that show why, each shape's own E): each shape trains at the
    learning rate that validates best (the same sweep for every shape); a shape's own E is the smallest epoch
    count whose doubling adds < MARGIN validation points at its rate (None: not yet shown), and the protocol's
    E is the smallest such count for both PROTOCOL_SHAPES."""
    lines, ok, rates, own = [], {}, {}, {}
    val = {(r["lr"], r["depth"], r["width"], r["epochs"]): r["val_dice"] for r in rows}
    for depth, width in SHAPES.values():
        if not any((r["depth"], r["width"]) == (depth, width) for r in rows):
            continue
        lr = rates[(depth, width)] = best_lr(rows, depth, width)
        own[(depth, width)] = None
        for (r, d, w, e), v in sorted(val.items()):
            if (r, d, w) != (lr, depth, width) or (r, d, w, 2 * e) not in val:
                continue
            gain = val[(r, d, w, 2 * e)] - v
            if (d, w) in PROTOCOL_SHAPES.values():
                ok.setdefault(e, []).append(gain < MARGIN)
            if gain < MARGIN and own[(d, w)] is None:
                own[(d, w)] = e
            lines.append(
                f"- ({d},{w:g}) at lr {lr:g}: {e} -> {2 * e} epochs: validation Dice {v:.1f} -> "
                f"{val[(r, d, w, 2 * e)]:.1f} ({gain:+.1f}; {'< 1 point' if gain < MARGIN else 'not converged'})"
            )
    done = sorted(e for e, flags in ok.items() if len(flags) == len(PROTOCOL_SHAPES) and all(flags))
    return (done[0] if done else None), rates, lines, own


def plot(rows: list[dict], curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for lr in sorted({r["lr"] for r in rows}):
        for depth, width in SHAPES.values():
            mine = sorted(
                (r["epochs"], r["val_dice"]) for r in rows if (r["depth"], r["width"], r["lr"]) == (depth, width, lr)
            )
            if mine:
                e, v = zip(*mine)
                left.plot(e, v, "o-", label=f"({depth},{width:g}) lr {lr:g}")
    left.set_xscale("log", base=2)
    left.set_xlabel("epochs (separate trainings)")
    left.set_ylabel("validation Dice (%)")
    left.set_title("final validation Dice vs training length")
    left.legend(fontsize=8)
    for (name, epochs, lr), curve in sorted(curves.items()):
        right.plot(
            range(1, len(curve) + 1),
            curve,
            alpha=0.8,
            label=f"{name.replace('individual-', '')} E={epochs}{f' lr {lr:g}' if lr != BASE_LR else ''}",
        )
    right.set_xlabel("epoch")
    right.set_ylabel("validation Dice (%), per epoch")
    right.set_title("per-epoch validation (4-batch BN calibration)")
    right.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Individual U-Nets, CVC-ClinicDB {title}, random split fold 0, seed 0")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="")
    p.add_argument("--profile", default="converged", help="the parity profile whose E is checked")
    p.add_argument("--epochs", type=number_list(int, "64,128,256"), default="16,32,64,128")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "convergence")
    p.add_argument("--jobs", type=at_least(1), default=1)
    p.add_argument("--threads", type=at_least(0), default=0)
    p.add_argument(
        "--lr",
        type=number_list(float, "0.001,0.002"),
        default=f"{BASE_LR:g}",
        help="comma-separated learning rates to train (a sweep)",
    )
    p.add_argument(
        "--shapes", default=",".join(PROTOCOL_SHAPES), help=f"which individual nets to train, of {','.join(SHAPES)}"
    )
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.shapes = [s for s in args.shapes.split(",") if s]
    if set(args.shapes) - set(SHAPES):
        raise UserError(f"--shapes takes names of {', '.join(SHAPES)}; got {', '.join(set(args.shapes) - set(SHAPES))}")
    if not args.report_only:
        if not Path(args.data or "/nonexistent").is_dir():
            raise UserError("--data must name the CVC-ClinicDB folder (or use --report-only)")
        check_folder(args.runs)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    epoch_counts, lrs = sorted(args.epochs), args.lr
    s = study(args.profile)
    check_out_folder(s.out)
    keeping = any(to_keep(args, s, e, lr) for lr in lrs for e in epoch_counts)
    if args.report_only and not keeping and not (s.out / "convergence-runs").is_dir():
        # its parity runs alone give one epoch count: no curve, and no verdict worth writing into its folder
        raise UserError(
            f"{s.out} holds no convergence runs (convergence-runs/): nothing to report for --profile "
            f"{args.profile}; train them first (without --report-only, with --data and --epochs)"
        )
    # a report with nothing to copy or report leaves no folder behind; otherwise the folder is claimed once,
    # before anything is written into it
    if not args.report_only or keeping:
        claim_out_folder(s.out)
    if not args.report_only:
        note_invocation(s.out, script_command("convergence.py", args.argv))
    for lr in lrs:
        for epochs in epoch_counts:
            if not args.report_only:
                train(args, s, epochs, lr)
            keep(args, s, epochs, lr)
    rows, curves = collect(s, epoch_counts)
    if not rows:
        raise UserError("no finished convergence runs yet: train them first (without --report-only)")
    write_report(s, rows, curves)


def write_report(s, rows: list[dict], curves) -> None:
    """convergence.csv, convergence.png, convergence_epochs.csv and convergence.md (the verdict on E) of ``s``."""
    write_csv(rows, s.out / "convergence.csv")
    plot(rows, curves, s.out / "convergence.png", s.title)
    chosen, rates, lines, own = choose(rows)
    tried: dict[tuple[int, float], int] = {}  # each shape's longest training
    for r in rows:
        shape = (r["depth"], r["width"])
        tried[shape] = max(tried.get(shape, 0), r["epochs"])
    per_shape = [
        {"depth": d, "width": w, "lr": rates[(d, w)], "own_e": e or "", "longest_tried": tried[(d, w)]}
        for (d, w), e in own.items()
    ]
    write_csv(per_shape, s.out / "convergence_epochs.csv")
    lines.append(
        "- learning rates (best validation Dice of the sweep): "
        + ", ".join(f"({d},{w:g}) {lr:g}" for (d, w), lr in rates.items())
    )
    verdict = (
        f"E = {chosen}: doubling it adds < {MARGIN:g} validation Dice point to (5,1) and (3,0.25)."
        if chosen
        else f"E not determined yet: no epoch count so far whose doubling adds < {MARGIN:g} point to both shapes "
        "(train longer: add the next doubling to --epochs)."
    )
    atomic_write_text(
        s.out / "convergence.md",
        f"# Convergence of the individual U-Nets (epoch count E), {s.title}\n\n"
        + markdown_table(rows)
        + "\n\n"
        + "\n".join(lines)
        + f"\n\n{verdict}\n\n"
        + "Each shape's own E (the smallest count whose doubling adds < 1 validation point; empty: still climbing "
        "at the longest training tried), `convergence_epochs.csv`:\n\n" + markdown_table(per_shape) + "\n",
    )
    print(markdown_table(rows))
    print("\n".join(lines))
    print(verdict)


if __name__ == "__main__":
    run_script(main)
