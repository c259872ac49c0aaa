"""`continual_pretrain`: T class-incremental tasks in sequence (NNCSL), accuracy after each.

The official loop (kangzhiq/NNCSL `src/nncsl_train.py:333-814`), with the
library's pieces:

- the classes are cut into tasks (`keras_ssl.data.task_splits.TaskSplit`);
  task t's unlabelled stream holds its own classes only (`setting: current`);
- its labelled stream is the replay buffer plus the task's own labels,
  `supports_per_class` images of every seen class in each step, class-balanced
  (`ClassBalancedSampler`), so its batch grows with the seen classes;
- the model is told the task (`start_task`: class masks, teacher copy) before
  the task's `fit`;
- the learning rate restarts at every task (warm-up from `start_lr` to `lr`,
  cosine to `final_lr`, the official `WarmupCosineSchedule` rebuilt per task,
  :442-449), while the optimizer's momentum carries over;
- after the task: the online classifier's top-1 on the test images of every
  class seen so far (:818-848), then the buffer update (`make_buffer_lst`).

Checkpoints and resume, at task granularity: after every finished task the
method (teacher, class masks and BatchNorm statistics included), its
optimizer (step counter, momentum) and the count of finished tasks are saved
as `model_dir/checkpoints/ckpt-N` (N = tasks done), and the results so far
with every task's replay buffer as `model_dir/checkpoints/continual.json`.
Calling `continual_pretrain` again with the same `model_dir` (and the same
arguments) resumes at the first unfinished task; a run whose tasks are all
done trains nothing and returns the saved results. A task interrupted
mid-way is trained again from its start. `model_dir/config.json` is written
as `pretrain` writes it, so `restore_encoder`, evaluate and export read a
continual run's folder as any other.

Not done here (left to `pretrain`'s machinery when continual runs need it):
step checkpoints inside a task, preemption handling, kNN monitoring, export.
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import augment, backbones, distribute, methods
from keras_ssl import data as ssl_data
from keras_ssl.data.replay_buffer import labeled_indices_for_task, update_buffer
from keras_ssl.data.task_splits import TaskSplit
from keras_ssl.distribute.strategy import is_chief, worker_directory
from keras_ssl.fault_tolerance import enable_determinism
from keras_ssl.methods import RunContext
from keras_ssl.optimizers import LARS, SGD
from keras_ssl.training.config import write_run_config
from keras_ssl.training.data import load_training_data
from keras_ssl.training.run import _as_config
from keras_ssl.training.task_checkpoint import TaskCheckpoint

EVAL_BATCH_SIZE = 512


class TaskWarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up then cosine, restarted at every task (the official per-task scheduler).

    lr(k) for the k-th step of the current task (k = step - task start):
    start + k / W (base - start) during W warm-up steps, then
    max(final, final + (base - final) (1 + cos(pi (k - W) / (K - W))) / 2),
    K the task's steps (`utils.py:89-99`). `begin_task` moves the origin;
    the two variables it writes make the traced step follow without retracing.

    Args:
        base_learning_rate: lr at the end of warm-up (C10: 0.4).
        warmup_fraction: W / K (the official 10 of 250 epochs is 0.04).
        start_learning_rate: lr at a task's first step (C10: 0.08).
        final_learning_rate: lr at its end (C10: 0.032).
    """

    def __init__(self, base_learning_rate, *, warmup_fraction=0.0, start_learning_rate=0.0,
                 final_learning_rate=0.0):
        self.base_learning_rate = float(base_learning_rate)
        self.warmup_fraction = float(warmup_fraction)
        self.start_learning_rate = float(start_learning_rate)
        self.final_learning_rate = float(final_learning_rate)
        self.task_start = tf.Variable(0, dtype=tf.int64, trainable=False, name="task_start")
        self.task_steps = tf.Variable(1, dtype=tf.int64, trainable=False, name="task_steps")

    def begin_task(self, start_step, steps):
        """The task starting at optimizer step `start_step` runs `steps` steps."""
        self.task_start.assign(int(start_step))
        self.task_steps.assign(max(int(steps), 1))

    def __call__(self, step):
        k = tf.cast(tf.cast(step, tf.int64) - self.task_start, tf.float32)
        total = tf.cast(self.task_steps, tf.float32)
        warmup = tf.round(self.warmup_fraction * total)
        warm = self.start_learning_rate + k / tf.maximum(warmup, 1.0) * (
            self.base_learning_rate - self.start_learning_rate)
        progress = (k - warmup) / tf.maximum(total - warmup, 1.0)
        cosine = self.final_learning_rate + (self.base_learning_rate - self.final_learning_rate) \
            * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(k < warmup, warm, tf.maximum(self.final_learning_rate, cosine))

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate,
                "warmup_fraction": self.warmup_fraction,
                "start_learning_rate": self.start_learning_rate,
                "final_learning_rate": self.final_learning_rate}


