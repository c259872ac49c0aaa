"""Exports and the command-line programs on a TensorFlow file system other than the local disk.

`ram://` (TensorFlow's in-memory file system) and `file://` URLs stand in for a bucket
(`gs://`). A `ram://` folder lives inside one process, so the program run in a
subprocess gets `file://` URLs.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.backbones.tiny import tiny_backbone
from keras_ssl.cli.common import check_data_spec, path_kind
from keras_ssl.export import export_encoder
from keras_ssl.training import PretrainConfig, load_run_config, write_run_config
from tests.evaluation.test_eval_plots import assert_real_png
from tests.experiments.test_evaluate import EVALUATE, _run

IMAGE_SIZE = 16


def _images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, [count, IMAGE_SIZE, IMAGE_SIZE, 3],
                                                dtype=np.uint8)


def test_encoder_exports_to_a_url_and_reloads(remote_root):
    encoder = tiny_backbone(image_size=IMAGE_SIZE, width=4)
    export_dir = f"{remote_root}/export"
    saved_model = export_encoder(encoder, export_dir, image_size=IMAGE_SIZE)
    assert saved_model == f"{export_dir}/saved_model"
    assert tf.io.gfile.exists(f"{saved_model}/saved_model.pb")

    images = _images(3)
    expected = encoder(images.astype("float32") / 255.0, training=False).numpy()
    loaded = tf.saved_model.load(saved_model)  # kept: `serve` reads its variables
    np.testing.assert_allclose(loaded.serve(tf.constant(images)).numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    reloaded = keras.saving.load_model(f"{export_dir}/encoder.keras")
    np.testing.assert_array_equal(
        reloaded(images.astype("float32") / 255.0, training=False).numpy(), expected)


def test_run_config_round_trips_on_a_url(remote_root):
    model_dir = f"{remote_root}/runs/simclr"
    config = PretrainConfig(method="simclr", data=f"npz:{remote_root}/small.npz",
                            backbone="tiny", epochs=2, model_dir=model_dir)
    write_run_config(model_dir, config)
    assert tf.io.gfile.exists(f"{model_dir}/config.json")
    loaded = load_run_config(model_dir)
    assert loaded["model_dir"] == model_dir and loaded["epochs"] == 2
    # Every field comes back as JSON keeps it (tuples as lists).
    assert loaded == json.loads(json.dumps(config.to_dict()))


def test_data_spec_checks_see_urls(remote_root):
    tf.io.gfile.makedirs(f"{remote_root}/data/cat")
    with tf.io.gfile.GFile(f"{remote_root}/arrays.npz", "wb") as file:
        file.write(b"checked for existence only")
    assert path_kind(f"{remote_root}/data") == "folder"
    assert path_kind(f"{remote_root}/arrays.npz") == "file"
    assert path_kind(f"{remote_root}/missing") is None
    assert check_data_spec(f"{remote_root}/data") == f"{remote_root}/data"
    assert check_data_spec(f"npz:{remote_root}/arrays.npz") == f"npz:{remote_root}/arrays.npz"
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_data_spec(f"{remote_root}/arrays.npz")
    with pytest.raises(ValueError, match="no file"):
        check_data_spec(f"npz:{remote_root}/data")
    with pytest.raises(ValueError, match="cannot be reached"):
        check_data_spec("nosuchfs://bucket/data")


def test_evaluate_reads_and_writes_file_urls(tmp_path):
    """evaluate.py with --saved_model, --data and --plot all given as file:// URLs."""
    root = f"file://{tmp_path}"
    encoder = tiny_backbone(image_size=IMAGE_SIZE, width=4)
    export_encoder(encoder, f"{root}/export", image_size=IMAGE_SIZE)
    arrays = {"x_train": _images(8, seed=1), "y_train": np.arange(8) % 2,
              "x_test": _images(6, seed=2), "y_test": np.arange(6) % 2}
    np.savez(tmp_path / "small.npz", **arrays)

    result = _run(EVALUATE, f"--saved_model={root}/export/saved_model",
                  f"--data=npz:{root}/small.npz", "--protocol=knn", "--knn_k=3",
                  f"--plot={root}/plots", "--plot_max_points=6")
    # The encoder.keras beside the SavedModel was found through the URL: it gave the size.
    assert result["keras_encoder"] == f"{root}/export/encoder.keras"
    assert result["image_size"] == IMAGE_SIZE
    assert result["train_images"] == 8 and result["test_images"] == 6
    assert 0.0 <= result["knn_top1"] <= 1.0
    assert result["embedding_plot"] == f"{root}/plots/embedding.png"
    assert_real_png(tmp_path / "plots" / "embedding.png")
