"""keras-ssl-export: exports the encoder of a trained run as a SavedModel and a .keras file.

    keras-ssl-export --checkpoint=/tmp/simclr --export_dir=/tmp/simclr_export

Prints one JSON line with the paths. The SavedModel's `serve` signature takes
uint8 images [batch, height, width, 3] of any size and returns features; it
needs only TensorFlow: `tf.saved_model.load(path).serve(images)`.
--export_dir may be a URL of a TensorFlow file system (`gs://bucket/export`).
Bad flags or paths end with one error line and exit status 2.
"""

import os

import keras_ssl  # noqa: F401  (sets TensorFlow's environment first)
from absl import app, flags, logging

from keras_ssl.cli.common import check_checkpoint_path, json_main

FLAGS = flags.FLAGS


def define_flags():
    """Defines the program's flags (once per process)."""
    if "export_dir" in FLAGS:
        return
    flags.DEFINE_string("checkpoint", None,
                        "A training run's --model_dir, or a checkpoint prefix in it.")
    flags.DEFINE_string("export_dir", None,
                        "Output folder (saved_model/ and encoder.keras); may be gs://...")


def export():
    """Restores the run's encoder and exports it; returns the paths and shapes."""
    if not FLAGS.checkpoint or not FLAGS.export_dir:
        raise ValueError("Give both --checkpoint=MODEL_DIR_OR_CKPT and --export_dir=PATH.")
    # Before TensorFlow is imported, so that a mistyped path is reported at once.
    check_checkpoint_path(FLAGS.checkpoint)
    import tensorflow as tf
    # A mismatched checkpoint would otherwise list every unrestored value
    # after the one-line error.
    tf.get_logger().setLevel("ERROR")
    from keras_ssl.export import export_encoder
    from keras_ssl.training import restore_encoder
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


def main():
    """Console entry point of keras-ssl-export."""
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(json_main(export))


if __name__ == "__main__":
    main()
