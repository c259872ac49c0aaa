"""Background augmentations: batched, stateless, mask-aware ops for tf.data.

Reference: Ryali, Schwab, Morcos, "Characterizing and Improving the
Robustness of Self-Supervised Learning through Background Augmentations"
(arXiv 2103.12719). A saliency mask per image (`keras_ssl.saliency`) is
co-cropped and co-flipped with the image, and each view may then have its
background removed (BG_RM), replaced by another image's (BG_Random), or, for
contrastive methods, the positive gets another background while an extra
negative shares the anchor's (BG_Swaps). No official code is public: the
notes are shared/reference/methods-b.md §3 and methods-c.md §3 (which wins).

Every op takes views ``[B, h, w, 3]`` in [0, 1] with their masks (see
`as_alpha`), a stateless seed ``[2]``, and returns the new views and a bool
``[B]`` of the rows it changed, eagerly, in `tf.function` and in
`Dataset.map` alike.

Reconstructed choices (the paper body was not available):

- Masks stay soft after the crop: the bilinear crop blends the mask's edge
  like the image's, and the ops use it as an alpha, ``out = m * fg + (1 - m)
  * bg``. Inside and outside the object that is the binary paste.
- BG_RM's fill defaults to the ImageNet normalisation mean, i.e. 0 *after*
  normalisation, as methods-c.md §3's CPU recipe says (keras_ssl ResNets
  standardise with that mean inside the model). A third-party summary says
  "zero pixels"; ``fill=0.0`` gives black pixels in [0, 1] space instead.
- A partner's own foreground, where the pasted foreground does not cover it,
  is filled with the mean colour of the partner's background pixels (ImageNet-9
  "Only-BG-T" tiles background patches instead), so no second object shows.
  A partner with no background pixels gives the normalisation mean.
- Partners come from the same batch by a random single-cycle permutation, so
  no image is its own partner. With several crops of each image in one batch
  (``num_images``), partners are drawn among images, never another crop of
  the same image.
- BG_Swaps computes an extra negative for every row and draws which rows'
  negatives count (``negative_used``); the others are well-formed too, so the
  loss decides by the flag, with a fixed shape.
"""

import tensorflow as tf

from keras_ssl.augment import common
from keras_ssl.augment import geometry

# ImageNet channel means: the keras_ssl ResNets subtract them, so this colour
# is 0 after normalisation.
NORMALIZATION_MEAN = (0.485, 0.456, 0.406)


def as_alpha(masks, image_rank=4):
    """Masks as float32 alphas in [0, 1] with a trailing channel of one.

    Integer masks are uint8-scaled like images (255 = foreground, the mask
    cache's format), bool masks are True on the foreground, float masks are
    taken as they are (1 = foreground). Masks one rank below their images
    (``[B, H, W]`` for ``[B, H, W, 3]``) get the channel axis.

    Args:
        masks: ``[B, H, W]`` or ``[B, H, W, 1]`` (one less leading axis for
            one image).
        image_rank: rank of the images the masks go with (4, or 3 for one image).
    """
    masks = tf.convert_to_tensor(masks)
    if masks.dtype == tf.bool:
        masks = tf.cast(masks, tf.float32)
    elif masks.dtype.is_integer:
        masks = tf.cast(masks, tf.float32) * (1.0 / 255.0)
    else:
        masks = tf.cast(masks, tf.float32)
    if masks.shape.rank == image_rank - 1:
        masks = masks[..., tf.newaxis]
    if masks.shape.rank != image_rank or masks.shape[-1] not in (1, None):
        raise ValueError(f"Masks for images of rank {image_rank} must be [..., H, W] or "
                         f"[..., H, W, 1]; got shape {masks.shape}.")
    return masks


def _check_views(views):
    views = tf.convert_to_tensor(views, tf.float32)
    if views.shape.rank != 4:
        raise ValueError(f"Background ops take a batch of views [B, h, w, 3]; got shape "
                         f"{views.shape}.")
    return views


@tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
def co_random_resized_crop(images, masks, seed, *, size, scale=(0.08, 1.0),
                           ratio=(3.0 / 4.0, 4.0 / 3.0), flip_probability=0.0, num_crops=1):
    """`geometry.random_resized_crop` of the images and, with the same boxes and flips, the masks.

    The mask rides along as a fourth channel of the same crop call:
    `crop_and_resize` interpolates each channel on its own, so the image
    channels come out bit for bit as `random_resized_crop` gives them for the
    same seed (a view with no background op is unchanged by the masks), and the
    mask is cut and mirrored exactly like them.

    Args:
        images: float32 ``[B, H, W, 3]`` (or ``[H, W, 3]``) in [0, 1].
        masks: ``[B, H, W]`` or ``[B, H, W, 1]`` (one less rank for one
            image), see `as_alpha`.
        seed, size, scale, ratio, flip_probability, num_crops: as
            `geometry.random_resized_crop`.

    Returns:
        ``(crops [num_crops * B, size, size, 3], mask_crops [num_crops * B,
        size, size, 1])``, float32; row ``j * B + b`` is crop ``j`` of image ``b``.

    Example:

    >>> images, masks = tf.zeros([2, 8, 8, 3]), tf.ones([2, 8, 8], tf.uint8) * 255
    >>> crops, mask_crops = co_random_resized_crop(images, masks, tf.constant([1, 2]), size=4)
    >>> crops.shape, mask_crops.shape
    (TensorShape([2, 4, 4, 3]), TensorShape([2, 4, 4, 1]))
    """
    images = tf.convert_to_tensor(images, tf.float32)
    alpha = as_alpha(masks, images.shape.rank)
    stacked = tf.concat([images, alpha], axis=-1)
    crops = geometry.random_resized_crop(stacked, seed, size=size, scale=scale, ratio=ratio,
                                         flip_probability=flip_probability, num_crops=num_crops)
    return crops[..., :3], crops[..., 3:]


def single_cycle_partners(seed, num_images):
    """int32 ``[num_images]``: a random permutation made of one cycle (no fixed points).

    The images are put in a random order and each is paired with the next one,
    the last with the first (the permutations Sattolo's algorithm draws). With
    one image the only choice is itself.
    """
    order = tf.argsort(tf.random.stateless_uniform([num_images], seed))
    return tf.scatter_nd(order[:, tf.newaxis], tf.roll(order, shift=-1, axis=0), [num_images])


