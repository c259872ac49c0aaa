import numpy as np
import pytest

from keras_ssl.evaluation import knn_accuracy, weighted_knn_predict


def reference_knn_scores(bank, bank_labels, queries, num_classes, k, temperature):
    """Plain NumPy weighted kNN: exp(sim / T) votes of the k nearest, summed per class."""
    similarities = queries.astype(np.float64) @ bank.T.astype(np.float64)
    k = min(k, len(bank))
    nearest = np.argsort(-similarities, axis=1)[:, :k]
    scores = np.zeros([len(queries), num_classes])
    for row in range(len(queries)):
        for column in nearest[row]:
            scores[row, bank_labels[column]] += np.exp(similarities[row, column] / temperature)
    return scores


@pytest.mark.parametrize("k", [1, 5, 40, 119])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_scores_match_numpy_reference(unit_vectors, k, temperature):
    rng = np.random.default_rng(k)
    bank, queries = unit_vectors(rng, 120, 16), unit_vectors(rng, 37, 16)
    bank_labels = rng.integers(0, 6, size=120)
    expected = reference_knn_scores(bank, bank_labels, queries, 6, k, temperature)
    # A batch size that does not divide 37 exercises the blocking and the partial block.
    scores = weighted_knn_predict(bank, bank_labels, queries, num_classes=6, k=k,
                                  temperature=temperature, batch_size=16)
    assert scores.shape == (37, 6) and scores.dtype == np.float32
    # Scores are the reference votes normalised per query.
    np.testing.assert_allclose(scores, expected / expected.sum(axis=1, keepdims=True), rtol=2e-4, atol=1e-6)
    np.testing.assert_array_equal(scores.argmax(axis=1), expected.argmax(axis=1))


def test_accuracy_matches_reference_predictions(unit_vectors):
    rng = np.random.default_rng(7)
    bank, queries = unit_vectors(rng, 200, 8), unit_vectors(rng, 60, 8)
    bank_labels, query_labels = rng.integers(0, 10, 200), rng.integers(0, 10, 60)
    expected = reference_knn_scores(bank, bank_labels, queries, 10, 20, 0.1)
    ranking = np.argsort(-expected, axis=1)
    result = knn_accuracy(bank, bank_labels, queries, query_labels, num_classes=10, k=20)
    assert result["top1"] == pytest.approx(np.mean(ranking[:, 0] == query_labels))
    assert result["top5"] == pytest.approx(np.mean((ranking[:, :5] == query_labels[:, None]).any(axis=1)))


def test_close_neighbour_outvotes_majority_only_at_low_temperature():
    # One bank vector of class 0 right next to the query; two of class 1 at 60 degrees.
    angles = np.deg2rad([5.0, 60.0, -60.0])
    bank = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    bank_labels = np.array([0, 1, 1])
    query = np.array([[1.0, 0.0]], np.float32)
    sharp = weighted_knn_predict(bank, bank_labels, query, num_classes=2, k=3, temperature=0.1)
    flat = weighted_knn_predict(bank, bank_labels, query, num_classes=2, k=3, temperature=10.0)
    # exp(0.996 / 0.1) >> 2 exp(0.5 / 0.1); at T = 10 every vote weighs about the same.
    assert sharp.argmax() == 0
    assert flat.argmax() == 1
    # With k = 1 only the nearest neighbour votes, whatever the temperature.
    nearest_only = weighted_knn_predict(bank, bank_labels, query, num_classes=2, k=1, temperature=10.0)
    np.testing.assert_allclose(nearest_only, [[1.0, 0.0]])


def test_k_larger_than_bank_uses_whole_bank(unit_vectors):
    rng = np.random.default_rng(3)
    bank, queries = unit_vectors(rng, 9, 4), unit_vectors(rng, 5, 4)
    bank_labels = rng.integers(0, 3, 9)
    whole_bank = weighted_knn_predict(bank, bank_labels, queries, num_classes=3, k=9)
    oversized = weighted_knn_predict(bank, bank_labels, queries, num_classes=3, k=200)
    np.testing.assert_allclose(oversized, whole_bank)
    expected = reference_knn_scores(bank, bank_labels, queries, 3, 9, 0.1)
    np.testing.assert_allclose(oversized, expected / expected.sum(axis=1, keepdims=True), rtol=2e-4)


def test_tiny_temperature_does_not_overflow_and_becomes_1nn(unit_vectors):
    rng = np.random.default_rng(4)
    bank, queries = unit_vectors(rng, 50, 8), unit_vectors(rng, 20, 8)
    bank_labels = rng.integers(0, 5, 50)
    # exp(1 / 0.001) is inf in float32 and float64; the scores must stay finite.
    scores = weighted_knn_predict(bank, bank_labels, queries, num_classes=5, k=50, temperature=1e-3)
    assert np.all(np.isfinite(scores))
    nearest_label = bank_labels[np.argmax(queries @ bank.T, axis=1)]
    np.testing.assert_array_equal(scores.argmax(axis=1), nearest_label)


def test_perfect_clusters_give_full_accuracy(unit_vectors):
    rng = np.random.default_rng(5)
    centres = unit_vectors(rng, 4, 32)
    labels = np.repeat(np.arange(4), 25)
    bank = centres[labels] + 0.05 * rng.normal(size=(100, 32)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    result = knn_accuracy(bank[::2], labels[::2], bank[1::2], labels[1::2], num_classes=4)
    assert result == {"top1": 1.0, "top5": 1.0}
