"""Weighted k-nearest-neighbour classification on L2-normalised features.

This is the monitor protocol of InstDisc/NPID (Wu et al., 2018), used unchanged by
MoCo, CLD, lightly and solo-learn: the k most cosine-similar bank entries vote for
their labels with weight exp(similarity / temperature); the class with the largest
summed vote wins. k=200 and temperature=0.1 are the customary CIFAR settings.
"""

import numpy as np
import tensorflow as tf

from keras_ssl.evaluation.metrics import top_k_accuracy


@tf.function(reduce_retracing=True)
def _knn_votes(queries, bank, bank_labels, k, num_classes, temperature):
    """Class votes [Q, num_classes] for one block of queries (rows sum to 1)."""
    similarities = tf.matmul(queries, bank, transpose_b=True)  # [Q, N]
    top_similarities, top_indices = tf.math.top_k(similarities, k=k)  # [Q, k]
    neighbour_labels = tf.gather(bank_labels, top_indices)  # [Q, k]
    # exp(s / T) overflows float32 once s / T > 88 (T < 0.012 for unit vectors).
    # Subtracting each row's largest similarity first scales every vote of that
    # query by the same factor, so the ranking of classes is unchanged.
    weights = tf.exp((top_similarities - top_similarities[:, :1]) / temperature)
    # Sum each query's weights per class with one segment sum over ids
    # row * C + label; a one-hot [Q, k, C] tensor would need gigabytes at C = 1000.
    num_queries = tf.shape(queries)[0]
    rows = tf.range(num_queries, dtype=neighbour_labels.dtype)[:, None]
    segment_ids = rows * num_classes + neighbour_labels
    votes = tf.math.unsorted_segment_sum(
        tf.reshape(weights, [-1]), tf.reshape(segment_ids, [-1]), num_queries * num_classes
    )
    votes = tf.reshape(votes, [num_queries, num_classes])
    return votes / tf.reduce_sum(votes, axis=1, keepdims=True)


def weighted_knn_predict(
    train_features,
    train_labels,
    query_features,
    *,
    num_classes,
    k=200,
    temperature=0.1,
    batch_size=1024,
):
    """Weighted kNN class scores for each query.

    The scores of a query are its summed votes sum_{j in top-k} exp(s_j / T) per
    class, divided by their total so each row sums to 1 (this division, and the
    overflow guard inside, leave the ranking of classes unchanged).

    Args:
        train_features: float array [N, D], the labelled bank; rows L2-normalised.
        train_labels: int array [N] in [0, num_classes).
        query_features: float array [Q, D]; rows L2-normalised.
        num_classes: number of classes C.
        k: neighbours per query; values above N use the whole bank.
        temperature: vote temperature T; smaller trusts the nearest neighbours more.
        batch_size: queries per block, bounding the [batch_size, N] similarity matrix.

    Returns:
        float32 numpy array [Q, num_classes].

    Example:
        >>> scores = weighted_knn_predict(bank, bank_labels, queries, num_classes=10)
        >>> predictions = scores.argmax(axis=1)
    """
    bank = tf.convert_to_tensor(np.asarray(train_features, np.float32))
    bank_labels = tf.convert_to_tensor(np.asarray(train_labels, np.int64).reshape(-1))
    queries = np.asarray(query_features, np.float32)
    if bank.shape[0] == 0:
        raise ValueError("The kNN bank is empty.")
    if bank.shape[0] != bank_labels.shape[0]:
        raise ValueError(f"{bank.shape[0]} bank features but {bank_labels.shape[0]} labels.")
    k = int(min(k, bank.shape[0]))
    temperature = tf.constant(temperature, tf.float32)

    score_blocks = [np.zeros([0, num_classes], np.float32)]
    for start in range(0, queries.shape[0], batch_size):
        block = tf.convert_to_tensor(queries[start : start + batch_size])
        votes = _knn_votes(block, bank, bank_labels, k, num_classes, temperature)
        score_blocks.append(votes.numpy())
    return np.concatenate(score_blocks, axis=0)


def knn_accuracy(
    train_features,
    train_labels,
    query_features,
    query_labels,
    *,
    num_classes,
    k=200,
    temperature=0.1,
):
    """Top-1 and top-5 accuracy of the weighted kNN classifier.

    Args:
        train_features: float array [N, D], L2-normalised bank features.
        train_labels: int array [N].
        query_features: float array [Q, D], L2-normalised.
        query_labels: int array [Q].
        num_classes: number of classes C.
        k: neighbours per query (capped at N).
        temperature: vote temperature.

    Returns:
        dict(top1=float, top5=float), fractions in [0, 1].
    """
    scores = weighted_knn_predict(
        train_features,
        train_labels,
        query_features,
        num_classes=num_classes,
        k=k,
        temperature=temperature,
    )
    return {
        "top1": top_k_accuracy(scores, query_labels, k=1),
        "top5": top_k_accuracy(scores, query_labels, k=5),
    }
