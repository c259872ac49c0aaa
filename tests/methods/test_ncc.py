"""NCC / ProPos specifics: positive sampling and lambda in the warm-up, the E-step's
pseudo-label table, the predictor's learning-rate multiplier, the clustering report."""

import itertools
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from keras_ssl import configs, distribute, methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.losses.prototype_scattering import prototype_scattering_loss
from keras_ssl.methods import Batch, StepContext, ncc
from keras_ssl.ops.dataset_kmeans import dataset_kmeans
from keras_ssl.optimizers import SGD
from keras_ssl.training import EpochFeaturePass, pretrain
from keras_ssl.training.clustering_report import clustering_report
from tests.experiments.test_fault_tolerance import write_npz
from tests.methods import harness

NUM_CLUSTERS = harness.TINY_CONFIGS["ncc"]["num_clusters"]
# A fixed table for the tests that do not run the E-step.
TABLE = np.arange(harness.NUM_EXAMPLES, dtype=np.int32) % NUM_CLUSTERS


def _ncc(**overrides):
    keras.utils.set_random_seed(0)
    config = {"run": harness.RUN, **harness.TINY_CONFIGS["ncc"], **overrides}
    return methods.get("ncc", encoder=tiny_backbone(image_size=16, width=4), **config)


def _batches(count=1):
    return [Batch.from_element(element) for element in harness.batches(num_batches=count)]


def _at_step(step):
    return StepContext.at(step, steps_per_epoch=harness.RUN.steps_per_epoch,
                          seed=harness.RUN.seed)


@pytest.fixture(scope="module")
def warmup_model():
    """One NCC with a one-epoch warm-up (4 steps) and the fixed label table."""
    model = _ncc(clustering_warmup_epochs=1, positive_sampling_std=0.05)
    model.pseudo_labels.assign(TABLE)
    return model


# ---- construction -----------------------------------------------------------------

def test_predictor_starts_as_the_official_one():
    dense = [layer for layer in _ncc().predictor.layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 2
    for layer in dense:
        np.testing.assert_allclose(np.std(layer.kernel.numpy()), 0.01, rtol=0.2)
        if layer.bias is not None:
            np.testing.assert_array_equal(layer.bias.numpy(), 0.0)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="num_examples"):
        _ncc(run=methods.RunContext())
    with pytest.raises(ValueError, match="steps per epoch"):
        _ncc(run=methods.RunContext(num_examples=32), clustering_warmup_epochs=1)
    with pytest.raises(ValueError, match="whole number"):
        _ncc(reassign_epochs=0)


# ---- warm-up: sigma and lambda ------------------------------------------------------

def test_positive_sampling_noise_is_off_in_the_warm_up_and_drawn_per_step_after(warmup_model):
    projections = (tf.zeros([8, 8]), tf.zeros([8, 8]))
    for step in (0, 3):  # epoch 0
        for noise in warmup_model.positive_sampling_noise(projections, _at_step(step)):
            np.testing.assert_array_equal(noise, 0.0)
    first = np.stack(warmup_model.positive_sampling_noise(projections, _at_step(4)))
    again = np.stack(warmup_model.positive_sampling_noise(projections, _at_step(4)))
    later = np.stack(warmup_model.positive_sampling_noise(projections, _at_step(5)))
    np.testing.assert_array_equal(first, again)  # stateless: a step's noise is fixed
    assert not np.allclose(first, later) and not np.allclose(first[0], first[1])
    np.testing.assert_allclose(first.std(), 0.05, rtol=0.25)
    np.testing.assert_allclose(first.mean(), 0.0, atol=0.02)


def test_predictions_see_the_noise_only_after_the_warm_up(warmup_model):
    batch = _batches()[0]
    for step, noisy in ((3, False), (4, True)):
        outputs = warmup_model.forward(batch, _at_step(step))
        # BatchNorm in training mode: the same rows give the same outputs.
        clean = warmup_model.predictor(outputs.projections[0], training=True)
        assert np.allclose(outputs.predictions[0], clean, atol=1e-7) != noisy


