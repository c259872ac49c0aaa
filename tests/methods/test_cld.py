"""CLD: the loss against a NumPy reference, its gradients, and the +CLD presets.

The shared harness (test_method_contract.py) runs npid_cld, moco_v2_cld and byol_cld
through fit, 1 vs 2 replicas and weight round-trips; this file checks what is
specific to CLD, and how the registry builds it from config.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import configs, methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import BYOL, NPID, Batch, MoCo, RunContext, StepContext
from keras_ssl.methods.outputs import Outputs
from keras_ssl.objectives import CLD, NormLinear, cld_loss
from tests.methods import harness

RUN = RunContext(num_examples=harness.NUM_EXAMPLES, steps_per_epoch=4, epochs=1)


def smoke(name):
    """The test-size constructor arguments of `name` (keras_ssl.configs)."""
    return configs.get("cpu_small", name, smoke=True)["method"]


def encoder(width=4):
    return tiny_backbone(image_size=16, width=width)


def batch_of(views, rows=8):
    return Batch(views=tuple(tf.constant(v) for v in views), index=tf.range(rows, dtype=tf.int64),
                 label=tf.fill([rows], tf.constant(-1, tf.int64)))


# ---- NumPy reference -----------------------------------------------------------
def np_kmeans(x, k, iters):
    """Lloyd's algorithm from the first k rows; an empty cluster keeps its centroid."""
    centroids = x[:k].copy()
    for _ in range(iters):
        distances = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
        labels = distances.argmin(1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centroids[j] = members.mean(0)
    return labels, centroids


def np_cross_entropy(logits, labels):
    logits = logits - logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def np_cld(groups1, groups2, k, iters, temperature):
    labels1, centroids1 = np_kmeans(groups1, k, iters)
    labels2, centroids2 = np_kmeans(groups2, k, iters)
    logits12 = groups1 @ centroids2.T / temperature
    loss = (np_cross_entropy(logits12, labels2)
            + np_cross_entropy(groups2 @ centroids1.T / temperature, labels1)) / 2
    accuracy = (logits12.argmax(1) == labels2).mean()
    return loss, accuracy


def l2n(x):
    # tf.math.l2_normalize's epsilon: a row the ReLU of the NormMLP head zeroed
    # stays zero instead of becoming NaN.
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=1, keepdims=True), 1e-12))


