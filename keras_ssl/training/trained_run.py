"""A trained run's folder, as `pretrain` leaves it: its config and its encoder.

Evaluation and export share this: both take a model_dir or a checkpoint
prefix and need the encoder back without the heads, targets, queues or banks
of the method that trained it.
"""

import os

import keras
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.checkpoint_paths import check_checkpoint_path
from keras_ssl.data.storage import parent
from keras_ssl.training.build import make_backbone
from keras_ssl.training.config import RUN_CONFIG_FILE, load_run_config


def find_checkpoint(path):
    """(model_dir, checkpoint prefix) of a model_dir or of a checkpoint prefix in one.

    Either may be a URL of a TensorFlow file system (`gs://`, `ram://`).
    """
    path = check_checkpoint_path(path)
    # A prefix first: ram:// calls every prefix of a stored file a folder.
    if not tf.io.gfile.exists(path + ".index") and tf.io.gfile.isdir(path):
        for directory in (os.path.join(path, "checkpoints"), path):
            prefix = tf.train.latest_checkpoint(directory)
            if prefix:
                return path, prefix
        raise FileNotFoundError(
            f"--checkpoint={path}: no checkpoint in {path} or {path}/checkpoints; "
            "pass a train.py --model_dir or a prefix such as MODEL_DIR/checkpoints/ckpt-3.")
    checkpoints_dir = parent(path)
    # pretrain writes MODEL_DIR/checkpoints/ckpt-N (and step checkpoints in
    # MODEL_DIR/checkpoints/steps/ckpt-S); accept a prefix directly in MODEL_DIR too.
    above = os.path.dirname(checkpoints_dir)
    for model_dir in (above, checkpoints_dir, os.path.dirname(above)):
        if tf.io.gfile.exists(os.path.join(model_dir, RUN_CONFIG_FILE)):
            return model_dir, path
    return above, path


def restore_encoder(path):
    """Rebuilds a run's backbone and restores its trained weights.

    Only the method's `encoder` is restored (`expect_partial`): the checkpoint
    also holds heads, targets, banks and the optimizer, which evaluation and
    export do not need, so the method's constructor arguments do not matter.

    Args:
        path: a `pretrain` model_dir, or a checkpoint prefix inside it.

    Returns:
        (encoder, run config dict, model_dir, checkpoint prefix).

    Example:
    >>> encoder, config, model_dir, prefix = restore_encoder("runs/simclr")
    >>> features = encoder(images, training=False)
    """
    model_dir, prefix = find_checkpoint(path)
    config = load_run_config(model_dir)
    encoder = make_backbone(config["method"], config["backbone"],
                            image_size=config["image_size"],
                            width_multiplier=config["width_multiplier"],
                            zero_init_residual=config.get("zero_init_residual", False),
                            synchronized_bn=config.get("synchronized_bn", False))
    # A run's `split_batch_norm` is left out on purpose: it only changes
    # training-mode statistics, its layers hold the plain layers' variables
    # under the same names, and a plain encoder takes any batch size when a
    # downstream task trains it (sub-batches need a divisible batch).
    _restore_into(encoder, prefix, f"the {config['backbone']} encoder of {model_dir}/"
                  f"{RUN_CONFIG_FILE}", flag="--checkpoint")
    return encoder, config, model_dir, prefix


def load_encoder_weights(encoder, path):
    """Overwrites `encoder`'s weights (and BatchNorm statistics) with a trained run's.

    What `init_encoder` does: a semi-supervised run starting from a
    self-supervised one. The backbone must be built as the run's was
    (backbone, width, image size); a mismatch is a ValueError naming both.

    Args:
        encoder: a built backbone (under the strategy scope, if any).
        path: a `pretrain` model_dir, or a checkpoint prefix inside it.

    Returns:
        The checkpoint prefix the weights came from.
    """
    model_dir, prefix = find_checkpoint(path)
    _restore_into(encoder, prefix, f"the encoder of this run ({encoder.name})",
                  flag="--init_encoder")
    return prefix


def _restore_into(layer, prefix, what, *, flag, attribute="encoder"):
    """Restores `layer` as the method's `attribute` (its encoder, or its projector)."""
    # The same object path as EpochCheckpoint's tf.train.Checkpoint(model=method).
    root = tf.train.Checkpoint(model=tf.train.Checkpoint(**{attribute: layer}))
    try:
        root.restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ValueError(f"{flag}={prefix}: {what} does not match the checkpoint "
                         f"({str(error).splitlines()[0]}).") from error


def restore_projection(path, *, num_examples=None):
    """A trained run's encoder followed by its method's projection head, as one model.

    USL takes its features from this head (the official code: the 128-d
    instance head of a CLD ResNet-18, `usl-cifar.py:20-23`), not from the
    backbone. The method is rebuilt from the run's config.json, and only its
    `encoder` and `projector` are read from the checkpoint.

    Args:
        path: a `pretrain` model_dir, or a checkpoint prefix inside it.
        num_examples: the training set's size, for methods whose constructor
            sizes a bank by it (only the head is restored; the bank is not).

    Returns:
        (model mapping images to head outputs, run config dict, model_dir,
        checkpoint prefix).

    Raises:
        ValueError: the run's method has no `projector`, or the checkpoint
            does not hold the one its config builds.
    """
    encoder, config, model_dir, prefix = restore_encoder(path)
    run = methods.RunContext(num_examples=num_examples, steps_per_epoch=1,
                             epochs=config.get("epochs", 1), seed=config.get("seed", 0))
    try:
        method = methods.get(config["method"], encoder=encoder, run=run,
                             **(config.get("method_kwargs") or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"--checkpoint={prefix}: the {config['method']} method of "
                         f"{model_dir}/{RUN_CONFIG_FILE} cannot be rebuilt ({error}); use "
                         "the backbone's features.") from error
    projector = getattr(method, "projector", None)
    if projector is None:
        raise ValueError(f"--checkpoint={prefix}: {config['method']} has no projection head "
                         "(`projector`); use the backbone's features.")
    _restore_into(projector, prefix, f"the projection head of {model_dir}/{RUN_CONFIG_FILE}",
                  flag="--checkpoint", attribute="projector")
    images = keras.Input(encoder.input_shape[1:])
    model = keras.Model(images, projector(encoder(images, training=False), training=False),
                        name=f"{encoder.name}_projection")
    return model, config, model_dir, prefix
