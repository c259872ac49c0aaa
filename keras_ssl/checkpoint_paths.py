"""Checks of checkpoint paths that need no TensorFlow for local paths (the binaries run
them before importing it); a URL (`gs://...`, `ram://...`) is checked through
`tf.io.gfile`, as only TensorFlow can see there."""

import os


URL_SEPARATOR = "://"


def is_url(path):
    """True for a URL of a TensorFlow file system (`gs://...`, `file://...`), False for a
    local path."""
    return URL_SEPARATOR in os.fspath(path)


def check_checkpoint_path(path):
    """Raises FileNotFoundError unless `path` is a folder or a checkpoint prefix; returns it."""
    path = os.fspath(path)
    if is_url(path):
        import tensorflow as tf
        is_dir, exists = tf.io.gfile.isdir, tf.io.gfile.exists
    else:
        path = os.path.expanduser(path)
        is_dir, exists = os.path.isdir, os.path.exists
    if not is_dir(path) and not exists(path + ".index"):
        raise FileNotFoundError(
            f"--checkpoint={path}: neither a folder nor a checkpoint prefix ({path}.index "
            "does not exist); pass a train.py --model_dir or MODEL_DIR/checkpoints/ckpt-N.")
    return path
