"""InterCLR specifics: sampling, margin, warm-up, initial clustering, online labels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.layers import ClusteredBank
from keras_ssl.methods import Batch
from keras_ssl.methods.interclr import sample_negatives, sample_positives
from tests.methods import harness


def _interclr(**overrides):
    keras.utils.set_random_seed(0)
    config = {"run": harness.RUN, **harness.TINY_CONFIGS["interclr"], **overrides}
    model = methods.get("interclr", encoder=tiny_backbone(image_size=16, width=4), **config)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.update_variables())
    return model


def _first_batch():
    return Batch.from_element(next(iter(harness.batches(num_batches=1))))


def _pass_images(feature_pass):
    """The images of the feature pass's dataset, in index order."""
    images, indices = [], []
    for batch in feature_pass.dataset:
        images.append(batch["image"].numpy())
        indices.append(batch["index"].numpy())
    return np.concatenate(images)[np.argsort(np.concatenate(indices))]


def _cluster_from_the_pass(model):
    """Runs the feature pass's job directly: the bank clustered from the whole set."""
    images = _pass_images(harness.callbacks_for(model)[0])
    model.on_epoch_features(model.epoch_features(images), model.step_context())


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


@pytest.fixture(scope="module")
def hard_sampling_fit():
    """(model, weights before, weights after, history) of one fit with hard negatives.

    Tracing a fit (and the feature pass) costs more than what the two tests
    using it check, so they share one.
    """
    model = _interclr(negative_sampling="hard", num_negatives=8)
    before = harness.weights_by_path(model)
    history = model.fit(harness.batches(), epochs=1, verbose=0, shuffle=False,
                        callbacks=harness.callbacks_for(model)).history
    return model, before, harness.weights_by_path(model), history


def test_hard_sampling_trains_on_the_whole_bank(hard_sampling_fit):
    model, _, _, history = hard_sampling_fit
    assert model.negative_pool_size == harness.NUM_EXAMPLES
    batch, ctx = _first_batch(), model.step_context()
    outputs = model.forward(batch, ctx)
    _, negatives, mask = model.sample_inter_pairs(outputs.queries[0], batch.index, ctx)
    assert negatives.shape == (len(batch.index), 8)
    assert np.isfinite(history["inter_loss"][0])


# ---- the method ---------------------------------------------------------------

def test_inter_loss_uses_the_sampled_bank_rows_and_the_margin():
    model = _interclr(inter_cos_margin=-0.5)
    _cluster_from_the_pass(model)
    batch, ctx = _first_batch(), model.step_context()
    outputs = model.forward(batch, ctx)
    # The loss draws from the same seed stream at the same step: the same pairs.
    positives, negatives, mask = (t.numpy() for t in model.sample_inter_pairs(
        outputs.queries[0], batch.index, ctx))
    _, logs = model.loss(outputs, ctx)
    bank = model.memory.features.numpy()
    labels = model.memory.assignments.numpy()
    anchors = labels[batch.index.numpy()]
    np.testing.assert_array_equal(labels[positives], anchors)
    assert (labels[negatives][mask] != np.repeat(anchors[:, None], mask.shape[1], 1)[mask]).all()
    # NumPy loss with the positive cosine raised by 0.5.
    q = outputs.queries[0].numpy().astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(q)):
        logits = np.concatenate([[q[i] @ bank[positives[i]] + 0.5],
                                 bank[negatives[i][mask[i]]] @ q[i]]) / model.temperature
        total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0]
    np.testing.assert_allclose(logs["inter_loss"], total / len(q), rtol=1e-5)


def test_inter_branch_is_off_until_the_bank_is_clustered_and_weighted_after():
    model = _interclr()
    batch, ctx = _first_batch(), model.step_context()
    outputs = model.forward(batch, ctx)
    loss, logs = model.loss(outputs, ctx)
    np.testing.assert_allclose(loss, logs["intra_loss"], rtol=1e-6)
    _cluster_from_the_pass(model)
    loss, logs = model.loss(outputs, ctx)
    np.testing.assert_allclose(
        loss, 0.75 * logs["intra_loss"] + 0.25 * logs["inter_loss"], rtol=1e-6)


