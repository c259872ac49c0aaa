"""MSF and CMSF: neighbours against NumPy, the bank and pool writes, the constraints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import Batch, RunContext
from tests.methods import harness

HEADS = dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16,
             momentum=0.9, queue_size=12)


def _build(name, **config):
    keras.utils.set_random_seed(0)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    model = methods.get(name, encoder=encoder, **{**HEADS, **config})
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.update_variables())
    return model


def _fit(model, num_batches):
    model.fit(harness.batches(num_batches), epochs=1, verbose=0, shuffle=False)


# Tracing a fit costs more than anything the tests do with its result, so the
# tests of one configuration share one model and its traced step: a module
# fixture builds it, fits it, and keeps the values of every variable
# (weights, targets, bank, pool, BatchNorm statistics, optimizer slots and
# step) as built and as fitted; each test gets the model back in the state it
# asks for, whatever the tests before it did.

def _states(model, num_batches):
    """{"built": values, "fitted": values after `_fit(model, num_batches)`}."""
    built = [v.numpy() for v in _state_of(model)]
    _fit(model, num_batches)
    return {"built": built, "fitted": [v.numpy() for v in _state_of(model)]}


def _restored(shared, state):
    model, states = shared
    for variable, value in zip(_state_of(model), states[state]):
        variable.assign(value)
    return model


def _state_of(model):
    return [*model.variables, *model.optimizer.variables]


PREVIOUS_EPOCH = dict(topk=2, num_examples=harness.NUM_EXAMPLES, constraint="previous_epoch",
                      constraint_topk=3)


@pytest.fixture(scope="module")
def _msf():
    model = _build("msf", topk=3)
    return model, _states(model, 1)


@pytest.fixture
def msf_as_built(_msf):
    return _restored(_msf, "built")


@pytest.fixture
def msf_after_one_step(_msf):
    return _restored(_msf, "fitted")


@pytest.fixture(scope="module")
def _previous_epoch():
    model = _build("cmsf", **PREVIOUS_EPOCH)
    return model, _states(model, 2)


@pytest.fixture
def previous_epoch_as_built(_previous_epoch):
    return _restored(_previous_epoch, "built")


@pytest.fixture
def previous_epoch_after_two_steps(_previous_epoch):
    return _restored(_previous_epoch, "fitted")


@pytest.fixture(scope="module")
def _supervised():
    model = _build("cmsf_supervised", topk=3)
    return model, _states(model, 1)


@pytest.fixture
def supervised_after_one_step(_supervised):
    return _restored(_supervised, "fitted")


def _batch(indices, seed=5, labels=None):
    """A Batch of two random views; the class of each row is its index % 3 by default."""
    rng = np.random.default_rng(seed)
    views = tuple(tf.constant(rng.uniform(size=(len(indices), 16, 16, 3)), tf.float32)
                  for _ in range(2))
    indices = np.asarray(indices)
    labels = indices % 3 if labels is None else np.asarray(labels)
    return Batch(views=views, index=tf.constant(indices, tf.int64),
                 label=tf.constant(labels, tf.int64))


def _forward(model, batch):
    """The step's outputs and context, as train_step computes them."""
    ctx = model.step_context()
    return model.forward(batch, ctx), ctx


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _top(scores, k):
    """Indices of the k largest scores per row, lower index first on ties."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _bank_after(model, targets):
    bank = model.queue.keys.numpy().copy()
    rows = (int(model.queue.pointer.numpy()) + np.arange(len(targets))) % model.queue.size
    bank[rows] = targets
    return bank, rows


def _same_label_rows(model, outputs, batch_indices, labels):
    """(targets, bank after the enqueue, [B, M] mask of written rows with the anchor's label)."""
    targets = model.normalized_targets(outputs).numpy()
    bank, rows = _bank_after(model, targets)
    bank_index = model.queue.index.numpy().copy()
    bank_index[rows] = batch_indices
    bank_labels = np.where(bank_index >= 0, labels[np.maximum(bank_index, 0)], -1)
    return targets, bank, labels[batch_indices][:, None] == bank_labels[None, :]


def _same_class_rows(model, outputs, batch_labels):
    """SupervisedCMSF's `_same_label_rows`: classes from the bank's label column."""
    targets = model.normalized_targets(outputs).numpy()
    bank, rows = _bank_after(model, targets)
    bank_labels = model.queue.label.numpy().copy()
    bank_labels[rows] = batch_labels
    return targets, bank, np.asarray(batch_labels)[:, None] == bank_labels[None, :]


def test_msf_neighbours_are_the_true_top_k_and_the_target_comes_first(msf_after_one_step):
    model = msf_after_one_step  # 8 real targets in the 12-row bank
    outputs, ctx = _forward(model, _batch(np.arange(20, 28)))
    targets = model.normalized_targets(outputs).numpy()
    bank, neighbors, similarities = model.search(outputs)
    expected_bank, rows = _bank_after(model, targets)
    np.testing.assert_allclose(bank, expected_bank, atol=1e-6)
    scores = targets @ expected_bank.T
    np.testing.assert_array_equal(neighbors, _top(scores, 3))
    np.testing.assert_allclose(similarities, np.take_along_axis(scores, _top(scores, 3), 1),
                               rtol=1e-5, atol=1e-6)
    # The current batch is in the bank before the search: each target is
    # its own first neighbour (the official "enqueue before search").
    np.testing.assert_array_equal(neighbors[:, 0], rows)
    loss, _ = model.loss(outputs, ctx)
    q = _normalize(outputs.predictions[0].numpy())
    reference = np.mean([np.mean([2 - 2 * q[i] @ expected_bank[j] for j in row])
                         for i, row in enumerate(_top(scores, 3))])
    np.testing.assert_allclose(loss, reference, rtol=1e-5)


def test_msf_queue_pointer_moves_and_holds_the_targets_of_the_step(msf_as_built):
    model = msf_as_built
    batch = next(iter(harness.batches(1)))
    # Step 0's target network is the initial copy (the EMA moves it at the
    # end of each step, for the next one), so its rows can be computed first.
    targets = model.target_projector(model.target_encoder(batch["views"][1], training=True),
                                     training=True)
    _fit(model, 1)
    assert int(model.queue.pointer.numpy()) == 8
    np.testing.assert_allclose(model.queue.keys.numpy()[:8],
                               tf.math.l2_normalize(targets, axis=1), atol=1e-5)
    _fit(model, 2)  # 16 more rows: the pointer wraps around the 12-row bank
    assert int(model.queue.pointer.numpy()) == (8 + 16) % 12


def test_msf_forward_and_loss_change_no_state_and_after_apply_moves_the_target(
        msf_after_one_step):
    model = msf_after_one_step
    before = harness.weights_by_path(model)
    outputs, ctx = _forward(model, _batch(np.arange(20, 28)))
    model.loss(outputs, ctx)
    for path, value in harness.weights_by_path(model).items():
        if not path.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_array_equal(value, before[path], err_msg=path)
    model.after_apply(outputs, ctx)
    # The target leads (`targets_lead`): moved with tau of the next step.
    tau = float(model.momentum_at(ctx.step + 1))
    for target, online in zip(model.target_encoder.trainable_weights,
                              model.encoder.trainable_weights):
        old = before[target.path]
        np.testing.assert_allclose(target.numpy(), old + (1 - tau) * (online.numpy() - old),
                                   rtol=1e-5, atol=1e-6)
    assert int(model.queue.pointer.numpy()) == 16 % 12


def test_cmsf_pseudo_label_constraint_never_picks_a_disallowed_row():
    model = _build("cmsf", topk=3, num_examples=harness.NUM_EXAMPLES,
                   constraint="pseudo_label")
    _fit(model, 1)
    labels = np.arange(harness.NUM_EXAMPLES) % 3
    model.set_pseudo_labels(labels)
    batch_indices = np.arange(20, 28)
    outputs, _ = _forward(model, _batch(batch_indices))
    _, neighbors, _, constrained, constrained_sims, mask = model.constrained_search(outputs)
    targets, bank, expected_mask = _same_label_rows(model, outputs, batch_indices, labels)
    np.testing.assert_array_equal(mask, expected_mask)
    chosen = np.isfinite(constrained_sims.numpy())
    assert chosen[:, 0].all()  # the anchor itself is always allowed
    for b in range(len(batch_indices)):
        assert expected_mask[b, constrained.numpy()[b, chosen[b]]].all()
        allowed = np.flatnonzero(expected_mask[b])
        scores = targets[b] @ bank[allowed].T
        expected = allowed[np.argsort(-scores, kind="stable")[:min(3, len(allowed))]]
        np.testing.assert_array_equal(constrained.numpy()[b, chosen[b]], expected)
    # The setup is a real test: unconstrained, some anchor takes a disallowed row.
    assert not np.take_along_axis(expected_mask, neighbors.numpy(), 1).all()


def test_cmsf_previous_epoch_constraint_matches_numpy(previous_epoch_after_two_steps):
    model = previous_epoch_after_two_steps  # two steps of harness.batches(2)
    seen = harness.batches(2).unbatch().map(lambda x: x["index"])
    seen = np.array(list(seen.as_numpy_iterator()))
    # Four revisits (their previous embedding is a real one) and four
    # examples never seen (random pool rows), none repeated.
    unseen = np.setdiff1d(np.arange(harness.NUM_EXAMPLES), seen)[:4]
    batch_indices = np.concatenate([seen[:4], unseen])
    pool, slot = model.pool.numpy(), model.pool_slot.numpy()
    outputs, _ = _forward(model, _batch(batch_indices))
    _, _, _, constrained, constrained_sims, mask = model.constrained_search(outputs)
    targets = model.normalized_targets(outputs).numpy()
    bank, rows = _bank_after(model, targets)
    bank_index = model.queue.index.numpy().copy()
    bank_index[rows] = batch_indices
    slot_after = slot.copy()
    slot_after[batch_indices] = 1 - slot[batch_indices]
    previous = pool[slot_after, np.arange(len(slot))]  # [N, d]
    prime = previous[batch_indices] @ previous[np.maximum(bank_index, 0)].T
    prime[:, bank_index < 0] = -np.inf
    expected_mask = np.zeros_like(prime, bool)
    np.put_along_axis(expected_mask, _top(prime, 3), True, 1)
    np.testing.assert_array_equal(mask, expected_mask)
    assert np.isfinite(constrained_sims.numpy()).all()  # k' >= k rows always allowed
    scores = np.where(expected_mask, targets @ bank.T, -np.inf)
    np.testing.assert_array_equal(constrained, _top(scores, 2))


def test_cmsf_writes_the_pool_and_toggles_the_slot(previous_epoch_as_built):
    model = previous_epoch_as_built
    batch = next(iter(harness.batches(1)))
    before = model.pool.numpy()
    _fit(model, 1)
    written = batch["index"].numpy()
    np.testing.assert_array_equal(model.queue.index.numpy()[:8], written)
    np.testing.assert_array_equal(model.queue.index.numpy()[8:], -1)
    slot = model.pool_slot.numpy()
    assert (slot[written] == 1).all() and (np.delete(slot, written) == 0).all()
    pool = model.pool.numpy()
    np.testing.assert_allclose(pool[0, written], model.queue.keys.numpy()[:8], atol=1e-6)
    np.testing.assert_array_equal(pool[1], before[1])  # the older slot is untouched


def test_cmsf_kmeans_refresh_sets_pseudo_labels_in_range():
    model = _build("cmsf", topk=2, num_examples=harness.NUM_EXAMPLES,
                   constraint="pseudo_label", num_clusters=3, cluster_every_steps=1,
                   cluster_iters=3)
    _fit(model, 2)
    labels = model.pseudo_labels.numpy()
    assert labels.min() >= 0 and labels.max() < 3 and len(np.unique(labels)) > 1


def test_cmsf_kmeans_refresh_runs_after_the_pool_write_of_every_nth_step():
    # The official refresh before step k (k % every == 0) is made at the end
    # of step k - 1, from the pool that step has just written.
    model = _build("cmsf", topk=2, num_examples=harness.NUM_EXAMPLES,
                   constraint="pseudo_label", num_clusters=3, cluster_every_steps=2,
                   cluster_iters=3)
    data = list(harness.batches(3))
    ctx = model.step_context()
    outputs = model.forward(Batch.from_element(data[0]), ctx)
    model.loss(outputs, ctx)
    np.testing.assert_array_equal(model.pseudo_labels.numpy(), 0)  # forward writes nothing
    _fit(model, 1)  # step 0: (0 + 1) % 2 != 0, no refresh
    np.testing.assert_array_equal(model.pseudo_labels.numpy(), 0)
    model.fit(tf.data.Dataset.from_tensors(data[1]), epochs=1, verbose=0)  # step 1
    np.testing.assert_array_equal(model.pseudo_labels.numpy(), model.cluster_pool().numpy())
    assert len(np.unique(model.pseudo_labels.numpy())) > 1


def test_cmsf_rejects_a_constraint_set_smaller_than_k():
    with pytest.raises(ValueError, match="constraint_topk"):
        _build("cmsf", topk=5, num_examples=8, constraint_topk=3)


def test_cmsf_previous_epoch_one_and_two_replicas_agree(previous_epoch_as_built):
    # The shared harness runs CMSF-KM; this runs the 2Q constraint's gathers,
    # pool writes and slot toggles on 1 and 2 replicas; the last two of the
    # four steps revisit examples of the first two.
    dataset = harness.batches(2).concatenate(harness.batches(2, seed=1))

    def train(model):
        return model, model.fit(dataset, epochs=1, verbose=0, shuffle=False).history

    single, single_logs = train(previous_epoch_as_built)  # one replica, as _build made it
    with harness.mirrored_strategy().scope():
        mirrored, mirrored_logs = train(_build("cmsf", **PREVIOUS_EPOCH))
    np.testing.assert_allclose(mirrored_logs["loss"], single_logs["loss"], rtol=1e-4)
    expected, actual = harness.weights_by_path(single), harness.weights_by_path(mirrored)
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=1e-3, atol=2e-5,
                                   err_msg=path)


