"""Background augmentation inside a view recipe: `BackgroundConfig` and the views it makes.

Reference: Ryali, Schwab, Morcos, "Characterizing and Improving the Robustness
of Self-Supervised Learning through Background Augmentations" (arXiv
2103.12719). No official self-supervised code is public and the paper's body
could not be read: the ops are those of `keras_ssl.augment.background`, and
the order and probabilities below are reconstructions (methods-b.md §3,
methods-c.md §3).

A recipe with ``background=BackgroundConfig(...)`` takes the batch's
foreground masks beside the images and makes each view in three stages:

1. geometry: the view's crop and flip, with the mask co-cropped (the image
   crop is bit for bit the plain recipe's for the same seed);
2. background, per view: BG_Random (foreground on another image's
   background from the same batch, with probability ``random[i]``), then
   BG_RM (background set to ``fill``, probability ``remove[i]``; a view drawn
   for both ends with its background removed); then, across two views,
   BG_Swaps: the positive view (``positive_view``) on another background and
   an extra negative (another image's anchor-view foreground on the anchor's
   background);
3. photometric: the view's colour jitter, grayscale, blur, solarize and
   erasing, drawn exactly as the plain recipe draws them, so a view that no
   background op touched equals the plain recipe's view. The extra negative
   gets the anchor view's photometric ops with draws of its own.

Background ops come before the colour ops so that a pasted foreground and its
new background are jittered as one image, as an image with that background
would be [reconstruction: the paper's placement is not known].
"""

import dataclasses

import tensorflow as tf

from keras_ssl.augment import background as ops
from keras_ssl.augment import common
from keras_ssl.augment.views import BACKGROUND_SLOT, NUM_SEED_SLOTS, dataclass_config

# The ops' names on the command line (`--background=rm,random,swaps`).
OPS = ("rm", "random", "swaps")
# Fold-in streams of the batch seed for the cross-view stage; recipes fold in
# view indices (0, 1, ...), so these stay far from any.
_SWAPS_STREAM, _NEGATIVE_STREAM = 0x424701, 0x424702


def _per_view(value):
    return (float(value),) if isinstance(value, (int, float)) else tuple(float(v) for v in value)