def test_the_pass_is_wanted_once_before_the_first_epoch_after_the_warm_up():
    model = _interclr(inter_warmup_epochs=2)
    assert [model.wants_epoch_features(e) for e in range(4)] == [False, False, True, True]
    _cluster_from_the_pass(model)
    assert not any(model.wants_epoch_features(e) for e in range(4))
    assert _interclr(inter_warmup_epochs=0).wants_epoch_features(0)


@pytest.mark.parametrize("epochs", [0.5, -1, "1"])
def test_warm_up_is_a_whole_number_of_epochs(epochs):
    with pytest.raises(ValueError, match="whole number of epochs"):
        _interclr(inter_warmup_epochs=epochs)


def test_fit_needs_the_feature_pass():
    model = _interclr()
    with pytest.raises(ValueError, match="EpochFeaturePass"):
        model.fit(harness.batches(1), epochs=1, verbose=0)


class _BankSnapshot(keras.callbacks.Callback):
    """The bank right after the feature pass of epoch 1, and what it should hold."""

    def __init__(self, images):
        super().__init__()
        self.images = images

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            memory = self.model.memory
            self.features = memory.features.numpy()
            self.assignments = memory.assignments.numpy()
            self.expected = self.model.epoch_features(self.images).numpy()


def test_bank_is_clustered_from_the_whole_set_after_the_warm_up_and_labels_update_online():
    model = _interclr(inter_warmup_epochs=1)
    feature_pass = harness.callbacks_for(model)[0]
    snapshot = _BankSnapshot(_pass_images(feature_pass))
    # Two epochs of two steps: warm-up, then the pass, then both branches.
    history = model.fit(harness.batches(2).repeat(), epochs=2, steps_per_epoch=2,
                        callbacks=[feature_pass, snapshot], verbose=0, shuffle=False).history
    assert feature_pass.passes == [1]
    # Epoch 0: intra only. Epoch 1: the weighted sum (logs are epoch means).
    np.testing.assert_allclose(history["loss"][0], history["intra_loss"][0], rtol=1e-5)
    np.testing.assert_allclose(
        history["loss"][1], 0.75 * history["intra_loss"][1] + 0.25 * history["inter_loss"][1],
        rtol=1e-5)
    # Every row holds the normalised key projection of its image, and the
    # labels are the k-means clustering of those rows, no cluster below 2.
    np.testing.assert_allclose(np.linalg.norm(snapshot.expected, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(snapshot.features, snapshot.expected, atol=1e-5)
    reference = ClusteredBank(harness.NUM_EXAMPLES, 8, 4, min_cluster_size=2, seed=0)
    reference.initialize(snapshot.expected, num_iters=20)
    np.testing.assert_array_equal(snapshot.assignments, reference.assignments.numpy())
    assert np.bincount(snapshot.assignments, minlength=4).min() >= 2
    # A later step relabels its rows online, to the best centroid (centroids
    # are recomputed only every 10 updates: 4 so far).
    batch = next(iter(harness.batches(1, seed=3)))
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0,
                        callbacks=[feature_pass]).history
    assert feature_pass.passes == [1]  # the bank is clustered once
    assert 0.0 <= history["change_ratio"][0] <= 1.0
    rows = batch["index"].numpy()
    keys = model.memory.features.numpy()[rows]
    labels = model.memory.assignments.numpy()[rows]
    assert int(model.memory.updates.numpy()) == 5
    np.testing.assert_array_equal(labels, (keys @ model.memory.centroids.numpy().T).argmax(1))
    assert model.optimizer.iterations.numpy() == 5


def test_fit_moves_queue_key_encoder_and_memory(hard_sampling_fit):
    # Whatever the negatives: the default semi-hard ones train in the warm-up test above.
    _, before, after, _ = hard_sampling_fit
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
