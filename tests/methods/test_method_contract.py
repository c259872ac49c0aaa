"""Every method, completely: a finite step that moves its weights and declared state, the whole
model round-tripping through a .keras file, the encoder's export, 1 vs 2 replicas.

The shared harness (`tests/methods/harness.py`) builds each registered method
at its smallest; these checks hold for every one of them.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.export import export_encoder
from tests.methods import harness

NAMES = methods.available()
_BATCH_STATISTICS = ("moving_mean", "moving_variance")


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="simclr"):
        methods.get("nope")


@pytest.fixture(scope="module", params=NAMES)
def fitted(request):
    """Each method built and fitted once, on one replica, for every check below.

    Tracing a method's step is most of what a check costs, so the checks of
    one method share one fit: the moved weights and state, the .keras round
    trip, the encoder export and the 1-replica half of 1 vs 2 replicas (the
    same build, data and optimizer as its 2-replica half). The fixture is
    parametrized at module scope, so pytest runs one method's checks
    together and frees its model before the next; a check run alone (-k)
    fits its method first.
    """
    return harness.fit_run(request.param, tf.distribute.get_strategy())


def test_fit_is_finite_and_moves_its_weights_and_exactly_its_declared_state(fitted):
    model, before, after = fitted.model, fitted.before, fitted.after
    assert np.isfinite(fitted.history["loss"][0])
    moved = {path for path in before if not np.array_equal(before[path], after[path])}
    updated = {variable.path for variable in model.update_variables()}
    assert updated - moved == set(), f"weights the optimizer did not move: {updated - moved}"
    state = {variable.path for variable in model.state_variables()}
    assert state <= set(before), "state_variables names variables the model does not hold"
    assert state - moved == set(), f"declared state that did not move: {state - moved}"
    trainable = {variable.path for variable in model.trainable_weights}
    undeclared = {path for path in moved - trainable - state
                  if not path.endswith(_BATCH_STATISTICS)}
    assert not undeclared, f"state written but not declared in state_attributes: {undeclared}"


def test_whole_model_round_trips_through_a_keras_file_and_its_config(fitted, tmp_path):
    model = fitted.model
    path = str(tmp_path / f"{fitted.name}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    # Every constructor argument comes back; the encoder is compared by its
    # weights below (Keras renames the layers of a reloaded functional model).
    config, reloaded_config = model.get_config(), reloaded.get_config()
    assert config.pop("encoder").keys() == reloaded_config.pop("encoder").keys()
    assert reloaded_config == config
    # The live model's weights, as saved (the fit's copy is compared too, so
    # nothing that ran on the shared model since the fit went unnoticed).
    expected = harness.weights_by_path(model)
    actual = harness.weights_by_path(reloaded)
    assert actual.keys() == expected.keys() == fitted.after.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)
        np.testing.assert_array_equal(fitted.after[key], value, err_msg=key)
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(reloaded(images), model(images), rtol=1e-6)
    rebuilt = type(model).from_config(model.get_config())
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]


# On the seed-0 harness batches NCC's second step puts one pre-ReLU value of
# the encoder's bn1 (channel 4) within 1e-6 of zero, and the float noise of 1
# vs 2 replicas (a few 1e-6 in the weights after one step) puts it on the
# other side: that one ReLU flip moves the encoder ~2e-4, as far as one
# replica moves from itself when its initial weights are scaled by
# 1 + 1e-6 N(0, 1). That is a property of the data, not of NCC (its step
# gradients agree on 1 and 2 replicas at the same weights, and
# tests/methods/test_ncc.py checks the gradient through the gathered
# centres), so NCC's check runs on batches without such a kink.
REPLICA_CHECK_DATA_SEED = {"ncc": 1}


def test_one_and_two_replicas_agree(fitted):
    data_seed = REPLICA_CHECK_DATA_SEED.get(fitted.name, 0)
    if data_seed:
        fitted = harness.fit_run(fitted.name, tf.distribute.get_strategy(), data_seed=data_seed)
    strategy = harness.mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    mirrored = harness.fit_run(fitted.name, strategy, data_seed=data_seed)
    np.testing.assert_allclose(mirrored.history["loss"], fitted.history["loss"], rtol=1e-4)
    expected, actual = fitted.after, mirrored.after
    assert expected.keys() == actual.keys()
    # Two replicas sum gradients and gather in another order: float32 noise
    # of a few 1e-5 after two steps (MIRA's 5-iteration fixed point amplifies
    # it most). A wrong reduction moves weights by the step size, ~1e-2 here.
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=1e-3, atol=5e-5,
                                   err_msg=path)


def test_encoder_exports_and_reloads(fitted, tmp_path):
    # The fitted encoder: its BatchNorm statistics have moved off their
    # initial values, so serving must use the trained ones to match.
    encoder = fitted.model.encoder
    saved_model = export_encoder(encoder, str(tmp_path / "export"), image_size=16)
    served = tf.saved_model.load(saved_model)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(served.serve(tf.constant(images)),
                               encoder(images.astype("float32") / 255.0, training=False),
                               rtol=1e-5, atol=1e-5)
