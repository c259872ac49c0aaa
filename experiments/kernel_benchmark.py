"""Time per call of the grouping kernels: XLA, the same TensorFlow code without XLA, NumPy.

Sizes are those of a real ImageNet-style step:

* Sinkhorn: 4,096 samples x 3,000 prototypes, 3 iterations (SwAV);
* k-means: 4,096 x 128 features into 100 clusters, 10 iterations (CLD-like);
* top-k: k=10 for 4,096 queries in a 65,536 x 128 bank (MSF);
* MIRA: 4,096 x 3,000 logits, 30 iterations (MIRA's default);
* memory-bank k-means: one update of 256 rows in a 50,000 x 128 bank with
  1,000 clusters (InterCLR at CIFAR scale; centroids recomputed every 10th).

Each figure is the median of `repeats` calls after warm-up (which includes the
XLA compilation). The NumPy/scikit-learn baselines are: an official-style
Sinkhorn and MIRA loop in float32, `sklearn.cluster.KMeans(n_init=1,
max_iter=10)` from the same first-K initial centroids, a matrix product plus
`np.argpartition`, and InterCLR's update written in NumPy.

    python experiments/benchmark.py --what=kernels
"""

import importlib
import os
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Also run as a script: the checkout's root holds the `experiments` package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from experiments.machine import machine  # noqa: E402
from keras_ssl.ops import memory_kmeans, mira, neighbors  # noqa: E402

# keras_ssl.ops exports functions named like these two modules.
kmeans_module = importlib.import_module("keras_ssl.ops.kmeans")
sinkhorn = importlib.import_module("keras_ssl.ops.sinkhorn")


def _median_ms(call, repeats, warmup=2):
    for _ in range(warmup):
        _block(call())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(call())
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _block(outputs):
    for output in tf.nest.flatten(outputs):
        if isinstance(output, tf.Tensor):
            output.numpy()


def _without_xla(kernel):
    """The same traced Python code, compiled by TensorFlow's graph runtime instead of XLA."""
    return tf.function(kernel.python_function, jit_compile=False)


