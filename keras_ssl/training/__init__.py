"""The trainer every binary and the Python API share, and its callbacks."""

from keras_ssl.training.feature_pass import EpochFeaturePass

__all__ = ["EpochFeaturePass"]
