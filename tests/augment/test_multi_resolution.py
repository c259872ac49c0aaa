"""Multi-resolution views: the base views unchanged, plus the same crop resized."""

import doctest
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import augment
from keras_ssl.augment import multi_resolution
from keras_ssl.augment.multi_resolution import MultiResolutionRecipe
from keras_ssl.augment.recipes import moco_v2_views, multi_resolution_views
from tests.augment.modes import assert_modes_agree, seed


def _uint8_images(batch_size=3, size=32):
    return np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), np.uint8)


def test_copies_are_the_source_view_resized_and_the_base_views_do_not_change():
    base = moco_v2_views(32, blur=False)
    recipe = MultiResolutionRecipe(base, resolutions=(24, 16), source_view=1)
    images = _uint8_images()
    views = recipe(images, seed(3, 4))
    base_views = base(images, seed(3, 4))
    assert recipe.sizes == (32, 32, 24, 16) and len(views) == recipe.num_views == 4
    for view, base_view in zip(views[:2], base_views):
        np.testing.assert_array_equal(view.numpy(), base_view.numpy())
    for view, side in zip(views[2:], (24, 16)):
        expected = np.clip(tf.image.resize(base_views[1], [side, side], antialias=True), 0, 1)
        np.testing.assert_allclose(view.numpy(), expected, atol=1e-6)
        assert view.shape == (3, side, side, 3)
        assert view.numpy().min() >= 0.0 and view.numpy().max() <= 1.0
    # A copy shows the same crop as its source: far closer to it than the other view.
    shrunk = [tf.image.resize(v, [24, 24], antialias=True).numpy() for v in base_views]
    assert (np.abs(views[2].numpy() - shrunk[1]).mean()
            < 0.5 * np.abs(views[2].numpy() - shrunk[0]).mean())


def test_runs_in_every_mode_and_on_one_image():
    recipe = multi_resolution_views(32, resolutions=(24,), blur=False)
    views = assert_modes_agree(recipe, _uint8_images(), seed(1, 2))
    assert [v.shape for v in views] == [(3, 32, 32, 3), (3, 32, 32, 3), (3, 24, 24, 3)]
    single = recipe(_uint8_images()[0], seed(1, 2))
    assert [tuple(v.shape) for v in single] == [(32, 32, 3), (32, 32, 3), (24, 24, 3)]


def test_factory_is_registered_and_its_config_round_trips_through_json():
    recipe = augment.get_recipe("multi_resolution", image_size=32, resolutions=(24,),
                                blur=False)
    assert recipe.base == moco_v2_views(32, blur=False)
    config = json.loads(json.dumps(recipe.get_config()))
    assert MultiResolutionRecipe.from_config(config) == recipe


def test_rejects_a_missing_source_view():
    with pytest.raises(ValueError, match="source_view=2"):
        MultiResolutionRecipe(moco_v2_views(32), resolutions=(24,), source_view=2)


def test_docstring_examples():
    result = doctest.testmod(multi_resolution, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
