"""Background augmentations: co-cropped masks stay aligned, each op against NumPy, every mode."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import background
from keras_ssl.augment import common
from keras_ssl.augment import geometry
from tests.augment.modes import assert_modes_agree, random_images, seed

MEAN = np.array(background.NORMALIZATION_MEAN, np.float32)


def rectangle_masks(batch_size=4, size=16, seed_value=0):
    """float32 [B, size, size]: one random axis-aligned rectangle of ones per image."""
    rng = np.random.default_rng(seed_value)
    masks = np.zeros([batch_size, size, size], np.float32)
    for mask in masks:
        top, left = rng.integers(0, size // 2, 2)
        bottom, right = rng.integers(size // 2 + 1, size + 1, 2)
        mask[top:bottom, left:right] = 1.0
    return masks


def soft_masks(batch_size=4, size=16, seed_value=0):
    """float32 [B, size, size] in [0, 1], with exact 0 and 1 regions and soft pixels."""
    rng = np.random.default_rng(seed_value)
    return np.clip(rng.uniform(-0.5, 1.5, [batch_size, size, size]), 0.0, 1.0).astype(np.float32)


def reference_fill_foreground(image, mask):
    """One image [h, w, 3], its alpha [h, w]: the foreground in the background's mean colour."""
    weight = (1.0 - mask)[..., None]
    if weight.sum() > 0.5:
        colour = (image * weight).sum((0, 1)) / weight.sum()
    else:
        colour = MEAN
    return image * weight + colour * (1.0 - weight)


def reference_paste(foreground, mask, backdrop):
    return foreground * mask[..., None] + backdrop * (1.0 - mask[..., None])


# -- co-crop --------------------------------------------------------------------------


@pytest.mark.parametrize("num_crops", [1, 2])
def test_co_crop_gives_the_image_crops_of_random_resized_crop_bit_for_bit(num_crops):
    images, masks = random_images(4, 16, seed=1), rectangle_masks(4, 16)
    options = dict(size=8, flip_probability=0.5, num_crops=num_crops)
    crops, mask_crops = background.co_random_resized_crop(images, masks, seed(3, 4), **options)
    expected = geometry.random_resized_crop(images, seed(3, 4), **options)
    np.testing.assert_array_equal(crops.numpy(), expected.numpy())
    assert mask_crops.shape == (4 * num_crops, 8, 8, 1)
    # In a graph too (grappler may not change a lone crop's arithmetic).
    in_graph = tf.function(lambda x, m, s: background.co_random_resized_crop(x, m, s, **options))
    np.testing.assert_array_equal(in_graph(images, masks, seed(3, 4))[0].numpy(), expected.numpy())


def test_mask_covers_exactly_the_rectangle_after_crop_and_flip():
    # The image is the rectangle itself (1 inside, 0 outside): wherever the
    # crop and flip move its pixels, the mask crop must hold the same values.
    masks = rectangle_masks(8, 16, seed_value=2)
    images = np.repeat(masks[..., None], 3, axis=-1)
    crops, mask_crops = background.co_random_resized_crop(
        images, masks, seed(5, 6), size=12, flip_probability=0.5, num_crops=2)
    np.testing.assert_array_equal(mask_crops.numpy()[..., 0], crops.numpy()[..., 0])
    # A whole-image crop with a flip: the mask is the mirrored rectangle.
    whole, whole_masks = background.co_random_resized_crop(
        images, masks, seed(5, 6), size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0),
        flip_probability=1.0)
    np.testing.assert_array_equal(np.round(whole_masks.numpy()[..., 0]), masks[:, :, ::-1])
    np.testing.assert_array_equal(np.round(whole.numpy()[..., 0]), masks[:, :, ::-1])


def test_uint8_masks_are_scaled_like_images_and_one_image_works():
    images, masks = random_images(2, 16, seed=3), rectangle_masks(2, 16)
    as_uint8 = (masks * 255).astype(np.uint8)
    _, float_crops = background.co_random_resized_crop(images, masks, seed(), size=8)
    _, uint8_crops = background.co_random_resized_crop(images, as_uint8, seed(), size=8)
    np.testing.assert_allclose(uint8_crops.numpy(), float_crops.numpy(), atol=1e-6)
    crop, mask_crop = background.co_random_resized_crop(images[0], masks[0], seed(), size=8)
    assert crop.shape == (8, 8, 3) and mask_crop.shape == (8, 8, 1)


