"""CLIM specifics: the lambda-split loss, a mixed step, a fit through the mixing pipeline,
and a resumed run that reads and rebuilds the same neighbour table."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.augment.recipes import multi_resolution_views
from keras_ssl.backbones import tiny_backbone
from keras_ssl.checkpointing import EpochCheckpoint
from keras_ssl.data import Split, distributed_train_dataset, train_dataset
from keras_ssl.losses import info_nce_loss
from keras_ssl.losses.image_mixture import image_mixture_nce_loss
from keras_ssl.methods import RunContext, StepContext, clim
from tests.methods import harness

EPOCHS, STEPS, BATCH, EXAMPLES = 3, 4, 8, 32
RUN = RunContext(num_examples=EXAMPLES, steps_per_epoch=STEPS, epochs=EPOCHS)


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def numpy_mixture_loss(queries, keys, partners, ratios, negatives, temperature):
    """lambda * CE(q, k) + (1 - lambda) * CE(q, k'), each against the same negatives."""
    queries, keys, partners = (_unit(np.asarray(x, np.float64)) for x in (queries, keys, partners))

    def cross_entropy(positives):
        logits = np.concatenate([np.sum(queries * positives, 1, keepdims=True),
                                 queries @ np.asarray(negatives, np.float64).T], 1) / temperature
        top = logits.max(1, keepdims=True)
        log_normaliser = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
        return log_normaliser - logits[:, 0]

    return np.mean(ratios * cross_entropy(keys) + (1 - ratios) * cross_entropy(partners))


def test_mixture_loss_matches_numpy_and_is_infonce_at_lambda_one():
    rng = np.random.default_rng(0)
    queries, keys, partners = (rng.standard_normal((6, 5)).astype("float32") for _ in range(3))
    negatives = _unit(rng.standard_normal((9, 5))).astype("float32")
    ratios = rng.uniform(size=6).astype("float32")
    loss = image_mixture_nce_loss(queries, keys, partners, ratios, negatives, temperature=0.2)
    expected = numpy_mixture_loss(queries, keys, partners, ratios, negatives, 0.2)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    plain = info_nce_loss(queries, keys, negatives, temperature=0.2)
    at_one = image_mixture_nce_loss(queries, keys, partners, np.ones(6, "float32"), negatives,
                                    temperature=0.2)
    assert float(at_one) == pytest.approx(float(plain), rel=1e-6)
    # Positives and negatives are targets: only the queries get a gradient.
    inputs = [tf.constant(x) for x in (queries, keys, partners, negatives)]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = image_mixture_nce_loss(inputs[0], inputs[1], inputs[2], ratios, inputs[3],
                                      temperature=0.2)
    gradients = tape.gradient(loss, inputs)
    assert gradients[0] is not None and all(g is None for g in gradients[1:])


def _build(**overrides):
    keras.utils.set_random_seed(0)
    config = {**harness.TINY_CONFIGS["clim"], "mixing_start_epoch": 1, **overrides}
    model = methods.get("clim", encoder=tiny_backbone(image_size=16, width=4), run=RUN,
                        **config)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.update_variables())
    return model


