"""`pretrain`: one self-supervised training run, resumable, from a `PretrainConfig`.

Builds the strategy, data, views, backbone, method and optimizer; resumes from
the last checkpoint in `model_dir` (an epoch or a step checkpoint); trains
with `fit` (stopping at the first non-finite loss, or at SIGTERM after
saving the step); evaluates with kNN; exports the encoder if asked; and
returns the run's results as a dict.

Resuming inside an epoch: Keras' `fit` only starts at an epoch boundary
(`initial_epoch`) and runs `steps_per_epoch` steps in every epoch. A run
resumed at step k of epoch e therefore makes two `fit` calls: one for the
last steps - k steps of epoch e, on a dataset that starts at batch k
(`train_dataset(start_step=k)`), then one for the epochs after it. The
callbacks see the first call as epoch e with fewer steps: the epoch feature
pass of epoch e is not run again (it ran before the interruption, and what it
set is in the checkpoint), and the kNN monitor only joins it when epoch e is
one it evaluates anyway (its "last epoch" rule would otherwise evaluate the
end of the first call).
"""

import dataclasses
import functools
import os
from collections.abc import Mapping

import keras
import tensorflow as tf

from keras_ssl import distribute, methods
from keras_ssl import data as ssl_data
from keras_ssl.checkpointing import STEP_CHECKPOINTS, EpochCheckpoint
from keras_ssl.distribute.strategy import is_chief, task_of, worker_directory
from keras_ssl.distribute.worker_health import stop_on_worker_loss
from keras_ssl.evaluation import KnnMonitor
from keras_ssl.export import export_encoder
from keras_ssl.fault_tolerance import InjectNaN, StopOnNonFiniteLoss, enable_determinism
from keras_ssl.methods import RunContext
from keras_ssl.preemption import PreemptionCheckpoint, SendSigtermAtStep
from keras_ssl.training import background
from keras_ssl.training.build import build_method, make_views
from keras_ssl.training.clustering_report import clustering_report
from keras_ssl.training.config import PretrainConfig, write_run_config
from keras_ssl.training.data import load_training_data
from keras_ssl.training.feature_pass import EpochFeaturePass
from keras_ssl.training.timer import EpochTimer
from keras_ssl.training.trained_run import load_encoder_weights

# Batch size of the un-augmented passes over the data (kNN, epoch features).
EVAL_BATCH_SIZE = 512


