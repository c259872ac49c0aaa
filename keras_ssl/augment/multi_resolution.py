"""Multi-resolution views: one view of a recipe again at smaller sides.

The factory that sizes it for the method configs is
`keras_ssl.augment.recipes.multi_resolution_views`.
"""

import dataclasses

import tensorflow as tf

from keras_ssl.augment import common
from keras_ssl.augment.views import ViewRecipe


@dataclasses.dataclass(frozen=True)
class MultiResolutionRecipe:
    """A recipe's views, plus one of them again at smaller sides: the same crop, resized.

    Multi-resolution augmentation (CLIM: Li, Zhang, Xiong, BMVC 2021; no
    official code) shows one encoder the same content at several scales.
    Unlike multi-crop, whose small crops are new, smaller regions, a copy
    here is view `source_view` itself (its crop, flip and colours) resized
    to each side in `resolutions`, bilinearly with antialiasing. Any method
    whose encoder takes several sizes (`Method.mixed_image_sizes`) can use it.

    Args:
        base: the `ViewRecipe` of the method's own views.
        resolutions: sides in pixels of the extra copies, in order; they
            follow the base views.
        source_view: the base view that is copied.

    Example:

    >>> from keras_ssl.augment.views import ViewConfig
    >>> recipe = MultiResolutionRecipe(ViewRecipe((ViewConfig(size=32),) * 2),
    ...                                resolutions=(24, 16))
    >>> recipe.num_views, recipe.sizes
    (4, (32, 32, 24, 16))
    """

    base: ViewRecipe
    resolutions: tuple = ()
    source_view: int = 0

    def __post_init__(self):
        base = self.base if isinstance(self.base, ViewRecipe) else ViewRecipe.from_config(
            self.base)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "resolutions", tuple(int(side) for side in self.resolutions))
        if not 0 <= self.source_view < base.num_views:
            raise ValueError(f"source_view={self.source_view} is not a view of a recipe "
                             f"with {base.num_views} views.")
        if any(side < 1 for side in self.resolutions):
            raise ValueError(f"resolutions must be positive sides, got {self.resolutions}.")

    @property
    def views(self):
        """The `ViewConfig` of each base view (the copies have none of their own)."""
        return self.base.views

    @property
    def num_views(self):
        return self.base.num_views + len(self.resolutions)

    @property
    def sizes(self):
        return self.base.sizes + self.resolutions

    def get_config(self):
        return {"base": self.base.get_config(), "resolutions": list(self.resolutions),
                "source_view": self.source_view}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
    def __call__(self, images, seed):
        """The base views, then view `source_view` at each side of `resolutions`.

        Args:
            images: [B, H, W, 3] (or [H, W, 3]) uint8, or float in [0, 1].
            seed: integer tensor of shape [2] (only the base recipe draws).

        Returns:
            A tuple of float32 views in [0, 1], `self.sizes` in order.
        """
        views = self.base(images, seed)
        source = views[self.source_view]
        single = source.shape.rank == 3
        if single:
            source = source[tf.newaxis]
        # Antialiased bilinear weights are non-negative and sum to one, so the
        # copies stay in [0, 1] up to rounding, which the clip removes.
        copies = tuple(
            common.clip_unit(tf.image.resize(source, [side, side], antialias=True))
            for side in self.resolutions)
        if single:
            copies = tuple(copy[0] for copy in copies)
        return views + copies
