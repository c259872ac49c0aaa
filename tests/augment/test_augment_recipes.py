"""View configs, recipes and the paper factories."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import augment
from keras_ssl.augment import common
from keras_ssl.augment import recipes
from keras_ssl.augment.views import ViewConfig
from keras_ssl.augment.views import ViewRecipe
from tests.augment.modes import assert_modes_agree
from tests.augment.modes import seed


def _uint8_images(batch_size=4, size=32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)


def _check_views(views, batch_size, sizes):
    assert isinstance(views, tuple) and len(views) == len(sizes)
    for view, size in zip(views, sizes):
        view = np.asarray(view)
        assert view.shape == (batch_size, size, size, 3) and view.dtype == np.float32
        assert view.min() >= 0.0 and view.max() <= 1.0


def test_simclr_recipe_in_all_modes():
    recipe = recipes.simclr_views(32)
    views = assert_modes_agree(recipe, _uint8_images(), seed())
    _check_views(views, 4, (32, 32))
    # Two independent views of the same images.
    assert not np.allclose(views[0], views[1])


def test_recipe_seeds_and_single_image():
    recipe = recipes.moco_v2_views(32)
    images = _uint8_images()
    a, b, c = (recipe(images, s) for s in (seed(1, 2), seed(1, 2), seed(1, 3)))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])
    single = recipe(images[0], seed())
    _check_views(tuple(v[None] for v in single), 1, (32, 32))


@pytest.mark.parametrize(
    "name, kwargs, sizes",
    [
        ("simclr", dict(image_size=32, jitter_strength=0.5, blur=False), (32, 32)),
        ("moco_v2", dict(image_size=24), (24, 24)),
        ("npid", dict(image_size=32), (32, 32)),
        ("byol", dict(image_size=32, blur=False), (32, 32)),
        ("multi_crop", dict(global_size=32, local_size=16), (32, 32) + (16,) * 6),
        ("multi_crop", dict(global_size=24, local_size=8, num_global=1, num_local=2), (24, 8, 8)),
        ("mira", dict(global_size=32, local_size=16, num_local=2), (32, 32, 16, 16)),
    ],
)
def test_factories_produce_views(name, kwargs, sizes):
    recipe = augment.get_recipe(name, **kwargs)
    assert recipe.num_views == len(sizes) and recipe.sizes == sizes
    _check_views(recipe(_uint8_images(), seed()), 4, sizes)


def test_paper_settings():
    simclr = recipes.simclr_views(32, jitter_strength=0.5, blur=False)
    assert simclr.views[0].jitter == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert simclr.views[0].blur_probability == 0.0
    assert recipes.simclr_views(224).views[0].blur_probability == 0.5

    npid = recipes.npid_views(32).views[0]
    assert npid.crop_scale == (0.2, 1.0) and npid.jitter == (0.4,) * 4
    assert npid.jitter_probability == 1.0 and npid.blur_probability == 0.0

    byol = recipes.byol_views(224).views
    assert (byol[0].blur_probability, byol[1].blur_probability) == (1.0, 0.1)
    assert (byol[0].solarize_probability, byol[1].solarize_probability) == (0.0, 0.2)
    assert byol[0].jitter == (0.4, 0.4, 0.2, 0.1)
    assert all(v.blur_probability == 0 for v in recipes.byol_views(32, blur=False).views)

    multi = recipes.multi_crop_views(224, 96).views
    assert [v.crop_scale for v in multi] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 6
    assert multi[0].jitter == multi[-1].jitter == (0.8, 0.8, 0.8, 0.2)

    # MIRA's DINOTransform: blur 1.0 / 0.1 / 0.5, solarize on global crop 2 only.
    mira = recipes.mira_views(224, 96).views
    assert [v.size for v in mira] == [224] * 2 + [96] * 6
    assert [v.crop_scale for v in mira] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 6
    assert [v.blur_probability for v in mira] == [1.0, 0.1] + [0.5] * 6
    assert [v.solarize_probability for v in mira] == [0.0, 0.2] + [0.0] * 6
    assert all(v.jitter == (0.4, 0.4, 0.2, 0.1) and v.jitter_probability == 0.8
               and v.grayscale_probability == 0.2 for v in mira)
    # Its CIFARTransform: two 32-px crops of scale (0.2, 1), no blur.
    cifar = recipes.mira_views(32, num_local=0, global_scale=(0.2, 1.0), blur=False).views
    assert [(v.size, v.crop_scale, v.blur_probability, v.solarize_probability)
            for v in cifar] == [(32, (0.2, 1.0), 0.0, 0.0), (32, (0.2, 1.0), 0.0, 0.2)]


def test_byol_first_view_is_never_solarized():
    # Solarizing moves bright pixels below 0.5; on a near-white image a
    # solarized view is dark. View 1 (p=0) must stay bright; view 2 (p=0.2)
    # is dark for some images. No jitter or grayscale, to keep it clear-cut.
    recipe = recipes.byol_views(
        32, blur=False, jitter_probability=0.0, grayscale_probability=0.0
    )
    white = np.full((64, 32, 32, 3), 250, np.uint8)
    first, second = recipe(white, seed())
    assert first.numpy().min() > 0.9
    dark = second.numpy().max(axis=(1, 2, 3)) < 0.1
    assert 0 < dark.sum() < 40


def test_view_config_round_trip():
    view = ViewConfig(size=16, crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1))
    config = json.loads(json.dumps(view.get_config()))
    assert ViewConfig.from_config(config) == view
    recipe = recipes.multi_crop_views(32, 16, num_local=2)
    restored = ViewRecipe.from_config(json.loads(json.dumps(recipe.get_config())))
    assert restored == recipe
    with pytest.raises(ValueError):
        ViewConfig(size=32, jitter=(0.4, 0.4))


def test_moco_views_with_erasing():
    value = (0.4914, 0.4822, 0.4465)
    plain = recipes.moco_v2_views(32, num_views=3)
    erased = recipes.moco_v2_views(32, num_views=3, erasing_probability=1.0,
                                   erasing_value=value)
    assert all(v.erasing_probability == 0.0 for v in plain.views)
    assert all(v.erasing_probability == 1.0 and v.erasing_value == value
               for v in erased.views)
    assert erased.views[0].erasing_scale == (0.02, 0.33)
    assert erased.views[0].erasing_ratio == (0.3, 3.3)
    images = _uint8_images(batch_size=8)
    with_erasing = assert_modes_agree(erased, images, seed())
    _check_views(with_erasing, 8, (32, 32, 32))
    without = [np.asarray(v) for v in plain(images, seed())]
    # Erasing draws from its own seed slot: outside one rectangle per view,
    # the pixels are those of the same recipe without erasing.
    for view_with, view_without in zip(with_erasing, without):
        for after, before in zip(view_with, view_without):
            changed = np.any(after != before, axis=-1)
            rows = np.flatnonzero(changed.any(axis=1))
            columns = np.flatnonzero(changed.any(axis=0))
            assert rows.size and columns.size
            box = after[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
            np.testing.assert_array_equal(box, np.broadcast_to(np.float32(value), box.shape))


def test_views_without_erasing_keep_their_random_numbers():
    # The erasing slot was appended to ViewConfig.apply's seed split. The
    # views of every recipe without erasing must be those of the five-slot
    # chain from before, or every benchmark's augmentations would change.
    view = dataclasses.replace(recipes.moco_v2_views(32).views[0], solarize_probability=0.3)
    images = _uint8_images()
    crop_seed, jitter_seed, gray_seed, blur_seed, solarize_seed = common.split_seed(
        tf.random.experimental.stateless_fold_in(seed(), 0), 5)
    want = augment.random_resized_crop(
        tf.cast(images, tf.float32) * (1.0 / 255.0), crop_seed, size=32, scale=view.crop_scale,
        ratio=view.crop_ratio, flip_probability=0.5)
    want = augment.color_jitter(want, jitter_seed, brightness=0.4, contrast=0.4,
                                saturation=0.4, hue=0.1, probability=0.8)
    want = augment.random_grayscale(want, gray_seed, 0.2)
    want = augment.gaussian_blur(want, blur_seed, probability=0.5)
    want = augment.solarize(want, solarize_seed, probability=0.3)
    got = recipes.ViewRecipe((view,))(images, seed())[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_erasing_value_config():
    view = ViewConfig(size=32, erasing_probability=1.0, erasing_value=0.5)
    assert view.erasing_value == (0.5, 0.5, 0.5)
    assert ViewConfig.from_config(json.loads(json.dumps(view.get_config()))) == view
    # Configs saved before erasing existed still load, with erasing off.
    old = {k: v for k, v in view.get_config().items() if not k.startswith("erasing")}
    assert ViewConfig.from_config(old).erasing_probability == 0.0
    with pytest.raises(ValueError, match="erasing_value"):
        ViewConfig(size=32, erasing_value=(0.1, 0.2))


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_factory_takes_the_blur_switch(name):
    size = ({"global_size": 32, "local_size": 16} if name in ("multi_crop", "mira")
            else {"image_size": 32})
    recipe = augment.get_recipe(name, blur=False, **size)
    assert all(view.blur_probability == 0.0 for view in recipe.views)


def test_get_recipe_unknown_name():
    assert set(recipes.RECIPES) == {"simclr", "moco_v2", "npid", "byol", "multi_crop", "mira",
                                    "msf", "multi_resolution", "fixmatch", "mixmatch",
                                    "hiermatch"}
    with pytest.raises(ValueError, match="Unknown view recipe"):
        augment.get_recipe("dino")


def test_recipe_in_dataset_with_per_batch_seeds():
    recipe = recipes.byol_views(16, blur=True)
    images = tf.data.Dataset.from_tensor_slices(_uint8_images(batch_size=8, size=16))
    dataset = images.batch(4, drop_remainder=True).enumerate()
    dataset = dataset.map(
        lambda step, batch: recipe(batch, tf.stack([7, tf.cast(step, tf.int32)])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 2
    _check_views(batches[0], 4, (16, 16))
    # Same recipe, same seed: the dataset reproduces the direct call.
    direct = recipe(_uint8_images(batch_size=8, size=16)[4:], tf.constant([7, 1]))
    np.testing.assert_allclose(batches[1][1], direct[1], atol=1e-6)


def test_moco_views_with_a_weak_key():
    # ASCL's pair: view 0 (query) MoCo v2's strong view, view 1 (key) only
    # cropped and flipped, as MSF's weak view.
    strong = recipes.moco_v2_views(32, blur=False)
    weak_key = recipes.moco_v2_views(32, blur=False, weak_key=True)
    assert weak_key.views[0] == strong.views[0]
    assert weak_key.views[1] == recipes.msf_views(32, blur=False).views[1]
    assert weak_key.views[1].crop_scale == (0.2, 1.0)
    assert (weak_key.views[1].jitter_probability, weak_key.views[1].grayscale_probability,
            weak_key.views[1].blur_probability) == (0.0, 0.0, 0.0)
    three = recipes.moco_v2_views(32, num_views=3, weak_key=True).views
    assert three[0] == three[2] != three[1]
    # On images of one colour a crop and flip change nothing, colour ops do.
    colours = np.random.default_rng(3).integers(0, 256, (16, 1, 1, 3), dtype=np.uint8)
    flat = np.broadcast_to(colours, (16, 32, 32, 3)).copy()
    views = assert_modes_agree(weak_key, flat, seed())
    np.testing.assert_allclose(views[1], np.broadcast_to(colours / 255.0, flat.shape),
                               atol=1e-5)
    changed = np.abs(np.asarray(views[0]) - colours / 255.0).max(axis=(1, 2, 3)) > 1e-3
    assert changed.sum() >= 8
    with pytest.raises(ValueError, match="weak_key"):
        recipes.moco_v2_views(32, num_views=1, weak_key=True)
