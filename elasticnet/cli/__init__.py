"""The ``elasticnet`` command: train, export, eval, info, measure, predict, tune.

User errors (:class:`elasticnet.errors.UserError`) print one line and exit with status 2; a training
stopped by SIGINT/SIGTERM saves its state, prints how to resume, and exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import os
import sys

from elasticnet import __version__
from elasticnet.cli import evaluate, export, info, measure, predict, train, tune
from elasticnet.errors import UserError
from elasticnet.training.signals import TrainingInterrupted

COMMANDS = {
    "train": train,
    "export": export,
    "eval": evaluate,
    "info": info,
    "measure": measure,
    "predict": predict,
    "tune": tune,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elasticnet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"elasticnet {__version__}")
    parser.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="keep glibc's default allocator settings (see elasticnet.runtime.tune_malloc)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    parser.set_defaults(command_parsers=sub.choices)
    return parser


ALIASES = {"profile": "measure"}  # the names commands had before
SITE_COMMANDS = {"predict"}  # run with `pip install elasticnet[site]`; the others need the training install


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # named by the command, with its usage, not by the top-level parser
        args.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command = ALIASES.get(args.command, args.command)
    if args.command not in SITE_COMMANDS:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print(
                f"elasticnet {args.command}: error: this command needs PyTorch; install the training extras with "
                "`pip install 'elasticnet[train]'` (sites that only predict need `elasticnet[site]`)",
                file=sys.stderr,
            )
            return 2
    if not args.no_malloc_tuning:
        from elasticnet.runtime import tune_malloc

        tune_malloc()
    try:
        return COMMANDS[args.command].run(args) or 0
    except UserError as e:
        print(f"elasticnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"elasticnet {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"elasticnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system said no: one line naming the path, the reason and a way out
        if isinstance(e, BrokenPipeError):  # `elasticnet info RUN | head -1`: the reader left; not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
            return 0
        print(f"elasticnet {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2


def os_error_message(e: OSError) -> str:
    """An OS error as one sentence: what, where, and what to do."""
    import errno

    where = " ".join(str(p) for p in (e.filename, e.filename2) if p) or "a file"
    hint = {
        errno.ENOSPC: "free some disk space, or write elsewhere",
        errno.EDQUOT: "free some disk space, or write elsewhere",
        errno.EACCES: "choose a folder you can write to (or fix its permissions)",
        errno.EPERM: "choose a folder you can write to (or fix its permissions)",
        errno.EROFS: "the file system is read-only: choose another folder",
        errno.EEXIST: "a file is in the way: choose another path",
        errno.ENOTDIR: "a file is in the way where a folder is needed: choose another path",
        errno.EISDIR: "a folder is in the way where a file is needed: choose another path",
        errno.ENOENT: "check the path",
    }.get(e.errno, "check the path and the disk")
    return f"{e.strerror or e} ({where}); {hint}"