def pretrain(config=None, /, **overrides):
    """Trains a self-supervised method; returns a dict of results.

    Rerunning with the same `model_dir` resumes from its newest checkpoint
    (weights, optimizer, EMA targets, banks, queues, data position: epoch
    and, after a step checkpoint, step), and a run whose last epoch is
    already saved trains nothing and evaluates. The arguments are saved as
    `model_dir/config.json`, from which `restore_encoder` rebuilds the
    encoder. `model_dir` may be any `tf.io.gfile` path (`gs://`, `ram://`).

    Args:
        config: a `PretrainConfig` (or a dict of its fields). Omitted, the
            keyword arguments are the config.
        **overrides: `PretrainConfig` fields; with `config` they replace its
            values.

    Returns:
        A dict with `method`, `epochs`, `epochs_run`, `initial_epoch`,
        `initial_step` (global steps done when this call started),
        `steps_run`, `train_images`, `global_batch_size`, `replicas`,
        `skipped_files`, `loss` (last epoch's mean, over the steps this call
        ran), `knn_top1` (None without labelled train and test splits), `test_top1`
        (a semi-supervised method's classifier on the test split; None for the
        others), `knn_top1_background_shifted` (with `shifted_knn`),
        `nmi`, `ari` and `cluster_acc` (only for methods with
        E-step labels, `keras_ssl.training.clustering_report`), `train_seconds`,
        `train_images_per_s`, `model_dir` and `saved_model` (None without
        `export_dir`).
        None on the non-chief workers of a multi-worker job: they train in
        lockstep with the chief but write nothing to `model_dir`.

    Raises:
        keras_ssl.fault_tolerance.NonFiniteLossError: the loss became NaN or
            Inf; the checkpoints then end at the last good epoch (or step).
        keras_ssl.preemption.Preempted: the process got SIGTERM during
            training; the step in flight finished and was checkpointed, and
            calling `pretrain` again resumes there.
        keras_ssl.distribute.worker_health.WorkerLostError: another worker of
            a multi-worker job was lost; rerunning every worker resumes from
            the chief's last checkpoint.
        ValueError: an unknown method, strategy or optimizer, or checkpoints
            in `model_dir` of another model.

    Example:
    >>> result = pretrain(method="simclr", data="npz:cifar10.npz", backbone="tiny",
    ...                   epochs=2, global_batch_size=64, model_dir="/tmp/simclr")
    >>> result["knn_top1"]
    """
    config = _as_config(config, overrides)
    if config.method not in methods.METHODS:
        raise ValueError(f"--method={config.method!r} is not one of "
                         f"{', '.join(methods.available())}.")
    strategy = distribute.make_strategy(config.strategy, cpu_replicas=config.cpu_replicas,
                                        tpu_address=config.tpu)
    chief = is_chief(strategy)
    if chief:
        write_run_config(config.model_dir, config)
    _seed_and_precision(config)
    source, train, skipped_files = load_training_data(
        config.data, image_size=config.image_size, train_per_class=config.train_per_class,
        imbalance_ratio=config.imbalance_ratio, tfds_data_dir=config.tfds_data_dir)
    steps = ssl_data.steps_per_epoch(train, config.global_batch_size)
    run = RunContext(num_examples=len(train), steps_per_epoch=steps, epochs=config.epochs,
                     seed=config.seed)
    views = make_views(config.method, image_size=config.image_size, blur=config.blur,
                       view_kwargs=config.view_kwargs)
    masks, mask_source = None, None
    if config.background or config.shifted_knn:
        mask_source = background.mask_source(config.saliency)
    if config.background:
        views = background.with_background(
            views, background.background_config(config.method, config.background,
                                                config.background_probabilities),
            config.method)
        masks = background.split_masks(train, mask_source, model_dir=config.model_dir,
                                       data=config.data, image_size=config.image_size)
    labeled = _labeled_stream(config, train)
    method_kwargs = dict(config.method_kwargs or {})
    if config.probe:
        if not source.num_classes:
            raise ValueError(f"--probe needs labels, and --data={config.data} has none.")
        method_kwargs.setdefault("probe_classes", source.num_classes)
    model = build_method(
        strategy, method=config.method, backbone=config.backbone,
        image_size=config.image_size, width_multiplier=config.width_multiplier,
        zero_init_residual=config.zero_init_residual,
        synchronized_bn=config.synchronized_bn, split_batch_norm=config.split_batch_norm,
        method_kwargs=method_kwargs,
        run=run, optimizer=config.optimizer, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_steps=steps * config.warmup_epochs,
        lr_schedule=config.lr_schedule, nesterov=config.nesterov,
        mixed_precision=config.mixed_precision, jit_compile=config.jit_compile,
        fused_batch_norm=config.fused_batch_norm,
        encoder_init=_encoder_init(config))
    distribute.adapt_fit_to_multi_worker(model, strategy)
    if getattr(views, "background", None) is not None and views.background.swaps and not (
            model.accepts_extra_negatives):
        raise ValueError(f"--background=swaps adds an extra negative per anchor, and "
                         f"{config.method} has no negatives to add it to; use rm,random.")

    # Every worker restores from the chief's directory (shared storage on a
    # real cluster) and takes part in each save, but only the chief's lands there.
    checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
    checkpoint = EpochCheckpoint(model, checkpoint_dir,
                                 write_directory=worker_directory(checkpoint_dir, strategy),
                                 every_steps=config.checkpoint_every_steps,
                                 steps_per_epoch=steps)
    initial_epoch = checkpoint.restore_latest()
    initial_step = int(checkpoint.epoch_step.numpy())  # of epoch initial_epoch
    initial_global_step = checkpoint.global_step
    preemption = PreemptionCheckpoint(checkpoint, _cluster_resolver(strategy))
    timer = EpochTimer()
    train_eval = ssl_data.eval_dataset(train, batch_size=EVAL_BATCH_SIZE,
                                       image_size=config.image_size)
    monitor = None
    if chief and source.num_classes and source.test is not None:
        monitor = KnnMonitor(
            lambda: model.encoder, train_eval,
            ssl_data.eval_dataset(source.test, batch_size=EVAL_BATCH_SIZE,
                                  image_size=config.image_size),
            num_classes=source.num_classes, every_epochs=config.knn_every_epochs,
            k=config.knn_k, temperature=config.knn_temperature)
    feature_pass = EpochFeaturePass(train_eval)
    callbacks = _callbacks(config, chief=chief, timer=timer, checkpoint=checkpoint,
                           preemption=preemption, feature_pass=feature_pass, monitor=monitor)
    # CLIM: the one place where features reach back into the pipeline.
    neighbours = model.neighbour_mixing(views) if hasattr(model, "neighbour_mixing") else None

    def dataset_from(start_epoch, start_step, end_epoch):
        return ssl_data.distributed_train_dataset(
            strategy, train, global_batch_size=config.global_batch_size, view_fn=views,
            seed=config.seed, start_epoch=start_epoch, start_step=start_step,
            epochs=end_epoch, image_size=config.image_size, labeled=labeled,
            hide_labels=config.hide_labels, neighbours=neighbours, masks=masks)

    def fit(start_epoch, start_step, end_epoch, fit_callbacks):
        return model.fit(dataset_from(start_epoch, start_step, end_epoch), epochs=end_epoch,
                         initial_epoch=start_epoch, steps_per_epoch=steps - start_step,
                         callbacks=fit_callbacks, verbose=config.verbose,
                         shuffle=False).history

    history = {}
    if initial_epoch < config.epochs:
        with preemption.watching(), stop_on_worker_loss(strategy, checkpoint_dir):
            if initial_step:
                history = fit(initial_epoch, initial_step, initial_epoch + 1, _rest_of_epoch(
                    callbacks, initial_epoch + 1, feature_pass=feature_pass, monitor=monitor,
                    epochs=config.epochs))
            if initial_epoch + bool(initial_step) < config.epochs:
                rest = fit(initial_epoch + bool(initial_step), 0, config.epochs, callbacks)
                history = {key: history.get(key, []) + rest.get(key, [])
                           for key in {**history, **rest}}
    # Every worker takes part in the final E-step's feature pass.
    with stop_on_worker_loss(strategy, checkpoint_dir):
        clustering = clustering_report(model, feature_pass, train.labels, epochs=config.epochs)
    if not chief:
        return None
    knn_top1 = None
    if monitor is not None:
        # A run resumed after its last epoch trains nothing: evaluate now.
        knn_top1 = (monitor.last_result or monitor.evaluate())["top1"]
    test_top1 = None
    if hasattr(model, "test_top1") and source.test is not None and source.num_classes:
        # A semi-supervised method's own classifier (its EMA copy where it keeps one).
        test_top1 = model.test_top1(ssl_data.eval_dataset(
            source.test, batch_size=EVAL_BATCH_SIZE, image_size=config.image_size))
    shifted = {}
    if config.shifted_knn and monitor is not None:
        shifted["knn_top1_background_shifted"] = background.shifted_knn_top1(
            model.encoder, train_eval, source.test, mask_source, model_dir=config.model_dir,
            data=config.data, image_size=config.image_size, num_classes=source.num_classes,
            k=config.knn_k, temperature=config.knn_temperature, batch_size=EVAL_BATCH_SIZE)
    saved_model = None
    if config.export_dir:
        saved_model = export_encoder(model.encoder, config.export_dir,
                                     image_size=config.image_size)
    images_seen = timer.steps * config.global_batch_size
    return {
        "method": config.method,
        "epochs": config.epochs,
        "epochs_run": timer.epochs,
        "initial_epoch": initial_epoch,
        "initial_step": initial_global_step,
        "steps_run": timer.steps,
        "train_images": len(train),
        "global_batch_size": config.global_batch_size,
        "replicas": strategy.num_replicas_in_sync,
        "skipped_files": skipped_files,
        "loss": float(history["loss"][-1]) if history.get("loss") else None,
        "probe_top1": (float(history["probe_top1"][-1]) if history.get("probe_top1")
                       else None),
        "labeled_images": len(labeled) if labeled is not None else 0,
        "knn_top1": knn_top1,
        "test_top1": test_top1,
        **shifted,
        **clustering,
        "train_seconds": round(timer.seconds, 2),
        "train_images_per_s": (round(images_seen / timer.seconds, 1)
                               if timer.seconds else None),
        "model_dir": config.model_dir,
        "saved_model": saved_model,
    }


