"""What the command-line programs share: one JSON line on success, one error line on failure.

Nothing here imports TensorFlow, and neither may the programs' flag
definitions and checks: importing it takes seconds, so a mistyped flag or
path is reported at once, before the programs import it (inside their run
function). The path checks below repeat, without TensorFlow, the first test
the library makes of the same value, which still makes it again later. A
path may also be a URL of a TensorFlow file system (`gs://bucket/cifar10`);
only TensorFlow can see there, so checking a URL imports it.
"""

import json
import os
import sys

from absl import app, flags

# check_checkpoint_path: the binaries import it from here.
from keras_ssl.checkpoint_paths import check_checkpoint_path, is_url  # noqa: F401

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


def path_kind(path):
    """"folder", "file" or None (nothing there) for a local path or a URL.

    Raises:
        ValueError: a URL TensorFlow cannot reach (an unknown scheme, no network).
    """
    if not is_url(path):
        if os.path.isdir(path):
            return "folder"
        return "file" if os.path.exists(path) else None
    import tensorflow as tf
    try:
        if tf.io.gfile.isdir(path):
            return "folder"
        return "file" if tf.io.gfile.exists(path) else None
    except tf.errors.OpError as error:
        raise ValueError(f"{path}: cannot be reached ({error.message})") from None


def define_tfds_data_dir_flag():
    """--tfds_data_dir, shared by the programs that load --data (once per process)."""
    if "tfds_data_dir" not in flags.FLAGS:
        flags.DEFINE_string("tfds_data_dir", None,
                            "Folder of prepared tensorflow-datasets sets for --data=tfds:NAME "
                            "(default: tfds's own, ~/tensorflow_datasets); may be gs://...")


def check_data_spec(spec):
    """Raises ValueError naming `spec` unless it could name a data set; returns it.

    The path tests of `keras_ssl.data.load_source`: an `npz:` file or an image
    folder must exist (a `tfds:` name is only known to tensorflow-datasets).
    Either may be a URL (`npz:gs://bucket/cifar10.npz`).
    """
    if spec.startswith("tfds:"):
        if not spec[len("tfds:"):]:
            raise ValueError(f"--data={spec}: no data set name after 'tfds:'.")
        return spec
    if spec.startswith("npz:"):
        path = os.path.expanduser(spec[len("npz:"):])
        if path_kind(path) != "file":
            raise ValueError(f"--data={spec}: no file {path}; npz:PATH takes a .npz file "
                             "with x_train, y_train, x_test, y_test.")
        return spec
    path = os.path.expanduser(spec)
    kind = path_kind(path)
    if kind != "folder":
        what = "is a file, not a folder" if kind else "does not exist"
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
