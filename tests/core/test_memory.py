"""The memory family against NumPy: ring queue, indexed bank, clustered bank.

Covers FIFO wrap-around, `peek_with` == write-then-read without a write, the
index/label columns, the one momentum convention of both banks, the deprecated
names, gathered writes under a 2-replica MirroredStrategy, the sharding hook,
and the docstring examples.
"""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import ops
from keras_ssl.distribute import global_batch
from keras_ssl.layers import (ClusteredBank, IndexedBank, IndexedMemoryBank, MemoryBankKMeans,
                              Queue, RingQueue, clustered_bank, memory)
from keras_ssl.ops import memory_kmeans
from tests.methods.harness import mirrored_strategy


def normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_momentum(old, new, momentum):
    return normalize(momentum * old + (1.0 - momentum) * normalize(new))


class ReferenceQueue:
    """A NumPy ring queue: row i of a write goes to (pointer + i) % size."""

    def __init__(self, keys, columns):
        self.keys = keys.copy()
        self.columns = {name: np.full(len(keys), -1, np.int64) for name in columns}
        self.pointer = 0

    def write(self, rows, **columns):
        positions = (self.pointer + np.arange(len(rows))) % len(self.keys)
        self.keys[positions] = rows
        for name, values in columns.items():
            self.columns[name][positions] = values
        self.pointer = (self.pointer + len(rows)) % len(self.keys)


def batch(rng, count, dim=3, num_examples=100):
    return (rng.standard_normal((count, dim)).astype("float32"),
            rng.permutation(num_examples)[:count], rng.integers(0, 5, count))


# ---- ring queue -----------------------------------------------------------------------
def test_ring_queue_is_fifo_and_wraps_like_numpy():
    queue = RingQueue(size=5, dim=2)
    initial = queue.read().numpy().copy()
    np.testing.assert_allclose(np.linalg.norm(initial, axis=1), 1.0, rtol=1e-5)
    reference = ReferenceQueue(initial, ())
    for rows in (np.arange(6, dtype="float32").reshape(3, 2),
                 -np.arange(1, 7, dtype="float32").reshape(3, 2),  # rows 3, 4, then 0
                 np.full((5, 2), 7.0, "float32")):  # a whole lap
        queue.write(tf.constant(rows))
        reference.write(rows)
        np.testing.assert_array_equal(queue.read().numpy(), reference.keys)
        assert int(queue.pointer.numpy()) == reference.pointer


def test_queue_columns_follow_their_keys():
    rng = np.random.default_rng(0)
    queue = RingQueue(size=7, dim=3, columns=("label", "index"))
    assert queue.columns == ("index", "label")  # canonical order
    reference = ReferenceQueue(queue.read().numpy(), ("index", "label"))
    for count in (3, 4, 5):
        rows, index, label = batch(rng, count)
        queue.write(tf.constant(rows), index=tf.constant(index), label=tf.constant(label))
        reference.write(rows, index=index, label=label)
    np.testing.assert_array_equal(queue.read().numpy(), reference.keys)
    for name in ("index", "label"):
        assert queue.read_column(name).dtype == tf.int64
        np.testing.assert_array_equal(queue.read_column(name).numpy(), reference.columns[name])


def test_queue_peek_with_is_write_then_read_and_writes_nothing():
    rng = np.random.default_rng(1)
    queue = RingQueue(size=6, dim=3, columns=("index",))
    queue.write(tf.constant(batch(rng, 4)[0]), index=tf.constant([1, 2, 3, 4]))
    before = [v.numpy().copy() for v in (queue.keys, queue.index, queue.pointer)]
    rows, index, _ = batch(rng, 4)  # wraps: rows 4, 5, 0, 1
    peeked = queue.peek_with(tf.constant(rows), index=tf.constant(index))
    assert peeked.label is None
    for variable, value in zip((queue.keys, queue.index, queue.pointer), before):
        np.testing.assert_array_equal(variable.numpy(), value)
    queue.write(tf.constant(rows), index=tf.constant(index))
    np.testing.assert_array_equal(peeked.keys.numpy(), queue.read().numpy())
    np.testing.assert_array_equal(peeked.index.numpy(), queue.read_column("index").numpy())
    np.testing.assert_array_equal(queue.next_rows(2).numpy(), [2, 3])


def test_queue_refuses_missing_extra_and_unknown_columns_and_oversized_writes():
    rows = tf.ones((2, 3))
    with pytest.raises(ValueError, match="columns"):
        RingQueue(4, 3, columns=("index",)).write(rows)
    with pytest.raises(ValueError, match="columns"):
        RingQueue(4, 3).peek_with(rows, label=tf.constant([0, 1]))
    with pytest.raises(ValueError, match="Unknown queue columns"):
        RingQueue(4, 3, columns=("class",))
    with pytest.raises(ValueError, match="no 'label' column"):
        RingQueue(4, 3).read_column("label")
    with pytest.raises(ValueError, match="at least the global batch"):
        RingQueue(4, 3).write(tf.ones((5, 3)))


