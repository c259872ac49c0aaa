import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from keras_ssl.evaluation import cluster_metrics, clustering_accuracy


def brute_force_accuracy(true_labels, cluster_labels):
    """Best accuracy over every injective mapping of clusters to classes."""
    classes, clusters = np.unique(true_labels), np.unique(cluster_labels)
    best = 0
    # Pad the classes with "no class" slots so more clusters than classes also works.
    targets = list(classes) + [None] * max(0, len(clusters) - len(classes))
    for assignment in itertools.permutations(targets, len(clusters)):
        mapping = dict(zip(clusters, assignment))
        best = max(best, sum(mapping[c] == t for c, t in zip(cluster_labels, true_labels)))
    return best / len(true_labels)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_clusters", [3, 4, 5])
def test_accuracy_matches_brute_force(seed, num_clusters):
    rng = np.random.default_rng(seed)
    true_labels = rng.integers(0, 4, size=30)
    # Arbitrary, non-contiguous cluster ids must not matter.
    cluster_labels = 10 * rng.integers(0, num_clusters, size=30) + 7
    assert clustering_accuracy(true_labels, cluster_labels) == pytest.approx(
        brute_force_accuracy(true_labels, cluster_labels)
    )


def test_accuracy_is_invariant_to_renaming_clusters():
    true_labels = np.array([0, 0, 1, 1, 2, 2, 2])
    assert clustering_accuracy(true_labels, np.array([2, 2, 0, 0, 1, 1, 1])) == 1.0
    assert clustering_accuracy(true_labels, np.array([5, 5, 5, 5, 5, 5, 5])) == pytest.approx(3 / 7)


def test_metrics_match_sklearn_and_are_perfect_on_separated_blobs():
    rng = np.random.default_rng(0)
    centres = 10.0 * rng.normal(size=(5, 6))
    labels = rng.integers(0, 5, size=300)
    features = (centres[labels] + rng.normal(size=(300, 6))).astype(np.float32)
    result = cluster_metrics(features, labels, seed=1)
    assignments = KMeans(n_clusters=5, n_init=10, random_state=1).fit_predict(features)
    assert result["nmi"] == pytest.approx(normalized_mutual_info_score(labels, assignments))
    assert result["ari"] == pytest.approx(adjusted_rand_score(labels, assignments))
    assert result == pytest.approx({"nmi": 1.0, "ari": 1.0, "accuracy": 1.0})


def test_random_features_score_near_chance():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=400)
    result = cluster_metrics(rng.normal(size=(400, 8)), labels, num_clusters=4)
    assert result["nmi"] < 0.1 and abs(result["ari"]) < 0.1
    assert result["accuracy"] < 0.4