def _normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_loss_is_the_alignment_alone_in_the_warm_up_and_adds_lambda_protocl_after(
        warmup_model):
    batch = _batches()[0]
    outputs = warmup_model.forward(batch, _at_step(0))
    warm_loss, warm_logs = warmup_model.loss(outputs, _at_step(0))
    loss, logs = warmup_model.loss(outputs, _at_step(4))
    # Alignment: the mean over both directions of 2 - 2 cos(prediction, other view's target).
    (p1, p2), (k1, k2) = outputs.predictions, outputs.targets
    cosines = [(_normalize(p) * _normalize(k)).sum(axis=1) for p, k in ((p1, k2), (p2, k1))]
    np.testing.assert_allclose(logs["alignment_loss"], np.mean(2.0 - 2.0 * np.stack(cosines)),
                               rtol=1e-5)
    # ProtoCL of both pairs, averaged, with each row's label from the table.
    labels = TABLE[batch.index.numpy()]
    (q1, q2) = outputs.projections
    expected = 0.5 * sum(float(prototype_scattering_loss(q, k, labels,
                                                         num_clusters=NUM_CLUSTERS))
                         for q, k in ((q1, k2), (q2, k1)))
    np.testing.assert_allclose(logs["prototype_loss"], expected, rtol=1e-5)
    assert expected > 0.1 and logs["clusters_present"] == len(np.unique(labels))
    np.testing.assert_allclose(warm_loss, warm_logs["alignment_loss"], rtol=1e-6)
    np.testing.assert_allclose(loss, logs["alignment_loss"] + 0.1 * logs["prototype_loss"],
                               rtol=1e-6)


def test_protocl_of_the_gathered_batch_has_the_one_replica_gradient_on_two_replicas():
    """The centres come from the all-gathered batch, and cluster 0 has rows on both
    replicas. Each replica's loss is divided by the replicas (as `Method.train_step`
    does), and all_gather's backward sums the replicas' upstream gradients, so every
    row receives exactly its one-replica gradient: neither halved (a gather that
    returns only the local gradient) nor doubled (a second division missing)."""
    model = _ncc()
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((8, 6)).astype("float32")
    keys = rng.standard_normal((8, 6)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 1, 3, 0], np.float32)  # replica 0: rows 0-3
    rows = tf.constant(np.concatenate([queries, keys, labels[:, None]], axis=1))

    def loss_and_gradient(local_rows):
        q, k = local_rows[:, :6], local_rows[:, 6:12]
        local_labels = tf.cast(local_rows[:, 12], tf.int32)
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = model.global_prototype_loss(q, k, distribute.all_gather(local_labels))
            scaled = loss / distribute.num_replicas()
        return loss, tape.gradient(scaled, q)

    single_loss, single_gradient = loss_and_gradient(rows)
    assert np.abs(single_gradient).max() > 1e-2
    strategy = harness.mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    inputs = strategy.experimental_distribute_values_from_function(
        lambda context: rows[context.replica_id_in_sync_group * 4:][:4])
    losses, gradients = tf.nest.map_structure(
        strategy.experimental_local_results,
        tf.function(lambda x: strategy.run(loss_and_gradient, args=(x,)))(inputs))
    np.testing.assert_allclose(losses, [single_loss] * 2, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(gradients), single_gradient, rtol=1e-5,
                               atol=1e-7)


