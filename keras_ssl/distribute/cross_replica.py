"""The only place that calls collectives.

Losses and kernels are pure functions of tensors; methods call these helpers to
turn per-replica tensors into global ones (negatives, queue and bank updates,
clustering inputs) and back. Outside a replica context, or with one replica,
every helper is the identity, so the same method code runs on 1 or N devices.
"""

import contextlib

import tensorflow as tf


def _replica_context():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas():
    """Replicas in sync (1 outside a strategy)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_id():
    """This replica's index in its sync group, as an int32 tensor."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def all_gather(tensor):
    """Concatenates `tensor` from every replica along axis 0.

    Gradients flow back: `ReplicaContext.all_gather` is differentiable, and the
    gradient each replica receives is the sum over replicas of the upstream
    gradient for its own rows. With each replica's loss divided by the number
    of replicas, the summed parameter gradient is the gradient of the global
    mean loss (SimCLR's cross-replica negatives rely on this).
    """
    context = _replica_context()
    if context is None:
        return tensor
    # SimCLR's cross-replica concat: write the local rows into a zero tensor
    # of the global size and sum it over replicas. Unlike
    # ReplicaContext.all_gather, this is a single all-reduce with a data
    # dependency on `tensor`; all_gather's extra shape exchange has none, so
    # it can be scheduled in a different order on different replicas and
    # pair with another replica's BatchNorm all-reduce, which aborts the step.
    # The gradient of a sum all-reduce is the all-reduce of the gradients:
    # each replica gets the summed gradient of its own rows.
    dtype = tensor.dtype
    values = tf.cast(tensor, tf.float32) if dtype.is_integer else tensor
    local_batch = tf.shape(values)[0]
    replicas = context.num_replicas_in_sync
    rows = tf.range(local_batch) + replica_id() * local_batch
    shape = tf.concat([[replicas * local_batch], tf.shape(values)[1:]], axis=0)
    scattered = tf.scatter_nd(rows[:, None], values, shape)
    gathered = context.all_reduce(tf.distribute.ReduceOp.SUM, scattered)
    # Integers (dataset indices) travel as float32: exact below 2**24.
    return tf.cast(tf.round(gathered), dtype) if dtype.is_integer else gathered


def all_reduce_sum(tensor):
    context = _replica_context()
    if context is None:
        return tensor
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tensor)


def global_offset(local_batch_size):
    """Row of this replica's first example in the all-gathered batch."""
    return replica_id() * local_batch_size


def local_rows(global_tensor, local_batch_size):
    """This replica's rows of a tensor computed on the all-gathered batch."""
    start = global_offset(local_batch_size)
    return global_tensor[start:start + local_batch_size]


@contextlib.contextmanager
def replicated_state_scope():
    """Creates variables whose replicas are updated identically.

    State such as EMA targets, queues and memory banks is updated in
    `after_apply` from all-gathered tensors, so every replica computes the same
    new value. Under MirroredStrategy a variable with the default aggregation
    (NONE) then keeps one copy per replica that can drift apart silently;
    ONLY_FIRST_REPLICA makes the first replica's update the one that counts.
    """
    def creator(next_creator, **kwargs):
        kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        yield
