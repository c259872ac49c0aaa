"""select_labels.py end to end on a tiny run that trains nothing.

The run folder is written directly (a config.json and a checkpoint of a
freshly built tiny encoder, in the layout train.py leaves): restoring it is
what the program does, and training first would only cost time.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import data as ssl_data
from keras_ssl import methods
from keras_ssl.training import (PretrainConfig, make_backbone, restore_encoder,
                                restore_projection, write_run_config)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELECT_LABELS = os.path.join(ROOT, "experiments", "select_labels.py")
COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20]], np.uint8)


def _npz(path, per_class=10):
    """Four classes of flat colours with a little noise, 16 px, classes interleaved."""
    rng = np.random.default_rng(0)

    def images(count):
        labels = np.arange(count) % len(COLOURS)
        noise = rng.integers(-10, 10, size=(count, 16, 16, 3))
        pixels = COLOURS[labels][:, None, None, :].astype(np.int64) + noise
        return np.clip(pixels, 0, 255).astype(np.uint8), labels

    x_train, y_train = images(per_class * len(COLOURS))
    x_test, y_test = images(8)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def _tiny_run(model_dir, data):
    """A run folder as train.py writes it: config.json and checkpoints/ckpt-1.

    The checkpoint holds a freshly built SimCLR (encoder and projection head),
    as EpochCheckpoint saves it: tf.train.Checkpoint(model=method).
    """
    config = PretrainConfig(method="simclr", data=data, backbone="tiny", image_size=16,
                            model_dir=str(model_dir), method_kwargs=dict(projection_dim=8))
    write_run_config(str(model_dir), config)
    tf.keras.utils.set_random_seed(0)
    encoder = make_backbone("simclr", "tiny", image_size=16, width_multiplier=1.0)
    method = methods.get("simclr", encoder=encoder, projection_dim=8)
    return tf.train.Checkpoint(model=method).save(
        os.path.join(str(model_dir), "checkpoints", "ckpt"))


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, SELECT_LABELS, *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_selects_a_budget_that_train_py_reads_back(tmp_path):
    data = _npz(tmp_path / "colours.npz")
    prefix = _tiny_run(tmp_path / "run", data)
    output = tmp_path / "labels" / "usl_4.txt"
    process = _run(f"--checkpoint={tmp_path / 'run'}", f"--data={data}", "--budget=4",
                   f"--output={output}", "--train_per_class=8", "--knn_k=5",
                   "--kmeans_init=kmeans++")
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["method"] == "usl" and result["budget"] == 4
    assert result["checkpoint"] == prefix and result["train_images"] == 32
    assert result["image_size"] == 16 and result["output"] == str(output)
    assert result["features"] == "projector"  # the official USL's: the head's output

    # The label-budget reader takes the file: 4 distinct indices of the
    # 8-per-class subset train.py --train_per_class=8 would build.
    indices = ssl_data.read_label_indices(output, num_examples=32)
    assert len(indices) == 4 and len(set(indices.tolist())) == 4
    train = ssl_data.per_class_subset(ssl_data.load_source(data).train, 8)
    np.testing.assert_array_equal(ssl_data.labeled_indices(train, indices=str(output)),
                                  np.sort(indices))
    # Four well-separated colours: one pick of each, found without labels.
    assert sorted(train.labels[indices].tolist()) == [0, 1, 2, 3]
    assert result["classes_covered"] == 4
    assert open(output).readline().startswith("# USL label selection: 4 of 32")


def test_the_projection_features_are_the_saved_head_on_the_saved_encoder(tmp_path):
    data = _npz(tmp_path / "colours.npz")
    _tiny_run(tmp_path / "run", data)
    model, config, *_ = restore_projection(str(tmp_path / "run"))
    encoder, *_ = restore_encoder(str(tmp_path / "run"))
    tf.keras.utils.set_random_seed(0)  # the same weights _tiny_run saved
    saved = methods.get("simclr", encoder=make_backbone("simclr", "tiny", image_size=16,
                                                        width_multiplier=1.0), projection_dim=8)
    images = tf.random.stateless_uniform((4, 16, 16, 3), seed=(1, 2))
    expected = saved.projector(saved.encoder(images, training=False), training=False)
    np.testing.assert_allclose(model(images, training=False).numpy(), expected.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert model.output_shape[-1] == 8 and config["method"] == "simclr"
    # A run whose checkpoint holds no head (an encoder alone) is refused by name.
    bare = tmp_path / "bare"
    write_run_config(str(bare), PretrainConfig(method="simclr", data=data, backbone="tiny",
                                               image_size=16, model_dir=str(bare)))
    tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=encoder)).save(
        os.path.join(str(bare), "checkpoints", "ckpt"))
    with pytest.raises(ValueError, match="projection head .* does not match"):
        restore_projection(str(bare))


def test_uslt_trains_heads_and_writes_the_budget(tmp_path):
    data = _npz(tmp_path / "colours.npz", per_class=8)
    _tiny_run(tmp_path / "run", data)
    before = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    output = tmp_path / "uslt_4.txt"
    process = _run(f"--checkpoint={tmp_path / 'run'}", f"--data={data}", "--budget=4",
                   f"--output={output}", "--method=usl-t", "--uslt_epochs=1",
                   "--uslt_batch_size=16", "--uslt_num_neighbors=3")
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["method"] == "usl-t" and np.isfinite(result["uslt_loss"])
    indices = ssl_data.read_label_indices(output, num_examples=32)
    assert len(indices) == 4 and len(set(indices.tolist())) == 4
    assert open(output).readline().startswith("# USL-T label selection: 4 of 32")
    # The trained run is only read.
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == before


def test_bad_flags_end_with_one_error_line(tmp_path):
    # Checked before TensorFlow is imported: no run or data set is needed.
    process = _run(f"--checkpoint={tmp_path}", f"--data={tmp_path / 'missing'}", "--budget=4",
                   "--num_clusters=2", f"--output={tmp_path / 'out.txt'}")
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].endswith(
        "error: --num_clusters=2 must be 0 or at least --budget=4.")
    process = _run(f"--checkpoint={tmp_path}", "--budget=4", f"--output={tmp_path / 'out.txt'}")
    assert process.returncode == 2 and process.stderr.strip().endswith("--data is required.")
    assert not os.path.exists(tmp_path / "out.txt")
