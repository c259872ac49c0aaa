"""MSF and CMSF: neighbours against NumPy, the bank and pool writes, the constraints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
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


def _batch(indices, seed=5):
    rng = np.random.default_rng(seed)
    views = tuple(tf.constant(rng.uniform(size=(len(indices), 16, 16, 3)), tf.float32)
                  for _ in range(2))
    return views, tf.constant(indices, tf.int64)


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
    bank_index = model.bank_indices.numpy().copy()
    bank_index[rows] = batch_indices
    bank_labels = np.where(bank_index >= 0, labels[np.maximum(bank_index, 0)], -1)
    return targets, bank, labels[batch_indices][:, None] == bank_labels[None, :]


def test_msf_neighbours_are_the_true_top_k_and_the_target_comes_first():
    model = _build("msf", topk=3)
    _fit(model, 1)  # 8 real targets in the 12-row bank
    views, indices = _batch(np.arange(20, 28))
    outputs = model.forward_views(views, indices, training=True)
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
    loss, _ = model.compute_loss_terms(outputs, training=True)
    q = _normalize(outputs.predictions[0].numpy())
    reference = np.mean([np.mean([2 - 2 * q[i] @ expected_bank[j] for j in row])
                         for i, row in enumerate(_top(scores, 3))])
    np.testing.assert_allclose(loss, reference, rtol=1e-5)


def test_msf_queue_pointer_moves_and_holds_the_targets_of_the_step():
    model = _build("msf", topk=3)
    batch = next(iter(harness.batches(1)))
    _fit(model, 1)
    assert int(model.queue.pointer.numpy()) == 8
    # The target network is not touched after the step (EMA runs before the
    # target pass), so recomputing it on the same views gives the same rows.
    targets = model.target_projector(model.target_encoder(batch["views"][1], training=True),
                                     training=True)
    np.testing.assert_allclose(model.queue.keys.numpy()[:8],
                               tf.math.l2_normalize(targets, axis=1), atol=1e-5)
    _fit(model, 2)  # 16 more rows: the pointer wraps around the 12-row bank
    assert int(model.queue.pointer.numpy()) == (8 + 16) % 12


def test_cmsf_pseudo_label_constraint_never_picks_a_disallowed_row():
    model = _build("cmsf", topk=3, num_examples=harness.NUM_EXAMPLES,
                   constraint="pseudo_label")
    _fit(model, 1)
    labels = np.arange(harness.NUM_EXAMPLES) % 3
    model.set_pseudo_labels(labels)
    batch_indices = np.arange(20, 28)
    views, indices = _batch(batch_indices)
    outputs = model.forward_views(views, indices, training=True)
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


def test_cmsf_previous_epoch_constraint_matches_numpy():
    model = _build("cmsf", topk=2, num_examples=harness.NUM_EXAMPLES,
                   constraint="previous_epoch", constraint_topk=3)
    _fit(model, 2)
    seen = harness.batches(2).unbatch().map(lambda x: x["index"])
    seen = np.array(list(seen.as_numpy_iterator()))
    # Four revisits (their previous embedding is a real one) and four
    # examples never seen (random pool rows), none repeated.
    unseen = np.setdiff1d(np.arange(harness.NUM_EXAMPLES), seen)[:4]
    batch_indices = np.concatenate([seen[:4], unseen])
    views, indices = _batch(batch_indices)
    pool, slot = model.pool.numpy(), model.pool_slot.numpy()
    outputs = model.forward_views(views, indices, training=True)
    _, _, _, constrained, constrained_sims, mask = model.constrained_search(outputs)
    targets = model.normalized_targets(outputs).numpy()
    bank, rows = _bank_after(model, targets)
    bank_index = model.bank_indices.numpy().copy()
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


def test_cmsf_writes_the_pool_and_toggles_the_slot():
    model = _build("cmsf", topk=2, num_examples=harness.NUM_EXAMPLES)
    batch = next(iter(harness.batches(1)))
    before = model.pool.numpy()
    _fit(model, 1)
    written = batch["index"].numpy()
    np.testing.assert_array_equal(model.bank_indices.numpy()[:8], written)
    np.testing.assert_array_equal(model.bank_indices.numpy()[8:], -1)
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


def test_cmsf_rejects_a_constraint_set_smaller_than_k():
    with pytest.raises(ValueError, match="constraint_topk"):
        _build("cmsf", topk=5, num_examples=8, constraint_topk=3)


def test_cmsf_previous_epoch_one_and_two_replicas_agree():
    # The shared harness runs CMSF-KM; this runs the 2Q constraint's gathers,
    # pool writes and slot toggles on 1 and 2 replicas; the last two of the
    # four steps revisit examples of the first two.
    def train(strategy):
        with strategy.scope():
            model = _build("cmsf", topk=2, num_examples=harness.NUM_EXAMPLES,
                           constraint="previous_epoch", constraint_topk=3)
        dataset = harness.batches(2).concatenate(harness.batches(2, seed=1))
        logs = model.fit(dataset, epochs=1, verbose=0, shuffle=False).history
        return model, logs

    single, single_logs = train(tf.distribute.get_strategy())
    mirrored, mirrored_logs = train(harness.mirrored_strategy())
    np.testing.assert_allclose(mirrored_logs["loss"], single_logs["loss"], rtol=1e-4)
    expected, actual = harness.weights_by_path(single), harness.weights_by_path(mirrored)
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=1e-3, atol=2e-5,
                                   err_msg=path)


def test_pseudo_label_cmsf_reclusters_once_per_epoch_under_train_py():
    """pretrain hands the epoch length over; KM then re-clusters every epoch by default."""
    from experiments.pretrain import _method_kwargs
    kwargs = _method_kwargs("cmsf", {"constraint": "pseudo_label"}, num_examples=100,
                            total_steps=50, steps_per_epoch=7)
    assert kwargs["steps_per_epoch"] == 7
    model = methods.get("cmsf", encoder=tiny_backbone(image_size=16, width=4), queue_size=12,
                        **kwargs)
    assert model.cluster_every_steps == 7
    explicit = methods.get("cmsf", encoder=tiny_backbone(image_size=16, width=4),
                           num_examples=100, queue_size=12,
                           constraint="pseudo_label", cluster_every_steps=0, steps_per_epoch=7)
    assert explicit.cluster_every_steps == 0


# ---- supervised CMSF ------------------------------------------------------------

def test_supervised_cmsf_takes_the_nearest_rows_of_the_class_and_only_them():
    labels = np.arange(harness.NUM_EXAMPLES) % 3
    model = _build("cmsf_supervised", topk=3, num_examples=harness.NUM_EXAMPLES,
                   labels=labels)
    assert model.pool.shape[0] == 0  # fixed labels need no embedding pool
    _fit(model, 1)
    batch_indices = np.arange(20, 28)
    views, indices = _batch(batch_indices)
    outputs = model.forward_views(views, indices, training=True)
    targets, bank, same_class = _same_label_rows(model, outputs, batch_indices, labels)
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
    loss, logs = model.compute_loss_terms(outputs, training=True)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    np.testing.assert_allclose(logs["neighbor_purity"], expected_purity, rtol=1e-6)
    # Unconstrained mean shift would take rows of other classes here.
    assert expected_purity < 1.0


def test_supervised_cmsf_refuses_missing_labels_and_other_constraints():
    encoder = tiny_backbone(image_size=16, width=4)
    labels = np.arange(harness.NUM_EXAMPLES) % 3
    with pytest.raises(ValueError, match="2 of 32 have label -1"):
        methods.get("cmsf_supervised", encoder=encoder, num_examples=32, queue_size=12,
                    labels=np.where(np.arange(32) < 2, -1, labels))
    with pytest.raises(ValueError, match=r"shape \(32,\)"):
        methods.get("cmsf_supervised", encoder=encoder, num_examples=32, queue_size=12,
                    labels=labels[:10])
    with pytest.raises(ValueError, match="constraint"):
        methods.get("cmsf_supervised", encoder=encoder, num_examples=32, queue_size=12,
                    labels=labels, constraint="previous_epoch")


def test_train_py_hands_the_labels_only_to_methods_that_take_them():
    from experiments.pretrain import _method_kwargs
    labels = np.arange(10) % 2
    supervised = _method_kwargs("cmsf_supervised", {}, num_examples=10, total_steps=5,
                                labels=labels)
    np.testing.assert_array_equal(supervised["labels"], labels)
    assert "labels" not in _method_kwargs("cmsf", {}, num_examples=10, total_steps=5,
                                          labels=labels)
