"""XMoCo's cross-similarity terms: NumPy formulas, invariants, gradients, replicas, MoCo."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.losses import info_nce_loss
from keras_ssl.losses.cross_similarity import (CrossSimilarityConsistency,
                                               cross_similarity_consistency,
                                               negative_uniformity)
from keras_ssl.losses.logit_transforms import (ContrastiveLogits, contrastive_cross_entropy,
                                               directions_cross_entropy, queue_logits,
                                               transform_directions)
from keras_ssl.methods import Batch, StepContext
from keras_ssl.methods.registry import make_logit_transforms
from tests.methods import harness

CTX = StepContext.at(0)
TEMPERATURE = 0.2
RNG = np.random.default_rng(0)
BATCH, DIM = 8, 6


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


Q1, Q2, K1, K2 = (RNG.normal(size=(BATCH, DIM)).astype("float32") for _ in range(4))
QUEUE = _unit(RNG.normal(size=(5, DIM))).astype("float32")


# ---- NumPy copies of the reconstructed formulas (cross_similarity's docstring) ----
def _log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def numpy_consistency(s12, s21, form, tau):
    if form == "squared":
        return np.sum((s12 - s21) ** 2) / s12.shape[0] ** 2  # ||S12 - S21||_F^2 / B^2
    log_p, log_q = _log_softmax(s12 / tau), _log_softmax(s21 / tau)
    p, q = np.exp(log_p), np.exp(log_q)
    kl_pq = np.sum(p * (log_p - log_q), axis=1)
    kl_qp = np.sum(q * (log_q - log_p), axis=1)
    return np.mean(0.5 * (kl_pq + kl_qp))


def numpy_uniformity(s, tau):
    """mean_i KL(U || softmax(S_{i, j != i} / tau)), the diagonal being the positives."""
    terms = []
    for i in range(s.shape[0]):
        negatives = np.delete(s[i], i) / tau
        log_p = negatives - negatives.max()
        log_p -= np.log(np.exp(log_p).sum())
        n = negatives.size
        terms.append(np.sum((1.0 / n) * (np.log(1.0 / n) - log_p)))
    return np.mean(terms)


def numpy_terms(q1, q2, k1, k2, *, w_cc, w_u, form="squared", tau=TEMPERATURE):
    q1, q2, k1, k2 = map(_unit, (q1, q2, k1, k2))
    s12, s21 = q1 @ k2.T, q2 @ k1.T
    return (w_cc * numpy_consistency(s12, s21, form, tau),
            w_u * 0.5 * (numpy_uniformity(s12, tau) + numpy_uniformity(s21, tau)))


def directions(q1=Q1, q2=Q2, k1=K1, k2=K2, queue=QUEUE):
    """Symmetric MoCo's two directions, as MoCo.loss builds them."""
    return tuple(queue_logits(q, k, queue, temperature=TEMPERATURE).replace(direction=i)
                 for i, (q, k) in enumerate(((q1, k2), (q2, k1))))


def terms_of(transform, **arrays):
    result = transform_directions(directions(**arrays), [transform], CTX)
    return result, (float(result[0].extra_losses["xmoco_consistency"]),
                    float(result[0].extra_losses["xmoco_uniformity"]))


# ---- the formulas ---------------------------------------------------------------
@pytest.mark.parametrize("form", ["squared", "kl"])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_terms_match_the_numpy_formulas(form, tau):
    transform = CrossSimilarityConsistency(consistency_weight=0.3, uniformity_weight=0.7,
                                           consistency=form, temperature=tau)
    _, (consistency, uniformity) = terms_of(transform)
    expected = numpy_terms(Q1, Q2, K1, K2, w_cc=0.3, w_u=0.7, form=form,
                           tau=tau or TEMPERATURE)
    assert expected[0] > 1e-3 and expected[1] > 1e-3  # the cases are not trivial
    np.testing.assert_allclose((consistency, uniformity), expected, rtol=1e-4)