# ---- the E-step ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    """One epoch of two steps after the E-step, with a feature pass given in shuffled order.

    Returns (model, feature_pass, images in index order, labels the E-step
    should give, fit history). The expected labels are the clustering of the
    normalised target projections as built: the pass runs before any step.
    """
    model = _ncc()
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.update_variables())
    images = np.random.default_rng(1).uniform(
        size=(harness.NUM_EXAMPLES, 16, 16, 3)).astype("float32")
    order = np.random.default_rng(2).permutation(harness.NUM_EXAMPLES)
    feature_pass = EpochFeaturePass(tf.data.Dataset.from_tensor_slices(
        {"image": images[order], "index": order.astype("int64")}).batch(8))
    assert model.cluster_assignments is None
    expected = _e_step_labels(model, images)
    history = model.fit(harness.batches(2), epochs=1, verbose=0, shuffle=False,
                        callbacks=[feature_pass]).history
    return model, feature_pass, images, expected, history


def _e_step_labels(model, images):
    features = model.epoch_features(images).numpy()
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    return dataset_kmeans(features, NUM_CLUSTERS, max_iters=300, tolerance=1e-4,
                          spherical=True, seed=harness.RUN.seed).assignments.numpy()


def test_the_e_step_fills_the_table_in_index_order_and_the_fit_uses_it(fitted):
    model, feature_pass, _, expected, history = fitted
    assert feature_pass.passes == [0]
    np.testing.assert_array_equal(model.cluster_assignments, expected)
    # The steps looked their rows up in that table: the logged number of
    # clusters present is the mean over the two batches of what it gives.
    present = [len(np.unique(expected[batch.index.numpy()])) for batch in _batches(2)]
    assert history["clusters_present"][0] == pytest.approx(np.mean(present))
    assert np.isfinite(history["prototype_loss"][0]) and history["prototype_loss"][0] > 0


def test_the_e_step_runs_every_reassign_epochs_and_until_the_table_is_full():
    model = _ncc(reassign_epochs=2)
    assert all(model.wants_epoch_features(epoch) for epoch in range(4))
    model.pseudo_labels.assign(TABLE)
    assert [model.wants_epoch_features(epoch) for epoch in range(4)] == [True, False] * 2


# ---- the predictor's learning rate ----------------------------------------------------

def _step_with_per_variable_rates(model, batch, ctx, momentums, *, learning_rate,
                                  weight_decay, multiplier):
    """The official optimizer: PyTorch SGD, predictor parameter group at `multiplier` x lr."""
    variables = model.update_variables()
    predictor = {id(v) for v in model.predictor.trainable_weights}
    with tf.GradientTape() as tape:
        outputs = model.forward(batch, ctx)
        loss, _ = model.loss(outputs, ctx)
    for variable, gradient in zip(variables, tape.gradient(loss, variables)):
        rate = learning_rate * (multiplier if id(variable) in predictor else 1.0)
        buffer = 0.9 * momentums.get(id(variable), 0.0) + gradient + weight_decay * variable
        momentums[id(variable)] = buffer
        variable.assign_sub(rate * buffer)
    model.after_apply(outputs, ctx)


def _train_with_keras_ssl_sgd(batches, weight_decay, **overrides):
    model = _ncc(**overrides)
    model.pseudo_labels.assign(TABLE)
    model.compile(optimizer=SGD(0.05, momentum=0.9, weight_decay=weight_decay))
    model.optimizer.build(model.update_variables())
    for batch in batches:
        model.train_step(batch)
    return [v.numpy() for v in model.update_variables() + model.state_variables()]


def test_scaled_predictor_gradients_are_a_tenfold_predictor_learning_rate(monkeypatch):
    # Large decay, so that leaving the decay unscaled would show.
    batches, decay = _batches(3), 0.05
    reference = _ncc(predictor_learning_rate_multiplier=1.0)
    reference.pseudo_labels.assign(TABLE)
    momentums = {}
    for step, batch in enumerate(batches):
        _step_with_per_variable_rates(reference, batch, _at_step(step), momentums,
                                      learning_rate=0.05, weight_decay=decay, multiplier=10.0)
    expected = [v.numpy() for v in reference.update_variables() + reference.state_variables()]
    actual = _train_with_keras_ssl_sgd(batches, decay)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # Without the decay's correction the predictor moves otherwise.
    monkeypatch.setattr(ncc, "coupled_weight_decay", lambda optimizer: 0.0)
    uncorrected = _train_with_keras_ssl_sgd(batches, decay)
    assert not all(np.allclose(got, want, rtol=1e-4, atol=1e-6)
                   for got, want in zip(uncorrected, expected))


def test_the_decay_correction_adds_nothing_to_the_loss():
    model = _ncc()
    model.compile(optimizer=SGD(0.05, momentum=0.9, weight_decay=0.05))
    assert ncc.coupled_weight_decay(model.optimizer) == 0.05
    assert float(model.predictor_decay_correction()) == 0.0
    with tf.GradientTape() as tape:
        correction = model.predictor_decay_correction()
    weights = model.predictor.trainable_weights
    for weight, gradient in zip(weights, tape.gradient(correction, weights)):
        np.testing.assert_allclose(gradient, 9.0 * 0.05 * weight.numpy(), rtol=1e-6)


# ---- the clustering report --------------------------------------------------------------

def _best_matching_accuracy(labels, clusters):
    """Brute force: the best one-to-one map of cluster ids to classes, over all of them."""
    classes, ids = np.unique(labels), np.unique(clusters)
    slots = list(classes) + [None] * max(0, len(ids) - len(classes))
    return max(np.mean([mapping[c] == y for c, y in zip(clusters, labels)])
               for permutation in itertools.permutations(slots, len(ids))
               for mapping in [dict(zip(ids, permutation))])


def test_the_report_scores_the_e_step_after_the_last_epoch(fitted):
    model, feature_pass, images, _, _ = fitted
    labels = np.arange(harness.NUM_EXAMPLES) % 3
    labels[5] = -1
    report = clustering_report(model, feature_pass, labels, epochs=1)
    assert feature_pass.passes == [0, 1]
    # The table holds the clustering of the trained target's features.
    final = _e_step_labels(model, images)
    np.testing.assert_array_equal(model.cluster_assignments, final)
    known = labels >= 0
    assert report == pytest.approx({
        "nmi": normalized_mutual_info_score(labels[known], final[known]),
        "ari": adjusted_rand_score(labels[known], final[known]),
        "cluster_acc": _best_matching_accuracy(labels[known], final[known])})
    unlabeled = clustering_report(model, feature_pass, np.full(harness.NUM_EXAMPLES, -1),
                                  epochs=1)
    assert unlabeled == {"nmi": None, "ari": None, "cluster_acc": None}


def test_the_report_is_empty_without_e_step_labels():
    unused_pass = types.SimpleNamespace()  # any use of it would raise
    assert clustering_report(types.SimpleNamespace(), unused_pass, [0, 1], epochs=1) == {}
    assert clustering_report(_ncc(), unused_pass, TABLE, epochs=1) == {}


def test_pretrain_reports_the_clustering_also_when_resumed_past_the_end(tmp_path):
    data = "npz:" + write_npz(tmp_path / "train.npz", 64).as_posix()
    config = dict(method="ncc", data=data, backbone="tiny", global_batch_size=16, epochs=1,
                  knn_k=5, verbose=0, model_dir=str(tmp_path / "run"),
                  method_kwargs=configs.get("cpu_small", "ncc", smoke=True)["method"])
    result = pretrain(**config)
    assert 0.0 <= result["nmi"] <= 1.0 and -1.0 <= result["ari"] <= 1.0
    assert 0.0 < result["cluster_acc"] <= 1.0
    # Nothing left to train: the restored network's E-step gives the same labels.
    again = pretrain(**config)
    assert again["epochs_run"] == 0
    assert {key: again[key] for key in ("nmi", "ari", "cluster_acc")} == pytest.approx(
        {key: result[key] for key in ("nmi", "ari", "cluster_acc")})
