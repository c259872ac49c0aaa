"""ProPos' prototype scattering loss (ProtoCL) over cluster centres of a batch.

Huang, Chen, Zhang, Shan, "Learning Representation for Clustering via
Prototype Scattering and Positive Sampling", TPAMI 2022 (arXiv 2111.11821),
the loss L_psl of its section 3. Official code: Hzzone/ProPos @cc35d8ca,
`models/propos/byol_wrapper.py`: `compute_centers` (lines 96-106) and
`compute_cluster_loss` (lines 108-133).

For every cluster c of the batch's pseudo-labels, the centre of the online
projections and the centre of the target projections,

    mu_q[c] = l2n(mean_{i: y_i = c} l2n(q_i)),   mu_k[c] likewise from k,

are a positive pair, and the other online centres are its negatives:

    loss_c = -mu_q[c].mu_k[c] / t
             + logsumexp({mu_q[c].mu_k[c]} U {mu_q[c].mu_q[c']}_{c' != c} / t).

The loss is the mean of loss_c over the clusters present in the batch.
Absent clusters have no centre: their columns are set to the logit -10 (as
the official code does, after the division by t) and their rows are dropped.

This module is pure: it is given the rows it averages over. ProPos computes
the centres over the global batch (all-gathered across devices), which the
method does before calling it (`keras_ssl.methods.ncc`).
"""

import tensorflow as tf

# The logit the official code writes into the columns of absent clusters
# (`d_q.masked_fill_(mask, -10)`, after dividing by the temperature).
ABSENT_CLUSTER_LOGIT = -10.0


def cluster_presence(labels, num_clusters):
    """[K] bool: whether cluster c has at least one row in `labels` (-1 rows count for none)."""
    counts = tf.reduce_sum(tf.one_hot(tf.cast(labels, tf.int32), num_clusters), axis=0)
    return counts > 0


def cluster_centres(embeddings, labels, num_clusters):
    """Unit-norm mean of the unit-norm rows of each cluster; zero rows for empty clusters.

    Args:
        embeddings: [B, D] rows (normalised here).
        labels: [B] int cluster of each row in [0, K); -1 rows belong to no
            cluster.
        num_clusters: K.

    Returns:
        [K, D] float32. The official code divides the one-hot weights by each
        cluster's count before the sum; the later normalisation removes that
        factor, so the centres here are normalised sums (the same directions).
    """
    embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-12)
    membership = tf.one_hot(tf.cast(labels, tf.int32), num_clusters)  # -1: a zero row
    sums = tf.matmul(membership, embeddings, transpose_a=True)
    return tf.math.l2_normalize(sums, axis=1, epsilon=1e-12)


def prototype_scattering_loss(queries, keys, labels, *, num_clusters, temperature=0.5):
    """ProtoCL of one (online, target) pair of views.

    Args:
        queries: [B, D] online projections (unnormalised; gradients flow).
        keys: [B, D] target projections of the other view; treated as
            constants (the target network moves by EMA only).
        labels: [B] int pseudo-label of each row, -1 for rows without one.
        num_clusters: K, the number of pseudo-label values.
        temperature: t (0.5 in ProPos).

    Returns:
        A float32 scalar: the mean over the present clusters of loss_c; 0
        when no cluster is present (the official code divides by zero then).

    Example:
    >>> queries = tf.constant([[1., 0.], [0., 1.], [1., 1.]])
    >>> loss = prototype_scattering_loss(queries, queries, tf.constant([0, 1, 1]),
    ...                                  num_clusters=3)
    >>> float(loss) > 0.0
    True
    """
    present = cluster_presence(labels, num_clusters)
    query_centres = cluster_centres(queries, labels, num_clusters)
    key_centres = tf.stop_gradient(cluster_centres(keys, labels, num_clusters))
    positives = tf.reduce_sum(query_centres * key_centres, axis=1) / temperature
    # Row c: the positive on the diagonal, the other online centres elsewhere.
    logits = tf.linalg.set_diag(
        tf.matmul(query_centres, query_centres, transpose_b=True) / temperature, positives)
    logits = tf.where(present[None, :], logits, ABSENT_CLUSTER_LOGIT)
    per_cluster = tf.reduce_logsumexp(logits, axis=1) - tf.linalg.diag_part(logits)
    num_present = tf.reduce_sum(tf.cast(present, tf.float32))
    return (tf.reduce_sum(tf.where(present, per_cluster, 0.0))
            / tf.maximum(num_present, 1.0))