def _encoder_init(config):
    """Loads `init_encoder`'s weights into a fresh encoder; None without one.

    A resumed run skips it: its own checkpoint, restored next, holds the
    encoder, and reading the other run again would only cost time.
    """
    if not config.init_encoder:
        return None
    checkpoints = os.path.join(config.model_dir, "checkpoints")
    if any(tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index"))
           for directory in (checkpoints, os.path.join(checkpoints, STEP_CHECKPOINTS))):
        return None
    return functools.partial(load_encoder_weights, path=config.init_encoder)


def _labeled_stream(config, train):
    """The labeled stream of the run's label budget, or None without one."""
    budgets = {"labels_per_class": config.labels_per_class or None,
               "fraction": config.label_fraction or None,
               "indices": config.label_indices or None}
    given = {name: value for name, value in budgets.items() if value is not None}
    if not given:
        if config.labeled_batch_size:
            raise ValueError("--labeled_batch_size needs a label budget: --labels_per_class, "
                             "--label_fraction or --label_indices.")
        return None
    if len(given) > 1:
        raise ValueError("Give one label budget: --labels_per_class, --label_fraction or "
                         f"--label_indices (got {', '.join(sorted(given))}).")
    return ssl_data.LabeledStream.from_budget(
        train, config.labeled_batch_size or config.global_batch_size, seed=config.seed,
        **given)


