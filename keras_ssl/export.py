"""Export of a trained encoder for downstream code.

The SavedModel holds the encoder alone (no heads, targets, queues or banks)
and a `serve` signature that takes uint8 images of any batch size and any
height and width, resizes them to the training size and returns features, so
`tf.saved_model.load(path).serve(images)` works without keras_ssl installed.
The export folder may be on any TensorFlow file system (`gs://bucket/export`): the
SavedModel is written and Keras saves the `.keras` file through `tf.io.gfile`.
"""

import os

import keras
import tensorflow as tf

from keras_ssl.data.readers import resize_uint8


def export_encoder(encoder, export_dir, *, image_size):
    """Writes `export_dir/saved_model` (serving) and `export_dir/encoder.keras`.

    The `serve` signature preprocesses as the evaluation pipeline does: images
    of another size are resized with antialiasing and rounded back to uint8
    (`keras_ssl.data.readers.resize_uint8`), then scaled to [0, 1]; images
    already at `image_size` go straight to the encoder. Features are float32
    even for a mixed-precision encoder.

    Args:
        encoder: the method's `encoder` (float images in [0, 1] -> features).
        export_dir: output folder (created), local or a URL such as `gs://...`.
        image_size: side the encoder was trained at; inputs are resized to it.

    Returns:
        The SavedModel path.

    Example:
        >>> path = export_encoder(method.encoder, "/tmp/export", image_size=32)
        >>> features = tf.saved_model.load(path).serve(uint8_images)  # [B, D]
    """
    tf.io.gfile.makedirs(export_dir)
    saved_model_dir = os.path.join(export_dir, "saved_model")
    archive = keras.export.ExportArchive()
    archive.track(encoder)

    def serve(images):
        # Preprocessing lives inside the graph: callers pass raw pixels.
        shape = tf.shape(images)
        same_size = tf.logical_and(tf.equal(shape[1], image_size),
                                   tf.equal(shape[2], image_size))
        # Skipping the resize at the training size keeps the features equal to
        # the Keras encoder's on the same pixels.
        images = tf.cond(same_size, lambda: images,
                         lambda: resize_uint8(images, image_size))
        images = tf.ensure_shape(images, [None, image_size, image_size, 3])
        pixels = tf.cast(images, tf.float32) / 255.0
        return tf.cast(encoder(pixels, training=False), tf.float32)

    archive.add_endpoint(
        name="serve", fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.write_out(saved_model_dir, verbose=False)
    encoder.save(os.path.join(export_dir, "encoder.keras"))
    return saved_model_dir
