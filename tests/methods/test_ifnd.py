"""IFND as SimCLR (or MoCo) with a transform: the per-epoch E-step, its schedule, its state."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import configs, methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.losses import info_nce_loss
from keras_ssl.losses.false_negative_elimination import (FalseNegativeElimination,
                                                         accept_most_confident)
from keras_ssl.methods import Batch
from keras_ssl.ops.dataset_kmeans import hierarchical_kmeans
from keras_ssl.training import EpochFeaturePass
from tests.methods import harness

NUM_EXAMPLES = harness.NUM_EXAMPLES
# Three epochs of two steps: alpha = 0, 1/2, 1.
RUN = methods.RunContext(num_examples=NUM_EXAMPLES, steps_per_epoch=2, epochs=3)
IMAGES = np.random.default_rng(1).uniform(size=(NUM_EXAMPLES, 16, 16, 3)).astype("float32")


def _build(name="ifnd", run=RUN, **transform):
    """The smoke recipe of `name` (harness weights), with `transform` over its IFND spec."""
    config = dict(harness.TINY_CONFIGS[name])
    if transform:
        specs = config.get("logit_transforms") or [{"ifnd": {}}]
        config["logit_transforms"] = [{"ifnd": {**specs[0]["ifnd"], **transform}}]
    keras.utils.set_random_seed(0)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    model = methods.get(name, encoder=encoder, run=run, **config)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.update_variables())
    return model


def _eval_dataset():
    # Out of index order, with a partial last batch: the pass must sort.
    order = np.random.default_rng(2).permutation(NUM_EXAMPLES)
    return tf.data.Dataset.from_tensor_slices(
        {"image": IMAGES[order], "index": order.astype("int64")}).batch(5)


@pytest.fixture(scope="module")
def fitted():
    """One 3-epoch fit from alpha = 0, recording what each feature pass gave and left."""
    model = _build(initial_acceptance=0.0)
    state = model.transform_states[0]
    received = []
    hand_over = model.on_epoch_features

    def recording(features, ctx):
        hand_over(features, ctx)
        received.append(dict(epoch=int(ctx.epoch), features=features.numpy(),
                             in_index_order=model.epoch_features(IMAGES).numpy(),
                             labels=state.labels.numpy(), accepted=state.accepted.numpy()))

    model.on_epoch_features = recording
    feature_pass = EpochFeaturePass(_eval_dataset())
    history = model.fit(harness.batches(2).repeat(), epochs=3, steps_per_epoch=2, verbose=0,
                        shuffle=False, callbacks=[feature_pass]).history
    return dict(model=model, history=history, received=received, passes=feature_pass.passes)


def test_ifnd_is_simclr_with_the_transform_and_its_recipes_spell_it_out():
    model = _build()
    assert type(model).__name__ == "SimCLR" and model.uses_epoch_features
    transform, = model.logit_transforms
    assert isinstance(transform, FalseNegativeElimination)
    assert {"false_negative_fraction", "accepted_fraction"} <= set(model.log_trackers)
    assert [w.path for w in model.state_variables()] == [
        w.path for w in model.transform_states[0].weights]
    for scale in configs.SCALES:
        config = configs.get(scale, "ifnd")
        assert methods.PRESETS["ifnd"].arguments(config["method"]) == config["method"], scale
        base = configs.get(scale, "simclr")
        assert {k: v for k, v in config["method"].items() if k != "logit_transforms"} == \
            base["method"], scale
        assert (config["flags"], config["views"]) == (base["flags"], base["views"]), scale


def test_the_pass_runs_before_each_epoch_that_accepts(fitted):
    assert fitted["passes"] == [1, 2]
    assert [r["epoch"] for r in fitted["received"]] == [1, 2]
    assert [_build().wants_epoch_features(e) for e in range(3)] == [True, True, True]
    fresh = _build(initial_acceptance=0.0)
    assert [fresh.wants_epoch_features(e) for e in range(3)] == [False, True, True]


def test_the_pass_fills_labels_and_acceptance_in_index_order(fitted):
    transform, = fitted["model"].logit_transforms
    for record, rate in zip(fitted["received"], (0.5, 1.0)):
        # Row n of what the transform clustered is example n.
        np.testing.assert_allclose(record["features"], record["in_index_order"],
                                   rtol=1e-5, atol=1e-5)
        levels = hierarchical_kmeans(record["features"], transform.cluster_counts,
                                     max_iters=transform.kmeans_max_iters,
                                     num_inits=transform.kmeans_restarts, spherical=True,
                                     seed=record["epoch"])  # run seed 0
        np.testing.assert_array_equal(record["labels"],
                                      np.stack([level.assignments for level in levels]))
        confidence = np.mean([level.scores for level in levels], axis=0)
        np.testing.assert_array_equal(record["accepted"],
                                      accept_most_confident(confidence, rate))
        assert record["accepted"].sum() == rate * NUM_EXAMPLES
        if rate < 1:
            assert confidence[record["accepted"]].min() >= confidence[~record["accepted"]].max()


def test_the_logs_follow_the_schedule_and_the_fit_trains(fitted):
    history = fitted["history"]
    assert np.isfinite(history["loss"]).all()
    # Epoch 0 accepts nothing; epoch 1 the half of the pass before it; epoch 2 all.
    indices = next(iter(harness.batches(2).unbatch().batch(16)))["index"].numpy()
    expected_epoch_1 = fitted["received"][0]["accepted"][indices].mean()
    np.testing.assert_allclose(history["accepted_fraction"], [0.0, expected_epoch_1, 1.0],
                               rtol=1e-6)
    assert history["false_negative_fraction"][0] == 0.0
    assert history["false_negative_fraction"][1] > 0.0
    assert history["false_negative_fraction"][2] > 0.0


def test_before_the_first_clustering_the_loss_is_simclrs():
    batch = Batch.from_element(next(iter(harness.batches(1))))

    def loss(model):
        ctx = model.step_context()
        return float(model.loss(model.forward(batch, ctx), ctx)[0])

    np.testing.assert_allclose(loss(_build(initial_acceptance=0.0)), loss(_build("simclr")),
                               rtol=1e-6)


def test_a_resumed_run_keeps_the_labels(fitted, tmp_path):
    model = fitted["model"]
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    resumed = _build(initial_acceptance=0.0)
    assert (resumed.transform_states[0].labels.numpy() == -1).all()
    tf.train.Checkpoint(model=resumed).restore(path).assert_existing_objects_matched()
    for saved, restored in zip(model.transform_states[0].weights,
                               resumed.transform_states[0].weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)
    # Its labels are those of epoch 2: no new clustering before it, one before epoch 1.
    assert not resumed.wants_epoch_features(2) and resumed.wants_epoch_features(1)


def test_moco_keeps_queue_indices_and_removes_queued_false_negatives():
    model = _build("moco_v2", run=harness.RUN, cluster_counts=(2, 4))
    assert model.queue.columns == ("index",)
    assert _build("moco_v2", run=harness.RUN).queue.columns == ()
    first, second = iter(harness.batches(2))
    model.train_step(first)
    written = first["index"].numpy()
    np.testing.assert_array_equal(model.queue.read_column("index").numpy(),
                                  [*written, -1, -1, -1, -1])
    # Every example accepted, all in one cluster: every written queue row is
    # a false negative of every query, the 4 rows never written are not.
    model.transform_states[0].assign(np.zeros((2, NUM_EXAMPLES)), np.ones(NUM_EXAMPLES, bool),
                                     epoch=0)
    batch = Batch.from_element(second)
    ctx = model.step_context()
    outputs = model.forward(batch, ctx)
    loss, logs = model.loss(outputs, ctx)
    np.testing.assert_allclose(logs["false_negative_fraction"], 8 / 12, rtol=1e-6)
    unwritten = model.queue.read().numpy()[8:]
    np.testing.assert_allclose(loss, info_nce_loss(outputs.queries[0], outputs.keys[0],
                                                   unwritten, temperature=model.temperature),
                               rtol=1e-5)
