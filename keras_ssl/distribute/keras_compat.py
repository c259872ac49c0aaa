"""Keras 3 `fit` under MultiWorkerMirroredStrategy: two workarounds, and a check that they apply.

Both workarounds replace or lean on private parts of Keras' TensorFlow
trainer. Private code changes without notice, so before touching anything
`adapt_fit_to_multi_worker` checks that each part it relies on is still
there and, when one is gone, stops with an error naming it and the installed
Keras version, rather than training with a patch that no longer does what
it says.
"""

import importlib
import inspect

import keras
import tensorflow as tf

# Where Keras 3 keeps the TensorFlow trainer and its log reduction.
_TRAINER_MODULE = "keras.src.backend.tensorflow.trainer"
# The version the workarounds were written and tested against.
_TESTED_KERAS = "3.15"


def _has_symbolic_build(model):
    build = getattr(model, "_maybe_symbolic_build", None)
    if not callable(build):
        return False
    parameters = inspect.signature(build).parameters
    # Keras calls it with one of these keywords; the no-op must accept both.
    return "iterator" in parameters and "data_batch" in parameters


def _has_log_reduction(model):
    try:
        trainer = importlib.import_module(_TRAINER_MODULE)
    except ImportError:
        return False
    return callable(getattr(trainer, "reduce_per_replica", None))


def _has_flatten_layers(model):
    return callable(getattr(model, "_flatten_layers", None))


# (hook, what keras_ssl uses it for, check)
_HOOKS = (
    ("Model._maybe_symbolic_build(iterator=, data_batch=)",
     "fit's symbolic build before the first step, replaced by a no-op",
     _has_symbolic_build),
    (f"{_TRAINER_MODULE}.reduce_per_replica",
     "fit's reduction of the step logs, strategy.reduce('MEAN', v, axis=0) across workers",
     _has_log_reduction),
    ("Model._flatten_layers()",
     "the check that every layer is built before fit",
     _has_flatten_layers),
)


def check_keras_hooks(model):
    """Raises RuntimeError, naming the Keras version, when a hook the workarounds need is gone."""
    missing = [f"{name} ({use})" for name, use, present in _HOOKS if not present(model)]
    if missing:
        raise RuntimeError(
            f"Multi-worker training in keras_ssl patches private parts of Keras that "
            f"Keras {keras.__version__} no longer has: {'; '.join(missing)}. The patches "
            f"were written for Keras {_TESTED_KERAS}: install that version, or update "
            "keras_ssl/distribute/keras_compat.py for this one.")


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def adapt_fit_to_multi_worker(model, strategy):
    """Lets Keras 3 `model.fit` train a keras_ssl method under MultiWorkerMirroredStrategy.

    Call it after `compile` and after building the optimizer, before `fit`.
    Single-process strategies (default, mirrored, TPU) are left alone and
    nothing is checked. Across workers it works around two failures:

    1. Before its first step `fit` averages one distributed batch with
       `strategy.reduce` to build the model symbolically; across workers that
       reduce takes only a single tensor, and our batches are dicts ("Attempt
       to convert a value ({'views': (PerReplica..."). Methods create every
       variable at construction and the optimizer is built before `fit`, so
       the build has nothing to do: check that, and skip it.
    2. `fit` averages the step's logs with `strategy.reduce("MEAN", v,
       axis=0)`, which fails on scalars ("Invalid reduction dimension 0 for
       input with 0 dimensions", tensorflow/tensorflow#72388). Returning each
       log as a 1-element vector makes that the mean over replicas, a scalar.

    (Gathering input tensors that have no device across workers is handled
    where the gather is, in `keras_ssl.distribute.all_gather`.)

    Args:
        model: a compiled `keras_ssl.methods.Method` whose optimizer is built.
        strategy: the strategy `model` was built under.

    Returns:
        `model`, adapted in place.

    Raises:
        RuntimeError: a private Keras hook is missing (the message names the
            installed Keras version), or the model is not fully built.
    """
    if not _is_multi_worker(strategy):
        return model
    check_keras_hooks(model)
    unbuilt = [layer.name for layer in model._flatten_layers() if not layer.built]
    if unbuilt or not model.optimizer.built:
        raise RuntimeError(f"multi-worker training needs a fully built model; unbuilt: {unbuilt}")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    train_step = model.train_step

    def multi_worker_train_step(data):
        logs = train_step(data)
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    model.train_step = multi_worker_train_step
    return model
