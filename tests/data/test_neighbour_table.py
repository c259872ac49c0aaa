"""The neighbour table: centre-wise selection against brute force, the lookup and its
fallback, the table read by a running tf.data pipeline, and its checkpoint."""

import doctest
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment.views import ViewConfig, ViewRecipe
from keras_ssl.data import Split, train_dataset
from keras_ssl.data import neighbour_table
from keras_ssl.data.neighbour_mixing import NeighbourMixing
from keras_ssl.data.neighbour_table import NeighbourTable, centre_wise_neighbours
from keras_ssl.ops.dataset_kmeans import dataset_kmeans


def unit_rows(count, dim=8, seed=0):
    rows = np.random.default_rng(seed).standard_normal((count, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")


def brute_force_neighbours(features, assignments, centre_similarities, k):
    """For each anchor: its k most similar other rows (full sort), kept if in its
    cluster and more similar to the centre than the anchor, in that order; -1 padding."""
    similarities = features.astype(np.float64) @ features.T.astype(np.float64)
    table = np.full((len(features), k), -1)
    for anchor, row in enumerate(similarities):
        nearest = [j for j in np.argsort(-row, kind="stable") if j != anchor][:k]
        kept = [j for j in nearest if assignments[j] == assignments[anchor]
                and centre_similarities[j] > centre_similarities[anchor]]
        table[anchor, :len(kept)] = kept
    return table


def test_selection_equals_brute_force_over_several_chunks(monkeypatch):
    features = unit_rows(60, seed=1)
    rng = np.random.default_rng(2)
    assignments = rng.integers(0, 3, 60)
    centre_similarities = rng.uniform(size=60).astype("float32")
    # 16 anchors per k-NN call: four calls, the last one padded.
    monkeypatch.setattr(neighbour_table, "_MAX_SCORES", 60 * 16)
    table = centre_wise_neighbours(features, assignments, centre_similarities, 6)
    expected = brute_force_neighbours(features, assignments, centre_similarities, 6)
    assert table.dtype == np.int32 and table.shape == (60, 6)
    np.testing.assert_array_equal(table, expected)
    assert np.any(table[:, 0] >= 0) and np.any(table[:, 0] < 0)


def test_refresh_clusters_the_bank_and_keeps_centre_wise_neighbours():
    features = unit_rows(80, seed=3)
    table = NeighbourTable(80, 5)
    figures = table.refresh(features, num_clusters=4, seed=7, kmeans_iterations=20)
    clusters = dataset_kmeans(features, 4, max_iters=20, spherical=True, seed=7, num_inits=1)
    assignments, scores = clusters.assignments.numpy(), clusters.scores.numpy()
    candidates = table.candidates.numpy()
    np.testing.assert_array_equal(
        candidates, brute_force_neighbours(features, assignments, scores, 5))
    # The rule's invariants, row by row.
    for anchor, row in enumerate(candidates):
        kept = row[row >= 0]
        assert np.all(assignments[kept] == assignments[anchor])
        assert np.all(scores[kept] > scores[anchor])
        assert np.all(row[len(kept):] == -1)
    counts = np.sum(candidates >= 0, axis=1)
    assert figures["with_neighbour"] == pytest.approx(np.mean(counts > 0))
    assert figures["mean_candidates"] == pytest.approx(np.mean(counts))
    # The row closest to its centre in each cluster has no candidate at all.
    for cluster in np.unique(assignments):
        members = np.flatnonzero(assignments == cluster)
        assert counts[members[np.argmax(scores[members])]] == 0


def test_lookup_draws_a_candidate_or_falls_back_to_the_row_itself():
    table = NeighbourTable(5, 3)
    table.set_candidates([[1, 2, 3], [-1, -1, -1], [4, -1, -1], [0, 4, -1], [-1, -1, -1]])
    indices = tf.constant([0, 1, 2, 3, 4])
    draws = np.stack([table.lookup(indices, tf.constant([s, 0])).numpy() for s in range(60)])
    assert draws.dtype == np.int64
    np.testing.assert_array_equal(draws[:, 1], 1)  # no candidate: itself
    np.testing.assert_array_equal(draws[:, 4], 4)
    np.testing.assert_array_equal(draws[:, 2], 4)  # one candidate: always it
    assert set(draws[:, 0]) == {1, 2, 3} and set(draws[:, 3]) == {0, 4}
    np.testing.assert_array_equal(table.lookup(indices, tf.constant([5, 0])),
                                  table.lookup(indices, tf.constant([5, 0])))


def test_lookup_fails_when_its_epoch_is_never_made_ready():
    table = NeighbourTable(2, 1, wait_seconds=0.1)
    with pytest.raises(Exception, match="not made ready for epoch 3"):
        table.lookup(tf.constant([0]), tf.constant([0, 0]), epoch=3)


def test_a_running_dataset_reads_each_epoch_s_table_however_far_it_runs_ahead():
    table = NeighbourTable(4, 1, wait_seconds=60)
    table.set_candidates([[1], [2], [3], [0]])
    indices = tf.constant([0, 1, 2, 3], tf.int64)
    dataset = tf.data.Dataset.range(2).map(
        lambda epoch: table.lookup(indices, tf.constant([0, 0]), epoch=epoch)).prefetch(2)
    iterator = iter(dataset)
    table.mark_ready(0)
    np.testing.assert_array_equal(next(iterator), [1, 2, 3, 0])
    time.sleep(0.3)  # the prefetch has asked for epoch 1 by now, and waits
    table.set_candidates([[3], [0], [1], [2]])
    table.mark_ready(1)
    np.testing.assert_array_equal(next(iterator), [3, 0, 1, 2])


# ---- the pipeline: train_dataset(neighbours=NeighbourMixing(...)) --------------------
SIDE = 8
# Whole-image crops and no colour: a view is its image in [0, 1], so the
# mixed view can be checked against the stored pixels.
IDENTITY = ViewConfig(size=SIDE, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                      flip_probability=0.0, jitter_probability=0.0)


def _split():
    images = np.random.default_rng(4).integers(0, 256, (16, SIDE, SIDE, 3), np.uint8)
    return Split(images=images, paths=None, labels=np.arange(16) % 2)


def _mixing_dataset(table, split, seed=0):
    mixing = NeighbourMixing(table, IDENTITY)
    return train_dataset(split, batch_size=8, view_fn=ViewRecipe((IDENTITY, IDENTITY)),
                         seed=seed, epochs=2, neighbours=mixing)


def _check_mixed(element, split):
    views, index = element["views"], element["index"].numpy()
    neighbour, ratio = element["neighbour_index"].numpy(), element["mix_ratio"].numpy()
    assert len(views) == 3  # query, key, mixed query
    images = split.images.astype("float32") / 255.0
    # The identity view, up to the crop box's 1e-5 margin off the border.
    np.testing.assert_allclose(views[0], images[index], atol=1e-3)
    for row in range(len(index)):
        mixed = views[2][row].numpy()
        from_neighbour = np.any(np.abs(mixed - images[index[row]]) > 2e-3, axis=-1)
        np.testing.assert_allclose(mixed[from_neighbour], images[neighbour[row]][from_neighbour],
                                   atol=1e-3)
        # The pasted pixels fill one rectangle whose share is 1 - mix_ratio.
        area = from_neighbour.sum()
        if area:
            rows, columns = np.flatnonzero(from_neighbour.any(1)), np.flatnonzero(
                from_neighbour.any(0))
            assert area == rows.size * columns.size
        assert area == pytest.approx((1.0 - ratio[row]) * SIDE * SIDE, abs=0.5)
        if neighbour[row] == index[row]:
            assert ratio[row] == 1.0


def test_the_pipeline_mixes_table_neighbours_and_follows_a_refresh_between_epochs():
    split = _split()
    table = NeighbourTable(16, 2, wait_seconds=60)
    first = [[(i + 1) % 16, -1] if i % 4 else [-1, -1] for i in range(16)]
    second = [[(i + 5) % 16, -1] for i in range(16)]
    table.set_candidates(first)
    table.mark_ready(0)
    elements = iter(_mixing_dataset(table, split))
    epoch_0 = [next(elements) for _ in range(2)]  # 16 examples, batches of 8
    time.sleep(0.3)  # the pipeline runs ahead into epoch 1 and waits there
    table.set_candidates(second)
    table.mark_ready(1)
    epoch_1 = [next(elements) for _ in range(2)]
    for element in epoch_0:
        index = element["index"].numpy()
        expected = np.where(index % 4 == 0, index, (index + 1) % 16)
        np.testing.assert_array_equal(element["neighbour_index"], expected)
        _check_mixed(element, split)
    for element in epoch_1:
        np.testing.assert_array_equal(element["neighbour_index"],
                                      (element["index"].numpy() + 5) % 16)
        _check_mixed(element, split)
    assert min(float(np.min(e["mix_ratio"])) for e in epoch_0 + epoch_1) < 1.0

    # The same seed mixes the same way again, from the same tables.
    table.reset_ready()
    table.set_candidates(first)
    table.mark_ready(0)
    again = iter(_mixing_dataset(table, split))
    for element in epoch_0:
        repeat = next(again)
        for key in ("index", "neighbour_index", "mix_ratio"):
            np.testing.assert_array_equal(repeat[key], element[key])
        np.testing.assert_array_equal(repeat["views"][2], element["views"][2])
    table.mark_ready(1)


def test_checkpoint_and_config_round_trip(tmp_path):
    table = NeighbourTable(6, 2)
    table.set_candidates(np.arange(12).reshape(6, 2) % 6)
    path = tf.train.Checkpoint(table=table).write(str(tmp_path / "table"))
    restored = NeighbourTable.from_config(table.get_config())
    tf.train.Checkpoint(table=restored).read(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored.candidates.numpy(), table.candidates.numpy())
    assert restored.get_config() == table.get_config()


def test_docstring_examples():
    result = doctest.testmod(neighbour_table, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
