"""``elasticnet tune``: asynchronous parallel Bayesian optimisation (Optuna TPE) of elastic training.

Start any number of workers with the same arguments (processes, nodes, Slurm array tasks); they join the
same study and run trials asynchronously until it has --trials. Each trial is a normal training run with
its own run folder under --out. The search space is the config file's ``search:`` section (or the
defaults in elasticnet.tune.space); any other config key given as a flag is fixed for every trial.
"""

from __future__ import annotations

import argparse
import sys

from elasticnet.cli.arguments import at_least


def add_parser(sub) -> None:
    from elasticnet.cli.train import add_config_flags

    p = sub.add_parser(
        "tune",
        help="hyper-parameter search with Optuna (parallel workers)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE.yaml", help="base config (and its search: section)")
    p.add_argument("--profile", help="a profile of the config file")
    p.add_argument("--study", required=True, help="study name (workers with the same name cooperate)")
    p.add_argument(
        "--storage",
        required=True,
        metavar="PATH_OR_URL",
        help="journal file (e.g. runs/tune/study.log, also on a shared file system) or a database URL",
    )
    p.add_argument("--trials", type=at_least(1), required=True, help="total trials of the study (over all workers)")
    p.add_argument(
        "--objective",
        default="mean",
        choices=["smallest", "mean", "largest"],
        help="validation Dice of the smallest sub-net, the mean over sub-nets, or the largest",
    )
    p.add_argument("--multi-objective", action="store_true", help="also minimise the MFLOPs of those sub-nets")
    p.add_argument("--no-pruning", action="store_true", help="never stop a trial early on its per-epoch Dice")
    p.add_argument(
        "--tune-out", metavar="DIR", help="study folder for trial runs and the summary (default: runs/tune/STUDY)"
    )
    p.add_argument(
        "--threads",
        type=at_least(0),
        default=0,
        help="torch threads of this worker (default: torch's; with several workers on one machine give "
        "each cores/workers, oversubscribed threads slow everything down)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-batch progress bars")
    add_config_flags(p, "fixed config keys (the same for every trial)")


def run(args: argparse.Namespace) -> int:
    import importlib.util
    from pathlib import Path

    from elasticnet.config import leaf_keys
    from elasticnet.errors import UserError

    if importlib.util.find_spec("optuna") is None:
        raise UserError("elasticnet tune needs Optuna: pip install 'elasticnet[tune]'")
    from elasticnet.tune.worker import TuneSettings, run_worker

    overrides = {k: getattr(args, k) for k in leaf_keys() if hasattr(args, k)}
    if "out" in overrides:
        raise UserError("trials get their run folders under --tune-out; drop --out")
    settings = TuneSettings(
        study=args.study,
        storage=args.storage,
        trials=args.trials,
        out=Path(args.tune_out or Path("runs") / "tune" / args.study),
        config=args.config,
        profile=args.profile,
        overrides=overrides,
        objective=args.objective,
        multi=args.multi_objective,
        prune=not args.no_pruning,
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_worker(settings, progress=not args.quiet and sys.stderr.isatty())
    return 0
