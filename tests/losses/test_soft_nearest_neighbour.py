"""The SNN classifier, PAWS, ME-max and NND against NumPy copies of kangzhiq/NNCSL's rules.

The references follow `src/losses.py` and `src/nncsl_train.py` as they are
written: supports of other classes are *removed* (boolean indexing), and the
label matrix has only the columns of the classes it covers. The library keeps
every class's column and masks instead; the values must agree.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.losses import soft_nearest_neighbour as snn_losses


def _normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def _ref_labels(labels, classes, smoothing):
    # make_labels_matrix: off = s / n, on = 1 - s + s / n, over the n classes.
    n = len(classes)
    matrix = np.full((len(labels), n), smoothing / n)
    for row, label in enumerate(labels):
        matrix[row, classes.index(label)] = 1 - smoothing + smoothing / n
    return matrix


def _ref_snn(query, supports, labels, tau):
    return _softmax(_normalize(query) @ _normalize(supports).T / tau) @ labels


def _ref_sharpen(p, T):
    sharp = p ** (1.0 / T)
    return sharp / sharp.sum(axis=1, keepdims=True)


def _ref_paws(anchor_views, anchor_supports, target_views, target_supports, labels, *,
              multicrop, tau=0.1, T=0.25):
    # init_paws_loss.loss (losses.py:52-87).
    batch = len(target_views) // 2
    probs = _ref_snn(anchor_views, anchor_supports, labels, tau)
    targets = _ref_sharpen(_ref_snn(target_views, target_supports, labels, tau), T)
    if multicrop > 0:
        mc = 0.5 * (targets[:batch] + targets[batch:])
        targets = np.concatenate([targets] + [mc] * multicrop, axis=0)
    targets[targets < 1e-4] *= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(targets > 0, -targets * np.log(probs), 0.0)
    loss = np.mean(np.sum(terms, axis=1))
    avg = np.mean(_ref_sharpen(probs, T), axis=0)
    rloss = np.sum(avg * np.log(avg))
    return loss, rloss, probs


def _problem(seed, batch=5, multicrop=2, num_classes=6, dim=8, per_class=2):
    rng = np.random.default_rng(seed)
    support_labels = np.tile(np.arange(num_classes), per_class)
    return dict(
        views=rng.normal(size=((2 + multicrop) * batch, dim)).astype("float32"),
        supports=rng.normal(size=(len(support_labels), dim)).astype("float32"),
        support_labels=support_labels, batch=batch, multicrop=multicrop,
        num_classes=num_classes)


def _library_paws(problem, current, smoothing=0.1):
    active = np.isin(np.arange(problem["num_classes"]), current)
    mask = np.isin(problem["support_labels"], current)
    labels = snn_losses.smoothed_label_matrix(problem["support_labels"], active, smoothing)
    views, batch = problem["views"], problem["batch"]
    anchors = snn_losses.snn(views, problem["supports"], labels, support_mask=mask)
    swapped = np.concatenate([views[batch:2 * batch], views[:batch]])
    target_probs = snn_losses.snn(swapped, problem["supports"], labels, support_mask=mask)
    targets = snn_losses.paws_targets(target_probs, num_small_views=problem["multicrop"])
    mean = snn_losses.mean_sharpened(anchors)
    return (snn_losses.paws_loss(anchors, targets), snn_losses.me_max_loss(mean), anchors,
            active)


@pytest.mark.parametrize("current,multicrop", [((0, 1, 2, 3, 4, 5), 2), ((2, 4), 2),
                                                ((1, 3, 5), 0)])
def test_paws_and_me_max_match_the_official_rule(current, multicrop):
    problem = _problem(seed=len(current) + multicrop, multicrop=multicrop)
    batch = problem["batch"]
    # nncsl_train.py:572-585: supports of the current task only, targets from
    # the swapped large views of the detached embeddings.
    keep = np.isin(problem["support_labels"], current)
    labels = _ref_labels(list(problem["support_labels"][keep]), list(current), 0.1)
    views = problem["views"].astype("float64")
    swapped = np.concatenate([views[batch:2 * batch], views[:batch]])
    supports = problem["supports"][keep].astype("float64")
    ref_loss, ref_me_max, ref_probs = _ref_paws(views, supports, swapped, supports, labels,
                                                multicrop=multicrop)
    loss, me_max, probs, active = _library_paws(problem, current)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    np.testing.assert_allclose(me_max, ref_me_max, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(probs)[:, active], ref_probs, rtol=1e-4, atol=1e-6)
    # Columns of classes outside the task are exactly 0.
    assert np.all(np.asarray(probs)[:, ~active] == 0.0)


def test_label_matrix_is_the_official_smoothing():
    active = np.array([0, 1, 1, 0, 1], bool)
    matrix = np.asarray(snn_losses.smoothed_label_matrix([2, 4, 1], active, 0.1))
    expected = _ref_labels([2, 4, 1], [1, 2, 4], 0.1)
    np.testing.assert_allclose(matrix[:, active], expected, rtol=1e-6)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(matrix[:, ~active] == 0.0)


def test_targets_are_mean_of_the_large_views_and_floored():
    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(size=(6, 4)) * 4).astype("float32")
    targets = np.asarray(snn_losses.paws_targets(probs, num_small_views=3))
    sharp = _ref_sharpen(probs.astype("float64"), 0.25)
    mean = 0.5 * (sharp[:3] + sharp[3:])
    expected = np.concatenate([sharp, mean, mean, mean])
    expected[expected < 1e-4] = 0
    assert targets.shape == (15, 4)
    np.testing.assert_allclose(targets, expected, rtol=1e-4, atol=1e-7)
    assert np.all((targets == 0) | (targets >= 1e-4))


def test_paws_gradient_reaches_anchors_not_targets():
    problem = _problem(seed=7)
    supports = tf.constant(problem["supports"])
    views = tf.constant(problem["views"])
    active = np.ones(problem["num_classes"], bool)
    labels = snn_losses.smoothed_label_matrix(problem["support_labels"], active)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([views, supports])
        anchors = snn_losses.snn(views, supports, labels)
        target_probs = snn_losses.snn(views[:10], supports, labels)
        targets = snn_losses.paws_targets(target_probs, num_small_views=2)
        loss = snn_losses.paws_loss(anchors, targets)
    grad_views = tape.gradient(loss, views)
    assert np.all(np.isfinite(grad_views)) and np.any(np.asarray(grad_views) != 0)
    # Through the targets alone nothing flows back.
    assert tape.gradient(targets, views) is None


def test_nnd_matches_the_official_rule_over_past_supports():
    problem = _problem(seed=11)
    rng = np.random.default_rng(12)
    teacher_views = rng.normal(size=problem["views"].shape).astype("float32")
    teacher_supports = rng.normal(size=problem["supports"].shape).astype("float32")
    past = (0, 3)
    keep = np.isin(problem["support_labels"], past)
    labels = _ref_labels(list(problem["support_labels"][keep]), list(past), 0.1)
    # nncsl_train.py:623-635: both models' SNN over the past-class supports.
    cur = _ref_snn(problem["views"].astype("float64"), problem["supports"][keep], labels, 0.1)
    pre = _ref_snn(teacher_views.astype("float64"), teacher_supports[keep], labels, 0.1)
    expected = np.mean(np.sum(-pre * np.log(cur), axis=1))

    active = np.isin(np.arange(problem["num_classes"]), past)
    matrix = snn_losses.smoothed_label_matrix(problem["support_labels"], active)
    student = snn_losses.snn(problem["views"], problem["supports"], matrix, support_mask=keep)
    teacher = snn_losses.snn(teacher_views, teacher_supports, matrix, support_mask=keep)
    nnd = snn_losses.nearest_neighbour_distillation(teacher, student)
    np.testing.assert_allclose(nnd, expected, rtol=1e-4)
    # H(p, q) >= H(p, p): distilling a model into itself gives its entropy.
    self_nnd = snn_losses.nearest_neighbour_distillation(student, student)
    assert float(self_nnd) <= float(nnd) + 1e-6


def test_me_max_is_minus_the_entropy_of_the_mean():
    mean = np.array([0.5, 0.25, 0.25, 0.0], "float32")
    expected = 0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)
    np.testing.assert_allclose(snn_losses.me_max_loss(mean), expected, rtol=1e-6)
    # Uniform predictions minimise it: -log C.
    np.testing.assert_allclose(snn_losses.me_max_loss(np.full(4, 0.25, "float32")),
                               -np.log(4), rtol=1e-6)