def test_both_directions_carry_the_same_terms_and_the_average_counts_them_once():
    transform = CrossSimilarityConsistency(consistency_weight=0.3, uniformity_weight=0.7)
    plain = directions()
    result, (consistency, uniformity) = terms_of(transform)
    for before, after in zip(plain, result):
        assert set(after.extra_losses) == set(transform.log_names)
        np.testing.assert_allclose(after.extra_losses["xmoco_consistency"], consistency)
        np.testing.assert_allclose(after.extra_losses["xmoco_uniformity"], uniformity)
        # InfoNCE is untouched: the terms are added beside it, not instead.
        np.testing.assert_array_equal(after.logits, before.logits)
        np.testing.assert_array_equal(after.targets, before.targets)
        assert after.mask is None
    loss, logs = directions_cross_entropy(result)
    infonce = np.mean([contrastive_cross_entropy(item)[0] for item in plain])
    np.testing.assert_allclose(loss, infonce + consistency + uniformity, rtol=1e-5)
    np.testing.assert_allclose((logs["xmoco_consistency"], logs["xmoco_uniformity"]),
                               (consistency, uniformity), rtol=1e-6)


def test_terms_of_an_earlier_transform_are_kept():
    def earlier(logits, ctx):
        return logits.replace(extra_losses={"penalty": tf.constant(0.5)})

    result = transform_directions(directions(), [earlier, CrossSimilarityConsistency()], CTX)
    assert all(set(item.extra_losses) == {"penalty", "xmoco_consistency", "xmoco_uniformity"}
               for item in result)


def test_with_zero_weights_the_loss_is_symmetric_infonce():
    transform = CrossSimilarityConsistency(consistency_weight=0.0, uniformity_weight=0.0)
    loss, logs = directions_cross_entropy(transform_directions(directions(), [transform], CTX))
    expected = (info_nce_loss(Q1, K2, QUEUE, temperature=TEMPERATURE)
                + info_nce_loss(Q2, K1, QUEUE, temperature=TEMPERATURE)) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert float(logs["xmoco_consistency"]) == 0.0 and float(logs["xmoco_uniformity"]) == 0.0


# ---- invariants -----------------------------------------------------------------
@pytest.mark.parametrize("form", ["squared", "kl"])
def test_consistency_is_zero_when_the_cross_similarities_agree(form):
    transform = CrossSimilarityConsistency(consistency=form)
    # Identical views through identical encoders: S12 = S21 = X X^T.
    _, (same_views, _) = terms_of(transform, q1=Q1, q2=Q1, k1=Q1, k2=Q1)
    # Queries and keys differ, but view 2 repeats view 1: S12 = S21 = Q K^T.
    _, (same_pairs, _) = terms_of(transform, q1=Q1, q2=Q1, k1=K1, k2=K1)
    np.testing.assert_allclose((same_views, same_pairs), 0.0, atol=1e-6)
    _, (different, _) = terms_of(transform)
    assert different > 1e-3


def test_uniformity_is_zero_for_equal_negative_similarities_and_positive_otherwise():
    # Orthonormal keys, each query on its own key: every negative similarity is 0.
    eye = np.eye(BATCH, DIM + BATCH, dtype="float32")
    queue = np.eye(5, DIM + BATCH, k=BATCH, dtype="float32")
    transform = CrossSimilarityConsistency(uniformity_weight=1.0)
    _, (_, uniform) = terms_of(transform, q1=eye, q2=eye, k1=eye, k2=eye, queue=queue)
    np.testing.assert_allclose(uniform, 0.0, atol=1e-6)
    _, (_, skewed) = terms_of(transform)
    assert skewed > 1e-3


def test_uniformity_ignores_the_positive_column():
    s = RNG.normal(size=(4, 4)).astype("float32")
    other = s.copy()
    np.fill_diagonal(other, 10.0)  # only the positives change
    for scores in (s, other):
        np.testing.assert_allclose(
            negative_uniformity(scores, tf.range(4), temperature=0.5),
            numpy_uniformity(s, 0.5), rtol=1e-5)


