"""Batched random erasing: one random rectangle of each image set to a value.

Reference: Zhong et al., "Random Erasing Data Augmentation" (AAAI 2020,
arXiv 1708.04896), as implemented by torchvision's `RandomErasing`
(`transforms.py`, `RandomErasing.get_params`), which CLD's MoCo CIFAR recipe
appends with p=1 (`--erasing`, frank-xwang/CLD-UnsupervisedLearning
`datasets/dataloader.py`).
"""

import math

import tensorflow as tf

from keras_ssl.augment import common


def erase_boxes(area_fractions, aspect_ratios, top_fractions, left_fractions, height, width):
    """torchvision's rule for the erased box, applied to given random draws.

    For each image, attempt ``a`` proposes a box of area
    ``area_fractions[:, a] * height * width`` whose height over width is
    ``aspect_ratios[:, a]``, rounded to whole pixels (``round`` half to even, as
    Python's); the first attempt whose box is strictly smaller than the image in
    both sides wins. Its top-left corner is uniform over the positions where it
    fits. An image where no attempt fits gets an empty box (nothing erased).

    Args:
        area_fractions: float32 ``[B, attempts]``, fraction of the image area.
        aspect_ratios: float32 ``[B, attempts]``, box height / box width.
        top_fractions, left_fractions: float32 ``[B]`` in ``[0, 1)``; the
            offsets as a fraction of the free range.
        height, width: image size in pixels (int scalars, may be tensors).

    Returns:
        ``(top, left, erase_height, erase_width)``, each int32 ``[B]``; the box is
        rows ``[top, top + erase_height)`` and columns ``[left, left + erase_width)``.
    """
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    area = height * width * area_fractions
    # torchvision's `h = round(sqrt(area * ratio))`: the ratio is height over
    # width, the inverse of RandomResizedCrop's.
    erase_height = tf.round(tf.sqrt(area * aspect_ratios))
    erase_width = tf.round(tf.sqrt(area / aspect_ratios))
    # Strictly smaller, as torchvision's `h < img_h and w < img_w`: a box can
    # never cover the whole image. There is no `> 0` check: a box rounded to
    # zero pixels is accepted and erases nothing, in torchvision too.
    fits = (erase_height < height) & (erase_width < width)
    # argmax returns the first maximum, i.e. the first attempt that fits.
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    any_fits = tf.reduce_any(fits, axis=1)
    erase_height = tf.where(any_fits, tf.gather(erase_height, first, axis=1, batch_dims=1), 0.0)
    erase_width = tf.where(any_fits, tf.gather(erase_width, first, axis=1, batch_dims=1), 0.0)
    # A uniform integer in [0, size - box]; the minimum guards against a
    # fraction so close to 1 that the product rounds up to the bound.
    top = tf.minimum(tf.floor(top_fractions * (height - erase_height + 1.0)), height - erase_height)
    left = tf.minimum(tf.floor(left_fractions * (width - erase_width + 1.0)), width - erase_width)
    return tuple(tf.cast(v, tf.int32) for v in (top, left, erase_height, erase_width))


def sample_erase_boxes(seed, batch_size, height, width, *, scale, ratio, attempts=10):
    """Draws one erased box per image with torchvision's `RandomErasing` rule.

    torchvision tries up to ten times, one after the other, to draw an area
    fraction uniform in ``scale`` and an aspect ratio log-uniform in ``ratio``
    and keeps the first box that fits. Here all ``attempts`` candidates of all
    images are drawn at once and `erase_boxes` picks the first that fits with an
    ``argmax``: the same distribution, without a loop.

    Args:
        seed: int32 tensor of shape ``[2]``.
        batch_size: number of boxes.
        height, width: image size in pixels.
        scale: ``(min, max)`` fraction of the image area to erase.
        ratio: ``(min, max)`` aspect ratio (height / width) of the erased box.
        attempts: candidate boxes per image before giving up.

    Returns:
        ``(top, left, erase_height, erase_width)``, each int32 ``[batch_size]``.
    """
    area_seed, ratio_seed, top_seed, left_seed = common.split_seed(seed, 4)
    shape = [batch_size, attempts]
    area_fractions = tf.random.stateless_uniform(
        shape, area_seed, minval=scale[0], maxval=scale[1]
    )
    # Log-uniform, as torchvision >= 0.9 (pytorch/vision#3344); before that
    # release the ratio itself was uniform, which favours wide boxes.
    aspect_ratios = tf.exp(
        tf.random.stateless_uniform(
            shape, ratio_seed, minval=math.log(ratio[0]), maxval=math.log(ratio[1])
        )
    )
    return erase_boxes(
        area_fractions,
        aspect_ratios,
        tf.random.stateless_uniform([batch_size], top_seed),
        tf.random.stateless_uniform([batch_size], left_seed),
        height,
        width,
    )


