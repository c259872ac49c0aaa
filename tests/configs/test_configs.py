"""Every registered method has a config module whose keys are real arguments, and it builds."""

import dataclasses
import inspect

import keras
import pytest

from keras_ssl import augment, configs, methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import RunContext
from keras_ssl.methods.cld import CLDPreset
from keras_ssl.methods.transform_preset import TransformPreset
from keras_ssl.objectives import CLD
from keras_ssl.training import PretrainConfig

NAMES = methods.available()
SCALES = configs.SCALES
# Values that depend on the run or the data: the run context and the batch
# carry them, never a config.
RUN_DEPENDENT = {"num_examples", "total_steps", "steps_per_epoch", "epochs", "labels", "run"}
RUN = RunContext(num_examples=32, steps_per_epoch=4, epochs=1)


def constructor_defaults(klass):
    """{keyword: default} of `klass.__init__` and of every method class it extends.

    A subclass's default wins over its base's; arguments without a default
    map to `inspect.Parameter.empty`.
    """
    defaults = {}
    for base in klass.__mro__:
        if base is keras.Model:
            break
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                defaults.setdefault(parameter.name, parameter.default)
    defaults.pop("self", None)
    defaults.pop("encoder", None)
    return defaults


def constructor_arguments(klass):
    """Keyword arguments of `klass.__init__` and of every method class it extends."""
    return set(constructor_defaults(klass))


def every_recipe():
    for name in NAMES:
        for scale in SCALES:
            yield name, scale, False
        yield name, "cpu_small", True


def test_every_registered_method_has_a_config_module():
    assert configs.methods() == NAMES
    assert configs.available("cifar10_cpu_small") == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_scale_and_smoke_have_a_recipe(name):
    module = configs.module(name)
    assert set(module.RECIPES) == {*SCALES, "smoke"}
    for scale in SCALES:
        recipe = module.get(scale)
        assert set(recipe) == {"flags", "method", "views"}
        assert recipe["flags"]["image_size"] > 0
    # smoke=True shrinks the recipe the same way at every scale.
    smoke = [module.get(scale, smoke=True) for scale in SCALES]
    assert smoke[0] == smoke[1] == smoke[2]
    assert smoke[0]["flags"]["backbone"] == "tiny"


@pytest.mark.parametrize("name, scale, smoke", list(every_recipe()))
def test_every_key_is_an_argument(name, scale, smoke):
    recipe = configs.get(scale, name, smoke=smoke)
    klass = methods.method_class(name)
    method_keys = set(recipe["method"])
    assert method_keys <= constructor_arguments(klass), (
        method_keys - constructor_arguments(klass))
    assert not method_keys & RUN_DEPENDENT
    for spec in recipe["method"].get("objectives", ()):
        (kind, kwargs), = spec.items()
        objective = methods.OBJECTIVES[kind]
        assert set(kwargs) <= set(inspect.signature(objective.__init__).parameters)
    assert set(recipe["flags"]) <= {field.name for field in dataclasses.fields(PretrainConfig)}
    assert not set(recipe["flags"]) & {"method", "data", "method_kwargs", "view_kwargs"}
    recipe_function = augment.RECIPES[klass.recipe_name]
    assert set(recipe["views"]) <= set(inspect.signature(recipe_function).parameters)


@pytest.mark.parametrize("name", NAMES)
def test_smoke_recipe_builds_its_method(name):
    keras.utils.set_random_seed(0)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    model = methods.get(name, encoder=encoder, run=RUN,
                        **configs.get("cpu_small", name, smoke=True)["method"])
    assert isinstance(model, methods.method_class(name))
    assert model.name == name


CLD_PRESETS = sorted(name for name, preset in methods.PRESETS.items()
                     if isinstance(preset, CLDPreset))
TRANSFORM_PRESETS = sorted(name for name, preset in methods.PRESETS.items()
                           if isinstance(preset, TransformPreset))


def test_every_preset_is_of_a_known_kind():
    assert sorted(CLD_PRESETS + TRANSFORM_PRESETS) == sorted(methods.PRESETS)


@pytest.mark.parametrize("name", CLD_PRESETS)
def test_cld_presets_build_their_base_class_with_a_cld_objective(name):
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    model = methods.get(name, encoder=encoder, run=RUN,
                        **configs.get("cpu_small", name, smoke=True)["method"])
    assert type(model) is methods.METHODS[methods.PRESETS[name].base]
    cld, = [objective for objective in model.objectives if isinstance(objective, CLD)]
    assert (cld.input_dim, cld.num_groups, cld.group_dim) == (8, 3, 8)


@pytest.mark.parametrize("name", CLD_PRESETS)
@pytest.mark.parametrize("scale", SCALES)
def test_cld_recipes_spell_out_the_preset(name, scale):
    # The recipe names every argument the preset would change, so the base's
    # registry name builds the same method from it.
    config = configs.get(scale, name)["method"]
    completed = methods.PRESETS[name].arguments(config)
    objectives, completed_objectives = (
        [layer.get_config() for layer in methods.make_objectives(c["objectives"], 8)]
        for c in (config, completed))
    assert objectives == completed_objectives
    defaults = constructor_defaults(methods.method_class(name))
    for key, value in completed.items():
        if key != "objectives":
            assert value == config.get(key, defaults[key]), key


@pytest.mark.parametrize("name", TRANSFORM_PRESETS)
def test_transform_presets_build_their_base_class_with_their_transform(name):
    preset = methods.PRESETS[name]
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    model = methods.get(name, encoder=encoder, run=RUN,
                        **configs.get("cpu_small", name, smoke=True)["method"])
    assert type(model) is methods.METHODS[preset.base]
    assert [type(t) for t in model.logit_transforms] == [preset.transform]


@pytest.mark.parametrize("name", TRANSFORM_PRESETS)
@pytest.mark.parametrize("scale", SCALES)
def test_transform_recipes_spell_out_the_preset(name, scale):
    # As for CLD: the base's registry name builds the same method from the recipe.
    config = configs.get(scale, name)["method"]
    assert methods.PRESETS[name].arguments(config) == config


def test_preset_names_and_scales_agree():
    for method in NAMES:
        assert configs.get("cifar10_cpu_small", method) == configs.get("cpu_small", method)
    assert configs.scale_of("cifar10_cpu_small") == "cpu_small"


def test_recipes_are_fresh_copies():
    recipe = configs.get("cifar10", "moco_v2_cld")
    recipe["method"]["objectives"][0]["cld"]["num_groups"] = -1
    recipe["flags"]["epochs"] = -1
    again = configs.get("cifar10", "moco_v2_cld")
    assert again["method"]["objectives"][0]["cld"]["num_groups"] == 200
    assert again["flags"]["epochs"] == 200


def test_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="cifar10_cpu_small.*imagenet"):
        configs.get("huge", "simclr")
    with pytest.raises(ValueError, match="simclr"):
        configs.get("cifar10", "nope")
    with pytest.raises(ValueError, match="cpu_small"):
        configs.module("simclr").get("cifar100")
    with pytest.raises(ValueError, match="cpu_small"):
        configs.available("tiny")
