"""Evaluation of learned representations: kNN, linear probe, fine-tuning, clustering, plots."""

from keras_ssl.evaluation.background_shift import (
    background_shifted_images,
    background_shifted_knn,
    background_shifted_split,
)
from keras_ssl.evaluation.clustering import cluster_metrics, clustering_accuracy
from keras_ssl.evaluation.features import extract_features
from keras_ssl.evaluation.history import read_tensorboard_history
from keras_ssl.evaluation.knn import knn_accuracy, weighted_knn_predict
from keras_ssl.evaluation.knn_monitor import KnnMonitor
from keras_ssl.evaluation.linear_probe import linear_probe
from keras_ssl.evaluation.metrics import top_k_accuracy
from keras_ssl.evaluation.plots import plot_embedding, plot_training_curves
from keras_ssl.evaluation.semi_supervised import balanced_label_subset, fine_tune

__all__ = [
    "KnnMonitor",
    "background_shifted_images",
    "background_shifted_knn",
    "background_shifted_split",
    "balanced_label_subset",
    "cluster_metrics",
    "clustering_accuracy",
    "extract_features",
    "fine_tune",
    "knn_accuracy",
    "linear_probe",
    "plot_embedding",
    "plot_training_curves",
    "read_tensorboard_history",
    "top_k_accuracy",
    "weighted_knn_predict",
]
