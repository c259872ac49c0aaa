"""Sinkhorn-Knopp equipartition of samples over prototypes, as SwAV computes its codes.

SwAV (Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", NeurIPS 2020; official code `main_swav.py::
distributed_sinkhorn` in facebookresearch/swav) turns prototype scores into
soft codes Q whose prototypes are used equally often over the batch:

    Q = exp(scores / eps)^T                       # [K, B]
    Q /= sum(Q)
    repeat num_iters times:
        Q /= row sums;    Q /= K                  # every prototype gets mass 1/K
        Q /= column sums; Q /= B                  # every sample gets mass 1/B
    return (Q * B)^T                              # each sample's code sums to 1

This kernel does the same arithmetic in log space: every normalisation is a
subtraction of a log-sum-exp. In exact arithmetic the result is identical; in
float32 it never overflows or divides zero by zero, even for scores / eps in
the tens of thousands, where `exp` of the raw scores is inf (fp16 already
overflows at SwAV's defaults; the official code later dropped its max-shift and
inf-replacement workarounds). It always runs in float32.

The codes are targets (SwAV computes them under `torch.no_grad()`), so no
gradient flows through this kernel. For several replicas gather the scores
first and slice the local rows afterwards (`keras_ssl.ops.on_global_batch`):
that is what the official code's all-reduced row sums compute.
"""

import math

import tensorflow as tf


def sinkhorn(scores, num_iters=3, epsilon=0.05):
    """SwAV's codes for a batch of prototype scores.

    Args:
        scores: [B, K] similarities of the samples to the prototypes (SwAV:
            unit-norm projections times unit-norm prototypes; with a queue,
            the queue's rows come first and the caller keeps the last rows).
        num_iters: Sinkhorn iterations (SwAV: 3).
        epsilon: entropy regularisation (SwAV: 0.05; lower is sharper).

    Returns:
        Q [B, K] float32: each row sums to 1; with enough iterations each
        column sums to B / K.

    Example:
    >>> q = sinkhorn(tf.constant([[1., 0.], [0.9, 0.1], [0., 1.], [0.2, 0.8]]))
    >>> [round(float(v), 3) for v in tf.reduce_sum(q, axis=1)]
    [1.0, 1.0, 1.0, 1.0]
    """
    if num_iters < 0:
        raise ValueError(f"num_iters must be >= 0, got {num_iters}.")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}.")
    return _sinkhorn(tf.stop_gradient(scores), num_iters=int(num_iters),
                     epsilon=float(epsilon))


@tf.function(jit_compile=True)
def _sinkhorn(scores, num_iters, epsilon):
    log_q = tf.cast(scores, tf.float32) / epsilon  # [B, K]: samples x prototypes
    num_samples = tf.cast(tf.shape(log_q)[0], tf.float32)
    log_num_samples = tf.math.log(num_samples)
    log_num_prototypes = math.log(log_q.shape[1])
    log_q -= tf.reduce_logsumexp(log_q)

    def body(i, log_q):
        # Prototype marginals (official "rows" of Q^T) to 1/K ...
        log_q -= tf.reduce_logsumexp(log_q, axis=0, keepdims=True) + log_num_prototypes
        # ... then sample marginals (official "columns") to 1/B.
        log_q -= tf.reduce_logsumexp(log_q, axis=1, keepdims=True) + log_num_samples
        return i + 1, log_q

    _, log_q = tf.while_loop(lambda i, _: i < num_iters, body, (tf.constant(0), log_q))
    return tf.exp(log_q + log_num_samples)
