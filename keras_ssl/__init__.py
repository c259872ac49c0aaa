"""keras_ssl: self-supervised and semi-supervised representation learning in Keras.

Import this package before TensorFlow when you can: on CPUs that TensorFlow
does not recognise as Intel (AMD EPYC, for one) it leaves oneDNN off, and
oneDNN's convolution gradients train our ResNets about 2.5x faster. The
variable is only read when TensorFlow is first imported, so we set a default
here and never override an explicit choice.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
