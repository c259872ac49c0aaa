"""Background augmentation inside a view recipe: plain views unchanged, ops where they belong."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import background as ops
from keras_ssl.augment import get_recipe
from keras_ssl.augment.background_views import BackgroundConfig
from keras_ssl.augment.views import ViewConfig, ViewRecipe

SEED = tf.constant([7, 11])
# No photometric op: the views show exactly what the background stage made.
PLAIN_VIEW = ViewConfig(size=12, crop_scale=(0.3, 1.0), jitter_probability=0.0)


def batch(batch_size=6, side=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, [batch_size, side, side, 3]).astype(np.uint8)
    masks = np.zeros([batch_size, side, side], np.uint8)
    for mask in masks:  # one rectangle of foreground each, never the whole image
        top, left = rng.integers(0, side // 2, 2)
        mask[top:top + side // 2, left:left + side // 2] = 255
    return images, masks


def test_zero_probabilities_give_the_plain_recipe_bit_for_bit():
    images, masks = batch()
    recipe = get_recipe("moco_v2", image_size=12, blur=False)
    plain = recipe(images, SEED)
    with_background = dataclasses.replace(recipe, background=BackgroundConfig())(
        images, SEED, masks)
    for expected, got in zip(plain, with_background):
        np.testing.assert_array_equal(expected.numpy(), got.numpy())


def test_removal_paints_the_co_cropped_background_with_the_fill():
    images, masks = batch()
    recipe = ViewRecipe((PLAIN_VIEW,), background=BackgroundConfig(remove=1.0, fill=0.25))
    (view,) = recipe(images, SEED, masks)
    # The crop the recipe made, with its mask cut by the same box.
    group_seed = recipe.group_seed(SEED, [0])
    crops, alpha = PLAIN_VIEW.co_crop(tf.cast(images, tf.float32) / 255.0, masks, group_seed)
    expected = crops.numpy() * alpha.numpy() + 0.25 * (1.0 - alpha.numpy())
    np.testing.assert_allclose(view.numpy(), expected, atol=1e-6)
    assert np.any(alpha.numpy() < 0.5) and np.any(alpha.numpy() > 0.5)


def test_masks_stay_aligned_through_crop_and_flip():
    # Images that are their masks (white objects on black): after a random
    # crop and flip, an aligned mask crop equals the image crop, so BG_RM to
    # black gives image x alpha = crop squared (unchanged but for soft edges).
    _, masks = batch(seed=3)
    images = np.repeat(masks[..., None], 3, axis=-1)
    view = dataclasses.replace(PLAIN_VIEW, flip_probability=0.5)
    recipe = ViewRecipe((view, view), background=BackgroundConfig(remove=1.0, fill=0.0))
    plain = ViewRecipe((view, view))(images, SEED)
    for expected, got in zip(plain, recipe(images, SEED, masks)):
        np.testing.assert_allclose(got.numpy(), expected.numpy() ** 2, atol=1e-5)


def test_smaller_masks_are_resized_to_the_images():
    images, masks = batch(side=16)
    small = masks[:, ::2, ::2]
    resized = tf.image.resize(tf.cast(small[..., None], tf.float32) / 255.0, [16, 16]).numpy()
    recipe = ViewRecipe((PLAIN_VIEW,), background=BackgroundConfig(remove=1.0, random=0.5))
    np.testing.assert_allclose(recipe(images, SEED, small)[0].numpy(),
                               recipe(images, SEED, resized)[0].numpy(), atol=1e-6)


def test_swaps_hand_on_an_extra_negative_on_the_anchors_background():
    images, masks = batch(batch_size=8)
    recipe = ViewRecipe((PLAIN_VIEW, PLAIN_VIEW), background=BackgroundConfig(
        swap_positive=1.0, swap_negative=1.0))
    out = recipe(images, SEED, masks)
    assert set(out) == {"views", "negative_view", "negative_used"}
    assert out["negative_view"].shape == (8, 12, 12, 3)
    assert out["negative_used"].numpy().all()
    anchor = out["views"][0].numpy()
    # The anchor view is untouched, so its background is where its mask is 0;
    # the negative keeps those pixels wherever the pasted object does not cover them.
    _, alpha = PLAIN_VIEW.co_crop(tf.cast(images, tf.float32) / 255.0, masks,
                                  recipe.group_seed(SEED, [0, 1]), num_copies=2)
    anchor_alpha = alpha.numpy()[:8, ..., 0]
    shared = np.abs(out["negative_view"].numpy() - anchor).max(-1) < 1e-6
    background = anchor_alpha == 0.0
    assert shared[background].mean() > 0.3  # the other object covers part of it
    # The positive got another background: it differs from the plain recipe's.
    plain = ViewRecipe((PLAIN_VIEW, PLAIN_VIEW))(images, SEED)
    np.testing.assert_array_equal(plain[0].numpy(), anchor)
    assert not np.allclose(plain[1].numpy(), out["views"][1].numpy())


def test_in_a_dataset_map_the_views_are_a_function_of_the_seed():
    images, masks = batch()
    recipe = ViewRecipe((PLAIN_VIEW, PLAIN_VIEW), background=BackgroundConfig(
        remove=0.5, random=0.5, swap_positive=0.5, swap_negative=0.5))
    dataset = tf.data.Dataset.from_tensors((images, masks)).repeat(2).map(
        lambda i, m: recipe(i, SEED, m))
    first, second = list(dataset)
    eager = recipe(images, SEED, masks)
    for key in ("negative_view", "negative_used"):
        np.testing.assert_array_equal(first[key].numpy(), second[key].numpy())
        np.testing.assert_array_equal(first[key].numpy(), eager[key].numpy())
    for a, b in zip(first["views"], eager["views"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_a_recipe_with_background_needs_masks():
    images, _ = batch()
    recipe = ViewRecipe((PLAIN_VIEW,), background=BackgroundConfig(remove=0.2))
    with pytest.raises(ValueError, match=r"train_dataset\(..., masks=...\)"):
        recipe(images, SEED)


def test_config_from_ops_and_its_errors():
    config = BackgroundConfig.from_ops(["rm", "swaps"], remove=0.2, random=0.1,
                                       swap_positive=0.1, swap_negative=1.0)
    assert config.probabilities(0) == (0.2, 0.0) and config.swaps
    assert not BackgroundConfig.from_ops(["rm"], remove=0.2, swap_negative=1.0).swaps
    with pytest.raises(ValueError, match="grey is not one of"):
        BackgroundConfig.from_ops(["grey"])
    with pytest.raises(ValueError, match="random=P"):
        BackgroundConfig.from_ops(["random"], remove=0.2)
    with pytest.raises(ValueError, match=r"not in \[0, 1\]"):
        BackgroundConfig(remove=1.5)
    with pytest.raises(ValueError, match="3 probabilities for a recipe of 2 views"):
        ViewRecipe((PLAIN_VIEW,) * 2, background=BackgroundConfig(remove=(0.1, 0.2, 0.3)))
    small = dataclasses.replace(PLAIN_VIEW, size=8)
    with pytest.raises(ValueError, match="must have one size"):
        ViewRecipe((PLAIN_VIEW, small), background=BackgroundConfig(swap_negative=1.0))


def test_per_view_probabilities_and_the_config_round_trip():
    images, masks = batch()
    recipe = ViewRecipe((PLAIN_VIEW, PLAIN_VIEW),
                        background=BackgroundConfig(remove=(1.0, 0.0), fill=0.0))
    first, second = recipe(images, SEED, masks)
    _, alpha = PLAIN_VIEW.co_crop(tf.cast(images, tf.float32) / 255.0, masks,
                                  recipe.group_seed(SEED, [0]))
    background = alpha.numpy()[..., 0] == 0.0
    assert background.any()
    np.testing.assert_array_equal(first.numpy()[background], 0.0)  # view 0: p = 1
    assert (second.numpy() == 0.0).mean() < 0.01  # view 1: p = 0, random pixels
    assert ViewRecipe.from_config(recipe.get_config()) == recipe


def test_random_background_partners_come_from_other_images():
    # Every image a flat colour of its own: with BG_Random at p=1 each view's
    # background takes another image's colour, never its own.
    colours = np.arange(6, dtype=np.uint8)[:, None, None, None] * 40 + 10
    images = np.broadcast_to(colours, [6, 16, 16, 3]).copy()
    _, masks = batch()
    (view,) = ViewRecipe((PLAIN_VIEW,), background=BackgroundConfig(random=1.0))(
        images, SEED, masks)
    _, alpha = PLAIN_VIEW.co_crop(tf.cast(images, tf.float32) / 255.0, masks,
                                  ViewRecipe.group_seed(SEED, [0]))
    background_pixels = alpha.numpy()[..., 0] == 0.0
    for row in range(6):
        values = view.numpy()[row][background_pixels[row]][:, 0]
        if values.size:
            assert not np.allclose(values, colours[row, 0, 0, 0] / 255.0)
    assert ops.NORMALIZATION_MEAN  # the default fill exists for BG_RM
