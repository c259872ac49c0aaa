"""USL-T against NumPy copies of the official losses and pick rule (shared/utils/uslt_utils.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones, selection


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _official_local(anchors, neighbors, prob_ema, adjustment_weight=5.0, momentum=0.5,
                    sharpen_temperature=0.25):
    """OursLossLocal.forward (uslt_utils.py:30-62) for one head: (loss, new prob_ema)."""
    b = anchors.shape[0]
    positives_prob = _softmax(neighbors - adjustment_weight * np.log(prob_ema)[None, :])
    log_anchors_prob = _log_softmax(anchors)
    new_ema = prob_ema * momentum + _softmax(neighbors).mean(axis=0) * (1 - momentum)
    new_ema = new_ema / new_ema.sum()
    sharp = positives_prob ** (1.0 / sharpen_temperature)
    target = sharp / sharp.sum(axis=1, keepdims=True)
    # F.kl_div(input, target, reduction="batchmean")
    kl = np.where(target > 0, target * (np.log(np.maximum(target, 1e-300)) - log_anchors_prob), 0)
    return kl.sum() / b, new_ema


def _official_global(anchors_weak, anchors_strong, threshold=0.95):
    """OursLossGlobal.forward with reweight=True (uslt_utils.py:118-190)."""
    weak_prob = _softmax(anchors_weak)
    max_prob, target = weak_prob.max(axis=1), weak_prob.argmax(axis=1)
    mask = max_prob > threshold
    if not mask.any():
        return 0.0
    c = weak_prob.shape[1]
    target_masked = target[mask]
    n = len(target_masked)
    idx, counts = np.unique(target_masked, return_counts=True)
    weight = np.ones(c)
    weight[idx] = 1 / (counts / n)
    log_prob = -_log_softmax(anchors_strong[mask]) * weight[None, :]
    loss = log_prob[np.arange(n), target_masked]
    return (loss / weight[target_masked].sum()).sum()


def test_local_loss_and_prior_match_the_official_rule():
    rng = np.random.default_rng(0)
    anchors, neighbors = rng.normal(size=(2, 16, 6)) * 3
    prior = rng.uniform(0.5, 1.5, size=6)
    prior /= prior.sum()
    loss, new_prior = selection.uslt_local_loss(anchors.astype(np.float32),
                                                neighbors.astype(np.float32), prior)
    want_loss, want_prior = _official_local(anchors, neighbors, prior)
    np.testing.assert_allclose(loss.numpy(), want_loss, rtol=1e-4)
    np.testing.assert_allclose(new_prior.numpy(), want_prior, rtol=1e-5)
    # Gradients reach the anchors only.
    anchors_t, neighbors_t = tf.constant(anchors, tf.float32), tf.constant(neighbors, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([anchors_t, neighbors_t])
        loss, _ = selection.uslt_local_loss(anchors_t, neighbors_t, prior)
    assert tape.gradient(loss, neighbors_t) is None
    assert np.abs(tape.gradient(loss, anchors_t).numpy()).sum() > 0


def test_global_loss_matches_the_official_rule():
    rng = np.random.default_rng(1)
    weak = rng.normal(size=(32, 5))
    # Confident rows of unequal class counts: 6 of class 0, 3 of class 2, 1 of class 4.
    for row, label in zip(range(10), [0] * 6 + [2] * 3 + [4]):
        weak[row, label] += 12.0
    strong = rng.normal(size=(32, 5)) * 2
    loss = selection.uslt_global_loss(weak.astype(np.float32), strong.astype(np.float32))
    want = _official_global(weak, strong)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5)
    # = the mean over present clusters of their mean cross-entropy.
    ce = -_log_softmax(strong)[np.arange(32), weak.argmax(1)]
    per_class = [ce[:10][np.array([0] * 6 + [2] * 3 + [4]) == c].mean() for c in (0, 2, 4)]
    np.testing.assert_allclose(loss.numpy(), np.mean(per_class), rtol=1e-5)
    # Nothing confident: 0, as officially.
    assert float(selection.uslt_global_loss(np.zeros((4, 5), np.float32),
                                            strong[:4].astype(np.float32))) == 0.0


def _official_picks(head_logits, budget, head_in_use=0):
    """usl-t-cifar.py:85-117 with USE_MEAN_PROB True."""
    probs = [_softmax(logits) for logits in head_logits]
    preds = probs[head_in_use].argmax(axis=1)
    max_probs_mean = np.stack([p.max(axis=1) for p in probs]).mean(axis=0)
    picks = []
    for i in range(budget):
        mask = preds == i
        picks.append(np.flatnonzero(mask)[max_probs_mean[mask].argmax()])
    return picks


def test_picks_match_the_official_rule_and_fill_empty_clusters():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 200, 8)) * 2
    picks, num_empty = selection.uslt_picks(logits.astype(np.float32), 8)
    assert num_empty == 0
    np.testing.assert_array_equal(picks, _official_picks(logits, 8))
    # Cluster 3 of head 0 empty: its pick is the most confident unpicked row.
    logits[0, :, 3] = -50.0
    picks, num_empty = selection.uslt_picks(logits.astype(np.float32), 8)
    assert num_empty == 1 and len(set(picks.tolist())) == 8
    confidence = np.stack([_softmax(h).max(1) for h in logits]).mean(0)
    others = np.setdiff1d(np.arange(200), picks[:7])
    assert picks[7] == others[np.argmax(confidence[others])]


def test_neighbor_table_puts_each_row_first_then_its_nearest_by_cosine():
    features = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    table = selection.neighbor_table(features, num_neighbors=5)
    assert table.shape == (30, 6)
    np.testing.assert_array_equal(table[:, 0], np.arange(30))
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    np.testing.assert_array_equal(table[:, 1:], np.argsort(-cosine, axis=1)[:, :5])


def _flip(images, seed):
    return tf.image.stateless_random_flip_left_right(images, seed)


def _colour_images(per_class=8, size=8):
    rng = np.random.default_rng(4)
    colours = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20]])
    labels = np.arange(per_class * 4) % 4
    noise = rng.integers(-10, 10, size=(len(labels), size, size, 3))
    return np.clip(colours[labels][:, None, None] + noise, 0, 255).astype(np.uint8), labels


def test_train_step_adds_pytorch_adam_style_l2_to_the_head_gradients():
    images, _ = _colour_images()
    keras.utils.set_random_seed(0)
    encoder = backbones.get("tiny", image_size=8)
    model = selection.USLT(encoder, num_clusters=4, train_encoder=False, weight_decay=0.1)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    neighbors = selection.neighbor_table(
        encoder(images.astype(np.float32) / 255.0, training=False).numpy(), 3)
    batch = next(iter(selection.uslt_dataset(images, neighbors, batch_size=16, strong_view=_flip)))
    encoder_before = [v.numpy() for v in encoder.weights]
    heads = [v for head in model.heads for v in head.trainable_variables]
    before = [v.numpy() for v in heads]
    with tf.GradientTape() as tape:
        total, _, _, priors = model.losses_of(
            model(batch["image"]), model(batch["image_augmented"]), model(batch["neighbor"]))
    gradients = tape.gradient(total, heads)
    logs = model.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] == pytest.approx(float(total), rel=1e-5)
    for variable, start, gradient in zip(heads, before, gradients):
        np.testing.assert_allclose(variable.numpy(), start - (gradient.numpy() + 0.1 * start),
                                   rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.priors.numpy(), priors.numpy(), rtol=1e-6)
    assert not np.allclose(model.priors.numpy(), 0.25)
    # A frozen encoder stays as it was, BatchNorm statistics included.
    for variable, start in zip(encoder.weights, encoder_before):
        np.testing.assert_array_equal(variable.numpy(), start)


def test_select_uslt_returns_budget_distinct_indices(tmp_path):
    images, _ = _colour_images()
    keras.utils.set_random_seed(0)
    encoder = backbones.get("tiny", image_size=8)
    chosen = selection.select_uslt(encoder, images, 4, epochs=1, batch_size=16,
                                   num_neighbors=3, strong_view=_flip, seed=0)
    assert len(chosen.indices) == 4 and len(set(chosen.indices.tolist())) == 4
    assert chosen.assignments.shape == (32,) and len(chosen.history["loss"]) == 1
    assert np.isfinite(chosen.history["loss"][0])


def test_scan_strong_view_runs_eagerly_and_in_dataset_map():
    images = tf.constant(_colour_images(per_class=2, size=16)[0], tf.float32) / 255.0
    seed = tf.constant([1, 2], tf.int32)
    eager = selection.scan_strong_view(images, seed)
    assert eager.shape == images.shape
    assert float(tf.reduce_min(eager)) >= 0.0 and float(tf.reduce_max(eager)) <= 1.0
    mapped = next(iter(tf.data.Dataset.from_tensors(images).map(
        lambda batch: selection.scan_strong_view(batch, seed))))
    np.testing.assert_allclose(mapped.numpy(), eager.numpy(), atol=1e-5)
    assert not np.allclose(eager.numpy(), images.numpy())
