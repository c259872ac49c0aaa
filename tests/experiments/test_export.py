"""export.py and keras_ssl.export: the SavedModel serves without keras_ssl and
matches the Keras encoder; the .keras file reloads."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ssl.training import restore_encoder
from tests.experiments.test_evaluate import EXPORT, _run

# Plain TensorFlow: keras_ssl is made unimportable, so the SavedModel must hold
# all of its preprocessing and the encoder graph.
_SERVE_WITHOUT_KERAS_SSL = """
import sys
sys.modules["keras_ssl"] = None  # any `import keras_ssl` now raises ImportError
import numpy as np
import tensorflow as tf

saved_model, images_path, out_path = sys.argv[1:]
# Keep the loaded object: `serve` alone would outlive the variables it reads.
model = tf.saved_model.load(saved_model)
serve = model.serve
images = np.load(images_path)
features = serve(tf.constant(images)).numpy()
one = serve(tf.constant(images[:1])).numpy()
larger = serve(tf.zeros([2, 48, 40, 3], tf.uint8)).numpy()
np.savez(out_path, features=features, one=one, larger=larger)
print(features.dtype, features.shape, larger.shape)
"""


def export_and_serve(trained_run, folder):
    """export.py on the session's `trained_run`, then its SavedModel served in
    plain TensorFlow: (export.py's JSON result, the images, the serving process,
    the served arrays by name, or None when it failed).

    It starts with the other runs on the trained run (tests/experiments/
    conftest.py, `runs_on_trained_run`).
    """
    result = _run(EXPORT, f"--checkpoint={trained_run['model_dir']}",
                  f"--export_dir={folder / 'encoder'}")
    images = np.random.default_rng(0).integers(0, 256, [5, 32, 32, 3], dtype=np.uint8)
    np.save(folder / "images.npy", images)
    process = subprocess.run(
        [sys.executable, "-c", _SERVE_WITHOUT_KERAS_SSL, result["saved_model"],
         str(folder / "images.npy"), str(folder / "served.npz")],
        capture_output=True, text=True, cwd=folder, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    served = dict(np.load(folder / "served.npz")) if process.returncode == 0 else None
    return result, images, process, served


def test_export_serves_in_plain_tensorflow_and_matches_keras(trained_run, exported_and_served):
    result, images, process, served = exported_and_served.result()
    export_dir = os.path.dirname(result["saved_model"])
    assert result["keras_encoder"] == os.path.join(export_dir, "encoder.keras")
    # The newest checkpoint of the run: one per epoch.
    assert result["checkpoint"].endswith(
        os.path.join("checkpoints", f"ckpt-{trained_run['epochs']}"))
    assert result["image_size"] == 32 and result["feature_dim"] == 16
    assert os.path.isfile(os.path.join(result["saved_model"], "saved_model.pb"))

    assert process.returncode == 0, process.stderr[-3000:]
    assert served["features"].dtype == np.float32 and served["features"].shape == (5, 16)
    assert served["larger"].shape == (2, 16) and np.isfinite(served["larger"]).all()

    # The encoder restored from the checkpoint, and the exported .keras file.
    encoder, *_ = restore_encoder(trained_run["model_dir"])
    expected = encoder(images.astype(np.float32) / 255.0, training=False).numpy()
    reloaded = keras.saving.load_model(result["keras_encoder"])
    np.testing.assert_array_equal(
        reloaded(images.astype(np.float32) / 255.0, training=False).numpy(), expected)
    # Float32 agreement to 1e-5 relative to the feature scale: the graph and the
    # eager Keras call may order the sums differently.
    tolerance = 1e-5 * np.abs(expected).max()
    np.testing.assert_allclose(served["features"], expected, rtol=0, atol=tolerance)
    np.testing.assert_allclose(served["one"], expected[:1], rtol=0, atol=tolerance)


# Neither gets as far as importing TensorFlow (keras_ssl/cli checks flags and
# paths first), so each subprocess takes well under a second.
@pytest.mark.parametrize("args, message", [
    (["--export_dir={tmp}"], "--checkpoint"),
    (["--checkpoint=/no/such/run", "--export_dir={tmp}"], "/no/such/run"),
])
def test_export_bad_flags(tmp_path, args, message):
    process = _run(EXPORT, *(arg.format(tmp=tmp_path) for arg in args), check=False)
    assert process.returncode == 2 and message in process.stderr
    assert "Traceback" not in process.stderr
    ours = [line for line in process.stderr.splitlines() if line.startswith("export.py:")]
    assert len(ours) == 1 and ours[0].startswith("export.py: error:") and message in ours[0]
    assert process.stdout.strip() == ""  # no JSON line on failure
    assert not any(tmp_path.iterdir())  # nothing exported
