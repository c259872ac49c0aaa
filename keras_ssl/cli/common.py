"""What the command-line programs share: one JSON line on success, one error line on failure.

Nothing here imports TensorFlow, and neither may the programs' flag
definitions and checks: importing it takes seconds, so a mistyped flag or
path is reported at once, before the programs import it (inside their run
function). The path checks below repeat, without TensorFlow, the first test
the library makes of the same value, which still makes it again later.
"""

import json
import os
import sys

from absl import app

from keras_ssl.checkpoint_paths import check_checkpoint_path  # noqa: F401  (the binaries use it)

# Errors a user's flags or paths cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


class ExitError(Exception):
    """A failure that is not a bad flag, ended with its own exit status.

    `run()` raises it in place of a library exception (train.py: a NaN loss,
    exit status 1), so that the program need not import that exception, and
    TensorFlow with it, before its flags are checked.
    """

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def program_name():
    """How the user called the program: `train.py` or `keras-ssl-train`."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "keras-ssl"


def check_data_spec(spec):
    """Raises ValueError naming `spec` unless it could name a data set; returns it.

    The path tests of `keras_ssl.data.load_source`: an `npz:` file or an image
    folder must exist (a `tfds:` name is only known to tensorflow-datasets).
    """
    if spec.startswith("tfds:"):
        if not spec[len("tfds:"):]:
            raise ValueError(f"--data={spec}: no data set name after 'tfds:'.")
        return spec
    if spec.startswith("npz:"):
        path = os.path.expanduser(spec[len("npz:"):])
        if not os.path.isfile(path):
            raise ValueError(f"--data={spec}: no file {path}; npz:PATH takes a .npz file "
                             "with x_train, y_train, x_test, y_test.")
        return spec
    path = os.path.expanduser(spec)
    if not os.path.isdir(path):
        what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise ValueError(f"--data={spec}: {path} {what}; give an image folder path, "
                         "tfds:NAME or npz:PATH.")
    return spec


def json_main(run):
    """An absl `main` that prints `run()`'s dict as the last line of stdout.

    A `USER_ERRORS` exception becomes one `<program>: error: <message>` line on
    stderr and exit status 2, without a traceback; an `ExitError` the same
    line and its own status. A `run()` that returns None prints nothing (the
    non-chief workers of a multi-worker job).

    Example:
        >>> app.run(json_main(evaluate))
    """

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        try:
            result = run()
        except (ExitError, *USER_ERRORS) as error:
            print(f"{program_name()}: error: {error}", file=sys.stderr)
            sys.exit(error.status if isinstance(error, ExitError) else 2)
        if result is not None:
            print(json.dumps(result))

    return main
