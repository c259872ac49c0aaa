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

Images are counted once per step however many views they have, as the
protocol counts them. Each figure is a median over timed rounds after warm-up
steps, so a round disturbed by another process weighs less; run it on an
otherwise idle machine all the same.
"""

import statistics
import time

import tensorflow as tf

from keras_ssl import configs
from keras_ssl import data as ssl_data
from keras_ssl.methods import RunContext
from keras_ssl.training import build_method, load_training_data, make_views


def measure_speed(method, data, *, steps_per_round=10, rounds=3, warmup_steps=5, seed=0):
    """Images/s of `method` under its CPU-protocol preset: whole step, model, pipeline."""
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
        weight_decay=config["weight_decay"], warmup_steps=steps * config["warmup_epochs"])
    model.make_train_function()

    def pipeline():
        return ssl_data.train_dataset(train, batch_size=batch_size, view_fn=views, seed=seed,
                                      image_size=config["image_size"])

    def train_round(iterator):
        for _ in range(steps_per_round):
            logs = model.train_function(iterator)
        float(logs["loss"])  # waits for the last step

    def pipeline_round(iterator):
        for _ in range(steps_per_round):
            batch = next(iterator)
        tf.nest.map_structure(lambda t: t.numpy(), batch)

    results = {"method": method, "global_batch_size": batch_size,
               "steps_timed": steps_per_round * rounds}
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
    return results