def erase(images, top, left, erase_height, erase_width, value):
    """Sets rows ``[top, top + h)`` x columns ``[left, left + w)`` of each image to ``value``.

    The box of an image is the outer product of its row mask and its column
    mask, made by one batched matmul over ``[B, H, W * C]`` (the column mask
    repeated per channel), and the output is ``x * (1 - box) + box * value``:
    exact on both sides of the edge, and every broadcast is of a whole
    ``W * C`` row. A ``tf.where`` with a ``[B, H, W, 1]`` mask, or a multiply
    by a per-channel ``[C]`` value, broadcasts over the innermost axis and is
    2-3x slower on CPU. No per-image slicing or scatter, so it compiles with XLA.

    Args:
        images: float ``[B, H, W, C]``.
        top, left, erase_height, erase_width: int32 ``[B]``; a zero side
            leaves the image unchanged.
        value: a number, or one number per channel.

    Returns:
        Images of the same shape and dtype.
    """
    shape = tf.shape(images)
    batch_size, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    dtype = images.dtype
    rows = tf.range(height)[tf.newaxis]
    columns = tf.range(width)[tf.newaxis]
    in_rows = (rows >= top[:, tf.newaxis]) & (rows < (top + erase_height)[:, tf.newaxis])
    in_columns = (columns >= left[:, tf.newaxis]) & (
        columns < (left + erase_width)[:, tf.newaxis]
    )
    in_rows = tf.cast(in_rows, dtype)[:, :, tf.newaxis]  # [B, H, 1]
    in_columns = tf.repeat(tf.cast(in_columns, dtype), channels, axis=1)  # [B, W * C]
    box = tf.matmul(in_rows, in_columns[:, tf.newaxis])  # [B, H, W * C], 1 inside
    value_row = tf.tile(tf.broadcast_to(tf.cast(value, dtype), [channels]), [width])
    pixels = tf.reshape(images, [batch_size, height, -1])
    output = tf.reshape(pixels * (1.0 - box) + box * value_row, shape)
    output.set_shape(images.shape)
    return output


@common.batched
def random_erasing(
    images,
    seed,
    *,
    probability=0.5,
    scale=(0.02, 0.33),
    ratio=(0.3, 3.3),
    value=0.0,
    attempts=10,
):
    """Erases one random rectangle of each image, with a probability.

    Follows torchvision's `RandomErasing` and its defaults: with probability
    ``probability`` an image gets a box of area fraction uniform in ``scale``
    and height/width log-uniform in ``ratio``, rounded to whole pixels,
    strictly smaller than the image on both sides and placed uniformly; up to
    ``attempts`` boxes are drawn and the first that fits is erased, and if none
    fits the image is left unchanged. The erased pixels are set to ``value``.

    Deviations from torchvision:

    - the ``attempts`` candidates are drawn at once and the first that fits is
      picked (`sample_erase_boxes`): the same distribution without a loop;
    - box sides are computed in float32, torchvision's in float64: the
      rounding can differ only for a side within ~1e-6 of a half pixel;
    - the ratio is log-uniform, as in torchvision >= 0.9; older releases drew
      it uniformly;
    - there is no ``value="random"`` (per-pixel Gaussian noise);
    - ``value`` is in this package's ``[0, 1]`` pixel space. torchvision's
      RandomErasing runs on a tensor, in practice after ``Normalize`` (CLD's
      recipe, torchvision's own example), so its default 0 there is the
      normalisation mean colour, not black. To reproduce that, pass the mean,
      e.g. CIFAR-10's ``(0.4914, 0.4822, 0.4465)`` for CLD. ``value=0``
      here erases to black.

    Unlike the other ops, the probability is folded into the box (a skipped
    image gets an empty one) rather than splitting the batch with
    `common.apply_to_subset`: erasing is one pass over the batch, no dearer
    than the two copies a partition costs. So the op also runs under
    ``tf.function(jit_compile=True)``; XLA implements the stateless generators
    its own way, so a compiled call erases other (equally distributed) boxes
    than an eager one with the same seed, deterministically.

    Reference: Zhong et al., "Random Erasing Data Augmentation" (AAAI 2020);
    torchvision `RandomErasing`.

    Args:
        images: float ``[B, H, W, C]`` or ``[H, W, C]``, in ``[0, 1]``.
        seed: int32 tensor of shape ``[2]``.
        probability: chance that an image is erased (torchvision's ``p``).
        scale: ``(min, max)`` fraction of the image area to erase.
        ratio: ``(min, max)`` aspect ratio (height / width) of the erased box.
        value: the erased pixels' value, a number or one per channel.
        attempts: boxes drawn per image before giving up (torchvision: 10).

    Returns:
        Images of the same shape and dtype.

    Example:

    >>> images = tf.fill([2, 32, 32, 3], 0.5)
    >>> erased = random_erasing(images, tf.constant([1, 2]), probability=1.0)
    >>> erased.shape, bool(tf.reduce_any(erased == 0.0))
    (TensorShape([2, 32, 32, 3]), True)
    """
    if probability <= 0.0:
        return images
    shape = tf.shape(images)
    batch_size = shape[0]
    apply_seed, box_seed = common.split_seed(seed, 2)
    top, left, erase_height, erase_width = sample_erase_boxes(
        box_seed, batch_size, shape[1], shape[2], scale=scale, ratio=ratio, attempts=attempts
    )
    if probability < 1.0:
        applied = common.random_mask(apply_seed, batch_size, probability)
        erase_height = tf.where(applied, erase_height, 0)
    return erase(images, top, left, erase_height, erase_width, value)
