"""Batched colour augmentations: colour jitter, grayscale and solarize.

The colour jitter follows torchvision's `ColorJitter` (used by SimCLR, MoCo v2,
BYOL, SwAV): four adjustments with per-image random strengths applied in a
per-image random order, each clipped to ``[0, 1]``. Solarize follows BYOL
(Grill et al., NeurIPS 2020, `utils/augmentations.py`).
"""

import tensorflow as tf

from keras_ssl.augment import common


def apply_in_random_order(images, seed, transforms, mask=None):
    """Applies every transform once to each image, in a random order per image.

    Computing every transform on the whole batch at every stage and selecting
    with ``tf.where`` would cost ``n`` times the work. Instead, at each stage the
    batch is split with `tf.dynamic_partition` by the transform each image takes
    there, each transform runs on its share only, and `tf.dynamic_stitch` puts
    the images back in place: one pass of each transform in total.

    Args:
        images: float32 ``[B, H, W, C]``.
        seed: int32 tensor of shape ``[2]``; draws the per-image orders.
        transforms: callables ``fn(images_subset, batch_indices) -> images_subset``;
            ``batch_indices`` (int32) says which images of the batch the subset
            holds, so a transform can gather its per-image parameters.
        mask: optional bool ``[B]``; images where it is false are left
            untouched (they sit in an extra, identity partition at every stage).

    Returns:
        float32 images of the same shape.
    """
    num = len(transforms)
    batch_size = tf.shape(images)[0]
    indices = tf.range(batch_size)
    static_shape = images.shape
    # argsort of i.i.d. uniforms is a uniformly random permutation per image.
    orders = tf.argsort(tf.random.stateless_uniform([batch_size, num], seed), axis=1)
    groups = list(transforms)
    if mask is not None:
        orders = tf.where(mask[:, tf.newaxis], orders, num)
        groups.append(lambda part, part_indices: part)
    for stage in range(num):
        chosen = orders[:, stage]
        image_parts = tf.dynamic_partition(images, chosen, len(groups))
        index_parts = tf.dynamic_partition(indices, chosen, len(groups))
        outputs = [
            transform(part, part_indices)
            for transform, part, part_indices in zip(groups, image_parts, index_parts)
        ]
        images = tf.dynamic_stitch(index_parts, outputs)
        images.set_shape(static_shape)
    return images


def shift_hue(images, shifts):
    """Rotates the HSV hue of each image by ``shifts`` (in turns), fused in RGB.

    Equal to ``hsv_to_rgb(rgb_to_hsv(x) + [shift, 0, 0])`` with the hue taken
    modulo 1, but about 2x cheaper on CPU than TensorFlow's two kernels: a hue
    rotation keeps the max ``M`` and min ``m`` of each pixel, and each output
    channel is ``m + (M - m) * d((6 h - offset) mod 6)`` for a trapezoid ``d``.
    All the work is on one-channel planes; the planes are joined by a stack on
    a new leading axis and one transpose, ~6x faster than stacking on the last.

    Args:
        images: float32 ``[B, H, W, 3]`` in ``[0, 1]``.
        shifts: float32 ``[B]``, hue shift per image in turns.

    Returns:
        float32 ``[B, H, W, 3]`` in ``[0, 1]``.
    """
    red, green, blue = tf.unstack(images, axis=-1)
    high = tf.maximum(tf.maximum(red, green), blue)
    low = tf.minimum(tf.minimum(red, green), blue)
    chroma = high - low
    # The hue in sixths of a turn, by which channel is the max (red wins ties,
    # as in tf.image.rgb_to_hsv; at ties both branches give the same hue).
    is_red = tf.cast(tf.equal(red, high), tf.float32)
    is_green = tf.cast(tf.equal(green, high), tf.float32) * (1.0 - is_red)
    is_blue = 1.0 - is_red - is_green
    numerator = tf.add_n(
        [is_red * (green - blue), is_green * (blue - red), is_blue * (red - green)]
    )
    hue = tf.math.divide_no_nan(numerator, chroma) + 2.0 * is_green + 4.0 * is_blue
    hue = hue + 6.0 * tf.reshape(shifts, [-1, 1, 1])
    planes = []
    # Per output channel (r, g, b) the trapezoid is shifted by (4, 0, 2) sixths.
    for offset in (4.0, 0.0, 2.0):
        phase = hue - offset
        phase = phase - 6.0 * tf.floor(phase * (1.0 / 6.0))  # mod 6; floormod is slow
        weight = tf.minimum(tf.maximum(2.0 - tf.abs(phase - 2.0), 0.0), 1.0)
        planes.append(low + chroma * weight)
    output = tf.transpose(tf.stack(planes, axis=0), [1, 2, 3, 0])
    output.set_shape(images.shape)
    return output


def _scale_transform(factors):
    """Brightness: multiply by the factor (blend with black)."""

    def transform(images, indices):
        factor = tf.reshape(tf.gather(factors, indices), [-1, 1, 1, 1])
        return common.clip_unit(images * factor)

    return transform


