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
    # Collectives are matched across replicas by instance keys that are
    # assigned while tracing, in each replica's program order, not by the
    # order in which they run; all_gather therefore needs no ordering with
    # BatchNorm's all-reduces. (Aborts such as "Shape mismatch in the
    # collective instance 100" came from a second MirroredStrategy in the
    # process reusing the first one's keys; see make_strategy.)
    # The identity places the tensor on this replica's device. Under
    # MultiWorkerMirroredStrategy with one device per worker, a tensor that
    # comes straight from the input iterator (MoCo's images for shuffled BN,
    # NPID's indices) has no device, and gathering it fails with
    # "destinations can not be empty". Elsewhere it costs nothing.
    return context.all_gather(tf.identity(tensor), axis=0)


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
