"""View configurations and the recipe that turns a batch into several views.

A `ViewConfig` is one augmented view, written down as numbers (so it can live
in a method's config and be serialised with it); a `ViewRecipe` is the tuple of
views a method asks the input pipeline for. Both apply to whole batches inside
`tf.data`, after batching, with stateless seeds.

Reference: the composition follows SimCLR (Chen et al., ICML 2020, appendix A)
and BYOL (Grill et al., NeurIPS 2020, table 6): crop, flip, colour jitter,
grayscale, blur, solarize; random erasing (Zhong et al., AAAI 2020) comes last,
after every colour op, as in CLD's MoCo CIFAR recipe.
"""

import dataclasses

import tensorflow as tf

from keras_ssl.augment import background
from keras_ssl.augment import blur as blur_lib
from keras_ssl.augment import color
from keras_ssl.augment import common
from keras_ssl.augment import erasing
from keras_ssl.augment import geometry

# Fixed slots in the per-view seed split, so that switching one op off (say the
# blur on the CPU protocol) does not change the random numbers of the others.
# The flip draws from the crop's seed: it is fused into the crop. Slots are only
# ever appended: `stateless_split` with one more slot keeps the first ones, so
# views without erasing are the same numbers as before the slot existed. The
# background ops (`keras_ssl.augment.background_views`) draw from the last slot.
_CROP, _JITTER, _GRAY, _BLUR, _SOLARIZE, _ERASE, BACKGROUND_SLOT = range(7)
NUM_SEED_SLOTS = 7


