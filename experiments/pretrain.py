"""One pre-training run from plain arguments: what train.py and benchmark.py share.

Builds the strategy, data, views, backbone, method and optimizer; resumes from
the last checkpoint in `model_dir`; trains with `fit`; evaluates with kNN; and
returns the run's results as a dict (the JSON line of train.py).
"""

import dataclasses
import inspect
import json
import os
import time

import keras
import tensorflow as tf

from keras_ssl import augment, backbones, distribute, methods
from keras_ssl import data as ssl_data
from keras_ssl.checkpointing import EpochCheckpoint
from keras_ssl.distribute.strategy import is_chief, worker_directory
from keras_ssl.evaluation import KnnMonitor
from keras_ssl.export import export_encoder
from keras_ssl.fault_tolerance import InjectNaN, StopOnNonFiniteLoss, enable_determinism
from keras_ssl.optimizers import LARS, SGD, WarmupCosine

_EVAL_BATCH_SIZE = 512
# The run's arguments, beside its checkpoints, so evaluate.py and export.py can
# rebuild the encoder from a model_dir alone.
RUN_CONFIG_FILE = "config.json"


class EpochTimer(keras.callbacks.Callback):
    """Wall time spent in training epochs, without the kNN evaluations."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.epochs = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._start
        self.epochs += 1


def load_training_data(spec, *, image_size, train_per_class, imbalance_ratio,
                       cache_limit_bytes=2**31):
    """The source, and its training split reduced to the requested subset.

    Files are listed first and only the kept subset is decoded (into memory
    when it fits in `cache_limit_bytes`): the CPU protocol keeps 10,000 of
    50,000 training images, so this reads a fifth of the folder.
    Returns (source, train, number of unreadable files skipped).
    """
    source = ssl_data.load_source(spec, image_size=image_size, cache_limit_bytes=0)
    train = source.train
    if imbalance_ratio:
        train = ssl_data.long_tail_subset(train, imbalance_ratio,
                                          max_per_class=train_per_class or None)
    elif train_per_class:
        train = ssl_data.per_class_subset(train, train_per_class)
    train, skipped_train = _decode_if_it_fits(train, image_size, cache_limit_bytes)
    test, skipped_test = _decode_if_it_fits(source.test, image_size, cache_limit_bytes)
    source = dataclasses.replace(source, test=test)
    return source, train, len(source.skipped_files) + skipped_train + skipped_test


def _decode_if_it_fits(split, image_size, cache_limit_bytes):
    """Decodes a streamed split into memory when it fits; returns (split, files skipped)."""
    if split is None or split.paths is None or (
            len(split) * image_size**2 * 3 > cache_limit_bytes):
        return split, 0
    decoded = ssl_data.decode_split(split, image_size)
    return decoded, len(split) - len(decoded)


def _write_run_config(model_dir, run_config):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, RUN_CONFIG_FILE), "w") as file:
        json.dump(run_config, file, indent=1, sort_keys=True, default=repr)


def make_optimizer(name, *, learning_rate, weight_decay, total_steps, warmup_steps):
    schedule = WarmupCosine(learning_rate, total_steps=total_steps,
                            warmup_steps=warmup_steps)
    if name == "sgd":
        return SGD(schedule, momentum=0.9, weight_decay=weight_decay)
    if name == "lars":
        return LARS(schedule, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    raise ValueError(f"--optimizer={name!r} is not one of sgd, lars, adamw.")


def _method_kwargs(method_name, kwargs, *, num_examples, total_steps, steps_per_epoch=None,
                   labels=None):
    """Adds the run-dependent arguments a method's constructor asks for.

    `labels` (the training split's classes) go only to methods that take
    them, i.e. the supervised ones (`cmsf_supervised`).
    """
    parameters = inspect.signature(methods.METHODS[method_name].__init__).parameters
    kwargs = dict(kwargs)
    if "num_examples" in parameters:
        kwargs.setdefault("num_examples", num_examples)
    if "total_steps" in parameters:
        kwargs.setdefault("total_steps", total_steps)
    if "steps_per_epoch" in parameters and steps_per_epoch is not None:
        kwargs.setdefault("steps_per_epoch", steps_per_epoch)
    if "labels" in parameters and labels is not None:
        kwargs.setdefault("labels", labels)
    return kwargs


def make_views(method, *, image_size, blur, view_kwargs=None):
    """The view recipe `method` trains on, sized to `image_size`."""
    recipe_name = methods.METHODS[method].recipe_name
    # Multi-crop recipes are sized by their global crops (`global_size`).
    recipe_parameters = inspect.signature(augment.RECIPES[recipe_name]).parameters
    size_key = "image_size" if "image_size" in recipe_parameters else "global_size"
    return augment.get_recipe(recipe_name, blur=blur,
                              **{size_key: image_size, **(view_kwargs or {})})


def make_backbone(method, backbone, *, image_size, width_multiplier, zero_init_residual=False):
    """The encoder a run of `method` trains (and evaluate.py/export.py rebuild).

    Methods whose views come in several sizes (multi-crop: SwAV, MIRA) get a
    backbone built to accept any image size, rather than one relaxed after the
    fact, so the exported `encoder.keras` accepts any size too.
    """
    return backbones.get(backbone, image_size=image_size,
                         width_multiplier=width_multiplier,
                         any_image_size=methods.METHODS[method].mixed_image_sizes,
                         zero_init_residual=zero_init_residual)


def build_method(strategy, *, method, backbone, image_size, width_multiplier,
                 method_kwargs, num_examples, total_steps, optimizer, learning_rate,
                 weight_decay, warmup_steps, zero_init_residual=False,
                 steps_per_epoch=None, labels=None,
                 mixed_precision=False, jit_compile=False):
    """The compiled method with a built optimizer, every variable under `strategy`."""
    with strategy.scope():
        encoder = make_backbone(method, backbone, image_size=image_size,
                                width_multiplier=width_multiplier,
                                zero_init_residual=zero_init_residual)
        model = methods.get(method, encoder=encoder, **_method_kwargs(
            method, method_kwargs or {}, num_examples=num_examples,
            total_steps=total_steps, steps_per_epoch=steps_per_epoch, labels=labels))
        opt = make_optimizer(optimizer, learning_rate=learning_rate,
                             weight_decay=weight_decay, total_steps=total_steps,
                             warmup_steps=warmup_steps)
        if mixed_precision:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        model.compile(optimizer=opt, jit_compile=jit_compile)
        opt.build(model.update_variables())
    return model


def _adapt_to_multi_worker(model, strategy):
    """Works around two failures of Keras 3 `fit` under MultiWorkerMirroredStrategy.

    Single-process strategies are left alone. Across workers:

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
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    unbuilt = [layer.name for layer in model._flatten_layers() if not layer.built]
    if unbuilt or not model.optimizer.built:
        raise RuntimeError(f"multi-worker training needs a fully built model; unbuilt: {unbuilt}")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    train_step = model.train_step

    def multi_worker_train_step(data):
        logs = train_step(data)
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    model.train_step = multi_worker_train_step


def pretrain(*, method, data, backbone="resnet18", width_multiplier=1.0,
             zero_init_residual=False, image_size=32,
             train_per_class=0, imbalance_ratio=0.0, epochs=10, global_batch_size=256,
             optimizer="sgd", learning_rate=0.12, weight_decay=5e-4, warmup_epochs=0,
             blur=True, model_dir="runs", seed=0, strategy="default", cpu_replicas=0,
             tpu="", knn_every_epochs=0, knn_k=200, knn_temperature=0.1,
             mixed_precision=False, jit_compile=False, export_dir=None, verbose=1,
             deterministic=False, inject_nan_at_step=0, method_kwargs=None,
             view_kwargs=None):
    """Trains `method` on `data`; returns a dict of results (see train.py).

    Returns None on the non-chief workers of a multi-worker job: they train
    in lockstep with the chief but write nothing to `model_dir`.
    Raises `keras_ssl.fault_tolerance.NonFiniteLossError` when the loss
    becomes NaN or Inf; the checkpoints then end at the last good epoch.
    """
    run_config = dict(locals())  # the arguments only: nothing else is bound yet
    if method not in methods.METHODS:
        raise ValueError(f"--method={method!r} is not one of {', '.join(methods.available())}.")
    strategy_ = distribute.make_strategy(strategy, cpu_replicas=cpu_replicas,
                                         tpu_address=tpu)
    chief = is_chief(strategy_)
    if chief:
        _write_run_config(model_dir, run_config)
    if deterministic:
        enable_determinism(seed)
    else:
        keras.utils.set_random_seed(seed)
    if mixed_precision:
        keras.mixed_precision.set_global_policy(
            "mixed_bfloat16" if strategy == "tpu" else "mixed_float16")
    source, train, skipped_files = load_training_data(
        data, image_size=image_size, train_per_class=train_per_class,
        imbalance_ratio=imbalance_ratio)
    steps = ssl_data.steps_per_epoch(train, global_batch_size)
    total_steps = steps * epochs
    views = make_views(method, image_size=image_size, blur=blur, view_kwargs=view_kwargs)

    model = build_method(
        strategy_, method=method, backbone=backbone, image_size=image_size,
        width_multiplier=width_multiplier, zero_init_residual=zero_init_residual,
        method_kwargs=method_kwargs,
        num_examples=len(train), total_steps=total_steps, optimizer=optimizer,
        learning_rate=learning_rate, weight_decay=weight_decay,
        warmup_steps=steps * warmup_epochs, steps_per_epoch=steps, labels=train.labels,
        mixed_precision=mixed_precision,
        jit_compile=jit_compile)
    _adapt_to_multi_worker(model, strategy_)

    # Every worker restores from the chief's directory (shared storage on a
    # real cluster) and takes part in each save, but only the chief's lands there.
    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    checkpoint = EpochCheckpoint(model, checkpoint_dir,
                                 write_directory=worker_directory(checkpoint_dir, strategy_))
    initial_epoch = checkpoint.restore_latest()
    timer = EpochTimer()
    # The NaN guard comes before the checkpoint: it raises at the bad batch,
    # so no on_epoch_end (and no checkpoint) follows a non-finite step.
    callbacks = [InjectNaN(inject_nan_at_step)] if inject_nan_at_step else []
    callbacks += [StopOnNonFiniteLoss(), timer, checkpoint]
    monitor = None
    if chief and source.num_classes and source.test is not None:
        monitor = KnnMonitor(
            lambda: model.encoder,
            ssl_data.eval_dataset(train, batch_size=_EVAL_BATCH_SIZE, image_size=image_size),
            ssl_data.eval_dataset(source.test, batch_size=_EVAL_BATCH_SIZE,
                              image_size=image_size),
            num_classes=source.num_classes, every_epochs=knn_every_epochs,
            k=knn_k, temperature=knn_temperature)
        callbacks.append(monitor)
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")))

    history = {}
    if initial_epoch < epochs:
        dataset = ssl_data.distributed_train_dataset(
            strategy_, train, global_batch_size=global_batch_size, view_fn=views,
            seed=seed, start_epoch=initial_epoch, epochs=epochs, image_size=image_size)
        history = model.fit(dataset, epochs=epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=steps, callbacks=callbacks,
                            verbose=verbose, shuffle=False).history
    if not chief:
        return None
    knn_top1 = None
    if monitor is not None:
        # A run resumed after its last epoch trains nothing: evaluate now.
        result = monitor.last_result or monitor.evaluate()
        knn_top1 = result["top1"]
    saved_model = None
    if export_dir:
        saved_model = export_encoder(model.encoder, export_dir, image_size=image_size)
    images_seen = timer.epochs * steps * global_batch_size
    return {
        "method": method,
        "epochs": epochs,
        "epochs_run": timer.epochs,
        "initial_epoch": initial_epoch,
        "train_images": len(train),
        "global_batch_size": global_batch_size,
        "replicas": strategy_.num_replicas_in_sync,
        "skipped_files": skipped_files,
        "loss": float(history["loss"][-1]) if history.get("loss") else None,
        "knn_top1": knn_top1,
        "train_seconds": round(timer.seconds, 2),
        "train_images_per_s": round(images_seen / timer.seconds, 1) if timer.seconds else None,
        "model_dir": model_dir,
        "saved_model": saved_model,
    }

