"""Batched geometric augmentations: random resized crop and horizontal flip.

Reference: the random resized crop of Szegedy et al., "Going deeper with
convolutions" (CVPR 2015), as implemented by torchvision's
`RandomResizedCrop` and used by SimCLR, MoCo, BYOL and SwAV.
"""

import math

import tensorflow as tf

from keras_ssl.augment import common

# Fraction of the image side by which crop boxes are kept off the border.
_EDGE_MARGIN = 1e-5


def sample_crop_boxes(seed, batch_size, height, width, *, scale, ratio, attempts=10):
    """Samples one crop box per image with torchvision's `RandomResizedCrop` rule.

    torchvision tries up to ten times to draw an area fraction from ``scale`` and a
    log-uniform aspect ratio from ``ratio``, keeps the first box that fits in the
    image, and otherwise falls back to the largest centre crop whose aspect ratio
    lies in ``ratio``. Here all ``attempts`` candidates of all images are drawn at
    once and the first valid one is picked with an ``argmax``, which gives the
    same distribution without a loop.

    Args:
        seed: int32 tensor of shape ``[2]``.
        batch_size: number of boxes.
        height, width: image size in pixels (scalars, may be tensors).
        scale: ``(min, max)`` fraction of the image area to keep.
        ratio: ``(min, max)`` aspect ratio ``width / height`` of the crop.
        attempts: candidates per image before falling back to the centre crop.

    Returns:
        ``(top, left, crop_height, crop_width)``, each float32 ``[batch_size]``,
        in whole pixels.
    """
    area_seed, ratio_seed, top_seed, left_seed = common.split_seed(seed, 4)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    shape = [batch_size, attempts]

    area = height * width * tf.random.stateless_uniform(
        shape, area_seed, minval=scale[0], maxval=scale[1]
    )
    aspect = tf.exp(
        tf.random.stateless_uniform(
            shape, ratio_seed, minval=math.log(ratio[0]), maxval=math.log(ratio[1])
        )
    )
    # torchvision rounds to whole pixels before checking that the box fits.
    crop_width = tf.round(tf.sqrt(area * aspect))
    crop_height = tf.round(tf.sqrt(area / aspect))
    fits = (
        (crop_width > 0)
        & (crop_width <= width)
        & (crop_height > 0)
        & (crop_height <= height)
    )
    # argmax returns the first maximum, i.e. the first attempt that fits.
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    any_fits = tf.reduce_any(fits, axis=1)
    crop_width = tf.gather(crop_width, first, axis=1, batch_dims=1)
    crop_height = tf.gather(crop_height, first, axis=1, batch_dims=1)

    # Fallback when no attempt fits: the whole image, trimmed to the nearest
    # allowed aspect ratio (torchvision's "central crop").
    image_ratio = width / height
    fallback_width = tf.where(
        image_ratio > ratio[1], tf.round(height * ratio[1]), width
    )
    fallback_height = tf.where(
        image_ratio < ratio[0], tf.round(width / ratio[0]), height
    )
    crop_width = tf.where(any_fits, crop_width, fallback_width)
    crop_height = tf.where(any_fits, crop_height, fallback_height)

    # A uniform integer offset in [0, size - crop]; the fallback is centred.
    top = tf.floor(
        tf.random.stateless_uniform([batch_size], top_seed)
        * (height - crop_height + 1.0)
    )
    left = tf.floor(
        tf.random.stateless_uniform([batch_size], left_seed)
        * (width - crop_width + 1.0)
    )
    top = tf.where(any_fits, top, tf.floor((height - crop_height) / 2.0))
    left = tf.where(any_fits, left, tf.floor((width - crop_width) / 2.0))
    return top, left, crop_height, crop_width


