"""What the absl binaries share: one JSON line on success, one error line on bad input."""

import json
import sys

from absl import app

# Errors a user's flags or paths cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


def json_main(run, program):
    """An absl `main` that prints `run()`'s dict as the last line of stdout.

    A `USER_ERRORS` exception becomes one `<program>: error: <message>` line on
    stderr and exit status 2, without a traceback.

    Example:
        >>> app.run(json_main(evaluate, "evaluate.py"))
    """
    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        try:
            result = run()
        except USER_ERRORS as error:
            print(f"{program}: error: {error}", file=sys.stderr)
            sys.exit(2)
        print(json.dumps(result))

    return main