def test_cmsf_takes_the_run_dependent_values_from_the_run_context():
    run = RunContext(num_examples=100, steps_per_epoch=7)
    model = methods.get("cmsf", encoder=tiny_backbone(image_size=16, width=4), queue_size=12,
                        constraint="pseudo_label", run=run)
    assert model.num_examples == 100 and tuple(model.pool.shape[:2]) == (1, 100)
    assert model.cluster_every_steps == 7  # KM re-clusters once per epoch by default
    explicit = methods.get("cmsf", encoder=tiny_backbone(image_size=16, width=4),
                           num_examples=50, queue_size=12, constraint="pseudo_label",
                           cluster_every_steps=0, run=run)
    assert explicit.num_examples == 50 and explicit.cluster_every_steps == 0
    with pytest.raises(ValueError, match="num_examples"):
        methods.get("cmsf", encoder=tiny_backbone(image_size=16, width=4), queue_size=12)


# ---- supervised CMSF ------------------------------------------------------------

def test_supervised_cmsf_takes_the_nearest_rows_of_the_class_and_only_them(
        supervised_after_one_step):
    model = supervised_after_one_step  # one step of harness batches: class = index % 3
    assert not any("pool" in w.path or "pseudo" in w.path for w in model.weights)
    written = next(iter(harness.batches(1)))["index"].numpy()
    np.testing.assert_array_equal(model.queue.label.numpy()[:8], written % 3)
    np.testing.assert_array_equal(model.queue.label.numpy()[8:], -1)
    batch_indices = np.arange(20, 28)
    outputs, ctx = _forward(model, _batch(batch_indices))
    targets, bank, same_class = _same_class_rows(model, outputs, batch_indices % 3)
    # NumPy copy of train_cmsf_sup.py: other classes (and unwritten rows) at
    # distance 5, the top k by the target's distance, loss 2 - 2 q.u over them
    # (here every anchor has >= 3 rows of its class, so nothing is dropped).
    assert (same_class.sum(axis=1) >= 3).all()
    distances = np.where(same_class, 2 - 2 * targets @ bank.T, 5.0)
    chosen = np.argsort(distances, axis=1, kind="stable")[:, :3]
    q = _normalize(outputs.predictions[0].numpy())
    expected_loss = np.mean([np.mean([2 - 2 * q[i] @ bank[j] for j in row])
                             for i, row in enumerate(chosen)])
    expected_purity = np.take_along_axis(same_class, _top(targets @ bank.T, 3), 1).mean()
    loss, logs = model.loss(outputs, ctx)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    np.testing.assert_allclose(logs["neighbor_purity"], expected_purity, rtol=1e-6)
    # Unconstrained mean shift would take rows of other classes here.
    assert expected_purity < 1.0


