import numpy as np
import pytest
from PIL import Image

from keras_ssl.evaluation import plot_embedding, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_real_png(path, min_bytes=10_000):
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE
    assert path.stat().st_size > min_bytes
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        # Not a blank canvas: many distinct colours were drawn.
        assert image.width > 300 and image.height > 300
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50


def clustered_features(num_classes=4, per_class=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = 5.0 * rng.normal(size=(num_classes, 16))
    labels = np.repeat(np.arange(num_classes), per_class)
    return centres[labels] + rng.normal(size=(len(labels), 16)), labels


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_embedding_png(tmp_path, method):
    features, labels = clustered_features()
    path = tmp_path / f"{method}.png"
    plot_embedding(features, labels, path, class_names=["cat", "dog", "ship", "frog"],
                   method=method, max_points=100)
    assert_real_png(path)


def test_embedding_many_classes_and_unknown_method(tmp_path):
    features, labels = clustered_features(num_classes=25, per_class=4)
    plot_embedding(features, labels, tmp_path / "many.png", method="pca")
    assert_real_png(tmp_path / "many.png")
    with pytest.raises(ValueError):
        plot_embedding(features, labels, tmp_path / "x.png", method="umap")


@pytest.mark.parametrize("knn", [
    [(5, 0.3), (10, 0.5), (12, 0.55)],                     # KnnMonitor.history
    [np.nan] * 4 + [0.3] + [np.nan] * 4 + [0.5, np.nan, 0.55, ],  # NaN-padded
    [0.3, 0.5, 0.55],                                       # History: evaluated epochs only
    [],                                                     # never evaluated
])
def test_training_curves_png(tmp_path, knn):
    losses = list(np.exp(-np.arange(12) / 4.0) + 1.0)
    history = {"loss": losses, "cld_loss": [0.5 * v for v in losses], "knn_top1": knn}
    plot_training_curves(history, tmp_path / "curves.png")
    assert_real_png(tmp_path / "curves.png", min_bytes=8_000)


def test_training_curves_accepts_keras_history(tmp_path):
    class FakeHistory:
        history = {"loss": [3.0, 2.0, 1.5]}

    plot_training_curves(FakeHistory(), tmp_path / "history.png")
    assert_real_png(tmp_path / "history.png", min_bytes=5_000)
