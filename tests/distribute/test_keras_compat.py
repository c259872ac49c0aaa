"""adapt_fit_to_multi_worker: the private Keras hooks it patches are checked before use."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones, methods
from keras_ssl.distribute import adapt_fit_to_multi_worker, check_keras_hooks, keras_compat
from keras_ssl.methods import RunContext
from keras_ssl.optimizers import SGD

TRAINER = importlib.import_module("keras.src.backend.tensorflow.trainer")


def _simclr(build_optimizer=True):
    model = methods.get("simclr", encoder=backbones.get("tiny", image_size=16),
                        run=RunContext(num_examples=8, steps_per_epoch=1, epochs=1))
    model.compile(optimizer=SGD(0.1, momentum=0.9))
    if build_optimizer:
        model.optimizer.build(model.update_variables())
    return model


def _batch():
    rng = np.random.default_rng(0)
    return {"views": tuple(tf.constant(rng.random((4, 16, 16, 3), dtype=np.float32))
                           for _ in range(2)),
            "index": tf.range(4, dtype=tf.int64), "label": tf.zeros([4], tf.int64)}


@pytest.fixture
def as_multi_worker(monkeypatch):
    """Makes any strategy count as MultiWorkerMirroredStrategy (no cluster in a unit test)."""
    monkeypatch.setattr(keras_compat, "_is_multi_worker", lambda strategy: True)


def _defining_class(model, name):
    return next(klass for klass in type(model).__mro__ if name in vars(klass))


def test_the_installed_keras_has_every_hook():
    check_keras_hooks(_simclr())


def test_adapted_step_skips_the_symbolic_build_and_returns_vector_logs(as_multi_worker):
    model = _simclr()
    assert adapt_fit_to_multi_worker(model, tf.distribute.get_strategy()) is model
    assert model._maybe_symbolic_build(iterator=None) is None
    logs = model.train_step(_batch())
    assert set(logs) >= {"loss"}
    for name, value in logs.items():
        assert value.shape == (1,), name
    assert np.isfinite(logs["loss"].numpy()).all()


@pytest.mark.parametrize("hook", ["_maybe_symbolic_build", "reduce_per_replica",
                                  "_flatten_layers", "changed_signature"])
def test_a_missing_hook_fails_naming_it_and_the_keras_version(hook, monkeypatch,
                                                              as_multi_worker):
    model = _simclr()
    if hook == "reduce_per_replica":
        monkeypatch.delattr(TRAINER, "reduce_per_replica")
    elif hook == "changed_signature":
        hook = "_maybe_symbolic_build"
        monkeypatch.setattr(_defining_class(model, hook), hook, lambda self, batch: None)
    else:
        monkeypatch.delattr(_defining_class(model, hook), hook)
    with pytest.raises(RuntimeError) as error:
        adapt_fit_to_multi_worker(model, tf.distribute.get_strategy())
    message = str(error.value)
    assert f"Keras {keras.__version__}" in message and hook in message
    assert "train_step" not in vars(model)  # nothing was patched


def test_single_process_strategies_are_left_alone_and_unchecked(monkeypatch):
    model = _simclr()
    monkeypatch.delattr(TRAINER, "reduce_per_replica")
    adapt_fit_to_multi_worker(model, tf.distribute.get_strategy())
    assert "train_step" not in vars(model) and "_maybe_symbolic_build" not in vars(model)


def test_an_unbuilt_optimizer_is_refused(as_multi_worker):
    with pytest.raises(RuntimeError, match="fully built"):
        adapt_fit_to_multi_worker(_simclr(build_optimizer=False),
                                  tf.distribute.get_strategy())
