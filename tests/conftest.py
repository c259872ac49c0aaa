"""Test-session set-up: two logical CPU devices, so mirrored training runs here.

The split must happen before TensorFlow creates its devices, i.e. before any
test module runs an op; pytest imports this file first.
"""

import keras_ssl  # noqa: F401  (sets TensorFlow's environment before import)
from keras_ssl.distribute import split_cpu

split_cpu(2)