def _unit_rows(rng, n, d):
    x = rng.standard_normal((n, d)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_sinkhorn(scores, num_iters, epsilon):
    q = np.exp((scores - scores.max()) / epsilon).T
    num_prototypes, batch = q.shape
    q /= q.sum()
    for _ in range(num_iters):
        q /= q.sum(axis=1, keepdims=True) * num_prototypes
        q /= q.sum(axis=0, keepdims=True) * batch
    return (q * batch).T


def numpy_mira(logits, beta, num_iters):
    s = logits / (1 - beta)
    k = np.exp(s - s.max(axis=1, keepdims=True))
    k /= k.sum(axis=1, keepdims=True)
    batch = k.shape[0]
    v = (k.sum(axis=0) / batch) ** (1 - beta)
    for _ in range(num_iters):
        w = v ** (-beta / (1 - beta))
        v = ((k / (k @ w)[:, None]).sum(axis=0) / batch) ** (1 - beta)
    p = v ** (-beta / (1 - beta)) * k
    return p / p.sum(axis=1, keepdims=True)


def numpy_topk(queries, bank, k):
    scores = queries @ bank.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


class NumpyMemoryKMeans:
    """InterCLR's update in NumPy (small clusters handled as in the official memory)."""

    def __init__(self, bank, labels, centroids, min_size, interval):
        self.bank, self.labels, self.centroids = bank.copy(), labels.copy(), centroids.copy()
        self.min_size, self.interval, self.updates = min_size, interval, 0

    def update(self, indices, features):
        from sklearn.cluster import KMeans
        self.bank[indices] = features / np.linalg.norm(features, axis=1, keepdims=True)
        self.labels[indices] = np.argmax(self.bank[indices] @ self.centroids.T, axis=1)
        self.updates += 1
        k = len(self.centroids)
        if self.updates % self.interval == 0:
            sums = np.zeros_like(self.centroids)
            np.add.at(sums, self.labels, self.bank)
            counts = np.bincount(self.labels, minlength=k)
            self.centroids = np.where(counts[:, None] > 0,
                                      sums / np.maximum(counts, 1)[:, None], self.centroids)
        small = np.flatnonzero(np.bincount(self.labels, minlength=k) < self.min_size)
        if len(small):
            keep = np.setdiff1d(np.arange(k), small)
            rows = np.flatnonzero(np.isin(self.labels, small))
            self.labels[rows] = keep[np.argmax(self.bank[rows] @ self.centroids[keep].T, 1)]
            for empty in small:
                largest = np.argmax(np.bincount(self.labels, minlength=k))
                members = np.flatnonzero(self.labels == largest)
                halves = KMeans(2, n_init=1, random_state=0, max_iter=20).fit(
                    self.bank[members]).labels_
                self.labels[members[halves == 1]] = empty
                for c in (empty, largest):
                    self.centroids[c] = self.bank[self.labels == c].mean(0)


def measure_kernels(repeats=5):
    """Returns {kernel: {"size", "xla_ms", "tf_ms", "numpy_ms", "numpy"}}."""
    rng = np.random.default_rng(0)
    results = {}

    scores = _unit_rows(rng, 4096, 128) @ _unit_rows(rng, 3000, 128).T
    tf_scores = tf.constant(scores)
    plain_sinkhorn = _without_xla(sinkhorn._sinkhorn)
    results["sinkhorn"] = dict(
        size="4096 x 3000, 3 iterations",
        xla_ms=_median_ms(lambda: sinkhorn.sinkhorn(tf_scores, 3, 0.05), repeats),
        tf_ms=_median_ms(lambda: plain_sinkhorn(
            tf_scores, num_iters=3, epsilon=0.05), repeats),
        numpy_ms=_median_ms(lambda: numpy_sinkhorn(scores, 3, 0.05), repeats, warmup=1),
        numpy="NumPy loop (official algorithm, float32)")

    logits = scores / 0.225
    tf_logits = tf.constant(logits)
    plain_mira = _without_xla(mira._mira_assign)
    results["mira"] = dict(
        size="4096 x 3000, 30 iterations",
        xla_ms=_median_ms(lambda: mira.mira_assign(tf_logits, 0.75, 30), repeats),
        tf_ms=_median_ms(lambda: plain_mira(
            tf_logits, tf.constant(0.75), num_iters=30), repeats),
        numpy_ms=_median_ms(lambda: numpy_mira(logits, 0.75, 30), repeats, warmup=1),
        numpy="NumPy loop (official algorithm, float32)")

    features = _unit_rows(rng, 4096, 128)
    tf_features = tf.constant(features)
    plain_kmeans = _without_xla(kmeans_module._kmeans)

    def sklearn_kmeans():
        from sklearn.cluster import KMeans
        return KMeans(100, init=features[:100], n_init=1, max_iter=10, tol=0.0,
                      algorithm="lloyd").fit(features).labels_

    results["kmeans"] = dict(
        size="4096 x 128 into 100 clusters, 10 iterations",
        xla_ms=_median_ms(lambda: kmeans_module.kmeans(tf_features, 100, 10), repeats),
        tf_ms=_median_ms(lambda: plain_kmeans(
            tf_features, num_clusters=100, num_iters=10, init="first", spherical=False,
            seed=0), repeats),
        numpy_ms=_median_ms(sklearn_kmeans, repeats, warmup=1),
        numpy="sklearn KMeans(n_init=1, max_iter=10, lloyd, first-K init)")

    bank = _unit_rows(rng, 65536, 128)
    tf_bank = tf.constant(bank)
    plain_topk = _without_xla(neighbors._topk)
    results["topk"] = dict(
        size="k=10, 4096 queries, 65536 x 128 bank",
        xla_ms=_median_ms(lambda: neighbors.topk_neighbors(tf_features, tf_bank, 10), repeats),
        tf_ms=_median_ms(lambda: plain_topk(
            tf_features, tf_bank, k=10), repeats),
        numpy_ms=_median_ms(lambda: numpy_topk(features, bank, 10), repeats, warmup=1),
        numpy="matmul + np.argpartition")

    results["memory_kmeans"] = _measure_memory_kmeans(rng, repeats)
    results["machine"] = dict(
        machine(),
        tensorflow=tf.__version__, numpy=np.__version__,
        note="%d-core CPU, 1-minute load average %.1f at the end (the kernel runs add about 1); "
             "medians of %d calls after warm-up" % (os.cpu_count(), os.getloadavg()[0], repeats))
    return results


def _measure_memory_kmeans(rng, repeats):
    size, dim, clusters, batch = 50000, 128, 1000, 256
    bank = _unit_rows(rng, size, dim)
    labels = (np.arange(size) % clusters).astype("int32")
    centroids = np.zeros((clusters, dim), "float32")
    np.add.at(centroids, labels, bank)
    centroids /= np.bincount(labels, minlength=clusters)[:, None]
    tf_state = [tf.constant(bank), tf.constant(labels), tf.constant(centroids)]
    batches = [(tf.constant(rng.permutation(size)[:batch], tf.int32),
                tf.constant(_unit_rows(rng, batch, dim))) for _ in range(4)]
    counter = iter(range(10 ** 9))

    def call(kernel):
        def step():
            i = next(counter)
            indices, features = batches[i % len(batches)]
            return kernel(*tf_state, indices, features, tf.constant(i % 10 == 9),
                          momentum=0.0, min_cluster_size=20)
        return step

    reference = NumpyMemoryKMeans(bank, labels, centroids, min_size=20, interval=10)
    numpy_batches = [(b[0].numpy(), b[1].numpy()) for b in batches]

    def numpy_step():
        indices, features = numpy_batches[next(counter) % len(numpy_batches)]
        reference.update(indices, features)

    return dict(
        size="256 rows into a 50000 x 128 bank, 1000 clusters",
        xla_ms=_median_ms(call(memory_kmeans.memory_kmeans_step), max(repeats, 10)),
        tf_ms=_median_ms(call(_without_xla(memory_kmeans.memory_kmeans_step)),
                         max(repeats, 10)),
        numpy_ms=_median_ms(numpy_step, max(repeats, 10), warmup=1),
        numpy="NumPy InterCLR update, sklearn 2-means splits")


if __name__ == "__main__":
    import json
    print(json.dumps(measure_kernels(repeats=3), indent=2))
