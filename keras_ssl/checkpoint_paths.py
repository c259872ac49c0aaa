"""Checks of checkpoint paths that need no TensorFlow (the binaries run them before importing it)."""

import os


def check_checkpoint_path(path):
    """Raises FileNotFoundError unless `path` is a folder or a checkpoint prefix; returns it."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(path) and not os.path.exists(path + ".index"):
        raise FileNotFoundError(
            f"--checkpoint={path}: neither a folder nor a checkpoint prefix ({path}.index "
            "does not exist); pass a train.py --model_dir or MODEL_DIR/checkpoints/ckpt-N.")
    return path
