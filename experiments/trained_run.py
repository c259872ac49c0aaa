"""A trained run's folder, as train.py leaves it: its config and its encoder.

evaluate.py and export.py share this: both take `--checkpoint` as a
model_dir or a checkpoint prefix and need the encoder back without the heads,
targets, queues or banks of the method that trained it.
"""

import json
import os

# What train.py's pretrain() names it; kept here too so that checking a path
# needs no TensorFlow import (pretrain imports it).
RUN_CONFIG_FILE = "config.json"


def check_checkpoint_path(path):
    """Raises FileNotFoundError unless `path` is a folder or a checkpoint prefix.

    Needs only `os`, so the binaries can reject a mistyped path before the
    seconds TensorFlow takes to import.
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(path) and not os.path.exists(path + ".index"):
        raise FileNotFoundError(
            f"--checkpoint={path}: neither a folder nor a checkpoint prefix ({path}.index "
            "does not exist); pass a train.py --model_dir or MODEL_DIR/checkpoints/ckpt-N.")
    return path


def _model_dir_and_checkpoint(path):
    """(model_dir, checkpoint prefix) for a model_dir or a checkpoint prefix."""
    import tensorflow as tf

    path = check_checkpoint_path(path)
    if os.path.isdir(path):
        for directory in (os.path.join(path, "checkpoints"), path):
            prefix = tf.train.latest_checkpoint(directory)
            if prefix:
                return path, prefix
        raise FileNotFoundError(
            f"--checkpoint={path}: no checkpoint in {path} or {path}/checkpoints; "
            "pass a train.py --model_dir or a prefix such as MODEL_DIR/checkpoints/ckpt-3.")
    checkpoints_dir = os.path.dirname(os.path.abspath(path))
    # train.py writes MODEL_DIR/checkpoints/ckpt-N; accept a prefix directly in MODEL_DIR too.
    for model_dir in (os.path.dirname(checkpoints_dir), checkpoints_dir):
        if os.path.exists(os.path.join(model_dir, RUN_CONFIG_FILE)):
            return model_dir, path
    return os.path.dirname(checkpoints_dir), path


def load_run_config(model_dir):
    """The arguments of the pretrain() call that wrote `model_dir` (a dict)."""
    config_path = os.path.join(model_dir, RUN_CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"--checkpoint: {config_path} is missing, so the encoder cannot be rebuilt; "
            "it is written by train.py (runs trained before it existed need a new run).")
    with open(config_path) as file:
        return json.load(file)


def restore_encoder(path):
    """Rebuilds the run's backbone and restores its trained weights.

    Only the method's `encoder` is restored (`expect_partial`): the checkpoint
    also holds heads, targets, banks and the optimizer, which evaluation and
    export do not need, so the method's constructor arguments do not matter.

    Args:
        path: a train.py model_dir, or a checkpoint prefix inside it.

    Returns:
        (encoder, run config dict, model_dir, checkpoint prefix).
    """
    import tensorflow as tf

    from experiments.pretrain import make_backbone

    model_dir, prefix = _model_dir_and_checkpoint(path)
    config = load_run_config(model_dir)
    encoder = make_backbone(config["method"], config["backbone"],
                            image_size=config["image_size"],
                            width_multiplier=config["width_multiplier"],
                            zero_init_residual=config.get("zero_init_residual", False))
    # The same object path as EpochCheckpoint's tf.train.Checkpoint(model=method).
    root = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=encoder))
    try:
        root.restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ValueError(
            f"--checkpoint={prefix}: the {config['backbone']} encoder of {model_dir}/"
            f"{RUN_CONFIG_FILE} does not match the checkpoint ({str(error).splitlines()[0]}).")
    return encoder, config, model_dir, prefix
