"""Batched, stateless CutMix: a box of a partner image pasted into each image.

Reference: Yun et al., "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features" (ICCV 2019); the official code,
clovaai/CutMix-PyTorch `train.py` (`rand_bbox` and the lines that call it in
`train`), draws lambda ~ Beta(beta, beta), a box side of
`int(side * sqrt(1 - lambda))`, a box centre uniform over the pixels, clips
the box to the image and then recomputes lambda from the pasted area
("adjust lambda to exactly match pixel ratio"). CLIM (Li, Zhang, Xiong,
BMVC 2021) mixes each anchor with a selected neighbour this way
(`keras_ssl.methods.clim`).

Where this differs from the official code, and why:

- One lambda and one box per image, not one per batch: every anchor has its
  own partner here (CLIM's neighbour), so a per-image draw is the natural
  reading; the distribution of each image's box is the official one.
- The official code names the first spatial axis of an NCHW tensor `W`; with
  square images that changes nothing. Here rows use the height and columns
  the width.
- With `alpha=1` (the default, CutMix's own setting for ImageNet and CIFAR)
  Beta(1, 1) is the uniform distribution on (0, 1): lambda ~ U(0, 1).
"""

import tensorflow as tf

from keras_ssl.augment import common
from keras_ssl.augment.erasing import erase


def cutmix_boxes(mix_ratios, centre_rows, centre_columns, height, width):
    """The official `rand_bbox` rule applied to given draws.

    For each image the box side is `floor(side * sqrt(1 - ratio))` in each
    direction; the box spans `side // 2` pixels either side of the centre,
    clipped to the image (so a clipped box is smaller than drawn).

    Args:
        mix_ratios: float32 [B], the drawn lambda in [0, 1].
        centre_rows, centre_columns: int32 [B], the box centre, in
            [0, height) and [0, width).
        height, width: image size in pixels (int scalars, may be tensors).

    Returns:
        (top, left, box_height, box_width), each int32 [B]: the box is rows
        [top, top + box_height) and columns [left, left + box_width).
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    cut = tf.sqrt(1.0 - tf.cast(mix_ratios, tf.float32))
    # np.int(W * cut_rat): truncation, which is the floor for non-negative values.
    half_height = tf.cast(tf.cast(height, tf.float32) * cut, tf.int32) // 2
    half_width = tf.cast(tf.cast(width, tf.float32) * cut, tf.int32) // 2
    top = tf.clip_by_value(centre_rows - half_height, 0, height)
    bottom = tf.clip_by_value(centre_rows + half_height, 0, height)
    left = tf.clip_by_value(centre_columns - half_width, 0, width)
    right = tf.clip_by_value(centre_columns + half_width, 0, width)
    return top, left, bottom - top, right - left


def sample_cutmix_boxes(seed, batch_size, height, width, *, alpha=1.0):
    """Draws one CutMix box per image: lambda ~ Beta(alpha, alpha), a uniform centre.

    Beta(a, a) is drawn as G1 / (G1 + G2) with G1, G2 ~ Gamma(a), from
    stateless generators, so the same seed gives the same boxes eagerly, in a
    `tf.function` and inside `Dataset.map`.

    Args:
        seed: int32 tensor of shape [2].
        batch_size: number of boxes.
        height, width: image size in pixels.
        alpha: the Beta parameter (CutMix's `--beta`; 1.0 is U(0, 1)).

    Returns:
        (top, left, box_height, box_width), each int32 [batch_size], as
        `cutmix_boxes`.
    """
    if alpha <= 0.0:
        raise ValueError(f"alpha={alpha} must be positive (Beta(alpha, alpha)).")
    first_seed, second_seed, row_seed, column_seed = common.split_seed(seed, 4)
    first = tf.random.stateless_gamma([batch_size], first_seed, alpha)
    second = tf.random.stateless_gamma([batch_size], second_seed, alpha)
    mix_ratios = first / (first + second)
    centre_rows = tf.random.stateless_uniform([batch_size], row_seed, minval=0,
                                              maxval=tf.cast(height, tf.int32), dtype=tf.int32)
    centre_columns = tf.random.stateless_uniform([batch_size], column_seed, minval=0,
                                                 maxval=tf.cast(width, tf.int32), dtype=tf.int32)
    return cutmix_boxes(mix_ratios, centre_rows, centre_columns, height, width)


def paste_boxes(images, partners, top, left, box_height, box_width):
    """Each image with rows [top, top + h) x columns [left, left + w) taken from its partner.

    Args:
        images, partners: float [B, H, W, C] of the same shape.
        top, left, box_height, box_width: int32 [B]; an empty box keeps the image.

    Returns:
        (mixed [B, H, W, C], kept [B] float32): `kept` is the exact fraction of
        pixels that come from `images` (the official "adjusted" lambda).
    """
    # The box mask is what `erase` paints onto zeros with the value 1: one
    # batched matmul, exactly 0 or 1 (see erasing.erase), so the blend below
    # copies pixels bit for bit on both sides of the edge.
    box = erase(tf.zeros_like(images), top, left, box_height, box_width, 1.0)
    mixed = images * (1.0 - box) + partners * box
    mixed.set_shape(images.shape)
    shape = tf.shape(images)
    area = tf.cast(shape[1] * shape[2], tf.float32)
    kept = 1.0 - tf.cast(box_height * box_width, tf.float32) / area
    return mixed, kept


@tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
def cutmix(images, partners, seed, *, alpha=1.0, unmixed=None):
    """Pastes a random box of each partner into its image (CutMix).

    Args:
        images: float32 [B, H, W, 3] (or one image [H, W, 3]) in [0, 1].
        partners: the images pasted from, the same shape as `images`.
        seed: int32 tensor of shape [2].
        alpha: lambda ~ Beta(alpha, alpha) before clipping (1.0: U(0, 1)).
        unmixed: optional bool [B]; rows where it is True are left as they
            are (an empty box, lambda 1). CLIM passes the rows whose partner
            is the image itself.

    Returns:
        (mixed images, lambda): lambda is float32 [B] (a scalar for one
        image), the exact fraction of each mixed image's pixels that come
        from `images`, after the box was clipped to the image.

    Example:
    >>> images, partners = tf.zeros([2, 8, 8, 3]), tf.ones([2, 8, 8, 3])
    >>> mixed, kept = cutmix(images, partners, tf.constant([1, 2]))
    >>> bool(tf.reduce_all(tf.abs(1.0 - tf.reduce_mean(mixed, [1, 2, 3]) - kept) < 1e-6))
    True
    """
    images = tf.convert_to_tensor(images)
    partners = tf.convert_to_tensor(partners, dtype=images.dtype)
    if images.shape.rank == 3:
        mixed, kept = cutmix(images[tf.newaxis], partners[tf.newaxis], seed, alpha=alpha,
                             unmixed=None if unmixed is None else tf.reshape(unmixed, [1]))
        return mixed[0], kept[0]
    if images.shape.rank != 4:
        raise ValueError(f"cutmix expects images of rank 3 or 4, got shape {images.shape}.")
    shape = tf.shape(images)
    top, left, box_height, box_width = sample_cutmix_boxes(
        seed, shape[0], shape[1], shape[2], alpha=alpha)
    if unmixed is not None:
        box_height = tf.where(unmixed, 0, box_height)
    return paste_boxes(images, partners, top, left, box_height, box_width)