def continual_pretrain(config=None, /, *, tasks, buffer_size=500, supports_per_class=5,
                       class_order_seed=None, warmup_fraction=None, start_lr_fraction=0.2,
                       final_lr_fraction=0.08, **overrides):
    """Trains a continual method (NNCSL) over `tasks` tasks; returns a dict of results.

    Rerunning with the same `model_dir` resumes after the last finished task
    (see the module docstring); the arguments must be those of the first
    call, and a changed task split or buffer size is a ValueError.

    Args:
        config: a `PretrainConfig` (or dict); `epochs` and `warmup_epochs`
            are per task, `global_batch_size` is the unlabelled batch, and a
            label budget (`labels_per_class`, `label_fraction` or
            `label_indices`) is required. Omitted, the keyword arguments are it.
        tasks: T; must divide the number of classes.
        buffer_size: the replay buffer (NNCSL: 500); 0 keeps none, so each
            task learns from its own labels only (plain fine-tuning).
        supports_per_class: labelled images of each seen class in every step.
        class_order_seed: None for the natural class order (the official
            split), an int for a seeded shuffle.
        warmup_fraction: the share of each task spent warming up; None:
            `warmup_epochs / epochs` (the official 10 of 250).
        start_lr_fraction, final_lr_fraction: warm-up start and final lr as
            fractions of `learning_rate` (the CIFAR-10 recipe: 0.08 and 0.032
            of 0.4).
        **overrides: `PretrainConfig` fields.

    Returns:
        A dict with `method`, `tasks` (the classes of each), `task_test_top1`
        (after each task, the online classifier's top-1 on the test images
        of every class seen so far), `task_loss` (each task's last epoch),
        `buffer_sizes` (after each task), `labeled_batch_sizes` (each task's
        labelled images a step), `buffer` (the replay buffer's dataset
        indices after the last task), `labeled_images`, `replicas`,
        `epochs_per_task`, `initial_task` (tasks already done when this call
        started), `tasks_run` (tasks this call trained) and `model_dir`. The
        lists cover every task, the resumed ones included.
        None on the non-chief workers of a multi-worker job.

    Raises:
        ValueError: bad arguments (each message names its flag), or a
            `model_dir` holding a run of other arguments or another model.
    """
    config = _as_config(config, overrides)
    klass = _method_class(config.method)
    if int(buffer_size) < 0:
        raise ValueError(f"--buffer_size={buffer_size} must be >= 0 (0: no replay buffer).")
    if int(supports_per_class) < 1:
        raise ValueError(f"--supports_per_class={supports_per_class} must be >= 1.")
    strategy = distribute.make_strategy(config.strategy, cpu_replicas=config.cpu_replicas,
                                        tpu_address=config.tpu)
    chief = is_chief(strategy)
    if config.deterministic:
        # Bitwise equal weights across a resume, as in `pretrain`.
        enable_determinism(config.seed)
    else:
        keras.utils.set_random_seed(config.seed)
    source, train, _ = load_training_data(config.data, image_size=config.image_size,
                                          train_per_class=config.train_per_class,
                                          imbalance_ratio=config.imbalance_ratio,
                                          tfds_data_dir=config.tfds_data_dir)
    if source.test is None:
        raise ValueError(f"--data={config.data} has no test split to evaluate the tasks on.")
    split = TaskSplit.make(source.num_classes, tasks, class_order_seed)
    subset = ssl_data.labeled_indices(train, **_budget(config), seed=config.seed)
    subset_labels = train.labels[subset]
    views = augment.get_recipe(klass.recipe_name, blur=config.blur,
                               **{"global_size": config.image_size, **(config.view_kwargs or {})})
    task_trains = [split.unlabeled_split(train, t) for t in range(len(split))]
    steps = [ssl_data.steps_per_epoch(t, config.global_batch_size) for t in task_trains]
    model, schedule = _build(strategy, config, klass, source.num_classes, steps[0],
                             warmup_fraction=warmup_fraction,
                             start_lr_fraction=start_lr_fraction,
                             final_lr_fraction=final_lr_fraction)
    # Across workers Keras' fit needs two patches (its symbolic build and its log reduce).
    distribute.adapt_fit_to_multi_worker(model, strategy)

    checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
    progress = TaskCheckpoint(model, checkpoint_dir,
                              write_directory=worker_directory(checkpoint_dir, strategy),
                              settings={"tasks": [[int(c) for c in t] for t in split.tasks],
                                        "buffer_size": int(buffer_size),
                                        "supports_per_class": int(supports_per_class),
                                        "labeled_images": int(len(subset))})
    results = progress.restore_latest()
    if chief:
        # What restore_encoder (evaluate, export) rebuilds the encoder from;
        # written once the model_dir is known to hold no run of other arguments.
        write_run_config(config.model_dir, config)
    initial_task = len(results["task_test_top1"])
    for task in range(initial_task, len(split)):
        buffer = results["buffers"][-1] if results["buffers"] else []
        # After a resume this copies the restored weights (the end of the
        # previous task) into the teacher, as the uninterrupted run did here.
        model.start_task(task, current_classes=split.classes(task),
                         past_classes=split.past_classes(task))
        schedule.begin_task(int(model.optimizer.iterations.numpy()), steps[task] * config.epochs)
        indices = labeled_indices_for_task(buffer, subset, subset_labels, split, task)
        # Every seen class, with a buffer; without one (buffer_size=0, plain
        # fine-tuning) only the task's own classes have labelled images.
        labeled_classes = len(np.unique(train.labels[indices]))
        labeled = ssl_data.LabeledStream(
            split=train, batch_size=supports_per_class * labeled_classes, indices=indices)
        dataset = ssl_data.distributed_train_dataset(
            strategy, task_trains[task], global_batch_size=config.global_batch_size,
            view_fn=views, seed=config.seed + task, epochs=config.epochs,
            image_size=config.image_size, labeled=labeled, hide_labels=True)
        # A fresh trace for every task: reused, the step's tf.function would
        # retrace with relaxed shapes (the labelled batch grows with the seen
        # classes), a graph that rounds differently from the static one a
        # resumed run traces first, so a resumed task would not compute what
        # the uninterrupted run did (with --deterministic, bit for bit).
        model.train_function = None
        history = model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps[task],
                            verbose=config.verbose, shuffle=False).history
        results["task_loss"].append(float(history["loss"][-1]))
        results["task_test_top1"].append(evaluate_seen_classes(
            model, split.seen_split(source.test, task), image_size=config.image_size))
        buffer = update_buffer(buffer, buffer_size, subset, subset_labels, split, task)
        results["buffers"].append([int(i) for i in buffer])
        results["buffer_sizes"].append(len(buffer))
        results["labeled_batch_sizes"].append(int(supports_per_class * labeled_classes))
        progress.save(results, chief=chief)
    if not chief:
        return None
    return {"method": config.method, "tasks": [list(t) for t in progress.settings["tasks"]],
            "task_test_top1": results["task_test_top1"], "task_loss": results["task_loss"],
            "buffer_sizes": results["buffer_sizes"],
            "labeled_batch_sizes": results["labeled_batch_sizes"],
            "buffer": results["buffers"][-1] if results["buffers"] else [],
            "labeled_images": int(len(subset)), "replicas": strategy.num_replicas_in_sync,
            "epochs_per_task": config.epochs, "initial_task": initial_task,
            "tasks_run": len(split) - initial_task, "model_dir": config.model_dir}