def test_uniformity_of_a_single_row_without_negatives_is_zero():
    np.testing.assert_allclose(negative_uniformity([[0.3]], [0], temperature=0.1), 0.0)


def test_squared_consistency_is_the_mean_over_a_row_block():
    # A block of 3 of 5 rows: the mean of its squared differences (the global
    # ||.||_F^2 / B^2 once the blocks' means are averaged over replicas).
    s12, s21 = RNG.normal(size=(2, 3, 5)).astype("float32")
    np.testing.assert_allclose(cross_similarity_consistency(s12, s21),
                               np.mean((s12 - s21) ** 2), rtol=1e-6)


def test_gradients_reach_the_queries_and_not_the_keys():
    q1, q2, k1, k2 = (tf.Variable(_unit(x)) for x in (Q1, Q2, K1, K2))
    transform = CrossSimilarityConsistency(consistency_weight=1.0, uniformity_weight=1.0)
    with tf.GradientTape(persistent=True) as tape:
        # Built by hand with differentiable positives: the transform must
        # still treat the keys as targets.
        pair = tuple(ContrastiveLogits(logits=tf.zeros([BATCH, 1]), targets=tf.ones([BATCH, 1]),
                                       queries=q, positives=k, temperature=TEMPERATURE,
                                       direction=i)
                     for i, (q, k) in enumerate(((q1, k2), (q2, k1))))
        result = transform(pair, CTX)
        total = tf.add_n(list(result[0].extra_losses.values()))
    query_grads = tape.gradient(total, [q1, q2])
    assert all(g is not None and np.abs(g.numpy()).max() > 1e-4 for g in query_grads)
    assert tape.gradient(total, [k1, k2]) == [None, None]


@pytest.mark.parametrize("form", ["squared", "kl"])
def test_terms_compile_with_xla(form):
    transform = CrossSimilarityConsistency(consistency=form)

    @tf.function(jit_compile=True)
    def terms(q1, q2, k1, k2):
        result = transform(directions(q1, q2, k1, k2), CTX)
        return result[0].extra_losses["xmoco_consistency"], result[0].extra_losses[
            "xmoco_uniformity"]

    np.testing.assert_allclose(terms(Q1, Q2, K1, K2), terms_of(transform)[1], rtol=1e-5)


# ---- distribution ---------------------------------------------------------------
def run_per_replica(strategy, fn, global_rows):
    """fn on each replica's consecutive block of `global_rows`; the per-replica results."""
    local = BATCH // strategy.num_replicas_in_sync
    inputs = strategy.experimental_distribute_values_from_function(
        lambda context: global_rows[context.replica_id_in_sync_group * local:][:local])
    outputs = tf.function(lambda x: strategy.run(fn, args=(x,)))(inputs)
    return tf.nest.map_structure(strategy.experimental_local_results, outputs)


@pytest.mark.parametrize("form", ["squared", "kl"])
def test_one_and_two_replicas_give_the_same_terms_and_gradients(form):
    """The base divides each replica's loss by the replicas and sums gradients."""
    transform = CrossSimilarityConsistency(consistency_weight=0.3, uniformity_weight=0.7,
                                           consistency=form)

    def terms_and_grads(rows, num_replicas):
        q1, q2, k1, k2 = tf.split(rows, 4, axis=1)
        with tf.GradientTape() as tape:
            tape.watch([q1, q2])
            result = transform(directions(q1, q2, k1, k2), CTX)
            terms = tf.stack([result[0].extra_losses["xmoco_consistency"],
                              result[0].extra_losses["xmoco_uniformity"]])
            scaled = tf.reduce_sum(terms) / num_replicas
        return terms, tf.concat(tape.gradient(scaled, [q1, q2]), axis=1)

    rows = tf.constant(np.concatenate([Q1, Q2, K1, K2], axis=1))
    single_terms, single_grads = terms_and_grads(rows, 1)
    np.testing.assert_allclose(single_terms, numpy_terms(Q1, Q2, K1, K2, w_cc=0.3, w_u=0.7,
                                                         form=form), rtol=1e-4)
    strategy = harness.mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    terms, grads = run_per_replica(strategy, lambda x: terms_and_grads(x, 2), rows)
    # Metrics average the replicas' values; the optimizer sums their gradients.
    np.testing.assert_allclose(np.mean(terms, axis=0), single_terms, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.concatenate(grads), single_grads, rtol=1e-4, atol=1e-6)