def clustered_features(seed, batch=8, dim=6, centres=3):
    """Rows near `centres` well-separated points, so k-means has no ties."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim)) * 3
    return (means[rng.integers(centres, size=batch)]
            + 0.3 * rng.normal(size=(batch, dim))).astype("float32")


# ---- the loss --------------------------------------------------------------------
@pytest.mark.parametrize("head", ["linear", "normlinear", "normmlp"])
def test_cld_matches_numpy(head):
    keras.utils.set_random_seed(0)  # the head's initial weights, whatever ran before
    features1, features2 = clustered_features(0), clustered_features(1)
    cld = CLD(6, num_groups=3, temperature=0.2, weight=0.5, group_dim=4, head=head)
    weighted, logs = cld(outputs=Outputs(features=(tf.constant(features1),
                                                   tf.constant(features2))), training=True)
    # The head in NumPy, from the layer's own weights.
    def head_np(x):
        weights = [w.numpy() for w in cld.group_head.weights]
        if head == "linear":
            return x @ weights[0] + weights[1]
        if head == "normmlp":
            x = np.maximum(x @ weights[0] + weights[1], 0)
        return l2n(x) @ (weights[-1] / np.linalg.norm(weights[-1], axis=0))
    groups1, groups2 = l2n(head_np(features1)), l2n(head_np(features2))
    expected_loss, expected_accuracy = np_cld(groups1, groups2, 3, 5, 0.2)
    np.testing.assert_allclose(logs["cld_loss"], expected_loss, rtol=1e-4)
    np.testing.assert_allclose(weighted, 0.5 * expected_loss, rtol=1e-4)
    np.testing.assert_allclose(logs["cld_accuracy"], expected_accuracy)


def test_cld_loss_on_hand_made_groups():
    # Two tight groups, the same in both views: assignments agree, every row
    # is closest to its own centroid, so accuracy is 1 and the loss is small.
    groups = l2n(np.array([[1, 0.1], [0.1, 1], [1, 0], [0, 1]], "float32"))
    labels, centroids = np_kmeans(groups, 2, 5)
    loss, accuracy = cld_loss(groups, groups, labels, centroids, labels, centroids, 0.2)
    assert accuracy == 1.0
    np.testing.assert_allclose(loss, np_cross_entropy(groups @ centroids.T / 0.2, labels),
                               rtol=1e-5)
    # Swapping the other view's group ids makes every target wrong.
    _, wrong = cld_loss(groups, groups, labels, centroids, 1 - labels, centroids, 0.2)
    assert wrong == 0.0


def test_gradient_flows_through_the_centroids():
    """Autodiff equals finite differences of the full loss (k-means included).

    With stop_gradient on the centroids the analytic gradient would miss the
    path through the cluster means and this comparison fails.
    """
    rng = np.random.default_rng(3)
    groups1 = l2n(clustered_features(2, dim=4)).astype("float64")
    groups2 = l2n(clustered_features(2, dim=4) + 0.05 * rng.normal(size=(8, 4)))
    cld = CLD(4, num_groups=3, temperature=0.5)

    def loss_of(g1, g2):
        a1, c1 = cld._cluster(g1)
        a2, c2 = cld._cluster(g2)
        return cld_loss(g1, g2, a1, c1, a2, c2, 0.5)[0]

    g1 = tf.Variable(groups1.astype("float32"))
    with tf.GradientTape() as tape:
        loss = loss_of(g1, tf.constant(groups2, tf.float32))
    analytic = tape.gradient(loss, g1).numpy()
    numeric = np.zeros_like(groups1)
    eps = 1e-3
    for i, j in np.ndindex(*groups1.shape):
        shifted = [groups1.copy(), groups1.copy()]
        shifted[0][i, j] += eps
        shifted[1][i, j] -= eps
        up, down = (float(loss_of(tf.constant(s, tf.float32), tf.constant(groups2, tf.float32)))
                    for s in shifted)
        numeric[i, j] = (up - down) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, atol=2e-3)


def test_gradient_reaches_the_group_head_and_the_backbone():
    keras.utils.set_random_seed(0)
    model = methods.get("npid_cld", encoder=encoder(), run=RUN, **smoke("npid_cld"))
    cld = model.objectives[0]
    images = np.random.default_rng(0).uniform(size=(2, 8, 16, 16, 3)).astype("float32")
    with tf.GradientTape() as tape:
        outputs = model.forward(batch_of(images), StepContext.at(0))
        loss, _ = cld(outputs=outputs, training=True)
    head, backbone = cld.group_head.trainable_weights, model.encoder.trainable_weights
    projector = model.projector.trainable_weights
    gradients = tape.gradient(loss, head + backbone + projector)
    for variable, gradient in zip(head + backbone, gradients):
        assert gradient is not None and np.abs(gradient.numpy()).sum() > 0, variable.path
    # The instance projector is not on CLD's path.
    assert all(g is None for g in gradients[len(head + backbone):])


def test_float16_features_give_float32_loss():
    features = tf.constant(clustered_features(4), tf.float16)
    cld = CLD(6, num_groups=3, group_dim=4)
    weighted, logs = cld(outputs=Outputs(features=(features, features)), training=True)
    assert weighted.dtype == tf.float32 and np.isfinite(weighted.numpy())
    assert logs["cld_accuracy"].dtype == tf.float32


def test_cld_needs_two_views():
    cld = CLD(6, num_groups=3)
    with pytest.raises(ValueError, match="symmetric=True"):
        cld(outputs=Outputs(features=(tf.zeros([8, 6]),)))
    with pytest.raises(ValueError, match="two different views"):
        CLD(6, views=(0, 0))
    with pytest.raises(ValueError, match="normlinear"):
        CLD(6, head="mlp")


def test_norm_linear_is_a_cosine_layer():
    layer = NormLinear(3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    y = layer(x).numpy()
    w = layer.kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y, l2n(x) @ w, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(y) <= 1 + 1e-6)


# ---- the +CLD presets ------------------------------------------------------------
def test_registry_defaults_follow_the_official_scripts():
    npid = methods.get("npid_cld", encoder=encoder(), run=RunContext(num_examples=4))
    assert type(npid) is NPID
    cld = npid.objectives[0]
    assert (cld.num_groups, cld.temperature, cld.weight, cld.head_kind, cld.group_dim,
            cld.num_iters) == (128, 0.2, 1.0, "linear", 128, 5)
    moco = methods.get("moco_v2_cld", encoder=encoder())
    assert type(moco) is MoCo and moco.name == "moco_v2_cld"
    cld = moco.objectives[0]
    assert (cld.num_groups, cld.temperature, cld.weight, cld.head_kind) == (
        120, 0.4, 0.25, "normmlp")
    assert moco.symmetric and isinstance(moco.projector.layers[-1], NormLinear)
    three_views = methods.get("moco_v2_cld", encoder=encoder(), shared_key_view=2)
    assert not three_views.symmetric and three_views.shared_key_view == 2
    byol = methods.get("byol_cld", encoder=encoder())
    assert type(byol) is BYOL
    assert (byol.objectives[0].num_groups, byol.objectives[0].head_kind) == (120, "normmlp")


def test_class_attributes_of_a_preset_are_its_base_class():
    for name, base in (("npid_cld", "npid"), ("moco_v2_cld", "moco_v2"), ("byol_cld", "byol")):
        assert methods.method_class(name) is methods.METHODS[base]
        assert methods.METHODS[name].recipe_name == methods.METHODS[base].recipe_name
        assert methods.base_name(name) == base
    assert methods.base_name("simclr") == "simclr"
    with pytest.raises(ValueError, match="moco_v2_cld"):
        methods.method_class("moco_cld")


def test_flat_keywords_of_the_former_subclasses_still_work():
    model = methods.get("moco_v2_cld", encoder=encoder(), num_groups=3, cld_temperature=0.3,
                        cld_weight=0.5, group_head="linear", group_dim=8, kmeans_iters=2,
                        projection_dim=8, queue_size=12)
    cld, = model.objectives
    assert (cld.num_groups, cld.temperature, cld.weight, cld.head_kind, cld.group_dim,
            cld.num_iters, cld.input_dim) == (3, 0.3, 0.5, "linear", 8, 2, 8)


def test_a_cld_spec_is_merged_with_the_preset_defaults():
    model = methods.get("byol_cld", encoder=encoder(), **smoke("byol_cld"))
    cld, = model.objectives
    # num_groups and group_dim from the smoke config, the rest from the preset.
    assert (cld.num_groups, cld.group_dim, cld.temperature, cld.weight, cld.head_kind) == (
        3, 8, 0.4, 0.25, "normmlp")
    with pytest.raises(ValueError, match="num_groups"):
        methods.get("byol_cld", encoder=encoder(), num_groups=4, **smoke("byol_cld"))
    # The same value twice is no conflict.
    methods.get("byol_cld", encoder=encoder(), num_groups=3, **smoke("byol_cld"))


def test_a_built_cld_layer_is_used_as_it_is():
    layer = CLD(8, num_groups=5)
    model = methods.get("npid_cld", encoder=encoder(), run=RUN, objectives=[layer])
    assert model.objectives == [layer]
    with pytest.raises(ValueError, match="on the layer"):
        methods.get("npid_cld", encoder=encoder(), run=RUN, objectives=[CLD(8)], num_groups=3)


def test_any_method_takes_objectives_from_config():
    model = methods.get("simclr", encoder=encoder(width=3), projection_dim=8,
                        objectives=[{"cld": {"num_groups": 3, "group_dim": 4}}])
    cld, = model.objectives
    assert isinstance(cld, CLD) and cld.input_dim == 6  # the tiny CNN's 2 x width
    assert cld.group_head.built
    with pytest.raises(ValueError, match="cld"):
        methods.get("simclr", encoder=encoder(), objectives=[{"clld": {}}])
    with pytest.raises(ValueError, match="encoder="):
        methods.get("simclr", objectives=[{"cld": {}}])


def test_the_run_context_sizes_the_cld_presets():
    run = RunContext(num_examples=10, steps_per_epoch=5, epochs=2)
    npid = methods.get("npid_cld", encoder=encoder(), run=run, **smoke("npid_cld"))
    assert npid.memory.rows.shape[0] == 10
    byol = methods.get("byol_cld", encoder=encoder(), run=run, **smoke("byol_cld"))
    assert byol.total_steps == 10


def test_a_preset_round_trips_through_its_config():
    model = methods.get("moco_v2_cld", encoder=encoder(), **smoke("moco_v2_cld"))
    config = model.get_config()
    assert config["name"] == "moco_v2_cld" and config["symmetric"] and config["normlinear"]
    clone = MoCo.from_config(config)
    assert clone.name == "moco_v2_cld" and clone.symmetric
    assert clone.objectives[0].get_config() == model.objectives[0].get_config()


def test_fit_logs_cld_terms():
    model = harness.build("npid_cld")
    model.compile(optimizer="sgd")
    history = model.fit(harness.batches(1), epochs=1, verbose=0).history
    assert np.isfinite(history["cld_loss"][0])
    assert 0.0 <= history["cld_accuracy"][0] <= 1.0


def test_moco_shared_key_view_uses_a_third_view():
    keras.utils.set_random_seed(0)
    model = methods.get("moco_v2_cld", encoder=encoder(), shared_key_view=2,
                        **smoke("moco_v2_cld"))
    model.compile(optimizer="sgd")
    rng = np.random.default_rng(0)
    views = tuple(rng.uniform(size=(8, 16, 16, 3)).astype("float32") for _ in range(3))
    queue_before = model.queue.keys.numpy().copy()
    data = tf.data.Dataset.from_tensor_slices({"views": views, "index": np.arange(8)})
    # drop_remainder: the k-means kernel needs a static batch size in graph mode.
    history = model.fit(data.batch(8, drop_remainder=True), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    # The queue took one key per image (8 rows), not two.
    changed = np.any(model.queue.keys.numpy() != queue_before, axis=1)
    assert changed.sum() == 8
    with pytest.raises(ValueError, match="num_views=3"):
        model.forward(batch_of(views[:2]), StepContext.at(0))
