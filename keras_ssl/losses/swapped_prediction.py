"""Swapped prediction with soft targets: SwAV's loss, and MIRA's, which has the same form.

SwAV (Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", NeurIPS 2020; facebookresearch/swav `main_swav.py`):
the code q_a of an assignment crop a is predicted from every other crop v,

    L = 1/|A| sum_{a in A} 1/(V-1) sum_{v != a} mean_b [ -sum_k q_a[b,k] log softmax(s_v[b] / tau)_k ]

with V crops in all and A = {0, 1} (the two global crops).

MIRA (Lee et al., NeurIPS 2022; movinghoon/mira `train.py::loss_func`)
concatenates the student logits of the crops other than a and takes one mean
over all their rows, for a = 0 and a = 1, then averages the two. Every crop
has the same batch, so that mean over rows is the mean over crops of the
per-crop means: the same formula, checked in tests/losses/test_mira_loss.py.

Pure functions: float32, no variables, no collectives. The targets get no
gradient (both papers compute them under `torch.no_grad()`).
"""

import tensorflow as tf


def soft_target_cross_entropy(targets, logits, *, temperature):
    """mean_b [ -sum_k targets[b, k] log softmax(logits[b] / temperature)_k ].

    Args:
        targets: `[B, K]` soft labels, rows summing to 1 (no gradient).
        logits: `[B, K]` scores (SwAV: cosine to the prototypes).
        temperature: softmax temperature (SwAV and MIRA's student: 0.1).

    Returns:
        Scalar float32.
    """
    targets = tf.stop_gradient(tf.cast(targets, tf.float32))
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32) / temperature, axis=1)
    return -tf.reduce_mean(tf.reduce_sum(targets * log_probs, axis=1))


def swapped_prediction_loss(logits, targets, *, temperature, target_views=(0, 1)):
    """SwAV's swapped prediction (and MIRA's loss) over all crops.

    Args:
        logits: sequence of V `[B, K]` prototype scores, one per crop, the
            global crops first.
        targets: sequence of `[B, K]` soft targets, one per entry of
            `target_views` (SwAV: Sinkhorn codes; MIRA: pseudo-labels).
        temperature: tau of the predicted softmax (0.1).
        target_views: the crop each target was computed from; that crop does
            not predict its own target.

    Returns:
        Scalar float32: the mean over targets of the mean over the other crops
        of the soft cross-entropy.

    Example:
    >>> logits = [tf.constant([[1., 0.]]), tf.constant([[0., 1.]])]
    >>> targets = [tf.constant([[1., 0.]]), tf.constant([[0., 1.]])]
    >>> round(float(swapped_prediction_loss(logits, targets, temperature=1.0)), 4)
    1.3133
    """
    if len(targets) != len(target_views):
        raise ValueError(f"{len(targets)} targets for target_views={target_views}.")
    if len(logits) < 2:
        raise ValueError("Swapped prediction needs at least two crops.")
    total = 0.0
    for target, target_view in zip(targets, target_views):
        others = [v for v in range(len(logits)) if v != target_view]
        subloss = tf.add_n([soft_target_cross_entropy(target, logits[v],
                                                      temperature=temperature)
                            for v in others])
        total += subloss / len(others)
    return total / len(targets)