@common.batched
def random_resized_crop(
    images,
    seed,
    *,
    size,
    scale=(0.08, 1.0),
    ratio=(3.0 / 4.0, 4.0 / 3.0),
    flip_probability=0.0,
    num_crops=1,
):
    """Crops a random box of each image and resizes it to ``size x size``.

    All boxes are cut and resized by a single bilinear
    `tf.image.crop_and_resize` call. The box corners are placed on the centres of
    the first and last cropped pixels, so sampling never leaves the image and no
    padding value leaks in. There is no antialiasing when a crop is shrunk; at
    CIFAR scale crops are rarely shrunk by more than 2x.

    ``flip_probability`` fuses a horizontal flip into the crop at no cost:
    `crop_and_resize` mirrors a crop whose box has ``x1 > x2``. The view recipes
    use it instead of a separate `random_flip` pass.

    ``num_crops`` cuts several independent crops of every image in the same
    call, so that identical views (SimCLR's pair, SwAV's six local crops) run
    through the rest of the pipeline as one large batch.

    Reference: torchvision `RandomResizedCrop`; Szegedy et al., CVPR 2015.

    Args:
        images: float32 ``[B, H, W, 3]`` or ``[H, W, 3]`` in ``[0, 1]``.
        seed: int32 tensor of shape ``[2]``.
        size: output height and width in pixels.
        scale: ``(min, max)`` fraction of the image area to keep.
        ratio: ``(min, max)`` aspect ratio ``width / height`` of the crop.
        flip_probability: chance that a crop is also mirrored left to right.
        num_crops: independent crops per image.

    Returns:
        float32 ``[num_crops * B, size, size, 3]`` in ``[0, 1]``; crop ``j`` of
        image ``b`` is row ``j * B + b``.
    """
    shape = tf.shape(images)
    batch_size, height, width = shape[0], shape[1], shape[2]
    num_boxes = num_crops * batch_size
    box_seed, flip_seed = common.split_seed(seed, 2)
    top, left, crop_height, crop_width = sample_crop_boxes(
        box_seed, num_boxes, height, width, scale=scale, ratio=ratio
    )
    # crop_and_resize maps a normalised coordinate c to pixel c * (size - 1).
    y_scale = 1.0 / tf.maximum(tf.cast(height, tf.float32) - 1.0, 1.0)
    x_scale = 1.0 / tf.maximum(tf.cast(width, tf.float32) - 1.0, 1.0)
    boxes = tf.stack(
        [
            top * y_scale,
            left * x_scale,
            (top + crop_height - 1.0) * y_scale,
            (left + crop_width - 1.0) * x_scale,
        ],
        axis=1,
    )
    # A box on the border can land an ulp outside the image after the kernel's
    # own arithmetic, and crop_and_resize then writes its extrapolation value
    # (0) for the whole edge row. Pulling the corners in by 1e-5 of the side
    # (3e-4 px at 32 px) keeps every sample inside.
    boxes = tf.clip_by_value(boxes, _EDGE_MARGIN, 1.0 - _EDGE_MARGIN)
    if flip_probability > 0.0:
        # Swapping x1 and x2 makes crop_and_resize mirror the crop.
        flip = common.random_mask(flip_seed, num_boxes, flip_probability)
        y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
        boxes = tf.stack(
            [y1, tf.where(flip, x2, x1), y2, tf.where(flip, x1, x2)], axis=1
        )
    return tf.image.crop_and_resize(
        images,
        boxes,
        box_indices=tf.tile(tf.range(batch_size), [num_crops]),
        crop_size=[size, size],
        method="bilinear",
    )


@common.batched
def random_flip(images, seed, probability=0.5):
    """Mirrors each image left to right with the given probability.

    Reference: torchvision `RandomHorizontalFlip`.

    Args:
        images: float32 ``[B, H, W, 3]`` or ``[H, W, 3]``.
        seed: int32 tensor of shape ``[2]``.
        probability: chance that an image is flipped.

    Returns:
        Images of the same shape.
    """
    return common.apply_randomly(
        images, seed, probability, lambda subset, _: tf.reverse(subset, axis=[2])
    )
