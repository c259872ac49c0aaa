"""Top-k nearest neighbours in a memory bank by dot product (MSF, CMSF, CLIM, kNN).

MSF (Koohpayegani et al., "Mean Shift for Self-Supervised Learning", ICCV
2021; official code UMBCvision/MSF `train_msf.py`) pulls a query towards the k
bank entries nearest to its target; CMSF (Navaneet et al., ECCV 2022;
UCDvision/CMSF) restricts the search to a constrained set. The official code
turns unit-vector dot products into distances 2 - 2 t.M^T and pushes the
excluded entries away with a constant (+5) before `topk`. Here the caller
passes an explicit boolean mask instead and excluded entries score -inf, so
they can never outrank an allowed entry, whatever the similarities are.

Inputs are not normalised here (callers normalise; unnormalised dot products
are sometimes wanted). The similarity matrix is computed in float32. For big
query x bank products the queries are processed in chunks of
`QUERY_CHUNK` rows, so the [Q, N] matrix never exists at once (4,096 queries
against a 65,536-row bank would otherwise take 1 GiB).
"""

import tensorflow as tf

QUERY_CHUNK = 1024
_MAX_SCORES = 1 << 26  # above this many query x bank scores, work in chunks


def topk_neighbors(queries, bank, k, mask=None):
    """The `k` bank rows with the largest dot product with each query.

    Args:
        queries: [Q, D] float tensor.
        bank: [N, D] float tensor.
        k: Python int, 1 <= k <= N.
        mask: optional boolean [Q, N]; True marks the bank rows a query may
            return. A disallowed row is returned only when fewer than k rows
            are allowed, and then with similarity -inf.

    Returns:
        (indices [Q, k] int32, similarities [Q, k] float32), most similar
        first; ties go to the lower bank index.

    Example:
    >>> bank = tf.constant([[1., 0.], [0., 1.], [0.6, 0.8]])
    >>> indices, _ = topk_neighbors(tf.constant([[1., 0.1]]), bank, k=2)
    >>> indices.numpy().tolist()
    [[0, 2]]
    """
    num_rows = bank.shape[0]
    if num_rows is not None and not 1 <= k <= num_rows:
        raise ValueError(f"k={k} must be between 1 and the bank size {num_rows}.")
    if mask is None:
        return _topk(queries, bank, k=int(k))
    return _topk_masked(queries, bank, tf.cast(mask, tf.bool), k=int(k))


@tf.function(jit_compile=True)
def _topk(queries, bank, k):
    return _chunked(lambda q, _: _search(q, bank, None, k), queries, None, bank.shape[0])


@tf.function(jit_compile=True)
def _topk_masked(queries, bank, mask, k):
    return _chunked(lambda q, m: _search(q, bank, m, k), queries, mask, bank.shape[0])


def _search(queries, bank, mask, k):
    scores = tf.matmul(tf.cast(queries, tf.float32), tf.cast(bank, tf.float32),
                       transpose_b=True)
    if mask is not None:
        scores = tf.where(mask, scores, float("-inf"))
    similarities, indices = tf.math.top_k(scores, k)
    return indices, similarities


def _chunked(search, queries, mask, num_rows):
    num_queries = queries.shape[0]
    if (num_queries is None or num_rows is None or num_queries <= QUERY_CHUNK
            or num_queries * num_rows <= _MAX_SCORES):
        return search(queries, mask)
    # Pad the queries to whole chunks and run the chunks one after the other.
    num_chunks = -(-num_queries // QUERY_CHUNK)
    padding = num_chunks * QUERY_CHUNK - num_queries
    query_chunks = tf.reshape(tf.pad(queries, [[0, padding], [0, 0]]),
                              [num_chunks, QUERY_CHUNK, -1])
    if mask is None:
        indices, similarities = tf.map_fn(
            lambda q: search(q, None), query_chunks,
            fn_output_signature=(tf.int32, tf.float32))
    else:
        mask_chunks = tf.reshape(tf.pad(mask, [[0, padding], [0, 0]]),
                                 [num_chunks, QUERY_CHUNK, -1])
        indices, similarities = tf.map_fn(
            lambda pair: search(*pair), (query_chunks, mask_chunks),
            fn_output_signature=(tf.int32, tf.float32))
    k = indices.shape[-1]
    return (tf.reshape(indices, [-1, k])[:num_queries],
            tf.reshape(similarities, [-1, k])[:num_queries])