def test_written_rows_carry_no_gradient():
    queue = RingQueue(4, 2)
    bank = IndexedBank(4, 2)
    x = tf.Variable(tf.ones((2, 2)))
    with tf.GradientTape(persistent=True) as tape:
        peeked = queue.peek_with(2.0 * x).keys
        peeked_bank = bank.peek_with(tf.constant([0, 1]), 2.0 * x)
    assert tape.gradient(peeked, x) is None
    assert tape.gradient(peeked_bank, x) is None


# ---- the momentum convention -------------------------------------------------------------
# 0.0 replaces the rows; 0.75 weighs old and new rows unequally, so a bank that
# took it as the weight of the new row fails (0.5 could not tell). At 0.75 the
# clustered bank has the shape, minimum size and momentum of the deprecated-names
# test's, so the jitted kernels compile once for both (~2 s each).
@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_both_banks_use_the_weight_of_the_old_row(momentum):
    rng = np.random.default_rng(2)
    old = normalize(rng.standard_normal((12, 4))).astype("float32")
    indices = np.array([7, 0, 3])
    new = 3.0 * rng.standard_normal((3, 4)).astype("float32")  # not unit norm
    expected = old.copy()
    expected[indices] = reference_momentum(old[indices], new, momentum)

    bank = IndexedBank(12, 4, momentum=momentum)
    bank.rows.assign(old)
    peeked = bank.peek_with(tf.constant(indices), tf.constant(new)).numpy()
    bank.write(tf.constant(indices), tf.constant(new))
    np.testing.assert_allclose(bank.read().numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(peeked, bank.read().numpy())

    clustered = ClusteredBank(12, 4, num_clusters=2, min_cluster_size=1, momentum=momentum)
    clustered.initialize(old, np.arange(12) % 2)
    peeked = clustered.peek_with(tf.constant(indices), tf.constant(new)).numpy()
    clustered.write(tf.constant(indices), tf.constant(new))
    np.testing.assert_allclose(clustered.read().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(peeked, clustered.read().numpy(), atol=1e-6)

    kernel_rows = ops.memory_kmeans_step(
        tf.constant(old), tf.constant(np.arange(12) % 2, tf.int32),
        tf.constant(old[:2]), tf.constant(indices, tf.int32), tf.constant(new),
        tf.constant(False), momentum=momentum, min_cluster_size=1)[0]
    np.testing.assert_allclose(kernel_rows.numpy(), expected[indices], atol=1e-6)


def test_momentum_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="weight of the old row"):
        IndexedBank(4, 2, momentum=1.5)
    with pytest.raises(ValueError, match="weight of the old row"):
        ClusteredBank(8, 2, num_clusters=2, momentum=-0.1)


# ---- deprecated names --------------------------------------------------------------------
def test_deprecated_names_keep_their_old_behaviour():
    rng = np.random.default_rng(3)
    rows, indices, _ = batch(rng, 3, dim=4, num_examples=12)
    with pytest.warns(DeprecationWarning, match="RingQueue"):
        old_queue = Queue(8, 4, seed=1)
    new_queue = RingQueue(8, 4, seed=1)
    old_queue.enqueue(tf.constant(rows))
    new_queue.write(tf.constant(rows))
    np.testing.assert_array_equal(old_queue.keys.numpy(), new_queue.read().numpy())
    assert int(old_queue.pointer.numpy()) == 3

    with pytest.warns(DeprecationWarning, match="IndexedBank"):
        old_bank = IndexedMemoryBank(12, 4, momentum=0.5)
    new_bank = IndexedBank(12, 4, momentum=0.5)
    np.testing.assert_array_equal(old_bank.rows.numpy(), new_bank.rows.numpy())
    old_bank.update(tf.constant(indices), tf.constant(rows))
    new_bank.write(tf.constant(indices), tf.constant(rows))
    np.testing.assert_array_equal(old_bank.rows.numpy(), new_bank.rows.numpy())

    # MemoryBankKMeans' momentum is the weight of the NEW feature: m -> 1 - m.
    with pytest.warns(DeprecationWarning, match="momentum=1 - m"):
        old_kmeans = MemoryBankKMeans(12, 4, 2, min_cluster_size=1, momentum=0.25)
    new_kmeans = ClusteredBank(12, 4, 2, min_cluster_size=1, momentum=0.75)
    assert old_kmeans.momentum == 0.75 and old_kmeans.get_config()["momentum"] == 0.25
    assert MemoryBankKMeans.from_config(old_kmeans.get_config()).momentum == 0.75
    features = normalize(rng.standard_normal((12, 4)))
    for bank in (old_kmeans, new_kmeans):
        bank.initialize(features, np.arange(12) % 2)
    old_kmeans.update(tf.constant(indices), tf.constant(rows))
    new_kmeans.write(tf.constant(indices), tf.constant(rows))
    for name in ("features", "assignments", "centroids"):
        np.testing.assert_allclose(getattr(old_kmeans, name).numpy(),
                                   getattr(new_kmeans, name).numpy(), atol=1e-6)
    # The old import paths still resolve.
    assert ops.MemoryBankKMeans is MemoryBankKMeans
    assert memory_kmeans.MemoryBankKMeans is MemoryBankKMeans
    assert Queue(8, 4).get_config()["seed"] == 0


def test_config_round_trip():
    for layer in (RingQueue(6, 3, columns=("label",), seed=2, name="q"),
                  IndexedBank(6, 3, momentum=0.25, seed=2),
                  ClusteredBank(8, 3, num_clusters=2, min_cluster_size=2, momentum=0.5)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        np.testing.assert_array_equal(clone.read().numpy(), layer.read().numpy())


# ---- sharding hook -----------------------------------------------------------------------
class HalfBank(IndexedBank):
    """A toy shard: this 'replica' owns rows [size/2, size), stored at positions [0, size/2)."""

    @property
    def rows_per_replica(self):
        return self.size // 2

    def shard_positions(self, indices):
        return indices - self.rows_per_replica, indices >= self.rows_per_replica


def test_writes_go_through_the_shard_hook():
    bank = HalfBank(8, 2, momentum=0.0)
    before = bank.read().numpy().copy()
    rows = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], "float32")
    bank.write(tf.constant([1, 6, 4]), tf.constant(rows))  # row 1 belongs to another shard
    expected = before.copy()
    expected[[2, 0]] = normalize(rows[1:])
    np.testing.assert_allclose(bank.read().numpy(), expected, atol=1e-6)


