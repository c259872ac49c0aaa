"""Graph-mode readers that turn split positions into uint8 images for tf.data pipelines."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.data.split import Split


def resize_uint8(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resizes uint8 [..., H, W, 3] to image_size x image_size, staying uint8.

    Antialiasing matches PIL's bilinear resize of the in-memory path when shrinking.

    Args:
        images: uint8 image or batch of images.
        image_size: target height and width.
    """
    resized = tf.image.resize(images, [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def decode_file(path: tf.Tensor, image_size: int | None) -> tf.Tensor:
    """Reads and decodes one image file to uint8 [H, W, 3] (GIFs: first frame).

    Args:
        path: scalar string tensor.
        image_size: resize to image_size x image_size when given.
    """
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    if image_size is not None:
        image = resize_uint8(image, image_size)
        image.set_shape([image_size, image_size, 3])
    return image


class InMemoryReader:
    """Gathers batches of decoded images from a split held in memory.

    The image array becomes one constant that every epoch and pipeline gathers from, so it
    is never copied per epoch (a from_tensor_slices per epoch would copy it each time).

    Args:
        split: a split with `images`.
        image_size: resize gathered batches to this size when it differs from the stored one.
    """

    def __init__(self, split: Split, image_size: int | None = None):
        self.images = tf.constant(split.images)
        self.labels = tf.constant(split.labels)
        stored_size = split.images.shape[1:3]
        self.image_size = image_size if image_size and tuple(stored_size) != (image_size, image_size) else None

    def __call__(self, indices: tf.Tensor) -> dict[str, tf.Tensor]:
        """{"images": uint8 [B, H, W, 3], "label": int64 [B], "index": int64 [B]}."""
        images = tf.gather(self.images, indices)
        if self.image_size is not None:
            images = resize_uint8(images, self.image_size)
        return {"images": images, "label": tf.gather(self.labels, indices), "index": indices}


class FileReader:
    """Reads and decodes single images of a streamed split (paths on disk).

    Args:
        split: a split with `paths`.
        image_size: resize every image to this size when given.
    """

    def __init__(self, split: Split, image_size: int | None = None):
        self.paths = tf.constant(split.paths, dtype=tf.string)
        self.labels = tf.constant(split.labels)
        self.image_size = image_size

    def __call__(self, index: tf.Tensor) -> dict[str, tf.Tensor]:
        """{"images": uint8 [H, W, 3], "label": int64 [], "index": int64 []} for one position."""
        image = decode_file(tf.gather(self.paths, index), self.image_size)
        return {"images": image, "label": tf.gather(self.labels, index), "index": index}

    def gather(self, indices: tf.Tensor) -> dict[str, tf.Tensor]:
        """Decodes the images at int64 `indices` [B] into one batch (the labeled stream's reader).

        Unlike `batches`, it cannot skip a file whose data turns out corrupt (that would
        shift the stream), so such a file stops the pipeline with TensorFlow's decode error.

        Returns:
            {"images": uint8 [B, H, W, 3], "label": int64 [B], "index": int64 [B]}.
        """
        size = self.image_size
        images = tf.map_fn(
            lambda path: decode_file(path, size),
            tf.gather(self.paths, indices),
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
        )
        return {"images": images, "label": tf.gather(self.labels, indices), "index": indices}

    def batches(self, positions: tf.data.Dataset, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
        """Decodes a dataset of positions in parallel, drops undecodable files, then batches.

        The header check at load time cannot see truncated or corrupt image data; skipping
        such a file here (with a logged warning) beats stopping a long run at step 90k.

        Args:
            positions: int64 scalar positions into the split.
            batch_size: examples per batch.
            drop_remainder: drop the last partial batch.
        """
        examples = positions.map(self, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        examples = examples.ignore_errors(log_warning=True)
        return examples.batch(batch_size, drop_remainder=drop_remainder)
