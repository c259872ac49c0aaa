"""ASCL's soft targets: the key's neighbours in the queue share the positive's target mass.

Feng and Patras, "Adaptive Soft Contrastive Learning", ICPR 2022 (arXiv
2207.11163); official code MrChenFeng/ASCL_ICPR2022 @b31e15b5, `model.py`
`ASCL._forward_moco` (lines 166-233) and `ImageNet-1K/builder.py`.

MoCo's target is one-hot on the positive key. ASCL keeps that 1 and adds
mass on the queue entries the *key* (the weak view, momentum encoder) is
close to, scaled by how peaked the key's relation to the queue is:

    p = softmax(k . Q / T2)                 relation of each key to the K queue rows
    c = 1 - H(p) / log K                    confidence, 0 for a uniform p
    y_0 = 1,  y_j = min(nn_num * c * p_j, 1)   ("ascl")
    y <- y / sum(y)                          under stop-gradient

and the loss is MoCo's cross-entropy of `y` against softmax([q.k, q.Q] / T1).
While the queue is random p is flat, c ~ 0 and the loss is MoCo's; c is not
clipped, so that graceful start is kept (methods-b.md §1 (e)).

The variants of the official `--type`:

- "ahcl": y_j = c for the key's top-`nn_num` queue rows, 0 elsewhere;
- "hard": y_j = 1 for the top-`nn_num` rows;
- "normal": no extra target mass (plain MoCo).
"""

import math

import tensorflow as tf

from keras_ssl.losses.logit_transforms import LogitTransform

TYPES = ("ascl", "ahcl", "hard", "normal")


def neighbour_confidence(relation):
    """(p, c): softmax of `relation` [B, K] over the queue and 1 - H(p) / log K."""
    probabilities = tf.nn.softmax(relation, axis=1)
    entropy = -tf.reduce_sum(probabilities * tf.nn.log_softmax(relation, axis=1), axis=1,
                             keepdims=True)
    queue_size = relation.shape[1]
    return probabilities, 1.0 - entropy / math.log(queue_size)


def queue_targets(keys, queue, *, type="ascl", relation_temperature=0.05, nn_num=1):
    """(targets [B, 1 + K] summing to 1 per row, confidence [B]) of ASCL's rule.

    Args:
        keys: [B, D] unit-norm keys (the positives).
        queue: [K, D] unit-norm queue rows, in the order of the logits' columns 1..K.
        type, relation_temperature, nn_num: as `SoftNeighbourTargets`.
    """
    relation = tf.matmul(keys, queue, transpose_b=True) / relation_temperature
    probabilities, confidence = neighbour_confidence(relation)
    if type == "ascl":
        extra = tf.minimum(nn_num * confidence * probabilities, 1.0)
    elif type in ("ahcl", "hard"):
        _, nearest = tf.math.top_k(relation, k=nn_num)
        neighbours = tf.reduce_sum(tf.one_hot(nearest, relation.shape[1]), axis=1)
        extra = neighbours * confidence if type == "ahcl" else neighbours
    else:
        extra = tf.zeros_like(relation)
    targets = tf.concat([tf.ones_like(confidence), extra], axis=1)
    targets /= tf.reduce_sum(targets, axis=1, keepdims=True)
    return tf.stop_gradient(targets), tf.stop_gradient(confidence[:, 0])


class SoftNeighbourTargets(LogitTransform):
    """ASCL: soft targets over [positive, queue] from the key's relation to the queue.

    For MoCo's queue layout (`queue_logits`): the keys are the logits'
    `positives`, the queue its `negatives`, the positive in column 0 and the
    queue in columns 1..K. Columns after those (appended by an earlier
    transform, e.g. synthetic negatives) get no target mass; a mask set by an
    earlier transform still applies (`contrastive_cross_entropy` drops the
    masked columns' mass and renormalises).

    Args:
        type: "ascl" (soft, confidence-weighted), "ahcl" (confidence on the
            top-`nn_num` rows), "hard" (1 on the top-`nn_num` rows) or
            "normal" (MoCo's one-hot target).
        relation_temperature: T2 of p = softmax(k . Q / T2) (official 0.05).
        nn_num: the official `--K` of `main.py` (number of neighbours): the
            scale of the soft mass in "ascl", the top-k in "ahcl"/"hard" (1;
            the README's CIFAR-100 run uses 5).

    Logs `ascl_confidence`, the batch's mean c (every type: it shows how
    structured the queue is even where the targets ignore it).

    Example:
    >>> from keras_ssl.losses.logit_transforms import queue_logits
    >>> from keras_ssl.methods import StepContext
    >>> queue = tf.math.l2_normalize(tf.random.normal([16, 8], seed=1), axis=1)
    >>> logits = queue_logits(tf.random.normal([4, 8]), queue[:4], queue, temperature=0.1)
    >>> soft = SoftNeighbourTargets()(logits, StepContext.at(0))
    >>> [round(float(v), 5) for v in tf.reduce_sum(soft.targets, axis=1)]
    [1.0, 1.0, 1.0, 1.0]
    """

    spec_name = "ascl"
    log_names = ("ascl_confidence",)

    def __init__(self, *, type="ascl", relation_temperature=0.05, nn_num=1):
        if type not in TYPES:
            raise ValueError(f"SoftNeighbourTargets type must be one of {', '.join(TYPES)}; "
                             f"got {type!r}.")
        if not relation_temperature > 0:
            raise ValueError(f"relation_temperature (T2) must be positive; got "
                             f"{relation_temperature!r}.")
        if isinstance(nn_num, bool) or not isinstance(nn_num, int) or nn_num < 1:
            raise ValueError(f"nn_num (the number of neighbours) must be an int >= 1; got "
                             f"{nn_num!r}.")
        self.type = type
        self.relation_temperature = float(relation_temperature)
        self.nn_num = nn_num

    def __call__(self, logits, ctx):
        del ctx  # Deterministic: no draws, no schedule.
        if logits.positives is None or logits.negatives is None:
            raise ValueError("SoftNeighbourTargets (ASCL) needs a queue layout: the keys as "
                             "`positives` and the queue as `negatives` (MoCo's "
                             "`queue_logits`).")
        keys = tf.cast(logits.positives, tf.float32)
        queue = tf.cast(logits.negatives, tf.float32)
        queue_size = queue.shape[0]
        if queue_size is None or queue_size < 2:
            raise ValueError(f"ASCL's confidence divides by log K: the queue needs a static "
                             f"size of at least 2 rows; got {queue_size}.")
        if self.type in ("ahcl", "hard") and self.nn_num > queue_size:
            raise ValueError(f"nn_num={self.nn_num} neighbours asked of a queue of "
                             f"{queue_size} rows.")
        columns = logits.logits.shape[1]
        if columns is not None and columns < 1 + queue_size:
            raise ValueError(f"Logits of {columns} columns cannot hold the positive and a "
                             f"queue of {queue_size}: ASCL expects `queue_logits`' layout.")
        # Both are unit-norm already (`ContrastiveLogits`), as in the official code.
        targets, confidence = queue_targets(
            keys, queue, type=self.type, relation_temperature=self.relation_temperature,
            nn_num=self.nn_num)
        appended = tf.shape(logits.logits)[1] - (1 + queue_size)
        targets = tf.pad(targets, [[0, 0], [0, appended]])
        return logits.replace(
            targets=targets,
            logs={**logits.logs, "ascl_confidence": tf.reduce_mean(confidence)})
