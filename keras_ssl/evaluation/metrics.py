"""Top-k accuracy from class scores, shared by the kNN, linear and fine-tuning evaluations."""

import numpy as np


def top_k_accuracy(scores, labels, k=1):
    """Fraction of rows whose true label is among the `k` highest scores.

    Ties are broken towards the lower class index (a stable sort), the same rule
    `np.argmax` uses, so `k=1` agrees with `argmax(scores) == labels`. When there
    are no more than `k` classes every prediction counts as correct.

    Args:
        scores: float array [N, C]; any monotone score (logits, probabilities, votes).
        labels: int array [N] with values in [0, C).
        k: how many of the highest-scoring classes count as a hit.

    Returns:
        A Python float in [0, 1]; 0.0 for an empty input.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"scores must be [N, C] and labels [N]; got {scores.shape} and {labels.shape}"
        )
    if labels.size == 0:
        return 0.0
    k = min(k, scores.shape[1])
    # Stable sort of the negated scores: equal scores keep ascending class order.
    top_classes = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.any(top_classes == labels[:, None], axis=1)
    return float(np.mean(hits))
