"""InterCLR's inter-image loss against a NumPy transcription of `contrast_inter`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import losses


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(queries, positives, negatives, temperature, margin, mask=None):
    # Row by row: logits [cos(q, p) - margin, cos(q, n_1), ...] / t, label 0;
    # masked negatives are simply absent.
    total = 0.0
    for i, q in enumerate(_unit(queries.astype(np.float64))):
        keep = np.ones(len(negatives[i]), bool) if mask is None else mask[i]
        logits = np.concatenate([[q @ positives[i] - margin], negatives[i][keep] @ q])
        logits = logits / temperature
        top = logits.max()
        total += -(logits[0] - top - np.log(np.exp(logits - top).sum()))
    return total / len(queries)


def _inputs(seed, batch=5, num_negatives=7, dim=6):
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(batch, dim)).astype("float32") * 3.0  # unnormalised
    positives = _unit(rng.normal(size=(batch, dim))).astype("float32")
    negatives = _unit(rng.normal(size=(batch, num_negatives, dim))).astype("float32")
    return queries, positives, negatives


@pytest.mark.parametrize("temperature,margin", [(0.2, -0.5), (0.2, 0.0), (0.5, 0.3)])
def test_matches_numpy(temperature, margin):
    queries, positives, negatives = _inputs(0)
    loss = losses.inter_image_nce_loss(queries, positives, negatives,
                                       temperature=temperature, margin=margin)
    np.testing.assert_allclose(
        loss, _reference(queries, positives, negatives, temperature, margin), rtol=1e-5)


def test_masked_negatives_are_left_out_of_the_denominator():
    queries, positives, negatives = _inputs(1)
    mask = np.random.default_rng(1).uniform(size=negatives.shape[:2]) < 0.6
    mask[0] = False  # a row with no valid negative at all: loss 0 for it
    loss = losses.inter_image_nce_loss(queries, positives, negatives, temperature=0.2,
                                       margin=-0.5, negative_mask=mask)
    np.testing.assert_allclose(
        loss, _reference(queries, positives, negatives, 0.2, -0.5, mask), rtol=1e-5)
    # Dropping the masked slots explicitly gives the same loss for a full row.
    row = slice(1, 2)
    kept = negatives[1][mask[1]][None]
    np.testing.assert_allclose(
        losses.inter_image_nce_loss(queries[row], positives[row], negatives[row],
                                    temperature=0.2, margin=-0.5, negative_mask=mask[row]),
        losses.inter_image_nce_loss(queries[row], positives[row], kept,
                                    temperature=0.2, margin=-0.5), rtol=1e-6)


def test_negative_margin_raises_the_positive_logit():
    # margin -0.5 is the same as a positive whose cosine is 0.5 higher.
    queries, positives, negatives = _inputs(2)
    with_margin = losses.inter_image_nce_loss(queries, positives, negatives,
                                              temperature=0.2, margin=-0.5)
    lower = _reference(queries, positives, negatives, 0.2, 0.0)
    assert float(with_margin) < lower
    shifted = _reference(queries, positives, negatives, 0.2, -0.5)
    np.testing.assert_allclose(with_margin, shifted, rtol=1e-5)


def test_gradient_reaches_queries_only():
    queries, positives, negatives = (tf.constant(x) for x in _inputs(3))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([queries, positives, negatives])
        loss = losses.inter_image_nce_loss(queries, positives, negatives,
                                           temperature=0.2, margin=-0.5)
    assert np.abs(tape.gradient(loss, queries)).sum() > 0
    assert tape.gradient(loss, positives) is None
    assert tape.gradient(loss, negatives) is None