# ---- construction ---------------------------------------------------------------
def test_a_single_direction_is_refused():
    with pytest.raises(ValueError, match="symmetric=True"):
        CrossSimilarityConsistency()(directions()[:1], CTX)
    with pytest.raises(ValueError, match="symmetric=False"):
        methods.get("xmoco", encoder=tiny_backbone(image_size=16, width=4), symmetric=False)


@pytest.mark.parametrize("arguments, message", [
    (dict(consistency_weight=-0.1), "consistency_weight"),
    (dict(uniformity_weight="0.1"), "uniformity_weight"),
    (dict(consistency="l1"), "consistency must be one of"),
    (dict(temperature=0.0), "temperature must be positive"),
])
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        CrossSimilarityConsistency(**arguments)


def test_spec_config_and_preset_build_the_same_transform():
    spec = {"xmoco": {"consistency_weight": 0.2, "consistency": "kl"}}
    (built,) = make_logit_transforms([spec])
    assert isinstance(built, CrossSimilarityConsistency)
    assert CrossSimilarityConsistency.from_config(built.get_config()).get_config() == \
        built.get_config() == {"consistency_weight": 0.2, "consistency": "kl"}
    model = methods.get("xmoco", encoder=tiny_backbone(image_size=16, width=4),
                        logit_transforms=[spec], queue_size=16)
    (transform,) = model.logit_transforms
    assert model.symmetric and type(model).__name__ == "MoCo"
    assert transform.get_config() == dict(consistency_weight=0.2, uniformity_weight=0.1,
                                          consistency="kl", temperature=None)
    assert {"xmoco_consistency", "xmoco_uniformity"} <= set(model.log_trackers)


def test_xmoco_with_zero_weights_is_symmetric_moco_v2():
    """The method's loss (queue logits + transform) equals MoCo's own InfoNCE path."""
    def loss_of(name, **arguments):
        keras.utils.set_random_seed(0)  # the same weights for both names
        encoder = tiny_backbone(image_size=16, width=4)
        model = methods.get(name, encoder=encoder, run=harness.RUN, projection_dim=8,
                            queue_size=12, temperature=0.2, momentum=0.9, symmetric=True,
                            **arguments)
        model.compile(optimizer="sgd")
        model.optimizer.build(model.update_variables())
        batch = Batch.from_element(next(iter(harness.batches(1))))
        ctx = model.step_context()
        return model.loss(model.forward(batch, ctx), ctx)

    off = {"xmoco": {"consistency_weight": 0.0, "uniformity_weight": 0.0}}
    (xmoco_loss, off_logs), (moco_loss, _) = (loss_of("xmoco", logit_transforms=[off]),
                                              loss_of("moco_v2"))
    np.testing.assert_allclose(xmoco_loss, moco_loss, rtol=1e-5)
    assert float(off_logs["xmoco_consistency"]) == float(off_logs["xmoco_uniformity"]) == 0.0
    on_loss, on_logs = loss_of("xmoco")
    np.testing.assert_allclose(on_loss, moco_loss + on_logs["xmoco_consistency"]
                               + on_logs["xmoco_uniformity"], rtol=1e-5)
    assert float(on_logs["xmoco_consistency"]) > 0 and float(on_logs["xmoco_uniformity"]) > 0