def evaluate_seen_classes(model, test, *, image_size=None, batch_size=EVAL_BATCH_SIZE):
    """Top-1 of `model.classify` (unseen classes masked) over the split `test`."""
    correct = 0
    for batch in ssl_data.eval_dataset(test, batch_size=batch_size, image_size=image_size):
        predicted = tf.argmax(model.classify(batch["image"]), axis=1)
        correct += int(tf.reduce_sum(tf.cast(predicted == batch["label"], tf.int64)))
    return correct / max(len(test), 1)


def is_continual(name):
    """True when the method `name` trains task by task (its class has `start_task`).

    Such a method runs with `continual_pretrain`; the others with `pretrain`.
    """
    return hasattr(_registered_class(name), "start_task")


def _registered_class(name):
    if name in methods.METHODS:
        return methods.METHODS[name]
    raise ValueError(f"--method={name!r} is not a registered method.")


def _method_class(name):
    klass = _registered_class(name)
    if not hasattr(klass, "start_task"):
        raise ValueError(f"--method={name} is not a continual method (it has no start_task).")
    return klass


def _budget(config):
    budgets = {"labels_per_class": config.labels_per_class or None,
               "fraction": config.label_fraction or None,
               "indices": config.label_indices or None}
    given = {name: value for name, value in budgets.items() if value is not None}
    if len(given) != 1:
        raise ValueError("A continual semi-supervised run needs one label budget: "
                         "--labels_per_class, --label_fraction or --label_indices.")
    return given


