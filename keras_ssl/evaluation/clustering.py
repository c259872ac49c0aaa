"""How well features cluster by class: k-means, then NMI, ARI and matched accuracy."""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def clustering_accuracy(true_labels, cluster_labels):
    """Accuracy of cluster ids under the best one-to-one cluster -> class mapping.

    The mapping maximises the number of matched examples (Hungarian algorithm on
    the contingency table, as in DEC and IIC). With more clusters than classes the
    unmatched clusters count as wrong, and vice versa.

    Args:
        true_labels: int array [N] of class labels.
        cluster_labels: int array [N] of cluster ids (any integers).

    Returns:
        A Python float in [0, 1].
    """
    true_labels = np.asarray(true_labels).reshape(-1)
    cluster_labels = np.asarray(cluster_labels).reshape(-1)
    if true_labels.shape != cluster_labels.shape:
        raise ValueError(f"{true_labels.shape[0]} labels but {cluster_labels.shape[0]} cluster ids.")
    if true_labels.size == 0:
        return 0.0
    # Re-index both label sets to 0..n-1 so any integer ids work.
    _, true_ids = np.unique(true_labels, return_inverse=True)
    _, cluster_ids = np.unique(cluster_labels, return_inverse=True)
    contingency = np.zeros([cluster_ids.max() + 1, true_ids.max() + 1], np.int64)
    np.add.at(contingency, (cluster_ids, true_ids), 1)
    rows, columns = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, columns].sum() / true_labels.size)


def cluster_metrics(features, labels, *, num_clusters=None, seed=0):
    """Clusters `features` with k-means and compares the clusters with `labels`.

    Args:
        features: float array [N, D]; L2-normalise first to cluster by cosine.
        labels: int array [N] of class labels.
        num_clusters: k of k-means; defaults to the number of distinct labels.
        seed: k-means initialisation seed (10 restarts, the best inertia kept).

    Returns:
        dict(nmi, ari, accuracy): normalised mutual information, adjusted Rand
        index and `clustering_accuracy`, all from scikit-learn/scipy.

    Example:
        >>> features, labels = extract_features(encoder, test_ds)
        >>> cluster_metrics(features, labels)
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels).reshape(-1)
    if num_clusters is None:
        num_clusters = len(np.unique(labels))
    kmeans = KMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    return assignment_metrics(labels, kmeans.fit_predict(features))


def assignment_metrics(labels, assignments):
    """How well given cluster ids (e.g. a method's E-step pseudo-labels) match `labels`.

    Args:
        labels: int array [N] of class labels.
        assignments: int array [N] of cluster ids.

    Returns:
        dict(nmi, ari, accuracy), as `cluster_metrics`.
    """
    labels = np.asarray(labels).reshape(-1)
    assignments = np.asarray(assignments).reshape(-1)
    return {
        "nmi": float(normalized_mutual_info_score(labels, assignments)),
        "ari": float(adjusted_rand_score(labels, assignments)),
        "accuracy": clustering_accuracy(labels, assignments),
    }
