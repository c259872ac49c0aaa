"""A tiny convolutional backbone for tests: two conv blocks and a pooled feature."""

import keras

from keras_ssl.backbones.input_size import image_input
from keras_ssl.backbones.split_bn import SplitBatchNormalization
from keras_ssl.backbones.sync_bn import SyncBatchNormalization


def tiny_backbone(*, image_size=32, width=8, norm="batch", name="tiny",
                  any_image_size=False, num_splits=8):
    """Builds a two-block CNN from `[B, S, S, 3]` images in [0, 1] to `[B, 2*width]`.

    Args:
        image_size: side of the square input.
        width: channels of the first block (the second has twice as many).
        norm: "batch", "sync_batch" (statistics over all replicas, so 1 and 2
            replicas compute the same function; `SyncBatchNormalization`),
            "split_batch" (statistics per sub-batch, `SplitBatchNormalization`
            with `num_splits`) or "none".
        name: model name.
        any_image_size: declare the input as `[B, None, None, 3]`, so crops of
            other sizes (multi-crop's local crops) are accepted too.
        num_splits: sub-batches of the global batch with norm="split_batch".

    Example:
    >>> tiny_backbone(width=4).output_shape
    (None, 8)
    """
    if norm not in ("batch", "sync_batch", "split_batch", "none"):
        raise ValueError(f"norm must be batch, sync_batch, split_batch or none; got "
                         f"{norm!r}.")
    images = image_input(image_size, any_image_size=any_image_size)
    x = images
    for index, (filters, strides) in enumerate(((width, 1), (2 * width, 2))):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                                use_bias=norm == "none", name=f"conv{index}")(x)
        if norm == "split_batch":
            x = SplitBatchNormalization(num_splits=num_splits, name=f"bn{index}")(x)
        elif norm != "none":
            layer = (SyncBatchNormalization if norm == "sync_batch"
                     else keras.layers.BatchNormalization)
            x = layer(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(images, features, name=name)
