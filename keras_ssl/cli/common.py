"""What the command-line programs share: one JSON line on success, one error line on failure."""

import json
import os
import sys

from absl import app

# Errors a user's flags or paths cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


def program_name():
    """How the user called the program: `train.py` or `keras-ssl-train`."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "keras-ssl"


def json_main(run, failures=()):
    """An absl `main` that prints `run()`'s dict as the last line of stdout.

    A `USER_ERRORS` exception becomes one `<program>: error: <message>` line on
    stderr and exit status 2, without a traceback; `failures` adds
    (exception class, exit status) pairs handled the same way (checked first).
    A `run()` that returns None prints nothing (the non-chief workers of a
    multi-worker job).

    Example:
        >>> app.run(json_main(evaluate))
    """
    handled = (*failures, *((error, 2) for error in USER_ERRORS))

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        try:
            result = run()
        except tuple(error for error, _ in handled) as error:
            status = next(code for kind, code in handled if isinstance(error, kind))
            print(f"{program_name()}: error: {error}", file=sys.stderr)
            sys.exit(status)
        if result is not None:
            print(json.dumps(result))

    return main
