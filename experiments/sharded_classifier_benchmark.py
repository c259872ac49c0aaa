"""Step time and per-replica memory of the sharded instance classifier alone.

One step is what a training step spends on the classifier: all-gather a fixed
random feature batch, this replica's cosine logits, the K hardest classes
(cross-shard top-K), the exact sharded softmax cross-entropy, its backward
pass, and the layer's own SGD-momentum update of the shard. The state per
replica is measured from the variables placed on each device (weights and
velocities, S x d each, S = ceil(N / R)).

The replica count is fixed when TensorFlow starts (the CPU is split into
logical devices first), so each (N, R) runs in a process of its own:

    python experiments/sharded_classifier_benchmark.py --replicas=2 --num_classes=100000

prints one JSON line; `run_all()` runs the 3 x 3 grid (N = 10k, 100k, 1M on
1, 2, 4 replicas) that way. The logical CPUs of one host share its cores, so
on a CPU the time does not fall with R; what the grid shows is the state per
device falling as 1/R at the same result.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Also run as a script: the checkout's root holds the `experiments` package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GRID_CLASSES = (10_000, 100_000, 1_000_000)
GRID_REPLICAS = (1, 2, 4)


def measure_sharded_classifier(num_classes, replicas, *, dim=128, global_batch=256,
                               steps=10, k=5, alpha=0.2, learning_rate=0.1, warmup=2,
                               seed=0):
    """Times forward + backward + update of a `ShardedClassifier` on `replicas` replicas.

    Args:
        num_classes: N.
        replicas: R; with R > 1 the process' CPU must be split into R
            logical devices before TensorFlow starts (`split_cpu(R)`, done by
            `main`), or not yet initialised.
        dim: feature width d.
        global_batch: B (divisible by R).
        steps: timed steps, after `warmup` untimed ones (the first traces).
        k, alpha: hardest classes and smoothing mass of the targets.

    Returns:
        A dict: `step_ms` (median) and `step_ms_mean` of one step,
        `state_bytes_per_replica` (the largest over devices) and
        `state_bytes_by_device`, `shard_size`, `logits_bytes_per_replica`
        (the [B, S] float32 logits, the largest activation), and the
        arguments.
    """
    import numpy as np
    import tensorflow as tf

    from keras_ssl import distribute
    from keras_ssl.distribute.sharded_softmax import (hardest_class_targets,
                                                      sharded_softmax_cross_entropy)
    from keras_ssl.layers.sharded_classifier import ShardedClassifier

    if global_batch % replicas:
        raise ValueError(f"global_batch={global_batch} must be a multiple of "
                         f"replicas={replicas}.")
    strategy = (distribute.make_strategy("mirrored", cpu_replicas=replicas) if replicas > 1
                else tf.distribute.get_strategy())
    with strategy.scope():
        classifier = ShardedClassifier(num_classes, dim, seed=seed)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((global_batch, dim)).astype("float32")
    own = (rng.permutation(num_classes)[:global_batch] if num_classes >= global_batch
           else np.arange(global_batch) % num_classes).astype("int64")
    local_batch = global_batch // replicas

    @tf.function
    def step():
        def fn():
            replica = int(tf.get_static_value(
                tf.distribute.get_replica_context().replica_id_in_sync_group))
            start = replica * local_batch
            local = tf.constant(features[start:start + local_batch])
            local_own = tf.constant(own[start:start + local_batch])
            with tf.GradientTape() as tape:
                logits = classifier(distribute.all_gather(local))
                offset = classifier.shard_offset
                classes, weights = hardest_class_targets(
                    logits, distribute.all_gather(local_own), k, alpha, shard_offset=offset)
                loss = tf.reduce_mean(sharded_softmax_cross_entropy(
                    logits, classes, weights, shard_offset=offset))
            classifier.apply_gradient(tape.gradient(loss, classifier.local_shard()),
                                      learning_rate)
            return loss
        return strategy.run(fn)

    def timed():
        begin = time.perf_counter()
        for value in strategy.experimental_local_results(step()):
            value.numpy()
        return time.perf_counter() - begin

    for _ in range(warmup):
        timed()
    times = [timed() for _ in range(steps)]
    by_device = classifier.state_bytes_per_device()
    return {
        "num_classes": num_classes, "replicas": replicas, "dim": dim,
        "global_batch": global_batch, "steps": steps, "k": k,
        "shard_size": classifier.shard_size,
        "step_ms": 1000.0 * statistics.median(times),
        "step_ms_mean": 1000.0 * statistics.fmean(times),
        "state_bytes_per_replica": max(by_device.values()),
        "state_bytes_by_device": by_device,
        "logits_bytes_per_replica": global_batch * classifier.shard_size * 4,
    }


def run_all(num_classes=GRID_CLASSES, replicas=GRID_REPLICAS, *, steps=None, **kwargs):
    """Runs every (N, R) of the grid in its own process; returns the list of results.

    Args:
        num_classes, replicas: the grid.
        steps: timed steps per case; default 10, and 3 from N = 1M on (a
            step there takes seconds on a CPU).
        **kwargs: `dim`, `global_batch` (passed on as flags).
    """
    results = []
    for n in num_classes:
        for r in replicas:
            command = [sys.executable, os.path.abspath(__file__), f"--replicas={r}",
                       f"--num_classes={n}",
                       f"--steps={steps or (3 if n >= 1_000_000 else 10)}"]
            command += [f"--{name}={value}" for name, value in kwargs.items()]
            completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if completed.returncode:
                raise RuntimeError(f"N={n}, R={r} failed:\n{completed.stderr[-3000:]}")
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num_classes", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--global_batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--all", action="store_true",
                        help="run the whole grid, one process per case, one JSON line each")
    args = parser.parse_args(argv)
    if args.all:
        for result in run_all(dim=args.dim, global_batch=args.global_batch):
            print(json.dumps(result), flush=True)
        return
    import keras_ssl  # noqa: F401  (TensorFlow's environment, before TF starts)
    from keras_ssl.distribute import split_cpu

    split_cpu(args.replicas)  # before any op: fixes the number of logical CPUs
    print(json.dumps(measure_sharded_classifier(
        args.num_classes, args.replicas, dim=args.dim, global_batch=args.global_batch,
        steps=args.steps)), flush=True)


if __name__ == "__main__":
    main()
