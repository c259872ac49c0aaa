"""Export of a trained encoder for downstream code.

The SavedModel holds the encoder alone (no heads, targets, queues or banks)
and a `serve` signature that takes uint8 images of any batch size and any
height and width, resizes them to the training size and returns features, so
`tf.saved_model.load(path).serve(images)` works without keras_ssl installed.
"""

import os

import keras
import tensorflow as tf


def export_encoder(encoder, export_dir, *, image_size):
    """Writes `export_dir/saved_model` (serving) and `export_dir/encoder.keras`.

    Args:
        encoder: the method's `encoder` (float images in [0, 1] -> features).
        export_dir: output folder (created).
        image_size: side the encoder was trained at; inputs are resized to it.

    Returns:
        The SavedModel path.
    """
    os.makedirs(export_dir, exist_ok=True)
    saved_model_dir = os.path.join(export_dir, "saved_model")
    archive = keras.export.ExportArchive()
    archive.track(encoder)

    def serve(images):
        # Preprocessing lives inside the graph: callers pass raw pixels.
        pixels = tf.cast(images, tf.float32) / 255.0
        pixels = tf.image.resize(pixels, (image_size, image_size))
        return encoder(pixels, training=False)

    archive.add_endpoint(
        name="serve", fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.write_out(saved_model_dir, verbose=False)
    encoder.save(os.path.join(export_dir, "encoder.keras"))
    return saved_model_dir