def test_supervised_cmsf_reads_the_classes_from_the_batch_not_the_index(
        supervised_after_one_step):
    # The same rows with other classes: the constraint follows the labels.
    model = supervised_after_one_step
    batch_indices = np.arange(20, 28)
    relabelled = (batch_indices + 1) % 3
    outputs, _ = _forward(model, _batch(batch_indices, labels=relabelled))
    *_, mask = model.constrained_search(outputs)
    _, _, expected = _same_class_rows(model, outputs, relabelled)
    _, _, by_index = _same_class_rows(model, outputs, batch_indices % 3)
    np.testing.assert_array_equal(mask, expected)
    assert not np.array_equal(mask, by_index)


def test_supervised_cmsf_refuses_unlabelled_rows_labels_and_other_constraints(
        supervised_after_one_step):
    encoder = tiny_backbone(image_size=16, width=4)
    with pytest.raises(ValueError, match="comes with the batch"):
        methods.get("cmsf_supervised", encoder=encoder, queue_size=12,
                    labels=np.arange(32) % 3)
    with pytest.raises(ValueError, match="constraint"):
        methods.get("cmsf_supervised", encoder=encoder, queue_size=12,
                    constraint="previous_epoch")
    # The fitted model: its traced step serves this batch too.
    model = supervised_after_one_step
    unlabelled = harness.batches(1).map(
        lambda x: {**x, "label": tf.where(x["index"] % 2 == 0, x["label"], -1)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="label -1"):
        model.fit(unlabelled, epochs=1, verbose=0)
