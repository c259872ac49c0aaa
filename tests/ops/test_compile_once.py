"""Each XLA kernel compiles once per shape, not once per input value.

If a kernel's graph has an op whose operand XLA needs at compile time (for
example `bank[tf.argmax(...)]`, a strided slice at a data-dependent start),
TensorFlow folds the input values into the compilation key and compiles the
kernel again on every call with new data. Results stay correct, so only the
speed shows it: InterCLR's memory update recompiled for 1.5 s at every
training step. This test counts compilations in TensorFlow's own log, in a
subprocess because the log level is read when TensorFlow loads.
"""

import collections
import os
import subprocess
import sys
import textwrap

CALLS = 3

SCRIPT = textwrap.dedent(f"""
    import numpy as np
    import tensorflow as tf
    from keras_ssl import ops
    from keras_ssl.ops.memory_kmeans import memory_kmeans_step, settle_clusters

    rng = np.random.default_rng(0)

    def normal(*shape):
        return tf.constant(rng.standard_normal(shape), tf.float32)

    def unit(*shape):
        return tf.math.l2_normalize(normal(*shape), axis=1)

    def labels_with_a_small_cluster():
        labels = rng.integers(1, 10, 500)  # cluster 0 gets 5 rows: dissolved
        labels[:5] = 0
        return tf.constant(labels, tf.int32)

    kernels = {{
        "kmeans": lambda: ops.kmeans(unit(500, 16), 10, 5),
        "kmeans++": lambda: ops.kmeans(unit(500, 16), 10, 5, init="kmeans++", seed=0),
        "sinkhorn": lambda: ops.sinkhorn(normal(64, 30)),
        "mira_assign": lambda: ops.mira_assign(normal(64, 30), beta=0.5, num_iters=10),
        "topk_neighbors": lambda: ops.topk_neighbors(unit(32, 16), unit(500, 16), 5),
        "topk_neighbors_mask": lambda: ops.topk_neighbors(
            unit(32, 16), unit(500, 16), 5,
            mask=tf.constant(rng.random((32, 500)) > 0.5)),
        "memory_kmeans_step": lambda: memory_kmeans_step(
            unit(500, 16), labels_with_a_small_cluster(), normal(10, 16),
            tf.constant(rng.choice(500, 32, replace=False), tf.int32), normal(32, 16),
            tf.constant(True), momentum=0.0, min_cluster_size=20),
        # InterCLR's initial clustering settles k-means labels on the whole bank.
        "settle_clusters": lambda: settle_clusters(
            unit(500, 16), labels_with_a_small_cluster(), normal(10, 16), 20),
    }}
    for name, kernel in kernels.items():
        for _ in range({CALLS}):
            print("KERNEL", name, flush=True)
            tf.nest.map_structure(lambda t: t.numpy(), kernel())
""")


def test_every_kernel_compiles_once_for_new_values_of_the_same_shape():
    # LLVM's optimisation level changes how long a compilation takes, not
    # whether the kernel compiles again (the compilation key is made before
    # XLA's backend runs): at 0 the eight compilations take 40% less time.
    xla_flags = [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_compiler=2",
               XLA_FLAGS=" ".join(xla_flags).strip())
    # TensorFlow logs to stderr; merged with stdout, each compilation line
    # follows the marker the script printed before the call that caused it.
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    compilations = collections.Counter()
    current = None
    for line in result.stdout.splitlines():
        if line.startswith("KERNEL "):
            current = line.split()[1]
            compilations[current] += 0
        elif "Instantly compiling" in line:
            compilations[current] += 1
    assert len(compilations) == 8, result.stdout[-3000:]
    # Exactly one: zero would mean the log line changed and this test no
    # longer sees compilations at all.
    assert dict(compilations) == {name: 1 for name in compilations}
