import keras
import numpy as np

from keras_ssl.evaluation import extract_features


def test_features_match_inference_mode_predict_and_keep_order(eval_dataset, tiny_encoder):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(13, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=13)
    encoder = tiny_encoder()
    # Move BatchNorm's moving statistics away from their initial values so that
    # training-mode and inference-mode outputs really differ.
    encoder.layers[1].moving_mean.assign(np.full(4, 0.3, np.float32))
    encoder.layers[1].moving_variance.assign(np.full(4, 2.0, np.float32))

    # Batch 5 leaves a partial batch of 3, which must reuse the same trace.
    features, out_labels = extract_features(encoder, eval_dataset(images, labels, 5), normalize=False)
    expected = encoder.predict(images, verbose=0)
    assert features.dtype == np.float32 and out_labels.dtype == np.int64
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out_labels, labels)
    assert not np.allclose(features, keras.ops.convert_to_numpy(encoder(images, training=True)), atol=1e-3)


def test_normalize_gives_unit_rows_in_the_same_direction(eval_dataset, tiny_encoder):
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(7, 8, 8, 3)).astype(np.float32)
    dataset = eval_dataset(images, np.zeros(7))
    encoder = tiny_encoder()
    raw, _ = extract_features(encoder, dataset, normalize=False)
    unit, _ = extract_features(encoder, dataset)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_uint8_images_are_scaled_to_unit_range(eval_dataset, tiny_encoder):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    encoder = tiny_encoder()
    from_uint8, _ = extract_features(encoder, eval_dataset(pixels, np.zeros(6)))
    from_float, _ = extract_features(encoder, eval_dataset(pixels.astype(np.float32) / 255.0, np.zeros(6)))
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-6)
