"""The trainer every binary and the Python API share, and its callbacks."""

from keras_ssl.training.feature_pass import EpochFeaturePass
from keras_ssl.training.build import build_method, make_backbone, make_optimizer, make_views
from keras_ssl.training.config import (RUN_CONFIG_FILE, PretrainConfig, load_run_config,
                                       write_run_config)
from keras_ssl.training.data import load_training_data
from keras_ssl.training.run import pretrain
from keras_ssl.training.continual import continual_pretrain
from keras_ssl.training.timer import EpochTimer
from keras_ssl.training.trained_run import (check_checkpoint_path, find_checkpoint, restore_encoder,
                                            restore_projection)

__all__ = ["EpochFeaturePass", "EpochTimer", "PretrainConfig", "RUN_CONFIG_FILE",
           "build_method", "check_checkpoint_path", "continual_pretrain", "find_checkpoint", "load_run_config",
           "load_training_data", "make_backbone", "make_optimizer", "make_views", "pretrain",
           "restore_encoder", "restore_projection", "write_run_config"]