def _build(strategy, config, klass, num_classes, steps_per_epoch, *, warmup_fraction,
           start_lr_fraction, final_lr_fraction):
    """The method, its optimizer on a per-task schedule, every variable under `strategy`."""
    run = RunContext(num_examples=None, steps_per_epoch=steps_per_epoch, epochs=config.epochs,
                     seed=config.seed)
    kwargs = dict(config.method_kwargs or {})
    if kwargs.setdefault("num_classes", num_classes) != num_classes:
        raise ValueError(f"method_kwargs say num_classes={kwargs['num_classes']}, and "
                         f"--data={config.data} has {num_classes} classes.")
    with strategy.scope():
        encoder = backbones.get(config.backbone, image_size=config.image_size,
                                width_multiplier=config.width_multiplier,
                                any_image_size=klass.mixed_image_sizes,
                                synchronized_bn=config.synchronized_bn)
        model = klass(encoder, run=run, name=config.method, **kwargs)
        schedule = TaskWarmupCosine(
            config.learning_rate,
            warmup_fraction=(config.warmup_epochs / max(config.epochs, 1)
                             if warmup_fraction is None else warmup_fraction),
            start_learning_rate=config.learning_rate * start_lr_fraction,
            final_learning_rate=config.learning_rate * final_lr_fraction)
        if config.optimizer == "lars":
            optimizer = LARS(schedule, momentum=0.9, weight_decay=config.weight_decay)
        elif config.optimizer == "sgd":
            optimizer = SGD(schedule, momentum=0.9, weight_decay=config.weight_decay)
        else:
            raise ValueError(f"--optimizer={config.optimizer!r}: continual runs take sgd or lars.")
        model.compile(optimizer=optimizer)
        optimizer.build(model.update_variables())
    return model, schedule
