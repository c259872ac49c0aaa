"""The class-balanced sampler of the labeled stream."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.data import (
    ClassBalancedSampler,
)
from tests.data.labeled_splits import as_batches

# ---------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("batch_size", [10, 7, 3, 12])
def test_sampler_batches_are_class_balanced(batch_size):
    labels = np.repeat(np.arange(5), [3, 4, 6, 2, 9])
    sampler = ClassBalancedSampler(labels, batch_size=batch_size, seed=3)
    steps = 40
    rows = np.stack([sampler.rows(t).numpy() for t in range(steps)])
    counts = np.stack([np.bincount(labels[r], minlength=5) for r in rows])
    # Each batch: b // C of every class, and b % C classes with one more.
    low = batch_size // 5
    assert np.all((counts == low) | (counts == low + 1))
    assert np.all((counts == low + 1).sum(axis=1) == batch_size % 5)
    # Over any 5 consecutive steps every class gets exactly b rows.
    for t in range(steps - 4):
        np.testing.assert_array_equal(counts[t:t + 5].sum(axis=0), [batch_size] * 5)
    # Each class is walked in passes: every n_c consecutive draws are a permutation of it.
    stream = rows.reshape(-1)
    for c in range(5):
        members = np.flatnonzero(labels == c)
        draws = stream[np.isin(stream, members)]
        passes = draws[: len(draws) // len(members) * len(members)].reshape(-1, len(members))
        assert len(passes) >= 2
        for one_pass in passes:
            np.testing.assert_array_equal(np.sort(one_pass), members)
        assert len({tuple(p) for p in passes}) > 1  # a new order each pass


def test_sampler_is_a_function_of_seed_and_step():
    labels = np.arange(60) % 4
    values = 1000 + np.arange(60)
    sampler = ClassBalancedSampler(labels, batch_size=8, seed=5, values=values)
    again = ClassBalancedSampler(labels, batch_size=8, seed=5, values=values)
    for t in (0, 3, 1234567):
        np.testing.assert_array_equal(sampler.rows(t).numpy(), again.rows(t).numpy())
        # Any slice of a batch is the same rows as in the whole batch (how replicas share it).
        np.testing.assert_array_equal(sampler.rows(t, start=4, size=4).numpy(), sampler.rows(t).numpy()[4:])
    assert np.all(sampler.rows(9).numpy() >= 1000)  # returns `values`
    other = ClassBalancedSampler(labels, batch_size=8, seed=6, values=values)
    first = np.concatenate([sampler.rows(t).numpy() for t in range(10)])
    assert not np.array_equal(first, np.concatenate([other.rows(t).numpy() for t in range(10)]))
    # Graph mode (inside tf.data) gives what eager mode gives.
    graph = tf.data.Dataset.range(10).map(sampler.rows)
    np.testing.assert_array_equal(np.concatenate(as_batches(graph)), first)


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="unlabeled"):
        ClassBalancedSampler([0, -1, 1], batch_size=2, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        ClassBalancedSampler([0, 1], batch_size=0, seed=0)
