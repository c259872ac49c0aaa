"""Top-k neighbours against a full NumPy sort."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.ops import neighbors, topk_neighbors


def unit_rows(n, d=8, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def reference_topk(queries, bank, k, mask=None):
    scores = queries.astype(np.float64) @ bank.T.astype(np.float64)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("k", [1, 5])
def test_equals_a_full_sort(k):
    queries, bank = unit_rows(7, seed=1), unit_rows(30, seed=2)
    indices, similarities = topk_neighbors(tf.constant(queries), tf.constant(bank), k)
    expected_indices, expected_similarities = reference_topk(queries, bank, k)
    assert indices.dtype == tf.int32 and indices.shape == (7, k)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_allclose(similarities.numpy(), expected_similarities, atol=1e-6)


def test_mask_is_respected():
    queries, bank = unit_rows(9, seed=3), unit_rows(25, seed=4)
    rng = np.random.default_rng(5)
    mask = rng.uniform(size=(9, 25)) < 0.3
    mask[:, :4] = True  # at least k allowed rows in every query
    indices, similarities = topk_neighbors(tf.constant(queries), tf.constant(bank), 4,
                                           mask=tf.constant(mask))
    assert np.all(np.take_along_axis(mask, indices.numpy(), axis=1))
    expected_indices, expected_similarities = reference_topk(queries, bank, 4, mask)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_allclose(similarities.numpy(), expected_similarities, atol=1e-6)


def test_allowed_rows_come_first_when_too_few(monkeypatch):
    queries, bank = unit_rows(3, seed=6), unit_rows(10, seed=7)
    mask = np.zeros((3, 10), bool)
    mask[:, 8] = True  # a single allowed row, and it is not the nearest
    indices, similarities = topk_neighbors(tf.constant(queries), tf.constant(bank), 3,
                                           mask=tf.constant(mask))
    np.testing.assert_array_equal(indices.numpy()[:, 0], 8)
    assert np.all(np.isneginf(similarities.numpy()[:, 1:]))


@pytest.mark.parametrize("masked", [False, True])
def test_chunked_search_equals_a_full_sort(monkeypatch, masked):
    # Shapes used nowhere else, so the kernel is traced with the small chunks.
    monkeypatch.setattr(neighbors, "QUERY_CHUNK", 4)
    monkeypatch.setattr(neighbors, "_MAX_SCORES", 0)
    queries, bank = unit_rows(10 + masked, seed=8), unit_rows(37, seed=9)
    mask = np.random.default_rng(10).uniform(size=(10 + masked, 37)) < 0.5 if masked else None
    indices, similarities = topk_neighbors(
        tf.constant(queries), tf.constant(bank), 3,
        mask=None if mask is None else tf.constant(mask))
    expected_indices, expected_similarities = reference_topk(queries, bank, 3, mask)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_allclose(similarities.numpy(), expected_similarities, atol=1e-6)


def test_rejects_k_larger_than_the_bank():
    with pytest.raises(ValueError, match="k="):
        topk_neighbors(tf.zeros([2, 3]), tf.zeros([4, 3]), 5)