def dataclass_config(instance):
    """A frozen dataclass' fields as a config dict, tuples as lists (what JSON gives back)."""
    config = dataclasses.asdict(instance)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """One augmented view: a random resized crop followed by photometric ops.

    Args:
        size: output side in pixels.
        crop_scale: ``(min, max)`` area fraction of the random resized crop.
        crop_ratio: ``(min, max)`` aspect ratio of the crop.
        flip_probability: chance of a horizontal flip.
        jitter: colour jitter strengths ``(brightness, contrast, saturation, hue)``.
        jitter_probability: chance that the colour jitter is applied.
        grayscale_probability: chance of converting to grayscale.
        blur_probability: chance of a Gaussian blur.
        blur_sigma: ``(min, max)`` blur standard deviation in pixels.
        solarize_probability: chance of solarizing (threshold 0.5).
        erasing_probability: chance of erasing a random rectangle
            (`erasing.random_erasing`, torchvision's `RandomErasing`).
        erasing_scale: ``(min, max)`` area fraction of the erased rectangle.
        erasing_ratio: ``(min, max)`` height / width of the erased rectangle.
        erasing_value: the erased pixels' colour in ``[0, 1]``, a number or
            ``(r, g, b)``. torchvision erases after ``Normalize``, so its 0
            is the normalisation mean: pass that mean to reproduce it.

    Example:

    >>> view = ViewConfig(size=32, jitter=(0.4, 0.4, 0.4, 0.1))
    >>> ViewConfig.from_config(view.get_config()) == view
    True
    """

    size: int
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3.0 / 4.0, 4.0 / 3.0)
    flip_probability: float = 0.5
    jitter: tuple = (0.0, 0.0, 0.0, 0.0)
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.0
    blur_probability: float = 0.0
    blur_sigma: tuple = (0.1, 2.0)
    solarize_probability: float = 0.0
    erasing_probability: float = 0.0
    erasing_scale: tuple = (0.02, 0.33)
    erasing_ratio: tuple = (0.3, 3.3)
    erasing_value: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        # Configs come back from JSON with lists; store tuples so that views
        # stay hashable and compare equal after a round trip.
        if isinstance(self.erasing_value, (int, float)):
            object.__setattr__(self, "erasing_value", (self.erasing_value,) * 3)
        for name in ("crop_scale", "crop_ratio", "jitter", "blur_sigma", "erasing_scale",
                     "erasing_ratio", "erasing_value"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if len(self.jitter) != 4:
            raise ValueError(f"jitter needs 4 strengths, got {self.jitter}.")
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}.")
        if len(self.erasing_value) != 3:
            raise ValueError(f"erasing_value needs 1 or 3 numbers, got {self.erasing_value}.")

    def get_config(self):
        return dataclass_config(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
    def apply(self, images, seed, num_copies=1):
        """Makes this view of a batch, or several independent copies of it.

        Args:
            images: float32 ``[B, H, W, 3]`` in ``[0, 1]``.
            seed: int32 tensor of shape ``[2]``.
            num_copies: independent views of every image to make at once.

        Returns:
            float32 ``[num_copies * B, size, size, 3]`` in ``[0, 1]``; copy
            ``j`` of image ``b`` is row ``j * B + b``.
        """
        return self.photometric(self.crop(images, seed, num_copies), seed)

    def crop(self, images, seed, num_copies=1):
        """The first stage of `apply`: the random resized crop, with the flip fused in."""
        return geometry.random_resized_crop(images, **self._crop_arguments(seed, num_copies))

    def co_crop(self, images, masks, seed, num_copies=1):
        """`crop` of the images and, with the same boxes and flips, of their masks.

        The image crops are bit for bit those of `crop` with the same seed.

        Returns:
            ``(crops [num_copies * B, size, size, 3], mask_crops [..., 1])``.
        """
        return background.co_random_resized_crop(images, masks,
                                                 **self._crop_arguments(seed, num_copies))

    def _crop_arguments(self, seed, num_copies):
        return dict(seed=common.split_seed(seed, NUM_SEED_SLOTS)[_CROP], size=self.size,
                    scale=self.crop_scale, ratio=self.crop_ratio,
                    flip_probability=self.flip_probability, num_crops=num_copies)

    def photometric(self, views, seed):
        """The second stage of `apply`: colour ops, blur, solarize, erasing, in that order.

        Args:
            views: float32 ``[N, size, size, 3]`` crops (of `crop`).
            seed: the seed the crops were made with.
        """
        seeds = common.split_seed(seed, NUM_SEED_SLOTS)
        brightness, contrast, saturation, hue = self.jitter
        views = color.color_jitter(
            views,
            seeds[_JITTER],
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            hue=hue,
            probability=self.jitter_probability,
        )
        views = color.random_grayscale(views, seeds[_GRAY], self.grayscale_probability)
        views = blur_lib.gaussian_blur(
            views, seeds[_BLUR], probability=self.blur_probability, sigma=self.blur_sigma
        )
        views = color.solarize(views, seeds[_SOLARIZE], probability=self.solarize_probability)
        return erasing.random_erasing(
            views,
            seeds[_ERASE],
            probability=self.erasing_probability,
            scale=self.erasing_scale,
            ratio=self.erasing_ratio,
            value=self.erasing_value,
        )


@dataclasses.dataclass(frozen=True)
class ViewRecipe:
    """The views a method needs, made from one batch of uint8 images.

    Call it after batching in `tf.data`, with a seed that changes every batch:

        dataset = images.batch(256, drop_remainder=True).enumerate()
        dataset = dataset.map(
            lambda step, batch: recipe(batch, tf.stack([seed, tf.cast(step, tf.int32)])),
            num_parallel_calls=tf.data.AUTOTUNE)

    Identical views (SimCLR's pair, SwAV's local crops) are made together: the
    ``k`` views that share a config are one batch of ``k * B`` crops going
    through one chain of ops, drawn with ``stateless_fold_in(seed, i)`` where
    ``i`` is the index of the first of them. Every crop still gets its own
    random draws, and everything is reproducible from the batch seed alone.

    Args:
        views: one `ViewConfig` per output view.
        background: a `keras_ssl.augment.background_views.BackgroundConfig`
            (or its config dict), or None. With one, every call needs the
            batch's foreground masks, which are co-cropped with the images;
            see `keras_ssl.augment.background_views.make_views`.

    Example:

    >>> recipe = ViewRecipe((ViewConfig(size=32), ViewConfig(size=16)))
    >>> recipe.num_views, recipe.sizes
    (2, (32, 16))
    """

    views: tuple
    background: object = None

    def __post_init__(self):
        views = tuple(
            v if isinstance(v, ViewConfig) else ViewConfig.from_config(v) for v in self.views
        )
        if not views:
            raise ValueError("A ViewRecipe needs at least one view.")
        object.__setattr__(self, "views", views)
        if self.background is not None:
            from keras_ssl.augment import background_views  # it imports this module

            config = self.background
            if not isinstance(config, background_views.BackgroundConfig):
                config = background_views.BackgroundConfig.from_config(config)
            config.check_views(views)
            object.__setattr__(self, "background", config)

    @property
    def num_views(self):
        return len(self.views)

    @property
    def sizes(self):
        return tuple(view.size for view in self.views)

    def get_config(self):
        config = {"views": [view.get_config() for view in self.views]}
        if self.background is not None:
            config["background"] = self.background.get_config()
        return config

    @classmethod
    def from_config(cls, config):
        return cls(views=tuple(ViewConfig.from_config(v) for v in config["views"]),
                   background=config.get("background"))

    @tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
    def __call__(self, images, seed, masks=None):
        """Makes every view of a batch.

        Args:
            images: ``[B, H, W, 3]`` (or ``[H, W, 3]``) uint8 in ``[0, 255]``, or
                float already in ``[0, 1]``.
            seed: integer tensor of shape ``[2]``.
            masks: the images' foreground masks ``[B, h, w]`` (uint8, 255 on
                the foreground, any side: they are resized to the images'),
                needed when the recipe has a `background`; ignored otherwise.

        Returns:
            A tuple of float32 ``[B, size_i, size_i, 3]`` tensors in ``[0, 1]``;
            with BG_Swaps, a dict (`background_views.make_views`).
        """
        images = tf.convert_to_tensor(images)
        if images.shape.rank == 3:
            one = self(images[tf.newaxis], seed,
                       None if masks is None else tf.convert_to_tensor(masks)[tf.newaxis])
            if isinstance(one, dict):
                return {key: (tuple(v[0] for v in value) if isinstance(value, tuple)
                              else value[0]) for key, value in one.items()}
            return tuple(view[0] for view in one)
        # Convert once for all views rather than once per view.
        if images.dtype.is_integer:
            images = tf.cast(images, tf.float32) * (1.0 / 255.0)
        else:
            images = tf.cast(images, tf.float32)
        seed = tf.cast(seed, tf.int32)
        if self.background is not None:
            from keras_ssl.augment import background_views

            return background_views.make_views(self, images, masks, seed)
        outputs = [None] * self.num_views
        for view, indices in self.view_groups().items():
            crops = view.apply(images, self.group_seed(seed, indices), num_copies=len(indices))
            self.scatter(crops, indices, outputs)
        return tuple(outputs)

    @staticmethod
    def scatter(stacked, indices, outputs):
        """Cuts a group's stacked views ``[k * B, ...]`` into ``outputs[i]`` for its indices."""
        for index, part in zip(indices, tf.split(stacked, len(indices), axis=0)):
            outputs[index] = part

    def view_groups(self, key=None):
        """{group key: indices of its views}, in order; a group's views share a config.

        Args:
            key: ``key(index, view)`` -> the group key; default the view's config.
        """
        groups = {}
        for index, view in enumerate(self.views):
            groups.setdefault(view if key is None else key(index, view), []).append(index)
        return groups

    @staticmethod
    def group_seed(seed, indices):
        """The seed of a group of identical views: the batch seed folded with its first index."""
        return tf.random.experimental.stateless_fold_in(seed, indices[0])
