"""The shared harness run on every registered method."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from tests.methods import harness

NAMES = methods.available()


def test_every_method_has_a_tiny_config():
    assert set(harness.TINY_CONFIGS) == set(NAMES)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="simclr"):
        methods.get("nope")


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_finite_and_moves_every_kind_of_state(name):
    model = harness.build(name)
    before = harness.weights_by_path(model)
    model.compile(optimizer="sgd")
    history = model.fit(harness.batches(), epochs=1, verbose=0, shuffle=False,
                        callbacks=harness.callbacks_for(model)).history
    assert np.isfinite(history["loss"][0])
    after = harness.weights_by_path(model)
    moved = {path for path in before if not np.array_equal(before[path], after[path])}
    trainable = {w.path for w in model.trainable_weights}
    assert trainable <= moved, f"trainable weights that did not move: {trainable - moved}"
    state = set(before) - trainable
    for keyword in {"moco_v2": ("queue", "key_encoder"), "npid": ("memory",),
                    "byol": ("target_encoder", "target_projector")}.get(name, ()):
        assert any(keyword in path for path in state & moved), f"{keyword} did not move"


@pytest.mark.parametrize("name", NAMES)
def test_one_and_two_replicas_agree(name):
    single, single_logs = harness.train(name, tf.distribute.get_strategy())
    strategy = harness.mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    mirrored, mirrored_logs = harness.train(name, strategy)
    np.testing.assert_allclose(mirrored_logs["loss"], single_logs["loss"], rtol=1e-4)
    expected = harness.weights_by_path(single)
    actual = harness.weights_by_path(mirrored)
    assert expected.keys() == actual.keys()
    # Two replicas sum gradients and gather in another order: float32 noise
    # of a few 1e-5 after two steps (MIRA's 5-iteration fixed point amplifies
    # it most). A wrong reduction moves weights by the step size, ~1e-2 here.
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=1e-3, atol=5e-5,
                                   err_msg=path)


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip_through_a_file(name, tmp_path):
    model, _ = harness.train(name, tf.distribute.get_strategy(), num_batches=1)
    path = str(tmp_path / "method.weights.h5")
    model.save_weights(path)
    restored = harness.build(name, seed=1)
    restored.load_weights(path)
    for path_, value in harness.weights_by_path(model).items():
        np.testing.assert_array_equal(harness.weights_by_path(restored)[path_], value)
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(restored(images), model(images), rtol=1e-6)