def partner_rows(seed, batch_size, num_images=None):
    """int32 ``[batch_size]``: for each row, the row whose background it borrows.

    Args:
        seed: int32 ``[2]``.
        batch_size: rows in the batch.
        num_images: distinct images in the batch when it holds several crops
            of each (row ``j * num_images + b`` is crop ``j`` of image ``b``,
            as `random_resized_crop(num_crops=...)` stacks them); partners are
            then another image's crop in the same block. None: every row is
            its own image.
    """
    if num_images is None:
        return single_cycle_partners(seed, batch_size)
    rows = tf.range(batch_size)
    images = single_cycle_partners(seed, num_images)
    return (rows // num_images) * num_images + tf.gather(images, rows % num_images)


def fill_foreground(images, alpha):
    """Each image with its foreground painted in the mean colour of its background.

    Args:
        images: float32 ``[B, h, w, 3]``.
        alpha: float32 ``[B, h, w, 1]`` in [0, 1], 1 on the foreground.

    Returns:
        float32 ``[B, h, w, 3]``: a background-only image. [reconstruction]
    """
    background_weight = 1.0 - alpha
    total = tf.reduce_sum(background_weight, axis=[1, 2])  # [B, 1]
    mean_colour = tf.math.divide_no_nan(
        tf.reduce_sum(images * background_weight, axis=[1, 2]), total)
    # An image that is all foreground has no background colour to use.
    mean_colour = tf.where(total > 0.5, mean_colour, tf.constant(NORMALIZATION_MEAN))
    return images * background_weight + mean_colour[:, tf.newaxis, tf.newaxis, :] * alpha


def paste(foregrounds, alpha, backgrounds):
    """``alpha * foregrounds + (1 - alpha) * backgrounds``."""
    return foregrounds * alpha + backgrounds * (1.0 - alpha)


def _draw_rows(seed, batch_size, probability):
    """bool ``[B]``: the rows an op applies to."""
    if probability <= 0.0:
        return tf.zeros([batch_size], tf.bool)
    if probability >= 1.0:
        return tf.ones([batch_size], tf.bool)
    return common.random_mask(seed, batch_size, probability)


@tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
def remove_background(views, masks, seed, *, probability, fill=NORMALIZATION_MEAN):
    """BG_RM: with a probability per view, the background becomes a constant colour.

    Args:
        views: float32 ``[B, h, w, 3]`` in [0, 1].
        masks: the views' co-cropped masks (`co_random_resized_crop`).
        seed: int32 ``[2]``.
        probability: chance that a view loses its background.
        fill: the background colour in [0, 1], a number or ``(r, g, b)``;
            default the normalisation mean (0 after normalisation, methods-c.md
            §3); ``0.0`` is black ("zero pixels").

    Returns:
        ``(views, removed)``: float32 ``[B, h, w, 3]`` and bool ``[B]``.

    Example:

    >>> views, masks = tf.ones([2, 4, 4, 3]), tf.zeros([2, 4, 4])
    >>> out, removed = remove_background(views, masks, tf.constant([1, 2]),
    ...                                  probability=1.0, fill=0.0)
    >>> float(tf.reduce_max(out)), removed.numpy().tolist()
    (0.0, [True, True])
    """
    views = _check_views(views)
    alpha = as_alpha(masks)
    removed = _draw_rows(seed, tf.shape(views)[0], probability)
    if probability <= 0.0:
        return views, removed
    colour = tf.broadcast_to(tf.constant(fill, tf.float32), [3])

    def remove(subset, indices):
        return paste(subset, tf.gather(alpha, indices), colour)

    if probability >= 1.0:
        return remove(views, tf.range(tf.shape(views)[0])), removed
    return common.apply_to_subset(views, removed, remove), removed


@tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
def random_background(views, masks, seed, *, probability, num_images=None, partners=None):
    """BG_Random: with a probability, a view's foreground on another image's background.

    The background is the partner view with its own foreground filled
    (`fill_foreground`), so only one object shows.

    Args:
        views: float32 ``[B, h, w, 3]`` in [0, 1].
        masks: the views' co-cropped masks.
        seed: int32 ``[2]``: slot 0 draws the rows, slot 1 the partners.
        probability: chance that a view gets another background.
        num_images: see `partner_rows` (several crops of each image in one batch).
        partners: optional int32 ``[B]`` rows to borrow backgrounds from
            (e.g. a background bank's order); default `partner_rows`.

    Returns:
        ``(views, replaced)``: float32 ``[B, h, w, 3]`` and bool ``[B]``
        (False where the partner would be the row itself: a batch of one).
    """
    views = _check_views(views)
    alpha = as_alpha(masks)
    batch_size = tf.shape(views)[0]
    rows_seed, partner_seed = common.split_seed(seed, 2)
    if probability <= 0.0:
        return views, tf.zeros([batch_size], tf.bool)
    if partners is None:
        partners = partner_rows(partner_seed, batch_size, num_images)
    partners = tf.cast(partners, tf.int32)
    replaced = _draw_rows(rows_seed, batch_size, probability) & tf.not_equal(
        partners, tf.range(batch_size))

    def replace(subset, indices):
        # Only the chosen rows' partners are filled and pasted on.
        partner_indices = tf.gather(partners, indices)
        backgrounds = fill_foreground(tf.gather(views, partner_indices),
                                      tf.gather(alpha, partner_indices))
        return paste(subset, tf.gather(alpha, indices), backgrounds)

    return common.apply_to_subset(views, replaced, replace), replaced


@tf.autograph.experimental.do_not_convert  # static Python only; see common.batched
def swap_backgrounds(anchors, anchor_masks, positives, positive_masks, seed, *,
                     positive_probability, negative_probability):
    """BG_Swaps: the positive on another background, an extra negative on the anchor's.

    For contrastive methods (MoCo v2): the anchor and the extra negative share
    a background, the positive gets a different one, so the background stops
    being a cue for telling images apart.

    - The positive of row ``i`` (with ``positive_probability``) is its
      foreground pasted on another image's positive view with that view's
      foreground filled: `random_background` on the positives.
    - The extra negative of row ``i`` is the anchor view of another image
      ``k`` (its foreground, by its mask) pasted on anchor ``i``'s
      background (anchor ``i``'s foreground filled). Every row gets one;
      ``negative_used`` (drawn with ``negative_probability``) says which the
      loss should use as an extra negative.

    Args:
        anchors, positives: float32 ``[B, h, w, 3]``: two views of the same
            B images (the query and key views of MoCo), of one size.
        anchor_masks, positive_masks: their co-cropped masks.
        seed: int32 ``[2]``, split in three: the positives' BG_Random, the
            draw of the negatives used, the negatives' partners.
        positive_probability: chance that a positive gets another background.
        negative_probability: chance that a row's extra negative is used.

    Returns:
        ``(positives, negatives, positive_swapped, negative_used)``: float32
        ``[B, h, w, 3]`` twice and bool ``[B]`` twice.
    """
    anchors = _check_views(anchors)
    anchor_alpha = as_alpha(anchor_masks)
    batch_size = tf.shape(anchors)[0]
    positive_seed, used_seed, negative_partner_seed = common.split_seed(seed, 3)
    positives, positive_swapped = random_background(
        positives, positive_masks, positive_seed, probability=positive_probability)

    others = partner_rows(negative_partner_seed, batch_size)
    anchor_backgrounds = fill_foreground(anchors, anchor_alpha)
    negatives = paste(tf.gather(anchors, others), tf.gather(anchor_alpha, others),
                      anchor_backgrounds)
    negative_used = _draw_rows(used_seed, batch_size, negative_probability) & tf.not_equal(
        others, tf.range(batch_size))
    return positives, negatives, positive_swapped, negative_used
