"""Backbones built for 32 px take 16-px crops only when asked: the multi-crop contract."""

import doctest

import keras
import numpy as np
import pytest

from experiments.pretrain import make_backbone
from keras_ssl import backbones, methods
from keras_ssl.backbones import input_size

# The three kinds of builder: our ResNet, the tiny test CNN, and the wrapper
# around a keras.applications model (MobileNetV3Small: the quickest to build).
BUILDERS = ("tiny", "resnet18", "keras:MobileNetV3Small")


def _build(name, **kwargs):
    keras.utils.set_random_seed(0)
    return backbones.get(name, image_size=32, width_multiplier=0.25, **kwargs)


def _crops(side):
    return np.random.default_rng(0).uniform(size=(2, side, side, 3)).astype("float32")


@pytest.mark.parametrize("name", BUILDERS)
def test_any_image_size_backbone_takes_local_crops(name):
    fixed = _build(name)
    # Keras itself rejects the wrong size: without the option, a local crop fails.
    with pytest.raises(ValueError, match="incompatible"):
        fixed(_crops(16))
    encoder = _build(name, any_image_size=True)
    # The option changes the declared input only: same variables, same features.
    assert [w.shape for w in encoder.weights] == [w.shape for w in fixed.weights]
    encoder.set_weights(fixed.get_weights())
    np.testing.assert_allclose(encoder(_crops(32)), fixed(_crops(32)), rtol=1e-5, atol=1e-6)
    features = encoder(_crops(16))
    assert features.shape == (2, fixed.output_shape[-1])
    assert np.isfinite(features).all()


def test_any_image_size_survives_keras_save_and_reload(tmp_path):
    encoder = _build("tiny", any_image_size=True)
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded(_crops(16)), encoder(_crops(16)), rtol=1e-6)


def test_accept_any_image_size_relaxes_an_encoder_built_for_one_size():
    fixed = _build("resnet18")
    relaxed = backbones.accept_any_image_size(fixed)
    assert relaxed is fixed  # in place: the weights the method trains are the user's
    built_any = _build("resnet18", any_image_size=True)
    built_any.set_weights(fixed.get_weights())
    np.testing.assert_allclose(relaxed(_crops(16)), built_any(_crops(16)),
                               rtol=1e-5, atol=1e-6)
    # Already any size: left as built (its spec still has the full shape).
    spec, = backbones.accept_any_image_size(built_any).input_spec
    assert spec.shape == (None, None, None, 3)


def test_accept_any_image_size_relaxes_nested_models_too():
    # keras:<App> nests the application, which checks its own input.
    encoder = backbones.accept_any_image_size(_build("keras:MobileNetV3Small"))
    assert encoder(_crops(16)).shape == (2, encoder.output_shape[-1])


def test_multi_crop_methods_relax_a_user_encoder():
    encoder = backbones.tiny_backbone(image_size=32, width=4)
    model = methods.get("swav", encoder=encoder, projection_hidden_dim=16,
                        projection_dim=8, num_prototypes=6)
    assert model.encoder(_crops(16)).shape == (2, 8)
    single_size = backbones.tiny_backbone(image_size=32, width=4)
    methods.get("simclr", encoder=single_size, projection_dim=8)
    with pytest.raises(ValueError, match="incompatible"):
        single_size(_crops(16))


@pytest.mark.parametrize("method, takes_any_size", [("swav", True), ("mira", True),
                                                    ("simclr", False)])
def test_pretrain_builds_multi_crop_backbones_for_any_size(method, takes_any_size):
    encoder = make_backbone(method, "tiny", image_size=32, width_multiplier=0.5)
    assert encoder.input_shape == ((None, None, None, 3) if takes_any_size
                                   else (None, 32, 32, 3))


def test_docstring_examples():
    result = doctest.testmod(input_size, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_any_size_encoder_evaluates_and_exports_like_a_fixed_one(tmp_path):
    import tensorflow as tf

    from keras_ssl.evaluation.features import extract_features
    from keras_ssl.export import export_encoder

    fixed = _build("tiny")
    encoder = _build("tiny", any_image_size=True)
    encoder.set_weights(fixed.get_weights())
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": np.arange(5)}).batch(2)
    expected, _ = extract_features(fixed, dataset)
    np.testing.assert_allclose(extract_features(encoder, dataset)[0], expected,
                               rtol=1e-5, atol=1e-6)

    saved_model = export_encoder(encoder, str(tmp_path / "export"), image_size=32)
    loaded = tf.saved_model.load(saved_model)  # kept: `serve` reads its variables
    served = loaded.serve(tf.constant(images)).numpy()
    pixels = images.astype("float32") / 255.0
    np.testing.assert_allclose(served, fixed(pixels, training=False), rtol=1e-5, atol=1e-6)
    reloaded = keras.saving.load_model(str(tmp_path / "export" / "encoder.keras"))
    assert reloaded(_crops(16)).shape == (2, 4)