def _contrast_transform(factors):
    """Contrast: blend with the mean grey level of the whole image."""

    def transform(images, indices):
        factor = tf.reshape(tf.gather(factors, indices), [-1, 1, 1, 1])
        # The mean luma is the luma of the mean colour: no per-pixel grey needed.
        mean_color = tf.reduce_mean(images, axis=[1, 2])
        mean = tf.reduce_sum(mean_color * common.LUMA_WEIGHTS, axis=1)
        mean = tf.reshape(mean, [-1, 1, 1, 1])
        return common.clip_unit(mean + factor * (images - mean))

    return transform


def _saturation_transform(factors):
    """Saturation: blend with the grayscale version of the image."""

    def transform(images, indices):
        # f * x + (1 - f) * luma(x) is one colour matrix per image.
        factor = tf.reshape(tf.gather(factors, indices), [-1, 1, 1])
        matrices = factor * tf.eye(3) + (1.0 - factor) * common.luma_matrix()
        return common.clip_unit(common.color_transform(images, matrices))

    return transform


def _hue_transform(shifts):
    """Hue: rotate the hue channel in HSV space by a fraction of a turn."""

    def transform(images, indices):
        # In exact arithmetic the result lies between each pixel's min and max;
        # the clip removes the ulp that float rounding can add beyond 0 or 1.
        return common.clip_unit(shift_hue(images, tf.gather(shifts, indices)))

    return transform


@common.batched
def color_jitter(
    images,
    seed,
    *,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    probability=0.8,
):
    """Randomly changes brightness, contrast, saturation and hue, in random order.

    torchvision semantics: brightness, contrast and saturation factors are drawn
    from ``U[max(0, 1 - s), 1 + s]`` and the hue shift from ``U[-hue, hue]`` (in
    turns); an adjustment with strength 0 is skipped; the order of the others is a
    fresh random permutation for every image; each adjustment clips to
    ``[0, 1]``. ``probability`` plays the role of the `RandomApply` wrapper that
    SimCLR and MoCo v2 put around it.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (ICML 2020), appendix A; torchvision `ColorJitter`.

    Args:
        images: float32 ``[B, H, W, 3]`` or ``[H, W, 3]`` in ``[0, 1]``.
        seed: int32 tensor of shape ``[2]``.
        brightness, contrast, saturation: jitter strengths, >= 0.
        hue: hue jitter strength in ``[0, 0.5]``.
        probability: chance that an image is jittered at all.

    Returns:
        float32 images of the same shape in ``[0, 1]``.
    """
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}.")
    if probability <= 0.0 or not any((brightness, contrast, saturation, hue)):
        return images
    batch_size = tf.shape(images)[0]
    apply_seed, order_seed, *factor_seeds = common.split_seed(seed, 6)

    def factors(seed_, low, high):
        return tf.random.stateless_uniform([batch_size], seed_, minval=low, maxval=high)

    # Keep torchvision's order of the four in the list; the order they run in
    # is drawn per image by apply_in_random_order.
    transforms = []
    for strength, seed_, make in zip(
        (brightness, contrast, saturation),
        factor_seeds[:3],
        (_scale_transform, _contrast_transform, _saturation_transform),
    ):
        if strength > 0:
            transforms.append(make(factors(seed_, max(0.0, 1.0 - strength), 1.0 + strength)))
    if hue > 0:
        transforms.append(_hue_transform(factors(factor_seeds[3], -hue, hue)))

    apply = None
    if probability < 1.0:
        apply = common.random_mask(apply_seed, batch_size, probability)
    # Every transform clips to [0, 1] itself, so no final clip is needed.
    return apply_in_random_order(images, order_seed, transforms, mask=apply)


@common.batched
def random_grayscale(images, seed, probability=0.2):
    """Replaces each image by its luma, repeated over 3 channels, with a probability.

    Reference: torchvision `RandomGrayscale` (ITU-R 601 weights).

    Args:
        images: float32 ``[B, H, W, 3]`` or ``[H, W, 3]`` in ``[0, 1]``.
        seed: int32 tensor of shape ``[2]``.
        probability: chance that an image is made grey.

    Returns:
        float32 images of the same shape; grey images have three equal channels.
    """
    # Only the images that turn grey pay for the matmul.
    return common.apply_randomly(
        images,
        seed,
        probability,
        lambda subset, _: common.color_transform(subset, common.luma_matrix()),
    )


@common.batched
def solarize(images, seed, *, probability, threshold=0.5):
    """Inverts the pixels at or above ``threshold`` (``x -> 1 - x``), per image.

    Reference: Grill et al., "Bootstrap your own latent" (NeurIPS 2020), used on
    BYOL's second view with probability 0.2.

    Args:
        images: float32 ``[B, H, W, 3]`` or ``[H, W, 3]`` in ``[0, 1]``.
        seed: int32 tensor of shape ``[2]``.
        probability: chance that an image is solarized.
        threshold: pixel level from which values are inverted.

    Returns:
        float32 images of the same shape in ``[0, 1]``.
    """

    def solarize_subset(subset, _):
        if threshold == 0.5:
            # For x >= 0.5, 1 - x <= x (and 1 - x is exact), otherwise x < 1 - x:
            # the minimum is the solarized value, and 3x cheaper than a tf.where.
            return tf.minimum(subset, 1.0 - subset)
        return tf.where(subset >= threshold, 1.0 - subset, subset)

    return common.apply_randomly(images, seed, probability, solarize_subset)