def test_co_crop_modes_agree():
    crop = lambda x, m, s: background.co_random_resized_crop(x, m, s, size=8,
                                                             flip_probability=0.5)
    assert_modes_agree(crop, random_images(4, 16, seed=4), rectangle_masks(4, 16), seed(7, 7))


# -- partners -------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [2, 3, 5, 8])
def test_partners_are_a_permutation_without_fixed_points(batch_size):
    for draw in range(10):
        partners = background.partner_rows(seed(draw, 1), batch_size).numpy()
        assert sorted(partners) == list(range(batch_size))
        assert np.all(partners != np.arange(batch_size))


def test_partners_among_images_stay_in_their_crop_block():
    partners = background.partner_rows(seed(2, 3), 12, num_images=4).numpy()
    rows = np.arange(12)
    assert np.all(partners // 4 == rows // 4)  # another crop of the same block
    assert np.all(partners % 4 != rows % 4)  # of another image
    # The same image pairing in every block.
    np.testing.assert_array_equal(partners % 4, np.tile(partners[:4] % 4, 3))


# -- BG_RM ----------------------------------------------------------------------------


@pytest.mark.parametrize("fill", [background.NORMALIZATION_MEAN, 0.0])
def test_remove_background_against_numpy(fill):
    views, masks = random_images(16, 8, seed=5), soft_masks(16, 8)
    out, removed = background.remove_background(views, masks, seed(1, 9), probability=0.5,
                                                 fill=fill)
    removed = removed.numpy()
    assert 0 < removed.sum() < 16
    np.testing.assert_array_equal(removed, common.random_mask(seed(1, 9), 16, 0.5).numpy())
    colour = np.broadcast_to(np.asarray(fill, np.float32), [3])
    for i in range(16):
        expected = reference_paste(views[i], masks[i], colour) if removed[i] else views[i]
        np.testing.assert_allclose(out.numpy()[i], expected, atol=1e-6)


def test_remove_background_probabilities_zero_and_one():
    views, masks = random_images(4, 8, seed=6), rectangle_masks(4, 8)
    same, none = background.remove_background(views, masks, seed(), probability=0.0)
    np.testing.assert_array_equal(same.numpy(), views)
    assert not none.numpy().any()
    out, every = background.remove_background(views, masks, seed(), probability=1.0, fill=0.0)
    assert every.numpy().all()
    np.testing.assert_array_equal(out.numpy(), views * masks[..., None])


# -- BG_Random ------------------------------------------------------------------------


def test_random_background_against_numpy():
    views, masks = random_images(8, 8, seed=7), soft_masks(8, 8, seed_value=1)
    masks[3] = 1.0  # a partner with no background pixels
    partners = np.array([3, 0, 1, 2, 5, 6, 7, 4], np.int32)
    out, replaced = background.random_background(views, masks, seed(2, 5), probability=0.6,
                                                 partners=partners)
    replaced = replaced.numpy()
    assert 0 < replaced.sum() < 8
    for i in range(8):
        if replaced[i]:
            backdrop = reference_fill_foreground(views[partners[i]], masks[partners[i]])
            expected = reference_paste(views[i], masks[i], backdrop)
        else:
            expected = views[i]
        np.testing.assert_allclose(out.numpy()[i], expected, atol=1e-5)


def test_random_background_hides_the_partners_foreground():
    # Image i: foreground colour i / 10 on a background of 0.5 + i / 100. After
    # the op, a replaced image shows only its own foreground colour and the
    # partner's background colour (where the partner's object was, too).
    size, batch_size = 8, 6
    masks = rectangle_masks(batch_size, size, seed_value=3)
    views = np.empty([batch_size, size, size, 3], np.float32)
    for i in range(batch_size):
        views[i] = np.where(masks[i][..., None] > 0, i / 10, 0.5 + i / 100)
    out, replaced = background.random_background(views, masks, seed(4, 4), probability=1.0)
    partners = background.partner_rows(common.split_seed(seed(4, 4), 2)[1], batch_size).numpy()
    assert replaced.numpy().all()
    for i in range(batch_size):
        expected = np.where(masks[i][..., None] > 0, i / 10, 0.5 + partners[i] / 100)
        np.testing.assert_allclose(out.numpy()[i], np.broadcast_to(expected, [size, size, 3]),
                                   atol=1e-6)


def test_random_background_skips_a_batch_of_one_and_zero_probability():
    views, masks = random_images(1, 8, seed=8), rectangle_masks(1, 8)
    out, replaced = background.random_background(views, masks, seed(), probability=1.0)
    assert not replaced.numpy().any()
    np.testing.assert_array_equal(out.numpy(), views)
    views = random_images(4, 8, seed=8)
    out, replaced = background.random_background(views, rectangle_masks(4, 8), seed(),
                                                 probability=0.0)
    np.testing.assert_array_equal(out.numpy(), views)
    assert not replaced.numpy().any()


# -- BG_Swaps -------------------------------------------------------------------------


def test_swap_backgrounds_against_numpy():
    anchors, positives = random_images(8, 8, seed=9), random_images(8, 8, seed=10)
    anchor_masks, positive_masks = soft_masks(8, 8, 2), soft_masks(8, 8, 3)
    batch_seed = seed(6, 1)
    positives_out, negatives, swapped, used = background.swap_backgrounds(
        anchors, anchor_masks, positives, positive_masks, batch_seed,
        positive_probability=0.5, negative_probability=0.5)
    positive_seed, used_seed, partner_seed = common.split_seed(batch_seed, 3)
    # The positives are BG_Random of the positives with the first slot.
    expected_positives, expected_swapped = background.random_background(
        positives, positive_masks, positive_seed, probability=0.5)
    np.testing.assert_array_equal(positives_out.numpy(), expected_positives.numpy())
    np.testing.assert_array_equal(swapped.numpy(), expected_swapped.numpy())
    assert 0 < swapped.numpy().sum() < 8
    # The negatives: another image's anchor foreground on this anchor's background.
    others = background.partner_rows(partner_seed, 8).numpy()
    for i in range(8):
        backdrop = reference_fill_foreground(anchors[i], anchor_masks[i])
        expected = reference_paste(anchors[others[i]], anchor_masks[others[i]], backdrop)
        np.testing.assert_allclose(negatives.numpy()[i], expected, atol=1e-5)
    np.testing.assert_array_equal(used.numpy(), common.random_mask(used_seed, 8, 0.5).numpy())


def test_swap_backgrounds_probabilities_zero():
    anchors, positives = random_images(4, 8, seed=11), random_images(4, 8, seed=12)
    masks = rectangle_masks(4, 8)
    positives_out, negatives, swapped, used = background.swap_backgrounds(
        anchors, masks, positives, masks, seed(), positive_probability=0.0,
        negative_probability=0.0)
    np.testing.assert_array_equal(positives_out.numpy(), positives)
    assert negatives.shape == anchors.shape
    assert not swapped.numpy().any() and not used.numpy().any()


# -- modes ----------------------------------------------------------------------------


def test_ops_agree_eagerly_in_a_function_and_in_dataset_map():
    views, masks = random_images(6, 8, seed=13), (rectangle_masks(6, 8) * 255).astype(np.uint8)
    assert_modes_agree(lambda v, m, s: background.remove_background(v, m, s, probability=0.5),
                       views, masks, seed(1, 1))
    assert_modes_agree(
        lambda v, m, s: background.random_background(v, m, s, probability=0.5, num_images=3),
        views, masks, seed(1, 2))
    others = random_images(6, 8, seed=14)
    assert_modes_agree(
        lambda a, m, p, s: background.swap_backgrounds(
            a, m, p, m, s, positive_probability=0.5, negative_probability=0.5),
        views, masks, others, seed(1, 3))


def test_same_seed_same_result_another_seed_another():
    views, masks = random_images(8, 8, seed=15), rectangle_masks(8, 8)
    first = background.random_background(views, masks, seed(3, 3), probability=0.5)[0]
    again = background.random_background(views, masks, seed(3, 3), probability=0.5)[0]
    other = background.random_background(views, masks, seed(3, 4), probability=0.5)[0]
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), other.numpy())


def test_docstring_examples():
    result = doctest.testmod(background, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
