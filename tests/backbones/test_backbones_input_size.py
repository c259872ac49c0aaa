"""Backbones built for 32 px take 16-px crops only when asked: the multi-crop contract."""

import doctest
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones
from keras_ssl.backbones import input_size

# The three kinds of builder: our ResNet, the tiny test CNN, and the wrapper
# around a keras.applications model (MobileNetV3Small: the quickest to build).
BUILDERS = ("tiny", "resnet18", "keras:MobileNetV3Small")
# The local crop each takes: MobileNetV3Small's stride-2 "valid" depthwise
# convolutions are padded for even maps, so below 31 px a 1x1 map would
# shrink to nothing (see test_too_small_crops_are_refused_...).
LOCAL_CROP = {"tiny": 16, "resnet18": 16, "keras:MobileNetV3Small": 31}


def _build(name, image_size=32, **kwargs):
    keras.utils.set_random_seed(0)
    return backbones.get(name, image_size=image_size, width_multiplier=0.25, **kwargs)


def _crops(side):
    return np.random.default_rng(0).uniform(size=(2, side, side, 3)).astype("float32")


@pytest.mark.parametrize("name", BUILDERS)
def test_any_image_size_backbone_takes_local_crops(name):
    crop = LOCAL_CROP[name]
    fixed = _build(name)
    # Keras itself rejects the wrong size: without the option, a local crop fails.
    with pytest.raises(ValueError, match="incompatible"):
        fixed(_crops(crop))
    encoder = _build(name, any_image_size=True)
    # The option changes the declared input only: same variables, same features.
    assert [w.shape for w in encoder.weights] == [w.shape for w in fixed.weights]
    encoder.set_weights(fixed.get_weights())
    np.testing.assert_allclose(encoder(_crops(32)), fixed(_crops(32)), rtol=1e-5, atol=1e-6)
    features = encoder(_crops(crop))
    assert features.shape == (2, fixed.output_shape[-1])
    assert np.isfinite(features).all() and np.abs(features).max() > 0


@pytest.fixture(scope="module")
def mobilenet():
    """keras:MobileNetV3Small for 32 px, any size (read-only in the tests using it)."""
    return _build("keras:MobileNetV3Small", any_image_size=True)


def test_too_small_crops_are_refused_with_the_backbone_and_its_smallest_side(mobilenet):
    # At 16 px MobileNetV3Small's map is 1x1 before its last stride-2 depthwise
    # convolution, padded for an even map to 4x4 and cut by a 5x5 "valid"
    # window to 0x0: TensorFlow averaged the empty map to NaN with oneDNN off
    # and returned uninitialised memory with it on. Now it is refused
    # whatever the kernels, eagerly, when traced, and in a graph of unknown sides.
    message = r"'keras:MobileNetV3Small' takes images of at least 31x31 px; got 16x16"
    with pytest.raises(ValueError, match=message):
        mobilenet(_crops(16))
    with pytest.raises(ValueError, match=message):
        tf.function(mobilenet)(_crops(16))
    with pytest.raises(ValueError, match="got 31x30"):
        mobilenet(_crops(31)[:, :, :30])
    unknown_sides = tf.function(mobilenet, input_signature=[
        tf.TensorSpec((None, None, None, 3), tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 31x31 px"):
        unknown_sides(_crops(16))
    assert np.isfinite(unknown_sides(_crops(31))).all()
    # A backbone built for a size it cannot take is refused when built.
    with pytest.raises(ValueError, match=r"at least 31x31 px; got image_size=16"):
        _build("keras:MobileNetV3Small", image_size=16, any_image_size=True)


def test_smallest_image_side_follows_the_shape_arithmetic(mobilenet):
    assert input_size.smallest_image_side(mobilenet) == 31
    fixed = _build("keras:MobileNetV3Small")
    assert input_size.smallest_image_side(fixed) == 31
    # The search sets the input checks aside and puts them back.
    with pytest.raises(ValueError, match="incompatible"):
        fixed(_crops(31))
    for name in ("tiny", "resnet18"):  # "same" padding: no map ever vanishes
        assert input_size.smallest_image_side(_build(name, any_image_size=True)) == 1
    check = mobilenet.get_layer("image_side_check")
    assert input_size.MinimumImageSide.from_config(check.get_config()).min_side == 31


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
    # keras:<App> nests the application, which checks its own input; its
    # smallest-side check stays.
    encoder = backbones.accept_any_image_size(_build("keras:MobileNetV3Small"))
    assert encoder(_crops(31)).shape == (2, encoder.output_shape[-1])
    with pytest.raises(ValueError, match="at least 31x31 px"):
        encoder(_crops(16))


def test_multi_crop_methods_relax_a_user_encoder():
    from keras_ssl import methods

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
    from keras_ssl.training import make_backbone

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


ONEDNN_OFF_SCRIPT = r"""
import json
import tensorflow  # first, as a user's script may: keras_ssl cannot choose for it
from tensorflow.python.util import _pywrap_util_port
import keras
import numpy as np
from keras_ssl import backbones

def crops(side):
    return np.random.default_rng(0).uniform(size=(2, side, side, 3)).astype("float32")

result = {"onednn": bool(_pywrap_util_port.IsMklEnabled())}
keras.utils.set_random_seed(0)
mobilenet = backbones.get("keras:MobileNetV3Small", image_size=32, width_multiplier=0.25,
                          any_image_size=True)
try:
    mobilenet(crops(16))
    result["refused"] = None
except ValueError as error:
    result["refused"] = str(error)
result["mobilenet_31"] = np.asarray(mobilenet(crops(31))).tolist()
keras.utils.set_random_seed(0)
resnet = backbones.get("resnet18", image_size=32, width_multiplier=0.25, any_image_size=True)
result["resnet18_16"] = np.asarray(resnet(crops(16), training=True)).tolist()
print(json.dumps(result))
"""


@pytest.fixture(scope="module", autouse=True)
def onednn_off_process():
    """ONEDNN_OFF_SCRIPT, started with the module's first test.

    TF_ENABLE_ONEDNN_OPTS is read when TensorFlow is imported, so the setting
    this session did not choose runs in a subprocess, which imports
    TensorFlow before keras_ssl. Importing and building take it ~10 s, mostly
    on one core: started first, it runs beside the other tests of this
    module rather than after them.
    """
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    # Its output is a few lines: the pipes cannot fill while nothing reads them.
    process = subprocess.Popen([sys.executable, "-c", ONEDNN_OFF_SCRIPT], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield process
    if process.poll() is None:  # a test run that never asked for the result
        process.kill()
        process.communicate()


def test_backbones_behave_the_same_with_onednn_off(onednn_off_process, mobilenet):
    # The refusal comes from shape arithmetic and the features agree with
    # this session's up to float rounding: nothing in the backbones depends
    # on the kernels.
    stdout, stderr = onednn_off_process.communicate(timeout=600)
    assert onednn_off_process.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["onednn"] is False
    assert "takes images of at least 31x31 px; got 16x16" in result["refused"]
    np.testing.assert_allclose(result["mobilenet_31"], mobilenet(_crops(31)),
                               rtol=1e-4, atol=1e-5)
    resnet = _build("resnet18", any_image_size=True)
    np.testing.assert_allclose(result["resnet18_16"], resnet(_crops(16), training=True),
                               rtol=1e-4, atol=1e-5)
