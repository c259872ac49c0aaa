"""FixMatch's RandAugment with random magnitudes, Cutout, and the weak flip-and-shift view.

The strong view of FixMatch ("d.d.rac" in google-research/fixmatch
ablation/ab_fixmatch_ra.py; libml/augment.py `AugmentPoolRAMC`) is the weak
view followed by

- two ops drawn with replacement from the 14 of `OPS`
  (`RANDOM_POLICY_OPS`, libml/augment.py:37-42), each applied with
  probability 0.5 at a level drawn uniformly from 1..9
  (`np.random.randint(1, 10)` in `AugmentPoolRAM.queue_images`, libml/augment.py:198,
  which `AugmentPoolRAMC` inherits);
- Cutout, always: a square of half the image side, centred on a uniform
  pixel and clipped at the border (`cutout_numpy(size=16)` on 32 px,
  third_party/auto_augment/augmentations.py:66-121).

Each op maps a level in 0..10 to its parameter as that file does
(`float_parameter`, `int_parameter`, augmentations.py:124-149): rotate
3 * level degrees, shear 0.03 * level, translate `level` pixels at 32 px
(scaled with the side here), solarize threshold 256 - int(25.6 level),
posterize to 4 - int(0.4 level) bits, and the four enhancers (colour,
contrast, brightness, sharpness) with factor 0.18 level + 0.1. Rotate, shear
and translate flip their sign with probability 1/2. The official pipeline
works on images in [-1, 1] and pixels PIL leaves uncovered (the corners of a
rotation) and Cutout's square become 0 there, which is grey 0.5 here.

The weak view (the "d" augmentation, libml/augment.py:65-71, 343) is a
horizontal flip with probability 1/2 and a random shift of up to 1/8 of the
side (4 px at 32) with reflected padding.

The ops that take parameters rather than a seed (`color`, `equalize`, ...)
take a batch [B, H, W, 3] only. `WeakStrongRecipe` is the view recipe of the
semi-supervised methods: `num_weak` weak views, then `num_strong` strong ones.

Every op follows `keras_ssl.augment.common`: float32 images in [0, 1], a
batch or one image, stateless int32 [2] seeds, per-image draws as vectors.
The ops run on the whole batch and each image keeps the result of the op it
drew, so one strong view is a fixed number of batched ops (no per-image
Python or `map_fn`).
"""

import dataclasses
import math

import tensorflow as tf

from keras_ssl.augment import common

OPS = ("identity", "auto_contrast", "equalize", "rotate", "solarize", "color", "contrast",
       "brightness", "sharpness", "shear_x", "translate_x", "translate_y", "posterize",
       "shear_y")
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_LEVEL = 10  # PARAMETER_MAX of augmentations.py
FILL_VALUE = 0.5  # 0 in the official [-1, 1] images


def _per_image(values, images):
    """[B] values as [B, 1, 1, 1], in the images' dtype."""
    return tf.reshape(tf.cast(values, images.dtype), [-1, 1, 1, 1])


def _levels_255(images):
    """The uint8 level of each pixel, as PIL sees it.

    Rounded: our images come from uint8 / 255, which rounding recovers
    exactly where the official np.uint8 truncation can lose a level to float
    error.
    """
    return tf.round(common.clip_unit(images) * 255.0)


def _blend(degenerate, images, factor):
    """PIL's ImageEnhance: degenerate + factor (image - degenerate), clipped to [0, 1]."""
    return common.clip_unit(degenerate + _per_image(factor, images) * (images - degenerate))


def enhancer_factor(level):
    """The factor of colour, contrast, brightness and sharpness at `level` (0.1 .. 1.9)."""
    return tf.cast(level, tf.float32) * 1.8 / MAX_LEVEL + 0.1


def color(images, factor):
    """Saturation: a blend with the grayscale image (ImageEnhance.Color)."""
    gray = common.color_transform(images, common.luma_matrix())
    return _blend(gray, images, factor)


def contrast(images, factor):
    """A blend with the mean grey level of the image (ImageEnhance.Contrast)."""
    gray = common.color_transform(images, common.luma_matrix())
    # PIL takes the mean of the luma histogram and rounds it to a level.
    mean = tf.floor(tf.reduce_mean(_levels_255(gray)[..., :1], axis=[1, 2, 3]) + 0.5) / 255.0
    return _blend(tf.ones_like(images) * _per_image(mean, images), images, factor)


