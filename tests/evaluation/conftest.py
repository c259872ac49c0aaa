"""Shared helpers for the evaluation tests: tiny dict datasets and encoders."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from threadpoolctl import threadpool_limits


def _eval_dataset(images, labels, batch_size=5):
    """The evaluation-dataset convention: dicts, unshuffled, last partial batch kept."""
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "label": np.asarray(labels, np.int64),
            "index": np.arange(len(labels), dtype=np.int64),
        }
    ).batch(batch_size)


def _tiny_encoder(image_size=8, feature_dim=6, seed=0):
    """A small conv encoder with BatchNorm, so training and inference modes differ."""
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=keras.initializers.GlorotUniform(seed)),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(feature_dim, kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
        ],
        name="tiny_encoder",
    )


def _random_unit_vectors(rng, n, dim):
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def eval_dataset():
    return _eval_dataset


@pytest.fixture
def tiny_encoder():
    return _tiny_encoder


@pytest.fixture
def unit_vectors():
    return _random_unit_vectors


@pytest.fixture(autouse=True)
def single_threaded_native_pools():
    # scikit-learn's OpenMP/BLAS pools spin-wait; on tiny inputs, next to
    # TensorFlow's own threads on a 2-core CI machine, that makes t-SNE and
    # k-means ~10x slower than one thread. Results do not depend on it.
    with threadpool_limits(limits=1):
        yield