# ---- gathered writes under MirroredStrategy ---------------------------------------------
GLOBAL_BATCH = 8


def run_per_replica(strategy, fn):
    """Runs fn(positions) on each replica with its rows' positions in the global batch."""
    local = GLOBAL_BATCH // strategy.num_replicas_in_sync
    positions = strategy.experimental_distribute_values_from_function(
        lambda context: tf.range(local) + context.replica_id_in_sync_group * local)
    outputs = tf.function(lambda p: strategy.run(fn, args=(p,)))(positions)
    return tf.nest.map_structure(strategy.experimental_local_results, outputs)


def test_gathered_writes_leave_identical_state_on_both_replicas():
    strategy = mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(4)
    rows = tf.constant(rng.standard_normal((GLOBAL_BATCH, 4)).astype("float32"))
    index = tf.constant(rng.permutation(48)[:GLOBAL_BATCH], tf.int64)
    label = tf.constant(rng.integers(0, 3, GLOBAL_BATCH), tf.int64)
    bank_rows = normalize(rng.standard_normal((48, 4))).astype("float32")

    def build():
        memories = (RingQueue(12, 4, columns=("index", "label"), name="queue"),
                    IndexedBank(48, 4, momentum=0.5, name="bank"),
                    ClusteredBank(48, 4, num_clusters=3, min_cluster_size=8,
                                  centroid_update_interval=1, name="clustered"))
        return memories

    queue, bank, clustered = build()  # one device, the whole global batch
    clustered.initialize(bank_rows, np.arange(48) % 3)
    expected_peek = queue.peek_with(rows, index=index, label=label).keys.numpy()
    for _ in range(2):  # the second write wraps around the queue
        queue.write(rows, index=index, label=label)
        bank.write(index, rows)
        clustered.write(index, rows)
    with strategy.scope():
        mirrored = build()
    # Outside the scope, which would make the jitted clustering trace again.
    mirrored[2].initialize(bank_rows, np.arange(48) % 3)
    for memory_layer in mirrored:
        for variable in memory_layer.weights:
            assert variable.value.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA

    def step(positions):
        local_rows, local_index = tf.gather(rows, positions), tf.gather(index, positions)
        peeked = mirrored[0].peek_with(local_rows, index=local_index,
                                       label=tf.gather(label, positions)).keys
        for _ in range(2):
            mirrored[0].write(local_rows, index=local_index, label=tf.gather(label, positions))
            mirrored[1].write(local_index, local_rows)
            mirrored[2].write(local_index, local_rows)
        return peeked

    for peeked in run_per_replica(strategy, step):  # every replica peeks the global batch
        np.testing.assert_allclose(peeked.numpy(), expected_peek, atol=1e-6)
    for single, replicated in zip((queue, bank, clustered), mirrored):
        for reference, variable in zip(single.weights, replicated.weights):
            copies = strategy.experimental_local_results(variable.value)
            assert len(copies) == 2
            for copy in copies:
                np.testing.assert_allclose(copy.numpy(), reference.numpy(), atol=1e-6,
                                           err_msg=variable.path)


# ---- docstring examples ------------------------------------------------------------------
@pytest.mark.parametrize("module", [memory, clustered_bank, memory_kmeans, global_batch],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
