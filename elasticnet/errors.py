"""The one exception type for mistakes a user can fix (bad path, depth the model lacks, ...).

The command line prints its message alone (no traceback) and exits with status 2, so every message
must say what is wrong *and* what to do about it.
"""


class UserError(Exception):
    """A problem caused by the user's input, with a message that names the fix."""


def listing(problems: list[str], limit: int = 50) -> str:
    """The first ``limit`` problems, one per indented line, and how many more there are."""
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "  " + "\n  ".join(problems[:limit]) + more
