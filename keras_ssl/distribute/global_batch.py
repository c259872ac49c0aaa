"""Running a pure kernel on the global batch from inside a replica.

SwAV's Sinkhorn, MIRA's column sums and a batch k-means all need statistics of
the whole global batch. The official PyTorch code all-reduces partial sums
inside its loops; keras_ssl keeps collectives out of XLA kernels (DESIGN.md),
so it gathers the inputs once, runs the pure kernel on the global batch (every
replica computes the same result) and keeps this replica's rows. With one
replica, or outside a strategy, the gather and the slice are the identity.

It lives here, beside the collectives it calls, rather than in `ops/` with the
kernels it runs: `ops/` holds pure functions of tensors only.
"""

import tensorflow as tf

from keras_ssl.distribute.cross_replica import all_gather, local_rows


def on_global_batch(kernel, local_inputs, *args, per_row=None, **kwargs):
    """Gathers `local_inputs`, runs `kernel` on the global batch, returns the local rows.

    Args:
        kernel: a function whose first argument is a [global_batch, ...]
            tensor, e.g. `keras_ssl.ops.sinkhorn`, `mira_assign`, `kmeans`.
        local_inputs: this replica's [local_batch, ...] rows. Every replica
            must hold the same number of rows (the global offset of a replica
            is `replica_id * local_batch`).
        *args, **kwargs: passed on to `kernel`.
        per_row: for a kernel that returns a tuple, one bool per output: True
            for outputs with a row per input row (sliced to the local rows),
            False for global outputs kept whole (k-means' centroids). Default:
            every output is per row.

    Returns:
        The kernel's outputs, per-row ones restricted to this replica's rows.

    Example (k-means on the global batch, local assignments, global centroids;
    outside a strategy the gather and the slice are the identity):

    >>> from keras_ssl.ops import kmeans
    >>> features = tf.random.stateless_normal([8, 4], seed=[0, 1])
    >>> assignments, centroids = on_global_batch(
    ...     kmeans, features, num_clusters=3, num_iters=5, per_row=(True, False))
    >>> assignments.shape.as_list(), centroids.shape.as_list()
    ([8], [3, 4])
    """
    local_batch = tf.shape(local_inputs)[0]
    outputs = kernel(all_gather(local_inputs), *args, **kwargs)
    if not isinstance(outputs, (tuple, list)):
        return local_rows(outputs, local_batch)
    if per_row is None:
        per_row = (True,) * len(outputs)
    if len(per_row) != len(outputs):
        raise ValueError(f"per_row has {len(per_row)} entries for "
                         f"{len(outputs)} kernel outputs.")
    return tuple(local_rows(output, local_batch) if sliced else output
                 for output, sliced in zip(outputs, per_row))
