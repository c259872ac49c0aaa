"""PNG plots of an embedding (t-SNE or PCA) and of training curves.

Figures are built with matplotlib's object API on the Agg canvas, never pyplot,
so importing or calling these never changes the user's global backend and works
on headless machines. The PNG is rendered in memory and written with `tf.io.gfile`,
so the path may be on any TensorFlow file system (`gs://...`).
"""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_ssl.data.storage import write_bytes

_METHODS = ("tsne", "pca")


def _class_colors(num_classes):
    from matplotlib import colormaps

    # tab10/tab20 are distinguishable categorical palettes; beyond 20 classes
    # no palette is, so sample a perceptually ordered map evenly.
    if num_classes <= 10:
        return colormaps["tab10"].colors[:num_classes]
    if num_classes <= 20:
        return colormaps["tab20"].colors[:num_classes]
    return colormaps["turbo"](np.linspace(0.0, 1.0, num_classes))


def _project(features, method, seed):
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(features)
    from sklearn.manifold import TSNE

    # Perplexity must stay below the number of points for tiny inputs.
    perplexity = float(min(30.0, max(1.0, (len(features) - 1) / 3)))
    return TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(features)


def _save(figure, path):
    FigureCanvasAgg(figure)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, png.getvalue())


def plot_embedding(features, labels, path, *, class_names=None, method="tsne",
                   max_points=2000, seed=0):
    """Writes a PNG scatter of a 2-D projection of `features`, coloured by class.

    Args:
        features: float array [N, D].
        labels: int array [N].
        path: output file path (PNG).
        class_names: optional sequence mapping label -> name for the legend.
        method: "tsne" (neighbourhoods, slow) or "pca" (global layout, fast).
        max_points: random subsample size; t-SNE is quadratic in the point count.
        seed: seed of the subsample and of the projection.

    Example:
        >>> features, labels = extract_features(encoder, test_ds)
        >>> plot_embedding(features, labels, "tsne.png", class_names=CIFAR10_NAMES)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels).reshape(-1)
    if len(features) > max_points:
        keep = np.random.default_rng(seed).choice(len(features), max_points, replace=False)
        features, labels = features[keep], labels[keep]
    points = _project(features, method, seed)

    classes = np.unique(labels)
    colors = _class_colors(len(classes))
    figure = Figure(figsize=(8, 7))
    axes = figure.add_subplot()
    marker_size = 12 if len(points) <= 1000 else 6
    for color, label in zip(colors, classes):
        selected = labels == label
        name = class_names[label] if class_names is not None else str(label)
        axes.scatter(points[selected, 0], points[selected, 1], s=marker_size,
                     color=color, alpha=0.75, linewidths=0, label=name)
    title = {"tsne": "t-SNE", "pca": "PCA"}[method]
    axes.set_title(f"{title} of {len(points)} features ({features.shape[1]}-d)")
    # The axes of a t-SNE map have no units; ticks would only suggest they do.
    axes.set_xticks([])
    axes.set_yticks([])
    if len(classes) <= 40:
        legend = axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                             markerscale=2.0, ncols=1 if len(classes) <= 20 else 2)
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)
    _save(figure, path)


def _sparse_series(values, num_epochs):
    """(epochs, values) for a metric given as (epoch, value) pairs or floats."""
    values = list(values)
    if values and np.ndim(values[0]) == 1:  # (epoch, value) pairs
        epochs, values = (np.asarray(column, np.float64) for column in zip(*values))
    else:
        values = np.asarray(values, np.float64)
        if len(values) == num_epochs or num_epochs == 0:
            epochs = np.arange(1, len(values) + 1, dtype=np.float64)
        else:
            # A shorter list has lost its epochs (Keras History keeps only the
            # evaluated ones); spread it evenly, ending at the last epoch.
            epochs = np.round(np.linspace(num_epochs / len(values), num_epochs, len(values)))
    present = np.isfinite(values)  # NaN marks an epoch that was not evaluated
    return epochs[present], values[present]


def plot_training_curves(history, path):
    """Writes a PNG with the loss curves and, if present, the kNN accuracy.

    Args:
        history: dict of metric name -> per-epoch values, e.g. `History.history`
            (a `keras.callbacks.History` is accepted too). Every key containing
            "loss" goes in the first panel. "knn_top1" may be per-epoch
            NaN-padded, a list of (epoch, value) pairs (`KnnMonitor.history`),
            or a shorter list, then spread evenly up to the last epoch.
        path: output file path (PNG).

    Example:
        >>> run = method.fit(ds, epochs=100, callbacks=[monitor])
        >>> plot_training_curves({**run.history, "knn_top1": monitor.history}, "curves.png")
    """
    history = getattr(history, "history", history)
    # The total "loss" first, then its terms by name.
    loss_keys = sorted((key for key in history if "loss" in key), key=lambda k: (k != "loss", k))
    num_epochs = max((len(history[key]) for key in loss_keys), default=0)
    has_knn = "knn_top1" in history and len(history["knn_top1"]) > 0

    figure = Figure(figsize=(11 if has_knn else 6, 4))
    loss_axes = figure.add_subplot(1, 2 if has_knn else 1, 1)
    for key in loss_keys:
        values = np.asarray(history[key], np.float64)
        loss_axes.plot(np.arange(1, len(values) + 1), values, label=key, linewidth=1.5)
    loss_axes.set_title("loss")
    loss_axes.set_xlabel("epoch")
    loss_axes.grid(alpha=0.3)
    if loss_keys:
        loss_axes.legend(frameon=False)

    if has_knn:
        knn_axes = figure.add_subplot(1, 2, 2)
        epochs, values = _sparse_series(history["knn_top1"], num_epochs)
        knn_axes.plot(epochs, 100.0 * values, marker="o", color="tab:green", linewidth=1.5)
        if len(values):
            knn_axes.annotate(f"{100.0 * values[-1]:.1f}%", (epochs[-1], 100.0 * values[-1]),
                              textcoords="offset points", xytext=(0, 8), ha="center")
        knn_axes.margins(y=0.15)  # headroom for the label of the last value
        knn_axes.set_title("kNN top-1 accuracy")
        knn_axes.set_xlabel("epoch")
        knn_axes.set_ylabel("%")
        knn_axes.grid(alpha=0.3)
        if num_epochs:
            knn_axes.set_xlim(loss_axes.get_xlim())  # align the epochs of both panels
    figure.tight_layout()
    _save(figure, path)
