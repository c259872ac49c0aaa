"""Exports the encoder of a trained run as a SavedModel and a .keras file.

    python experiments/export.py --checkpoint=/tmp/simclr --export_dir=/tmp/simclr_export

Prints one JSON line with the paths. The SavedModel's `serve` signature takes
uint8 images [batch, height, width, 3] of any size and returns features; it
needs only TensorFlow: `tf.saved_model.load(path).serve(images)`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_ssl  # noqa: E402,F401  (sets TensorFlow's environment first)
from absl import app, flags, logging  # noqa: E402

from experiments.cli import json_main  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "train.py model_dir or checkpoint prefix.")
flags.DEFINE_string("export_dir", None, "Output folder (saved_model/ and encoder.keras).")


def export():
    if not FLAGS.checkpoint or not FLAGS.export_dir:
        raise ValueError("Give both --checkpoint=MODEL_DIR_OR_CKPT and --export_dir=PATH.")
    from experiments.trained_run import check_checkpoint_path, restore_encoder
    check_checkpoint_path(FLAGS.checkpoint)
    # Flags are checked before TensorFlow is imported, so their errors come at once.
    import tensorflow as tf
    # A mismatched checkpoint would otherwise list every unrestored value
    # after the one-line error.
    tf.get_logger().setLevel("ERROR")
    from keras_ssl.export import export_encoder
    encoder, config, model_dir, prefix = restore_encoder(FLAGS.checkpoint)
    saved_model = export_encoder(encoder, FLAGS.export_dir, image_size=config["image_size"])
    return {
        "checkpoint": prefix,
        "method": config.get("method"),
        "backbone": config["backbone"],
        "image_size": config["image_size"],
        "feature_dim": int(encoder.output_shape[-1]),
        "saved_model": saved_model,
        "keras_encoder": os.path.join(FLAGS.export_dir, "encoder.keras"),
    }


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(json_main(export, "export.py"))
