"""Where a training step's time goes: the whole step, the model alone, the input alone.

The CPU protocol's wall time mixes three things that share the same 2 cores:
the input pipeline (decode-free here: the subset is cached decoded, so it is
augmentation and batching), the model's forward and backward pass, and the
method's state updates. This measures, for one method with its
`cifar10_cpu_small` preset:

- `train_images_per_s`: steps fed by the real pipeline, as in training;
- `step_images_per_s`: the same steps on one batch repeated from a cache,
  so no augmentation runs: the model's share;
- `pipeline_images_per_s`: the pipeline alone, batches pulled and dropped.

Methods with an E-step (a pass over the whole training set between epochs:
InterCLR, NCC, IFND, CLIM) also get `e_step_seconds`, one E-step after its
first (traced) run, and `e_step_share`, its share of an epoch of training at
`train_images_per_s` plus that E-step. CLIM's pipeline mixes from a
neighbour table selected (once) before the timed steps, as in training.

Images are counted once per step however many views they have, as the
protocol counts them. Each figure is a median over timed rounds after warm-up
steps, so a round disturbed by another process weighs less; run it on an
otherwise idle machine all the same.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import tensorflow as tf

from keras_ssl import configs
from keras_ssl import data as ssl_data
from keras_ssl.data.storage import absolute
from keras_ssl.methods import RunContext
from keras_ssl.training import (EpochFeaturePass, build_method, load_training_data,
                                make_views)
from keras_ssl.training.run import EVAL_BATCH_SIZE

# The checkout this file belongs to.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure_speed(method, data, *, steps_per_round=10, rounds=3, warmup_steps=5, seed=0,
                  fused_batch_norm=False):
    """Images/s of `method` under its CPU-protocol preset: whole step, model, pipeline.

    `fused_batch_norm` builds the backbone with BatchNorm through TensorFlow's
    fused kernel (`keras_ssl.backbones.fused_bn`), to measure that lever.
    """
    entry = configs.get("cifar10_cpu_small", method)
    config = entry["flags"]
    batch_size = config["global_batch_size"]
    _, train, _ = load_training_data(
        data, image_size=config["image_size"], train_per_class=config["train_per_class"],
        imbalance_ratio=0.0)
    views = make_views(method, image_size=config["image_size"], blur=config["blur"],
                       view_kwargs=entry.get("views"))
    steps = ssl_data.steps_per_epoch(train, batch_size)
    strategy = tf.distribute.get_strategy()
    model = build_method(
        strategy, method=method, backbone=config["backbone"],
        image_size=config["image_size"], width_multiplier=config["width_multiplier"],
        zero_init_residual=config.get("zero_init_residual", False),
        synchronized_bn=config.get("synchronized_bn", False),
        split_batch_norm=config.get("split_batch_norm", 0), method_kwargs=entry["method"],
        run=RunContext(num_examples=len(train), steps_per_epoch=steps,
                       epochs=config["epochs"], seed=seed),
        optimizer=config["optimizer"], learning_rate=config["learning_rate"],
        weight_decay=config["weight_decay"], warmup_steps=steps * config["warmup_epochs"],
        fused_batch_norm=fused_batch_norm)
    model.make_train_function()
    neighbours = None
    if hasattr(model, "neighbour_mixing"):
        # A table selected as training would select it, then every lookup let through.
        model.refresh_neighbours(model.mixing_start_epoch)
        model.neighbour_table.release()
        neighbours = model.neighbour_mixing(views)

    def pipeline():
        return ssl_data.train_dataset(train, batch_size=batch_size, view_fn=views, seed=seed,
                                      image_size=config["image_size"], neighbours=neighbours)

    def train_round(iterator):
        for _ in range(steps_per_round):
            logs = model.train_function(iterator)
        float(logs["loss"])  # waits for the last step

    def pipeline_round(iterator):
        for _ in range(steps_per_round):
            batch = next(iterator)
        tf.nest.map_structure(lambda t: t.numpy(), batch)

    results = {"method": method, "global_batch_size": batch_size,
               "steps_timed": steps_per_round * rounds, "fused_batch_norm": fused_batch_norm}
    cached = pipeline().take(1).cache().repeat()
    for name, dataset, run_round in (
            ("train_images_per_s", pipeline(), train_round),
            ("step_images_per_s", cached, train_round),
            ("pipeline_images_per_s", pipeline(), pipeline_round)):
        iterator = iter(dataset)
        for _ in range(warmup_steps):
            next(iterator) if run_round is pipeline_round else model.train_function(iterator)
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            run_round(iterator)
            seconds.append(time.perf_counter() - start)
        results[name] = round(steps_per_round * batch_size / statistics.median(seconds), 1)
    e_step_seconds = _e_step_seconds(model, train, config)
    if e_step_seconds is not None:
        epoch_seconds = steps * batch_size / results["train_images_per_s"]
        results["e_step_seconds"] = round(e_step_seconds, 2)
        results["e_step_share"] = round(e_step_seconds / (e_step_seconds + epoch_seconds), 3)
    return results


def _e_step_seconds(model, train, config):
    """Seconds of the method's second E-step (the first one traces), or None without one."""
    if hasattr(model, "refresh_neighbours"):  # CLIM: k-means and k-NN of its bank
        due = [epoch for epoch in range(config["epochs"]) if epoch >= model.mixing_start_epoch]
        step = model.refresh_neighbours
    else:  # the epoch feature pass, and what the method makes of it
        due = [epoch for epoch in range(1, config["epochs"]) if model.wants_epoch_features(epoch)]
        feature_pass = EpochFeaturePass(ssl_data.eval_dataset(
            train, batch_size=EVAL_BATCH_SIZE, image_size=config["image_size"]))
        feature_pass.set_model(model)

        def step(epoch):
            # The method reads the epoch from the step count (IFND's acceptance grows with it).
            model.optimizer.iterations.assign(epoch * model.run.steps_per_epoch)
            feature_pass.run_pass()
    if len(due) < 2:
        return None
    step(due[0])
    start = time.perf_counter()
    step(due[1])
    return time.perf_counter() - start


def median_of(measurements):
    """One measurement whose images/s are the medians of `measurements` (and their count)."""
    merged = dict(measurements[-1], repeats=len(measurements))
    for key in ("train_images_per_s", "step_images_per_s", "pipeline_images_per_s",
                "e_step_seconds", "e_step_share"):
        if key not in merged:
            continue
        merged[key] = statistics.median(m[key] for m in measurements)
        merged[key + "_runs"] = [m[key] for m in measurements]
    return merged


def measure_in_tree(tree, method, data, seed):
    """`measure_speed(method)` in a fresh process in checkout `tree` (None if it has no `method`)."""
    code = ("import json, sys; from experiments.speed_benchmark import measure_speed; "
            "print('RESULT ' + json.dumps(measure_speed(sys.argv[1], sys.argv[2], "
            "seed=int(sys.argv[3]))))")
    run = subprocess.run([sys.executable, "-c", code, method, absolute(data),
                          str(seed)], cwd=tree, capture_output=True, text=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        if tree == _ROOT:
            raise RuntimeError(f"speed of {method} failed:\n{run.stderr[-3000:]}")
        print(f"{method}: no baseline measurement in {tree}: {run.stderr.strip()[-300:]}")
        return None
    return json.loads(lines[-1][len("RESULT "):])


def commit_of(tree):
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                          capture_output=True, text=True).stdout.strip() or tree