def _as_config(config, overrides):
    if config is None:
        return PretrainConfig(**overrides)
    if isinstance(config, Mapping):
        config = PretrainConfig.from_dict(config)
    if not isinstance(config, PretrainConfig):
        raise TypeError(f"pretrain takes a PretrainConfig or a dict, got {type(config).__name__}.")
    return dataclasses.replace(config, **overrides)


def _seed_and_precision(config):
    """Global seeds (and deterministic ops if asked) and the mixed-precision policy."""
    if config.deterministic:
        enable_determinism(config.seed)
    else:
        keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_precision_policy(config.strategy))


def mixed_precision_policy(strategy_name):
    """float16 where it is fast (GPUs), bfloat16 elsewhere (TPUs, and CPUs: oneDNN runs
    bfloat16 natively where the CPU has avx512_bf16 or AMX, float16 only emulated)."""
    if strategy_name != "tpu" and tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16"


def _cluster_resolver(strategy):
    """The cluster resolver of a multi-worker run, where TensorFlow's preemption
    handler coordinates the workers; None where one process trains (TPU
    single-host runs included: the handler does nothing on GCE TPU VMs)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            task_of(strategy)[0] is not None):
        return strategy.cluster_resolver
    return None


class _EpochFeaturesRestored(keras.callbacks.Callback):
    """Stands in for the `EpochFeaturePass` in the rest of an epoch resumed mid-way.

    That epoch's pass ran before the interruption, with the weights of the
    epoch's start, and the state it set (clusters, neighbour tables) is in the
    step checkpoint; running it again would use later weights and differ
    from the uninterrupted run.
    """

    provides_epoch_features = True  # what Method.fit checks for


def _rest_of_epoch(callbacks, epochs_done, *, feature_pass, monitor, epochs):
    """The callbacks of the `fit` that finishes an epoch resumed mid-way.

    The monitor takes part only if it evaluates after that epoch in an
    uninterrupted run; in this `fit`, it would take the epoch for the last one.
    """
    periodic = monitor is not None and monitor.every_epochs > 0 and (
        epochs_done % monitor.every_epochs == 0)
    keep_monitor = periodic or epochs_done == epochs
    return [_EpochFeaturesRestored() if callback is feature_pass else callback
            for callback in callbacks if callback is not monitor or keep_monitor]


def _callbacks(config, *, chief, timer, checkpoint, preemption, feature_pass, monitor):
    """The fit callbacks, in the order their epoch hooks must run."""
    # The NaN guard comes before the checkpoint: it raises at the bad batch,
    # so no on_epoch_end (and no checkpoint) follows a non-finite step.
    callbacks = [InjectNaN(config.inject_nan_at_step)] if config.inject_nan_at_step else []
    if config.sigterm_at_step:
        callbacks.append(SendSigtermAtStep(config.sigterm_at_step))
    # The feature pass runs at epoch begin, after the timer starts (it is part
    # of training) and before the checkpoint, so the state it sets (clusters,
    # neighbour tables) is saved with the epoch. It does nothing unless the
    # method asks for epoch features. The preemption callback follows the
    # checkpoint: it saves the step counters the checkpoint has just advanced.
    callbacks += [StopOnNonFiniteLoss(), timer, feature_pass, checkpoint, preemption]
    if monitor is not None:
        callbacks.append(monitor)
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(config.model_dir, "logs"),
                                                     profile_batch=config.profile_steps or 0))
    return callbacks
