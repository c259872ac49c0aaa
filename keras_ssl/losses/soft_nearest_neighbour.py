"""The soft nearest-neighbour classifier of PAWS and NNCSL, and the losses built on it.

PAWS (Assran et al., ICCV 2021) labels an unlabeled view by its similarity to
a small labelled support batch, and NNCSL (Kang et al., ICCV 2023;
kangzhiq/NNCSL `src/losses.py`, `src/nncsl_train.py`) adds a distillation of
that classifier across tasks. With l2n the row-wise unit normalisation:

    p(q) = softmax(l2n(q) l2n(S)^T / tau) Y_S                 (losses.py:40-50)

where Y_S is the supports' one-hot labels with label smoothing (on value
1 - s + s/n, off value s/n over the n classes of the label matrix,
losses.py:111-126). The PAWS loss is H(target, anchor), the target being the
*other* large view's prediction, detached and sharpened (p^(1/T), renormalised);
the small multicrop views take the mean of the two large-view targets, and
target entries below 1e-4 are zeroed (losses.py:64-79). ME-max is
sum p_bar log p_bar of the mean sharpened anchor prediction (losses.py:82-85);
NND is H(p_prev, p_cur) of the previous task's model against the current one
(nncsl_train.py:615-635).

Class columns. The official code builds its label matrix for the classes of
the support batch in the order its sampler emits them (`labels[i::C]`). Here a
label matrix always has one column per class of the dataset and an `active`
mask says which columns are in it: inactive columns are 0 in every row, so
every probability there is 0 and contributes nothing (cross-entropies use
`xlogy`, 0 log 0 = 0). The values equal the official ones on the active
columns, and the shapes stay fixed as tasks change, so a traced step never
retraces. Supports that are not in the matrix (another task's) are masked out
of the softmax instead of being removed, for the same reason.

Pure functions: float32, no variables, no collectives (a method gathers the
supports and averages the ME-max mean across replicas itself).
"""

import tensorflow as tf

from keras_ssl.losses.semi_supervised import sharpen

# Target entries below this are set to 0 (losses.py:76, "numerical stability").
TARGET_FLOOR = 1e-4
# Logit of a support masked out of the softmax: exp underflows to exactly 0.
_MASKED_LOGIT = -1e9


def smoothed_label_matrix(labels, active_classes, smoothing=0.1):
    """Soft one-hot rows over the active classes: 1 - s + s/n on the label, s/n elsewhere.

    Args:
        labels: int [S] class of each support (global class ids).
        active_classes: bool or 0/1 [C], the n classes of the matrix.
        smoothing: s (NNCSL's `label_smoothing`, 0.1).

    Returns:
        float32 [S, C]; columns of inactive classes are 0. A row whose label is
        not active has only the off values (mask such supports out of `snn`).
    """
    active = tf.cast(active_classes, tf.float32)
    count = tf.maximum(tf.reduce_sum(active), 1.0)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(active)[0], dtype=tf.float32)
    return (one_hot * (1.0 - smoothing) + smoothing / count) * active[None, :]


def snn(queries, supports, support_targets, *, temperature=0.1, support_mask=None):
    """The soft nearest-neighbour classifier softmax(l2n(q) l2n(S)^T / tau) Y_S.

    Args:
        queries: [B, D] embeddings to classify.
        supports: [S, D] embeddings of the labelled supports.
        support_targets: [S, C] their label rows (`smoothed_label_matrix`).
        temperature: tau (0.1).
        support_mask: optional bool [S]; False leaves a support out of the
            softmax, as if it were not in the batch. At least one must be True.

    Returns:
        float32 [B, C] class probabilities.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1, epsilon=1e-24)
    supports = tf.math.l2_normalize(tf.cast(supports, tf.float32), axis=1, epsilon=1e-24)
    logits = tf.matmul(queries, supports, transpose_b=True) / temperature
    if support_mask is not None:
        logits = tf.where(tf.cast(support_mask, tf.bool)[None, :], logits, _MASKED_LOGIT)
    return tf.matmul(tf.nn.softmax(logits, axis=1), tf.cast(support_targets, tf.float32))


def paws_targets(target_probabilities, *, num_small_views, sharpen_temperature=0.25):
    """The targets of every anchor view from the (already swapped) large-view predictions.

    Args:
        target_probabilities: [2B, C] SNN predictions of the two large views,
            swapped (rows of view 2 first: each is the target of view 1's anchor).
        num_small_views: m, the multicrop views after the two large ones.
        sharpen_temperature: T (0.25).

    Returns:
        [(2 + m) B, C] detached targets: the sharpened predictions, then m
        copies of the mean of the two large-view targets; entries < 1e-4 are 0.
    """
    targets = sharpen(tf.stop_gradient(target_probabilities), sharpen_temperature)
    if num_small_views:
        first, second = tf.split(targets, 2)
        small = 0.5 * (first + second)
        targets = tf.concat([targets] + [small] * num_small_views, axis=0)
    return tf.where(targets < TARGET_FLOOR, tf.zeros_like(targets), targets)


def soft_cross_entropy(targets, probabilities):
    """mean_i sum_c -targets[i, c] log probabilities[i, c], with 0 log 0 = 0."""
    return -tf.reduce_mean(tf.reduce_sum(tf.math.xlogy(targets, probabilities), axis=1))


def paws_loss(anchor_probabilities, targets):
    """H(targets, anchors): PAWS's loss, mean over anchor views (losses.py:79)."""
    return soft_cross_entropy(tf.stop_gradient(targets), anchor_probabilities)


def mean_sharpened(anchor_probabilities, sharpen_temperature=0.25):
    """The mean over anchor rows of sharpen(p): ME-max's p_bar before the replicas' mean."""
    return tf.reduce_mean(sharpen(anchor_probabilities, sharpen_temperature), axis=0)


def me_max_loss(mean_probabilities):
    """sum_c p_bar log p_bar = -H(p_bar): minimising it spreads predictions over the classes."""
    return tf.reduce_sum(tf.math.xlogy(mean_probabilities, mean_probabilities))


def nearest_neighbour_distillation(teacher_probabilities, student_probabilities):
    """NND = mean_i H(p_prev, p_cur); the previous model's p_prev is not sharpened.

    Both are SNN predictions over the previous tasks' supports (each model
    with its own embeddings of them); the teacher side gets no gradient.
    """
    return soft_cross_entropy(tf.stop_gradient(teacher_probabilities), student_probabilities)
