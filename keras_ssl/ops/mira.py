"""MIRA's pseudo-labels: the fixed point of a mutual-information-regularised assignment.

MIRA (Lee et al., "Unsupervised Visual Representation Learning via Mutual
Information Regularized Assignment", NeurIPS 2022; official code `train.py::
mira` in movinghoon/mira) makes the teacher's targets both confident and
balanced over the batch. With k = softmax(logits / (1 - beta)) (logits already
divided by the teacher temperature) and B the batch size, it iterates

    v = (colsum(k) / B) ** (1 - beta)
    repeat num_iters times:
        v = (colsum(k / rowsum(v ** (-beta / (1 - beta)) * k)) / B) ** (1 - beta)
    P = rownorm(v ** (-beta / (1 - beta)) * k)

so every prototype's weight is damped by its share of the batch.

This kernel tracks log(v ** (-beta / (1 - beta))) = -beta * log(colsum(...) / B)
instead of v: the exponent -beta / (1 - beta) blows up as beta -> 1 and the
powers of tiny column sums under- or overflow, while the log form only adds
log-sum-exps. In exact arithmetic the result is the official one. It runs in
float32 whatever the input dtype, and no gradient flows (the targets are
computed under `torch.no_grad()` in the official code). The column sums are
over the global batch: gather the logits first (`keras_ssl.ops.on_global_batch`).
"""

import tensorflow as tf


def mira_assign(logits, beta, num_iters):
    """MIRA's pseudo-labels for a batch of teacher logits.

    Args:
        logits: [B, K] teacher scores already divided by the teacher
            temperature (MIRA: cosine scores / 0.225).
        beta: regularisation strength in [0, 1) (MIRA: cosine schedule from
            0.75 to 2/3); beta = 0 gives softmax(logits). A Python number or
            a scalar tensor (a schedule), which does not retrace the kernel.
        num_iters: fixed-point iterations (MIRA: 30).

    Returns:
        P [B, K] float32 with rows summing to 1.

    Example:
    >>> p = mira_assign(tf.constant([[2., 0.], [1., 0.], [0., 1.]]), 0.5, 30)
    >>> [round(float(v), 3) for v in tf.reduce_sum(p, axis=1)]
    [1.0, 1.0, 1.0]
    """
    if isinstance(beta, (int, float)) and not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}.")
    if num_iters < 0:
        raise ValueError(f"num_iters must be >= 0, got {num_iters}.")
    return _mira_assign(tf.stop_gradient(logits), tf.cast(beta, tf.float32),
                        num_iters=int(num_iters))


@tf.function(jit_compile=True)
def _mira_assign(logits, beta, num_iters):
    log_k = tf.nn.log_softmax(tf.cast(logits, tf.float32) / (1.0 - beta), axis=1)
    log_batch = tf.math.log(tf.cast(tf.shape(log_k)[0], tf.float32))

    def log_weight(log_rows):
        # log(v ** (-beta / (1 - beta))) with v = (colsum(rows) / B) ** (1 - beta).
        return -beta * (tf.reduce_logsumexp(log_rows, axis=0, keepdims=True) - log_batch)

    def body(i, log_w):
        log_rowsum = tf.reduce_logsumexp(log_w + log_k, axis=1, keepdims=True)
        return i + 1, log_weight(log_k - log_rowsum)

    _, log_w = tf.while_loop(lambda i, _: i < num_iters, body,
                             (tf.constant(0), log_weight(log_k)))
    return tf.nn.softmax(log_w + log_k, axis=1)
