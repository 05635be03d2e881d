"""The one exception type for mistakes a user can fix (bad path, depth the model lacks, ...).

The command line prints its message alone (no traceback) and exits with status 2, so every message
must say what is wrong *and* what to do about it.
"""

import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A problem caused by the user's input, with a message that names the fix."""


def listing(problems: list[str], limit: int = 50) -> str:
    """The first ``limit`` problems, one per indented line, and how many more there are."""
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "  " + "\n  ".join(problems[:limit]) + more


def run_script(main: Callable[[], object]) -> None:
    """Runs a script's ``main`` the way the ``elasticnet`` command runs a command: a :class:`UserError` prints
    ``<script>: error: <message>`` alone and exits with status 2, an interrupt exits with 130, no traceback."""
    prog = Path(sys.argv[0]).name
    try:
        main()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