def test_a_mixed_step_splits_the_mixed_query_s_loss_by_lambda():
    model = _build()
    rng = np.random.default_rng(1)
    views = tuple(rng.uniform(size=(BATCH, side, side, 3)).astype("float32")
                  for side in (16, 16, 12, 16))  # query, key, 12-px query, mixed query
    index = np.arange(BATCH, dtype="int64") * 3
    neighbour = np.where(np.arange(BATCH) % 3 == 0, index, (index + 1) % EXAMPLES)
    ratio = np.where(neighbour == index, 1.0, rng.uniform(0.2, 0.9, BATCH)).astype("float32")
    element = {"views": views, "index": index, "label": index % 3,
               "neighbour_index": neighbour, "mix_ratio": ratio}
    captured = []
    forward = model.forward
    model.forward = lambda batch, ctx: captured.append(forward(batch, ctx)) or captured[-1]
    queue, bank = model.queue.read().numpy(), model.memory.read().numpy()
    logs = model.train_step(element)
    outputs = captured[-1]
    assert len(outputs.queries) == 2 and outputs.mixed_query is not None
    key = _unit(outputs.keys[0].numpy())
    # The neighbour's positive: its bank row, or the anchor's own key if unmixed.
    partners = np.where((neighbour == index)[:, None], key, bank[neighbour])
    np.testing.assert_allclose(outputs.partner_keys.numpy(), partners, atol=1e-6)
    plain = np.mean([numpy_mixture_loss(q.numpy(), key, key, np.ones(BATCH), queue, 0.2)
                     for q in outputs.queries])
    mixture = numpy_mixture_loss(outputs.mixed_query.numpy(), key, partners, ratio, queue, 0.2)
    assert float(logs["loss"]) == pytest.approx(plain + mixture, rel=1e-4)
    assert float(logs["mix_loss"]) == pytest.approx(mixture, rel=1e-4)
    assert float(logs["mixed_share"]) == pytest.approx(np.mean(1 - ratio), rel=1e-5)
    # After the step the bank holds the batch's normalised keys (momentum 0).
    np.testing.assert_allclose(model.memory.read().numpy()[index], key, atol=1e-5)


def test_a_fresh_neighbour_key_is_the_key_encoder_s_key_of_the_neighbour_view():
    model = _build(neighbour_key="fresh")
    rng = np.random.default_rng(3)
    views = tuple(rng.uniform(size=(BATCH, side, side, 3)).astype("float32")
                  for side in (16, 16, 12, 16))
    neighbour_view = rng.uniform(size=(BATCH, 16, 16, 3)).astype("float32")
    index = np.arange(BATCH, dtype="int64")
    neighbour = np.where(index % 2 == 0, index, (index + 5) % EXAMPLES)
    element = {"views": views, "index": index, "label": index % 3,
               "neighbour_index": neighbour, "neighbour_view": neighbour_view,
               "mix_ratio": np.where(neighbour == index, 1.0, 0.5).astype("float32")}
    batch = clim.MixedBatch.from_element(element)
    ctx = StepContext.at(0, steps_per_epoch=STEPS, seed=0, training=False)
    outputs = model.forward(batch, ctx)
    fresh = _unit(model.key_projector(model.key_encoder(neighbour_view, training=False),
                                      training=False).numpy())
    key = _unit(outputs.keys[0].numpy())
    expected = np.where((neighbour == index)[:, None], key, fresh)
    np.testing.assert_allclose(outputs.partner_keys.numpy(), expected, atol=1e-5)
    # Not the bank rows the default takes.
    assert not np.allclose(outputs.partner_keys.numpy()[1::2],
                           model.memory.read().numpy()[neighbour[1::2]], atol=1e-3)
    with pytest.raises(ValueError, match="neighbour_key"):
        _build(neighbour_key="queue")
    # The pipeline hands the neighbour views on only to a model that encodes them.
    for needs_view, built in ((True, model), (False, _build())):
        built.neighbour_table.release()
        element = next(iter(_dataset(built)))
        assert ("neighbour_view" in element) == needs_view
        if needs_view:
            assert element["neighbour_view"].shape == element["views"][0].shape


def _split():
    images = np.random.default_rng(2).integers(0, 256, (EXAMPLES, 16, 16, 3), np.uint8)
    return Split(images=images, paths=None, labels=np.arange(EXAMPLES) % 4)


RECIPE = multi_resolution_views(16, resolutions=(12,), blur=False)


def _dataset(model, start_epoch=0):
    return train_dataset(_split(), batch_size=BATCH, view_fn=RECIPE, seed=0,
                         start_epoch=start_epoch, epochs=EPOCHS,
                         neighbours=model.neighbour_mixing(RECIPE))