def brightness(images, factor):
    """A blend with black (ImageEnhance.Brightness)."""
    return _blend(tf.zeros_like(images), images, factor)


def sharpness(images, factor):
    """A blend with PIL's SMOOTH filter (3x3, centre 5, others 1, over 13); borders kept."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID")
    # The filter has no value on the one-pixel border: PIL leaves it as it was.
    smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    inside = tf.pad(tf.ones([height - 2, width - 2, 1]), [[1, 1], [1, 1], [0, 0]])
    degenerate = inside * smooth + (1.0 - inside) * images
    return _blend(degenerate, images, factor)


def solarize(images, level):
    """Inverts the pixels at or above 256 - int(25.6 level) (ImageOps.solarize)."""
    threshold = 256.0 - tf.floor(tf.cast(level, tf.float32) * 256.0 / MAX_LEVEL)
    pixels = _levels_255(images)
    return tf.where(pixels >= _per_image(threshold, images), (255.0 - pixels) / 255.0,
                    pixels / 255.0)


def posterize(images, level):
    """Keeps the 4 - int(0.4 level) high bits of each channel (ImageOps.posterize)."""
    bits = 4.0 - tf.floor(tf.cast(level, tf.float32) * 4.0 / MAX_LEVEL)
    step = _per_image(tf.pow(2.0, 8.0 - bits), images)
    return tf.floor(_levels_255(images) / step) * step / 255.0


def auto_contrast(images):
    """Stretches each channel to [0, 1] (ImageOps.autocontrast, no cutoff); flat ones stay."""
    pixels = _levels_255(images)
    low = tf.reduce_min(pixels, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(pixels, axis=[1, 2], keepdims=True)
    stretched = tf.floor((pixels - low) * 255.0 / tf.maximum(high - low, 1.0)) / 255.0
    return tf.where(high > low, common.clip_unit(stretched), pixels / 255.0)


def equalize(images):
    """Histogram equalisation of each channel with PIL's lookup table (ImageOps.equalize).

    lut[i] = (step // 2 + number of pixels below level i) // step, with
    step = (pixels - pixels at the highest level present) // 255; a channel
    with step 0 (one level, or nearly) is left as it is.
    """
    pixels = tf.cast(_levels_255(images), tf.int32)
    batch, height, width = tf.shape(pixels)[0], tf.shape(pixels)[1], tf.shape(pixels)[2]
    channels = tf.transpose(tf.reshape(pixels, [batch, height * width, 3]), [0, 2, 1])
    rows = tf.reshape(tf.range(batch * 3), [batch, 3, 1])
    histogram = tf.math.unsorted_segment_sum(
        tf.ones_like(channels), rows * 256 + channels, batch * 3 * 256)
    histogram = tf.reshape(histogram, [batch, 3, 256])
    present = tf.range(256)[None, None, :] * tf.cast(histogram > 0, tf.int32)
    last = tf.gather(histogram, tf.reduce_max(present, axis=2), batch_dims=2)
    step = (height * width - last) // 255
    below = tf.cumsum(histogram, axis=2, exclusive=True)
    safe_step = tf.maximum(step, 1)[..., None]
    lut = tf.minimum((safe_step // 2 + below) // safe_step, 255)
    mapped = tf.gather(lut, channels, batch_dims=2)
    mapped = tf.where(step[..., None] > 0, mapped, channels)
    mapped = tf.reshape(tf.transpose(mapped, [0, 2, 1]), [batch, height, width, 3])
    return tf.cast(mapped, images.dtype) / 255.0


def geometric_transforms(op_index, level, sign, height, width):
    """Per-image [B, 8] projective transforms (output pixel -> input pixel) of `op_index`.

    Images whose op is not geometric get the identity. Rotations turn about the
    image centre; translations move `level` pixels per 32 pixels of side.
    """
    level = tf.cast(level, tf.float32)
    sign = tf.cast(sign, tf.float32)
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    zeros, ones = tf.zeros_like(level), tf.ones_like(level)
    shear = sign * level * 0.3 / MAX_LEVEL
    angle = -sign * tf.floor(level * 30.0 / MAX_LEVEL) * math.pi / 180.0
    center_x, center_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    candidates = {
        "rotate": [cos, sin, center_x - cos * center_x - sin * center_y,
                   -sin, cos, center_y + sin * center_x - cos * center_y],
        "shear_x": [ones, shear, zeros, zeros, ones, zeros],
        "shear_y": [ones, zeros, zeros, shear, ones, zeros],
        "translate_x": [ones, zeros, sign * tf.floor(level) * width / 32.0,
                        zeros, ones, zeros],
        "translate_y": [ones, zeros, zeros, zeros, ones,
                        sign * tf.floor(level) * height / 32.0],
    }
    transform = tf.stack([ones, zeros, zeros, zeros, ones, zeros, zeros, zeros], axis=1)
    for name, rows in candidates.items():
        chosen = tf.equal(op_index, OPS.index(name))[:, None]
        transform = tf.where(chosen, tf.stack(rows + [zeros, zeros], axis=1), transform)
    return transform


def _transform(images, transforms):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=FILL_VALUE, interpolation="NEAREST", fill_mode="CONSTANT")


def apply_op(images, op_index, level, sign):
    """Each image through the op `OPS[op_index[b]]` at `level[b]` with `sign[b]`.

    Args:
        images: float32 [B, H, W, 3] in [0, 1].
        op_index: int [B], indices into `OPS`.
        level: int [B], levels in 0..10.
        sign: [B] of +1 / -1, the direction of the geometric ops.
    """
    factor = enhancer_factor(level)
    candidates = {
        "auto_contrast": lambda: auto_contrast(images),
        "equalize": lambda: equalize(images),
        "solarize": lambda: solarize(images, level),
        "color": lambda: color(images, factor),
        "contrast": lambda: contrast(images, factor),
        "brightness": lambda: brightness(images, factor),
        "sharpness": lambda: sharpness(images, factor),
        "posterize": lambda: posterize(images, level),
    }
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    output = _transform(images, geometric_transforms(op_index, level, sign, height, width))
    for name, make in candidates.items():
        output = tf.where(_per_image(tf.equal(op_index, OPS.index(name)), images) > 0, make(),
                          output)
    return output


@common.batched
def cutout(images, seed, size):
    """Greys out a size x size square centred on a uniform pixel, clipped at the border.

    The box is [centre - size // 2, centre + size // 2) on each axis, as
    `create_cutout_mask` of the official code.
    """
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    row_seed, column_seed = common.split_seed(seed, 2)
    rows = tf.random.stateless_uniform([batch], row_seed, 0, height, dtype=tf.int32)
    columns = tf.random.stateless_uniform([batch], column_seed, 0, width, dtype=tf.int32)
    half = size // 2

    def inside(centres, length):
        positions = tf.range(length)[None, :]
        return (positions >= centres[:, None] - half) & (positions < centres[:, None] + half)

    box = inside(rows, height)[:, :, None] & inside(columns, width)[:, None, :]
    return tf.where(box[..., None], tf.constant(FILL_VALUE, images.dtype), images)


@common.batched
def rand_augment(images, seed, *, num_ops=2, probability=0.5, max_level=MAX_LEVEL,
                 cutout_fraction=0.5):
    """FixMatch's RandAugment: `num_ops` random ops at random levels, then Cutout.

    Args:
        images: float32 [B, H, W, 3] (or [H, W, 3]) in [0, 1].
        seed: int32 [2].
        num_ops: ops per image, drawn from `OPS` with replacement (2).
        probability: chance that each drawn op is applied (0.5).
        max_level: levels are drawn from 1 .. max_level - 1 (10: 1..9).
        cutout_fraction: side of the Cutout square over the image side (0.5:
            16 px at 32); 0 skips it.
    """
    batch = tf.shape(images)[0]
    seeds = common.split_seed(seed, 4 * num_ops + 1)
    for slot in range(num_ops):
        op_seed, apply_seed, level_seed, sign_seed = seeds[4 * slot: 4 * slot + 4]
        op_index = tf.random.stateless_uniform([batch], op_seed, 0, len(OPS), dtype=tf.int32)
        level = tf.random.stateless_uniform([batch], level_seed, 1, max_level, dtype=tf.int32)
        sign = tf.where(tf.random.stateless_uniform([batch], sign_seed) < 0.5, -1.0, 1.0)
        applied = tf.random.stateless_uniform([batch], apply_seed) < probability
        # Skipping an op is the identity op.
        op_index = tf.where(applied, op_index, OPS.index("identity"))
        images = apply_op(images, op_index, level, sign)
    if cutout_fraction > 0:
        side = images.shape[1] or tf.shape(images)[1]
        images = cutout(images, seeds[-1], tf.cast(tf.cast(side, tf.float32) * cutout_fraction,
                                                   tf.int32))
    return images


@common.batched
def flip_and_shift(images, seed, *, shift_fraction=0.125):
    """The weak view: a flip with probability 1/2, then a shift with reflected padding.

    The image is padded by round(shift_fraction * side) pixels on every side
    (numpy's "reflect", the edge not repeated) and a same-size window is
    taken at a uniform offset, as `augment_shift` of the official code.
    """
    flip_seed, row_seed, column_seed = common.split_seed(seed, 3)
    images = common.apply_randomly(images, flip_seed, 0.5,
                                   lambda subset, _: tf.reverse(subset, axis=[2]))
    height, width = images.shape[1], images.shape[2]
    pad = int(round(shift_fraction * height))
    if pad == 0:
        return images
    batch = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    tops = tf.random.stateless_uniform([batch], row_seed, 0, 2 * pad + 1, dtype=tf.int32)
    lefts = tf.random.stateless_uniform([batch], column_seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = tops[:, None] + tf.range(height)[None, :]
    columns = lefts[:, None] + tf.range(width)[None, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, columns, axis=2, batch_dims=1)


@dataclasses.dataclass(frozen=True)
class WeakStrongRecipe:
    """Views of semi-supervised methods: `num_weak` weak views, then `num_strong` strong ones.

    FixMatch takes one of each (its labeled stream uses the first, weak,
    view); MixMatch takes `num_weak=K` (2) weak views and no strong one. A
    strong view is a weak view of its own followed by `rand_augment`.

    Args:
        image_size: side of the views; images are resized to it first if needed.
        num_weak, num_strong: how many views of each kind.
        shift_fraction: the weak view's largest shift over the side (1/8).
        num_ops, probability, max_level, cutout_fraction: as `rand_augment`.

    Example:
    >>> recipe = WeakStrongRecipe(image_size=32)
    >>> recipe.num_views, recipe.sizes
    (2, (32, 32))
    """

    image_size: int
    num_weak: int = 1
    num_strong: int = 1
    shift_fraction: float = 0.125
    num_ops: int = 2
    probability: float = 0.5
    max_level: int = MAX_LEVEL
    cutout_fraction: float = 0.5

    def __post_init__(self):
        if self.num_weak + self.num_strong < 1 or min(self.num_weak, self.num_strong) < 0:
            raise ValueError(f"A WeakStrongRecipe needs at least one view, got num_weak="
                             f"{self.num_weak}, num_strong={self.num_strong}.")

    @property
    def views(self):
        """No `ViewConfig`s: these views are not crops (background augmentation refuses them)."""
        return ()

    @property
    def num_views(self):
        return self.num_weak + self.num_strong

    @property
    def sizes(self):
        return (self.image_size,) * self.num_views

    def get_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
    def __call__(self, images, seed):
        """A tuple of float32 views [B, size, size, 3] in [0, 1] (or [size, size, 3])."""
        images = tf.convert_to_tensor(images)
        single = images.shape.rank == 3
        if single:
            images = images[tf.newaxis]
        if images.dtype.is_integer:
            images = tf.cast(images, tf.float32) * (1.0 / 255.0)
        images = tf.cast(images, tf.float32)
        if images.shape[1] != self.image_size or images.shape[2] != self.image_size:
            images = tf.image.resize(images, [self.image_size, self.image_size])
        seeds = common.split_seed(tf.cast(seed, tf.int32), self.num_views + 1)
        views = []
        for position in range(self.num_views):
            view = flip_and_shift(images, seeds[position], shift_fraction=self.shift_fraction)
            if position >= self.num_weak:
                view = rand_augment(view, tf.random.experimental.stateless_fold_in(
                    seeds[position], 1), num_ops=self.num_ops, probability=self.probability,
                    max_level=self.max_level, cutout_fraction=self.cutout_fraction)
            views.append(view[0] if single else view)
        return tuple(views)