@dataclasses.dataclass(frozen=True)
class BackgroundConfig:
    """Which background augmentations a recipe applies, and how often.

    Args:
        remove: BG_RM's probability per view: one number for every view, or
            one per view of the recipe.
        random: BG_Random's probability per view, as ``remove``.
        swap_positive: BG_Swaps: the chance that the positive view gets
            another image's background (0 and ``swap_negative`` 0: no swaps).
        swap_negative: BG_Swaps: the chance that a row's extra negative (a
            different foreground on the anchor's background) reaches the loss.
        fill: BG_RM's background colour in [0, 1]; default the normalisation
            mean, i.e. 0 after normalisation (methods-c.md §3).
        anchor_view, positive_view: the views BG_Swaps pairs (MoCo's query
            and key views: 0 and 1).

    Example:

    >>> config = BackgroundConfig.from_ops(["rm", "random"], remove=0.2, random=0.1)
    >>> config.probabilities(1), config.swaps
    ((0.2, 0.1), False)
    """

    remove: tuple = (0.0,)
    random: tuple = (0.0,)
    swap_positive: float = 0.0
    swap_negative: float = 0.0
    fill: tuple = ops.NORMALIZATION_MEAN
    anchor_view: int = 0
    positive_view: int = 1

    def __post_init__(self):
        object.__setattr__(self, "remove", _per_view(self.remove))
        object.__setattr__(self, "random", _per_view(self.random))
        fill = self.fill
        object.__setattr__(self, "fill", (float(fill),) * 3 if isinstance(fill, (int, float))
                           else tuple(float(v) for v in fill))
        for name in ("remove", "random"):
            for p in getattr(self, name):
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"background {name} probability {p} is not in [0, 1].")
        for name in ("swap_positive", "swap_negative"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"background {name}={getattr(self, name)} is not in [0, 1].")

    @classmethod
    def from_ops(cls, names, **probabilities):
        """The config that applies the named ops (`OPS`) with the given probabilities.

        Args:
            names: op names, e.g. ``["rm", "random"]``; the others are off
                whatever their probability.
            **probabilities: `BackgroundConfig` fields (``remove``, ``random``,
                ``swap_positive``, ``swap_negative``, ``fill``, ...), e.g. a
                method preset's; an op that is named needs a nonzero one.
        """
        names = tuple(names)
        unknown = sorted(set(names) - set(OPS))
        if unknown:
            raise ValueError(f"--background={','.join(names)}: {', '.join(unknown)} is not one "
                             f"of {', '.join(OPS)}.")
        fields = dict(probabilities)
        switches = {"rm": ("remove",), "random": ("random",),
                    "swaps": ("swap_positive", "swap_negative")}
        for op, keys in switches.items():
            if op not in names:
                fields.update({key: 0.0 for key in keys})
            elif not any(any(_per_view(fields.get(key, 0.0))) for key in keys):
                raise ValueError(f"--background={op} needs a probability: the method's preset "
                                 f"has none, so give --background_probabilities={keys[0]}=P.")
        return cls(**fields)

    @property
    def swaps(self):
        """Whether BG_Swaps runs (the recipe then hands an extra negative on)."""
        return self.swap_positive > 0.0 or self.swap_negative > 0.0

    def probabilities(self, view_index):
        """``(remove, random)`` of view ``view_index``."""
        def pick(values):
            return values[0] if len(values) == 1 else values[view_index]
        return pick(self.remove), pick(self.random)

    def check_views(self, views):
        """Raises unless the per-view probabilities and the swapped views fit `views`."""
        for name in ("remove", "random"):
            values = getattr(self, name)
            if len(values) not in (1, len(views)):
                raise ValueError(f"background {name} has {len(values)} probabilities for a "
                                 f"recipe of {len(views)} views; give one, or one per view.")
        if self.swaps:
            for name in ("anchor_view", "positive_view"):
                if not 0 <= getattr(self, name) < len(views):
                    raise ValueError(f"background {name}={getattr(self, name)} is not a view "
                                     f"of a recipe of {len(views)} views.")
            if self.anchor_view == self.positive_view:
                raise ValueError("BG_Swaps needs two different views (anchor and positive).")
            if views[self.anchor_view].size != views[self.positive_view].size:
                raise ValueError("BG_Swaps pastes between the anchor and positive views, so they "
                                 "must have one size.")

    def get_config(self):
        return dataclass_config(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _masks_like(masks, images):
    """The masks as alphas ``[B, H, W, 1]`` at the images' side (masks are kept small)."""
    if masks is None:
        raise ValueError("This view recipe has background augmentation, which needs the "
                         "batch's foreground masks: build the input with "
                         "train_dataset(..., masks=...) (pretrain does, with --background).")
    alpha = ops.as_alpha(masks)
    image_side = tf.shape(images)[1:3]
    return tf.cond(tf.reduce_all(tf.equal(tf.shape(alpha)[1:3], image_side)),
                   lambda: alpha,
                   lambda: tf.image.resize(alpha, image_side, method="bilinear"))


@tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
def make_views(recipe, images, masks, seed):
    """The views of ``recipe`` (a `ViewRecipe` with a `background`) of one batch.

    Args:
        recipe: the `ViewRecipe`.
        images: float32 ``[B, H, W, 3]`` in [0, 1].
        masks: the images' masks ``[B, h, w]`` or ``[B, h, w, 1]``
            (`ops.as_alpha`'s formats); resized to ``H x W`` when they differ.
        seed: int32 ``[2]``.

    Returns:
        The tuple of views; with BG_Swaps the dict ``{"views": tuple,
        "negative_view": float32 [B, s, s, 3] (the anchor view's size),
        "negative_used": float32 [B], 1 where the row's extra negative counts}``.
    """
    config = recipe.background
    alpha = _masks_like(masks, images)
    batch_size = tf.shape(images)[0]
    # Views that share a config and probabilities are cropped as one batch,
    # with the seeds the plain recipe gives them.
    groups = recipe.view_groups(lambda index, view: (view, config.probabilities(index)))
    crops, mask_crops = [None] * recipe.num_views, [None] * recipe.num_views
    for (view, (remove_p, random_p)), indices in groups.items():
        group_seed = recipe.group_seed(seed, indices)
        views, view_alpha = view.co_crop(images, alpha, group_seed, num_copies=len(indices))
        random_seed, remove_seed = common.split_seed(
            common.split_seed(group_seed, NUM_SEED_SLOTS)[BACKGROUND_SLOT], 2)
        # Partners are other images of the batch, never another crop of the same one.
        views, _ = ops.random_background(views, view_alpha, random_seed, probability=random_p,
                                         num_images=batch_size)
        views, _ = ops.remove_background(views, view_alpha, remove_seed, probability=remove_p,
                                         fill=config.fill)
        recipe.scatter(views, indices, crops)
        recipe.scatter(view_alpha, indices, mask_crops)

    extras = {}
    if config.swaps:
        anchor, positive = config.anchor_view, config.positive_view
        crops[positive], negatives, _, negative_used = ops.swap_backgrounds(
            crops[anchor], mask_crops[anchor], crops[positive], mask_crops[positive],
            tf.random.experimental.stateless_fold_in(seed, _SWAPS_STREAM),
            positive_probability=config.swap_positive,
            negative_probability=config.swap_negative)
        extras = {"negative_view": recipe.views[anchor].photometric(
                      negatives, tf.random.experimental.stateless_fold_in(seed, _NEGATIVE_STREAM)),
                  # float32, not bool: Keras' distributed input path sums its
                  # inputs' parts with AddN, which takes no bool tensors.
                  "negative_used": tf.cast(negative_used, tf.float32)}

    outputs = [None] * recipe.num_views
    for (view, _), indices in groups.items():
        recipe.scatter(view.photometric(tf.concat([crops[i] for i in indices], axis=0),
                                        recipe.group_seed(seed, indices)), indices, outputs)
    if extras:
        return {"views": tuple(outputs), **extras}
    return tuple(outputs)
