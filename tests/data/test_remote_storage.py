"""Data on a TensorFlow file system other than the local disk loads as the local copy does.

TensorFlow's in-memory `ram://` file system and `file://` URLs stand in for a bucket
(`gs://`), which the tests cannot reach: a folder, an npz file, label index files, mask
caches, plots and TensorBoard logs are written there with `tf.io.gfile` and read back
through the project's own loaders.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.data import eval_dataset, load_source, read_label_indices, write_label_indices
from keras_ssl.data.storage import absolute, is_within, parent, read_bytes, write_bytes
from keras_ssl.evaluation import plot_embedding, read_tensorboard_history
from keras_ssl.saliency.cache import cached_masks, load_mask_file, mask_file_path
from keras_ssl.saliency.spectral import SpectralResidualMasks
from tests.data.image_writers import solid_image, write_bytes as write_local_bytes
from tests.data.image_writers import write_image, write_truncated_jpeg

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def copy_tree(local_root, url_root):
    """Copies a local folder to `url_root` with tf.io.gfile, as a user uploads data."""
    for folder, _, names in os.walk(local_root):
        relative = os.path.relpath(folder, local_root)
        target = url_root if relative == "." else f"{url_root}/{relative}"
        tf.io.gfile.makedirs(target)
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                data = file.read()
            with tf.io.gfile.GFile(f"{target}/{name}", "wb") as file:
                file.write(data)


@pytest.fixture
def local_folder(tmp_path):
    """train/ and test/ with two classes, an unreadable file of each kind and ignored files."""
    root = tmp_path / "local"
    for split, count in (("train", 3), ("test", 2)):
        for label, class_name in enumerate(("cat", "dog")):
            for i in range(count):
                value = 10 * (i + 1) + 100 * label + (5 if split == "test" else 0)
                write_image(str(root / split / class_name / f"{i}.png"), solid_image(value))
    write_local_bytes(str(root / "train" / "cat" / "text.jpg"), b"not an image\n")  # bad header
    write_truncated_jpeg(str(root / "train" / "dog" / "trunc.jpg"))  # bad data, good header
    write_local_bytes(str(root / "train" / "dog" / "notes.txt"), b"ignored")
    write_image(str(root / "train" / "dog" / ".hidden.png"), solid_image(1))
    return str(root)


def _relative_paths(paths, root):
    return [path[len(root):].lstrip("/") for path in paths]


def test_image_folder_on_a_url_loads_like_the_local_copy(local_folder, remote_root):
    copy_tree(local_folder, f"{remote_root}/data")
    with pytest.warns(UserWarning, match="Skipped 2 unreadable"):
        local = load_source(local_folder)
    with pytest.warns(UserWarning, match="Skipped 2 unreadable"):
        remote = load_source(f"{remote_root}/data")
    assert remote.class_names == local.class_names == ["cat", "dog"]
    for local_split, remote_split in ((local.train, remote.train), (local.test, remote.test)):
        np.testing.assert_array_equal(remote_split.images, local_split.images)
        np.testing.assert_array_equal(remote_split.labels, local_split.labels)
    assert local.train.images.shape == (6, 16, 16, 3) and local.test.images.shape == (4, 16, 16, 3)
    # The skipped files are named by their URL.
    assert all(path.startswith(remote_root) for path in remote.skipped_files)
    assert (_relative_paths(remote.skipped_files, f"{remote_root}/data")
            == _relative_paths(local.skipped_files, local_folder)
            == ["train/cat/text.jpg", "train/dog/trunc.jpg"])


def test_streamed_folder_on_a_url_decodes_like_the_local_copy(local_folder, remote_root):
    copy_tree(local_folder, f"{remote_root}/data")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):  # the header check
        local = load_source(local_folder, cache_limit_bytes=0)
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        remote = load_source(f"{remote_root}/data", cache_limit_bytes=0)
    assert remote.train.images is None
    assert (_relative_paths(remote.train.paths, f"{remote_root}/data")
            == _relative_paths(local.train.paths, local_folder))
    assert remote.train.paths[-1].endswith("dog/trunc.jpg")

    def decoded(split):
        batches = list(eval_dataset(split, batch_size=4).as_numpy_iterator())
        return (np.concatenate([b["image"] for b in batches]),
                np.concatenate([b["index"] for b in batches]))

    # tf.data reads the files through tf.io.read_file and drops the truncated JPEG.
    remote_images, remote_indices = decoded(remote.train)
    local_images, local_indices = decoded(local.train)
    np.testing.assert_array_equal(remote_indices, [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(remote_indices, local_indices)
    np.testing.assert_array_equal(remote_images, local_images)


def test_npz_on_a_url_loads_like_the_local_copy(tmp_path, remote_root):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, [5, 8, 8, 3], dtype=np.uint8),
              "y_train": np.array([[0], [1], [2], [0], [1]]),
              "x_test": rng.integers(0, 256, [3, 8, 8], dtype=np.uint8),  # grayscale
              "y_test": np.array([2, 1, 0]),
              "class_names": np.array(["a", "b", "c"])}
    local_path = str(tmp_path / "arrays.npz")
    np.savez(local_path, **arrays)
    with open(local_path, "rb") as file:
        write_bytes(f"{remote_root}/arrays/small.npz", file.read())
    local = load_source(f"npz:{local_path}", image_size=4)
    remote = load_source(f"npz:{remote_root}/arrays/small.npz", image_size=4)
    assert remote.class_names == local.class_names == ["a", "b", "c"]
    for local_split, remote_split in ((local.train, remote.train), (local.test, remote.test)):
        np.testing.assert_array_equal(remote_split.images, local_split.images)
        np.testing.assert_array_equal(remote_split.labels, local_split.labels)
    assert remote.test.images.shape == (3, 4, 4, 3)


def test_missing_or_unreachable_url_is_a_value_error(remote_root):
    with pytest.raises(ValueError, match="does not exist"):
        load_source(f"{remote_root}/no_such_folder")
    with pytest.raises(ValueError, match="no file"):
        load_source(f"npz:{remote_root}/no_such.npz")
    # A scheme no TensorFlow file system serves names the spec, not a C++ error.
    with pytest.raises(ValueError, match="cannot be reached.*nosuchfs://bucket/data"):
        load_source("nosuchfs://bucket/data")


def test_tfds_data_dir_reaches_tensorflow_datasets(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    seen = []
    builder, load = tfds.builder, tfds.load

    def recording_builder(name, **kwargs):
        seen.append(("builder", kwargs.get("data_dir")))
        return builder(name, **kwargs)

    def recording_load(name, **kwargs):
        seen.append(("load", kwargs.get("data_dir")))
        return load(name, **kwargs)

    monkeypatch.setattr(tfds, "builder", recording_builder)
    monkeypatch.setattr(tfds, "load", recording_load)
    with tfds.testing.mock_data(num_examples=4):
        source = load_source("tfds:mnist", tfds_data_dir="ram://tfds_data")
    assert source.train.images.shape == (4, 28, 28, 3)
    assert seen and all(data_dir == "ram://tfds_data" for _, data_dir in seen)
    assert {"builder", "load"} == {call for call, _ in seen}


def test_label_index_file_on_a_url_round_trips(remote_root):
    path = f"{remote_root}/labels/labels_4.txt"
    tf.io.gfile.makedirs(f"{remote_root}/labels")
    write_label_indices(path, [7, 0, 3, 12], header="4 labels\nseed 0")
    assert read_bytes(path).decode().splitlines() == ["# 4 labels", "# seed 0",
                                                      "7", "0", "3", "12"]
    np.testing.assert_array_equal(read_label_indices(path, num_examples=13), [7, 0, 3, 12])
    with pytest.raises(ValueError, match="does not exist"):
        read_label_indices(f"{remote_root}/labels/missing.txt")


def test_mask_cache_on_a_url_is_written_once_and_kept_out_of_the_data(local_folder,
                                                                     remote_root):
    copy_tree(local_folder, f"{remote_root}/data")
    with pytest.warns(UserWarning):
        split = load_source(f"{remote_root}/data", cache_limit_bytes=0).test
    source = SpectralResidualMasks()
    cache_dir = f"{remote_root}/run/masks"
    masks = cached_masks(split, source, cache_dir, split_name="test", image_size=16)
    assert masks.shape == (4, 16, 16) and masks.dtype == np.uint8
    path = mask_file_path(cache_dir, source, "test")
    assert path == f"{cache_dir}/test_spectral_masks.npz"
    np.testing.assert_array_equal(load_mask_file(path)["masks"], masks)
    # No temporary file is left beside it.
    assert tf.io.gfile.listdir(cache_dir) == ["test_spectral_masks.npz"]
    np.testing.assert_array_equal(
        cached_masks(split, source, cache_dir, split_name="test", image_size=16), masks)
    # A cache inside the data folder is refused, whether the folder is named or not
    # (unnamed, it is the deepest folder holding the split's files).
    with pytest.raises(ValueError, match="inside the data folder"):
        cached_masks(split, source, f"{remote_root}/data/test/masks", image_size=16)
    with pytest.raises(ValueError, match="inside the data folder"):
        cached_masks(split, source, f"{remote_root}/run/masks", image_size=16,
                     data_dir=f"{remote_root}/run/")


def test_plots_and_training_history_on_a_url(remote_root):
    features = np.random.default_rng(0).normal(size=[12, 4]).astype("float32")
    plot = f"{remote_root}/plots/embedding.png"
    plot_embedding(features, np.arange(12) % 3, plot, method="pca")
    assert read_bytes(plot).startswith(PNG_MAGIC)

    writer = tf.summary.create_file_writer(f"{remote_root}/logs/train")
    with writer.as_default():
        for epoch, loss in enumerate([3.0, 2.5, 2.25]):
            tf.summary.scalar("epoch_loss", loss, step=epoch)
    writer.close()
    history = read_tensorboard_history(f"{remote_root}/logs")
    np.testing.assert_allclose(history["loss"], [3.0, 2.5, 2.25])


def test_url_spellings_compare_without_losing_their_scheme():
    assert absolute("gs://bucket/data/") == "gs://bucket/data"
    assert parent("gs://bucket/export/saved_model/") == "gs://bucket/export"
    assert is_within("gs://bucket/data/train", "gs://bucket/data/")
    assert not is_within("gs://bucket/data2", "gs://bucket/data")
    assert not is_within("/bucket/data/masks", "gs://bucket/data")
    assert absolute("relative/run") == os.path.join(os.getcwd(), "relative", "run")
