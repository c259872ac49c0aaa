"""Helpers shared by the batched augmentation ops.

Every op in `keras_ssl.augment` follows one contract:

- ``images`` is float32 in ``[0, 1]``, either a batch ``[B, H, W, 3]`` or a single
  image ``[H, W, 3]`` (the op adds and removes the batch dimension);
- ``seed`` is an int32 tensor of shape ``[2]``; all randomness is stateless, so the
  same seed gives the same output eagerly, inside ``tf.function`` and inside
  ``tf.data.Dataset.map``;
- per-image random choices (apply or not, crop box, jitter factors) are drawn as
  vectors of length ``B`` so the whole batch is transformed by a handful of
  large tensor ops rather than ``B`` tiny ones;
- an op applied with a probability runs on the chosen images only
  (`apply_randomly`), not on all of them followed by a select.
"""

import functools

import tensorflow as tf

# ITU-R BT.601 luma weights, the ones torchvision's `rgb_to_grayscale` and
# `tf.image.rgb_to_grayscale` use.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


def batched(op):
    """Lets a batched op also take a single image ``[H, W, 3]``.

    The wrapped op always sees ``[B, H, W, C]``; a rank-3 input is given a batch
    dimension of one on the way in and loses it on the way out. The rank must be
    known statically, which it is for images in ``tf.data``.

    The op is also marked not to be converted by AutoGraph: its Python control
    flow is on static settings only, and converting the per-call closures of
    every op made tracing a multi-crop recipe take ~30 s instead of ~2 s.
    """

    @tf.autograph.experimental.do_not_convert
    @functools.wraps(op)
    def wrapper(images, seed, *args, **kwargs):
        images = tf.convert_to_tensor(images)
        if images.shape.rank == 3:
            outputs = op(images[tf.newaxis], seed, *args, **kwargs)
            # Several crops of one image stay stacked: [num_crops, h, w, 3].
            return outputs[0] if kwargs.get("num_crops", 1) == 1 else outputs
        if images.shape.rank != 4:
            raise ValueError(
                f"{op.__name__} expects images of rank 3 or 4, got shape {images.shape}."
            )
        return op(images, seed, *args, **kwargs)

    return wrapper


def split_seed(seed, num):
    """Splits one stateless seed into ``num`` independent seeds, shape ``[num, 2]``.

    Each stage of an op draws from its own seed, so adding or skipping a stage
    never shifts the random numbers of another.
    """
    seed = tf.convert_to_tensor(seed, dtype=tf.int32)
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=num))


def random_mask(seed, batch_size, probability):
    """Boolean ``[B]``: which images an op with the given probability applies to."""
    return tf.random.stateless_uniform([batch_size], seed) < probability


def apply_to_subset(images, mask, transform):
    """Runs ``transform`` only on the images where ``mask`` is true.

    `tf.dynamic_partition` splits the batch, the transform sees its share only,
    and `tf.dynamic_stitch` restores the order. That costs two copies of the
    batch, against running the transform on every image and blending (which
    wastes ``1 - p`` of the transform and costs three passes more).

    Args:
        images: ``[B, H, W, C]``.
        mask: bool ``[B]``.
        transform: ``fn(images_subset, batch_indices) -> images_subset``;
            ``batch_indices`` (int32) lets it gather per-image parameters.

    Returns:
        Images of the same shape.
    """
    partitions = tf.cast(mask, tf.int32)
    indices = tf.range(tf.shape(images)[0])
    (kept, selected) = tf.dynamic_partition(images, partitions, 2)
    (kept_indices, selected_indices) = tf.dynamic_partition(indices, partitions, 2)
    output = tf.dynamic_stitch(
        [kept_indices, selected_indices], [kept, transform(selected, selected_indices)]
    )
    output.set_shape(images.shape)
    return output


def apply_randomly(images, seed, probability, transform):
    """Runs ``transform`` on each image with the given probability.

    Args:
        images: ``[B, H, W, C]``.
        seed: int32 tensor of shape ``[2]``; draws which images are transformed.
        probability: Python float; 0 and 1 skip the draw (and the partition).
        transform: ``fn(images_subset, batch_indices) -> images_subset``.
    """
    if probability <= 0.0:
        return images
    if probability >= 1.0:
        return transform(images, tf.range(tf.shape(images)[0]))
    mask = random_mask(seed, tf.shape(images)[0], probability)
    return apply_to_subset(images, mask, transform)


def clip_unit(images):
    """Clips to ``[0, 1]``; `tf.minimum`/`tf.maximum` are faster than `clip_by_value`."""
    return tf.minimum(tf.maximum(images, 0.0), 1.0)


def color_transform(images, matrices):
    """Applies a 3x3 colour matrix per image: ``out[..., c] = sum_k x[..., k] M[k, c]``.

    One batched matmul. Blends with the grey image written this way avoid a
    ``[B, H, W, 1]`` grey tensor, whose broadcast over the channel axis (the
    innermost one) is ~3x slower on CPU than a same-shape op.

    Args:
        images: float32 ``[B, H, W, 3]``.
        matrices: float32 ``[B, 3, 3]`` (or ``[3, 3]`` shared by all images).
    """
    shape = tf.shape(images)
    if matrices.shape.rank == 2:
        pixels = tf.matmul(tf.reshape(images, [-1, 3]), matrices)
    else:
        pixels = tf.matmul(tf.reshape(images, [shape[0], -1, 3]), matrices)
    output = tf.reshape(pixels, shape)
    output.set_shape(images.shape)
    return output


def luma_matrix():
    """``[3, 3]`` colour matrix that turns a pixel into its luma in all 3 channels."""
    return tf.constant([[weight] * 3 for weight in LUMA_WEIGHTS], tf.float32)
