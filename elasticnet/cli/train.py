"""``elasticnet train``: train an elastic U-Net with structural dropout."""

from __future__ import annotations

import argparse
import sys

from elasticnet.config import build_config, leaf_keys, options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an elastic U-Net",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML config (sections model/data/train); flags override it")
    p.add_argument("--profile", help="a profile of the config file (e.g. cpu, paper); default: its default_profile")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the interrupted run in folder RUN from its last saved state, "
        "with its own config (only --device may be given with it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, "config keys (each overrides the config file)")


def add_config_flags(p: argparse.ArgumentParser, title: str) -> None:
    """One flag per config key (``--lr``, ``--image-size``, ...), absent unless given; help, choices and
    default come from the config dataclasses."""
    group = p.add_argument_group(title)
    for o in options():
        default = ",".join(map(str, o.default)) if isinstance(o.default, list) else o.default
        text = f"{o.help} [{o.section}; default {default!s}]".replace("%", "%%")
        if o.type is bool:
            group.add_argument(
                o.flag, dest=o.key, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
        elif o.choices:
            group.add_argument(o.flag, dest=o.key, default=argparse.SUPPRESS, choices=o.choices, help=text)
        else:
            group.add_argument(
                o.flag, dest=o.key, default=argparse.SUPPRESS, metavar=o.key.upper(), help=f"{text[:-1]}; {o.kind}]"
            )


def config_overrides(args: argparse.Namespace) -> dict:
    """The config keys given as flags (absent flags are not in the namespace)."""
    return {k: getattr(args, k) for k in leaf_keys() if hasattr(args, k)}


def run(args: argparse.Namespace) -> int:
    from elasticnet.errors import UserError
    from elasticnet.training.trainer import resume, train

    overrides = config_overrides(args)
    progress = not args.quiet and sys.stderr.isatty()
    if args.resume:
        others = (
            sorted(set(overrides) - {"device", "data"})
            + (["config"] if args.config else [])
            + (["profile"] if args.profile else [])
        )
        if others:
            flags = ", ".join("--" + k.replace("_", "-") for k in others)
            raise UserError(
                f"--resume continues a run with the config it started with; drop {flags} "
                "(to change them, start a new run; --device and --data, the data's new place, may be given)"
            )
        resume(args.resume, overrides.get("device"), progress=progress, data=overrides.get("data"))
        return 0
    cfg = build_config(args.config, overrides, args.profile)
    train(cfg, progress=progress)
    return 0