class TableAtEpochEnd(keras.callbacks.Callback):
    """The table each epoch ran with (what that epoch's checkpoint holds)."""

    def __init__(self):
        super().__init__()
        self.tables = {}

    def on_epoch_end(self, epoch, logs=None):
        self.tables[epoch] = self.model.neighbour_table.candidates.numpy().copy()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Three epochs through the mixing pipeline, checkpointed after each."""
    directory = str(tmp_path_factory.mktemp("clim") / "checkpoints")
    model = _build()
    tables = TableAtEpochEnd()
    checkpoint = EpochCheckpoint(model, directory, max_to_keep=3)
    history = model.fit(_dataset(model), epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0,
                        shuffle=False, callbacks=[checkpoint, tables])
    return model, history.history, tables.tables, directory


def test_a_fit_mixes_from_the_start_epoch_on(uninterrupted):
    model, history, tables, _ = uninterrupted
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["mix_loss"]))
    # Epoch 0 is the warm-up: an empty table, every anchor its own neighbour.
    assert np.all(tables[0] == -1) and history["mixed_share"][0] == 0.0
    for epoch in (1, 2):
        candidates = tables[epoch]
        assert np.any(candidates >= 0) and np.all(candidates < EXAMPLES)
        assert not np.any(candidates == np.arange(EXAMPLES)[:, None])
        assert history["mixed_share"][epoch] > 0.0
    assert not np.array_equal(tables[1], tables[2])  # refreshed from the moved bank


def test_a_resumed_run_reads_the_same_table_and_rebuilds_the_next(uninterrupted):
    model, history, tables, directory = uninterrupted
    resumed = _build()
    checkpoint = EpochCheckpoint(resumed, directory, max_to_keep=3)
    checkpoint.checkpoint.restore(f"{directory}/ckpt-2").assert_existing_objects_matched()
    np.testing.assert_array_equal(resumed.neighbour_table.candidates.numpy(), tables[1])
    np.testing.assert_array_equal(resumed.memory.read().numpy(),
                                  _bank_after_epoch(directory, 1))
    after = TableAtEpochEnd()
    resumed_history = resumed.fit(_dataset(resumed, start_epoch=2), epochs=EPOCHS,
                                  initial_epoch=2, steps_per_epoch=STEPS, verbose=0,
                                  shuffle=False, callbacks=[after]).history
    # The epoch-2 refresh of the restored bank is the uninterrupted run's table,
    # so the last epoch mixes the same neighbours and trains the same way.
    np.testing.assert_array_equal(after.tables[2], tables[2])
    np.testing.assert_allclose(resumed_history["loss"][0], history["loss"][2], rtol=1e-4)
    np.testing.assert_allclose(resumed_history["mixed_share"][0], history["mixed_share"][2],
                               rtol=1e-6)
    np.testing.assert_allclose(resumed.memory.read().numpy(), model.memory.read().numpy(),
                               atol=1e-4)


def test_a_two_replica_fit_mixes_through_the_distributed_pipeline():
    # Under a strategy Keras reads a batch before any callback runs, and the
    # table is a mirrored variable read inside the tf.data graph: the fit must
    # neither wait forever nor fail there. A short wait turns a hang into an error.
    strategy = harness.mirrored_strategy()
    with strategy.scope():
        model = _build()
    model.neighbour_table.wait_seconds = 60.0
    dataset = distributed_train_dataset(
        strategy, _split(), global_batch_size=BATCH, view_fn=RECIPE, seed=0, epochs=2,
        neighbours=model.neighbour_mixing(RECIPE))
    history = model.fit(dataset, epochs=2, steps_per_epoch=STEPS, verbose=0,
                        shuffle=False).history
    assert history["mixed_share"][0] == 0.0 and history["mixed_share"][1] > 0.0
    assert np.all(np.isfinite(history["loss"]))


def _bank_after_epoch(directory, epoch):
    """The bank variable as the checkpoint of 0-based `epoch` stored it."""
    reader = tf.train.load_checkpoint(f"{directory}/ckpt-{epoch + 1}")
    names = [name for name in reader.get_variable_to_shape_map()
             if "memory" in name and name.endswith("VARIABLE_VALUE") and "rows" in name]
    (name,) = names
    return reader.get_tensor(name)


def test_docstring_examples():
    result = doctest.testmod(clim, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
