"""Contrastive logits as values: each layout equals its loss, and transforms act as NumPy says."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.losses import info_nce_loss, non_parametric_softmax_loss, nt_xent_loss
from keras_ssl.losses.logit_transforms import (apply_transforms, bank_logits, batch_logits,
                                               contrastive_cross_entropy, queue_logits)
from keras_ssl.methods import StepContext

RNG = np.random.default_rng(0)


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _numpy_soft_cross_entropy(logits, targets, mask):
    logits = np.where(mask, logits, -np.inf)
    log_softmax = logits - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)),
                                         axis=1, keepdims=True)) - logits.max(1, keepdims=True)
    targets = np.where(mask, targets, 0.0)
    targets = targets / targets.sum(1, keepdims=True)
    return float(np.mean(-np.sum(np.where(mask, targets * log_softmax, 0.0), axis=1)))


QUERIES = RNG.normal(size=(4, 6)).astype("float32")
KEYS = RNG.normal(size=(4, 6)).astype("float32")
QUEUE = _unit(RNG.normal(size=(7, 6))).astype("float32")
CTX = StepContext.at(3)


def test_each_layout_without_transforms_is_its_loss():
    loss, logs = contrastive_cross_entropy(queue_logits(QUERIES, KEYS, QUEUE, temperature=0.2))
    assert logs == {}
    np.testing.assert_allclose(loss, info_nce_loss(QUERIES, KEYS, QUEUE, temperature=0.2),
                               rtol=1e-5)
    index = tf.constant([3, 0, 6, 2])
    loss, _ = contrastive_cross_entropy(bank_logits(QUERIES, QUEUE, index, temperature=0.1))
    np.testing.assert_allclose(
        loss, non_parametric_softmax_loss(QUERIES, QUEUE, index, temperature=0.1), rtol=1e-5)
    # NT-Xent averages its two directions; each direction is one layout.
    forward, _ = contrastive_cross_entropy(batch_logits(QUERIES, QUERIES, KEYS, 0,
                                                        temperature=0.5))
    backward, _ = contrastive_cross_entropy(batch_logits(KEYS, KEYS, QUERIES, 0,
                                                         temperature=0.5))
    np.testing.assert_allclose((forward + backward) / 2,
                               nt_xent_loss(QUERIES, KEYS, QUERIES, KEYS, 0, temperature=0.5),
                               rtol=1e-5)


def test_a_mask_and_soft_targets_give_the_numpy_cross_entropy():
    def drop_negative_2_and_soften(logits, ctx):
        mask = np.ones(logits.logits.shape, bool)
        mask[:, 1 + 2] = False  # queue row 2 is a false negative of every query
        soft = np.full(logits.logits.shape, 0.1 / 7, "float32")
        soft[:, 0] = 0.9
        return logits.replace(mask=tf.constant(mask), targets=tf.constant(soft))

    logits = apply_transforms(queue_logits(QUERIES, KEYS, QUEUE, temperature=0.2),
                              [drop_negative_2_and_soften], CTX)
    loss, _ = contrastive_cross_entropy(logits)
    q, k = _unit(QUERIES), _unit(KEYS)
    raw = np.concatenate([np.sum(q * k, 1, keepdims=True), q @ QUEUE.T], axis=1) / 0.2
    mask = np.ones(raw.shape, bool)
    mask[:, 3] = False
    soft = np.full(raw.shape, 0.1 / 7)
    soft[:, 0] = 0.9
    np.testing.assert_allclose(loss, _numpy_soft_cross_entropy(raw, soft, mask), rtol=1e-5)


def test_extra_terms_are_added_and_logged_and_transforms_see_the_step():
    seen = []

    def regulariser(logits, ctx):
        seen.append(int(ctx.step))
        return logits.replace(extra_losses={"penalty": tf.constant(0.25)})

    plain, _ = contrastive_cross_entropy(queue_logits(QUERIES, KEYS, QUEUE, temperature=0.2))
    loss, logs = contrastive_cross_entropy(apply_transforms(
        queue_logits(QUERIES, KEYS, QUEUE, temperature=0.2), [regulariser], CTX))
    np.testing.assert_allclose(loss, plain + 0.25, rtol=1e-6)
    assert set(logs) == {"penalty"} and seen == [3]


def test_a_transform_must_return_logits():
    with pytest.raises(TypeError, match="ContrastiveLogits"):
        apply_transforms(queue_logits(QUERIES, KEYS, QUEUE, temperature=0.2),
                         [lambda logits, ctx: logits.logits], CTX)


@pytest.mark.parametrize("name", ["simclr", "moco_v2", "npid"])
def test_contrastive_methods_take_transforms_by_keyword(name):
    from keras_ssl import methods
    from keras_ssl.methods import Batch, RunContext
    from tests.methods import harness

    def identity(logits, ctx):
        return logits

    def scaled_loss(transforms):
        model = harness.build(name)
        model = methods.get(name, encoder=model.encoder, run=RunContext(num_examples=32),
                            logit_transforms=transforms,
                            **{k: v for k, v in harness.TINY_CONFIGS[name].items()
                               if k != "num_examples"})
        model.compile(optimizer="sgd")
        model.optimizer.build(model.update_variables())
        batch = Batch.from_element(next(iter(harness.batches(1))))
        ctx = model.step_context()
        return model.loss(model.forward(batch, ctx), ctx)[0]

    np.testing.assert_allclose(scaled_loss([identity]), scaled_loss([]), rtol=1e-5)
