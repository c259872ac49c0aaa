"""Every preset's `views` reach its method's recipe; CLD's MoCo CIFAR views erase.

experiments/presets.py serves the recipes of `keras_ssl.configs` under the
`--preset` names; tests/configs checks the recipes themselves.
"""

import pytest

from experiments import presets
from keras_ssl import configs
from keras_ssl.training import make_views

_ENTRIES = [(preset, method) for preset, entries in sorted(presets.PRESETS.items())
            for method in sorted(entries)]


def test_presets_serve_the_configs():
    assert set(presets.PRESETS) == {"cifar10_cpu_small", "cifar10", "imagenet"}
    for preset, method in _ENTRIES:
        assert presets.get(preset, method) == configs.get(preset, method)
        assert presets.PRESETS[preset][method] == configs.get(preset, method)
    with pytest.raises(ValueError, match="cifar10_cpu_small"):
        presets.get("huge", "simclr")


# The instance classifier classifies one view of each image (its paper's recipe).
ONE_VIEW_METHODS = {"instance_classifier"}


@pytest.mark.parametrize("preset, method", _ENTRIES)
def test_preset_views_build(preset, method):
    entry = presets.get(preset, method)
    flags = entry["flags"]
    recipe = make_views(method, image_size=flags.get("image_size", 32),
                        blur=flags.get("blur", True), view_kwargs=entry["views"])
    assert recipe.num_views >= (1 if method in ONE_VIEW_METHODS else 2)


@pytest.mark.parametrize("preset", ["cifar10_cpu_small", "cifar10"])
def test_moco_cld_cifar_views_erase_to_the_cifar_mean(preset):
    # train_cifar10_moco_cld.sh: --three-imgs --aug-plus --erasing, i.e.
    # RandomErasing(p=1) after Normalize with the CIFAR-10 mean.
    entry = presets.get(preset, "moco_v2_cld")
    recipe = make_views("moco_v2_cld", image_size=32, blur=entry["flags"]["blur"],
                        view_kwargs=entry["views"])
    assert recipe.num_views == 3
    for view in recipe.views:
        assert view.erasing_probability == 1.0
        assert view.erasing_value == pytest.approx((0.4914, 0.4822, 0.4465))
        assert (view.erasing_scale, view.erasing_ratio) == ((0.02, 0.33), (0.3, 3.3))


def test_erasing_only_where_the_official_recipe_has_it():
    for preset, method in _ENTRIES:
        entry = presets.get(preset, method)
        erases = entry["views"].get("erasing_probability", 0.0) > 0
        assert erases == (method == "moco_v2_cld" and preset != "imagenet"), (preset, method)
