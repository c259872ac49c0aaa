"""InterCLR specifics: sampling, margin, warm-up, initial clustering, online labels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods.interclr import cluster_bank, sample_negatives, sample_positives
from tests.methods import harness


def _interclr(**overrides):
    keras.utils.set_random_seed(0)
    config = {**harness.TINY_CONFIGS["interclr"], **overrides}
    model = methods.get("interclr", encoder=tiny_backbone(image_size=16, width=4), **config)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.update_variables())
    return model


def _first_batch():
    batch = next(iter(harness.batches(num_batches=1)))
    return tuple(batch["views"]), batch["index"]


# ---- sampling kernels ---------------------------------------------------------

def test_positives_are_uniform_members_of_the_anchor_cluster():
    rng = np.random.default_rng(0)
    assignments = rng.integers(0, 5, size=40).astype("int32")
    labels = np.repeat(assignments[:3], 4000)  # 3 anchors, many draws each
    uniform = rng.uniform(size=labels.shape).astype("float32")
    positives = sample_positives(tf.constant(assignments), tf.constant(labels),
                                 tf.constant(uniform), num_clusters=5).numpy()
    np.testing.assert_array_equal(assignments[positives], labels)
    for label in np.unique(labels):
        members = np.flatnonzero(assignments == label)
        drawn = positives[labels == label]
        counts = np.array([(drawn == m).sum() for m in members])
        assert counts.min() > 0, "a cluster member is never drawn"
        # Uniform over the members: every count within 25% of the mean.
        np.testing.assert_allclose(counts, counts.mean(), rtol=0.25)


def test_positives_of_the_extreme_uniforms_stay_in_the_cluster():
    assignments = tf.constant([2, 0, 2, 1, 2], tf.int32)
    labels = tf.constant([2, 2, 0, 1], tf.int32)
    uniform = tf.constant([0.0, 0.9999999, 0.9999999, 0.5])
    positives = sample_positives(assignments, labels, uniform, num_clusters=3).numpy()
    np.testing.assert_array_equal(positives, [0, 4, 1, 3])


def _ranked_problem(seed, batch=4, rows=30, num_clusters=3):
    rng = np.random.default_rng(seed)
    similarities = rng.uniform(-1, 1, size=(batch, rows)).astype("float32")
    assignments = rng.integers(0, num_clusters, size=rows).astype("int32")
    labels = rng.integers(0, num_clusters, size=batch).astype("int32")
    return similarities, assignments, labels


@pytest.mark.parametrize("sampling", ["semihard", "semieasy"])
def test_negatives_come_from_the_rank_window_outside_the_cluster(sampling):
    similarities, assignments, labels = _ranked_problem(1)
    pool_size, num_negatives = 12, 5
    uniform = np.random.default_rng(2).uniform(size=(4, pool_size)).astype("float32")
    negatives, mask = sample_negatives(
        similarities, assignments, labels, uniform, num_negatives=num_negatives,
        pool_size=pool_size, sampling=sampling)
    negatives, mask = negatives.numpy(), mask.numpy()
    assert negatives.shape == (4, num_negatives)
    for i in range(4):
        order = np.argsort(-similarities[i], kind="stable")
        window = order[:pool_size] if sampling == "semihard" else order[-pool_size:]
        allowed = [r for r in window if assignments[r] != labels[i]]
        assert mask[i].sum() == min(num_negatives, len(allowed))
        chosen = negatives[i][mask[i]]
        assert set(chosen) <= set(allowed), "a negative outside the window or in the cluster"
        assert len(set(chosen)) == len(chosen), "negatives drawn with replacement"


def test_semihard_negatives_are_uniform_over_the_allowed_window():
    # One anchor, many draws: each allowed pool row is picked about equally.
    similarities, assignments, labels = _ranked_problem(3, batch=1)
    draws, pool_size, num_negatives = 3000, 10, 3
    rng = np.random.default_rng(4)
    uniform = rng.uniform(size=(draws, pool_size)).astype("float32")
    negatives, mask = sample_negatives(
        np.repeat(similarities, draws, axis=0), assignments, np.repeat(labels, draws),
        uniform, num_negatives=num_negatives, pool_size=pool_size)
    assert mask.numpy().all()
    window = np.argsort(-similarities[0])[:pool_size]
    allowed = [r for r in window if assignments[r] != labels[0]]
    counts = np.array([(negatives.numpy() == r).sum() for r in allowed])
    np.testing.assert_allclose(counts, draws * num_negatives / len(allowed), rtol=0.15)


def test_random_negatives_cover_the_bank_outside_the_cluster():
    similarities, assignments, labels = _ranked_problem(5)
    uniform = np.random.default_rng(6).uniform(size=similarities.shape).astype("float32")
    negatives, mask = sample_negatives(similarities, assignments, labels, uniform,
                                       num_negatives=4, pool_size=30, sampling="random")
    assert mask.numpy().all()
    assert (assignments[negatives.numpy()] != labels[:, None]).all()


def test_hard_negatives_are_the_most_similar_rows_outside_the_cluster():
    # NumPy copy of the official rule: the top (M + largest cluster) rows by
    # similarity with the anchor's cluster deleted, first M kept. M = 25 of
    # 30 rows is more than some anchors have outside their cluster: masked.
    similarities, assignments, labels = _ranked_problem(7)
    num_negatives = 25
    negatives, mask = sample_negatives(
        similarities, assignments, labels, np.zeros((4, 0), "float32"),
        num_negatives=num_negatives, pool_size=30, sampling="hard")
    negatives, mask = negatives.numpy(), mask.numpy()
    assert not mask.all(), "the problem should leave some anchor short of negatives"
    for i in range(4):
        order = np.argsort(-similarities[i], kind="stable")
        expected = [r for r in order if assignments[r] != labels[i]][:num_negatives]
        assert mask[i].sum() == len(expected)
        np.testing.assert_array_equal(negatives[i][mask[i]], expected)


def test_hard_sampling_trains_on_the_whole_bank():
    model = _interclr(negative_sampling="hard", num_negatives=8)
    assert model.negative_pool_size == harness.NUM_EXAMPLES
    views, indices = _first_batch()
    outputs = model.forward_views(views, indices, training=True)
    _, negatives, mask = model.sample_inter_pairs(outputs.projections[0], indices)
    assert negatives.shape == (len(indices), 8)
    history = model.fit(harness.batches(), epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(history["inter_loss"][0])


# ---- the method ---------------------------------------------------------------

def test_inter_loss_uses_the_sampled_bank_rows_and_the_margin():
    model = _interclr(inter_cos_margin=-0.5)
    views, indices = _first_batch()
    outputs = model.forward_views(views, indices, training=True)
    positives, negatives, mask = (t.numpy() for t in model.sample_inter_pairs(
        outputs.projections[0], indices))
    _, logs = model.compute_loss_terms(outputs, training=True)
    bank = model.memory.features.numpy()
    labels = model.memory.assignments.numpy()
    anchors = labels[indices.numpy()]
    np.testing.assert_array_equal(labels[positives], anchors)
    assert (labels[negatives][mask] != np.repeat(anchors[:, None], mask.shape[1], 1)[mask]).all()
    # NumPy loss with the positive cosine raised by 0.5.
    q = outputs.projections[0].numpy().astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(q)):
        logits = np.concatenate([[q[i] @ bank[positives[i]] + 0.5],
                                 bank[negatives[i][mask[i]]] @ q[i]]) / model.temperature
        total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0]
    np.testing.assert_allclose(logs["inter_loss"], total / len(q), rtol=1e-5)


def test_inter_branch_is_off_during_warm_up_and_weighted_after():
    model = _interclr()  # warm-up: 1 step of a 4-step epoch
    views, indices = _first_batch()
    outputs = model.forward_views(views, indices, training=True)
    loss, logs = model.compute_loss_terms(outputs, training=True)
    np.testing.assert_allclose(loss, logs["intra_loss"], rtol=1e-6)
    model.optimizer.iterations.assign(1)
    loss, logs = model.compute_loss_terms(outputs, training=True)
    np.testing.assert_allclose(
        loss, 0.75 * logs["intra_loss"] + 0.25 * logs["inter_loss"], rtol=1e-6)


def test_bank_is_clustered_when_the_warm_up_ends_and_labels_update_online():
    model = _interclr(inter_warmup_epochs=0.5)  # 2 warm-up steps
    initial = model.memory.assignments.numpy().copy()
    data = harness.batches(num_batches=3)
    batches = list(data)
    model.fit(data.take(1), epochs=1, verbose=0, shuffle=False)
    # One warm-up step: the written rows are the normalised keys, not yet clustered.
    written = batches[0]["index"].numpy()
    bank = model.memory.features.numpy()
    np.testing.assert_allclose(np.linalg.norm(bank[written], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.memory.assignments.numpy()[np.setdiff1d(
        np.arange(harness.NUM_EXAMPLES), written)], initial[np.setdiff1d(
            np.arange(harness.NUM_EXAMPLES), written)])
    model.fit(data.skip(1).take(1), epochs=1, verbose=0, shuffle=False)
    # The second step ended the warm-up: the labels are the bank's clustering.
    expected, _ = cluster_bank(model.memory.features.value, model.memory.centroids.value,
                               num_iters=20, min_cluster_size=2, seed=0)
    clustered = model.memory.assignments.numpy()
    np.testing.assert_array_equal(clustered, expected.numpy())
    assert np.bincount(clustered, minlength=4).min() >= 2
    # The third step relabels its rows online from the centroids.
    history = model.fit(data.skip(2), epochs=1, verbose=0, shuffle=False).history
    assert 0.0 <= history["change_ratio"][0] <= 1.0
    rows = batches[2]["index"].numpy()
    keys = model.memory.features.numpy()[rows]
    scores = keys @ model.memory.centroids.numpy().T
    labels = model.memory.assignments.numpy()[rows]
    # Relabelled to the best centroid (centroids are recomputed only every 10
    # updates, and no cluster was dissolved here, so they are the ones used).
    assert int(model.memory.updates.numpy()) == 3
    np.testing.assert_array_equal(labels, scores.argmax(axis=1))
    assert model.optimizer.iterations.numpy() == 3


def test_fit_moves_queue_key_encoder_and_memory():
    model = _interclr()
    before = harness.weights_by_path(model)
    model.fit(harness.batches(), epochs=1, verbose=0, shuffle=False)
    after = harness.weights_by_path(model)
    moved = {path for path in before if not np.array_equal(before[path], after[path])}
    for keyword in ("queue", "key_encoder", "memory/features", "memory/assignments",
                    "memory/centroids"):
        assert any(keyword in path for path in moved), f"{keyword} did not move"


def test_a_pool_larger_than_the_bank_is_reduced_with_a_warning():
    with pytest.warns(UserWarning, match="cannot give"):
        model = _interclr(negative_pool_size=1000, num_negatives=100)
    assert model.negative_pool_size == harness.NUM_EXAMPLES
    assert model.num_negatives == harness.NUM_EXAMPLES


def test_unknown_negative_sampling_is_rejected():
    with pytest.raises(ValueError, match="semihard"):
        _interclr(negative_sampling="hardest")
