"""keras_ssl: self-supervised and semi-supervised representation learning in Keras.

Import this package before TensorFlow when you can: on CPUs that TensorFlow
does not recognise as Intel (AMD EPYC, for one) it leaves oneDNN off, and
oneDNN's convolution gradients train our ResNets about 2.5x faster. The
variable is only read when TensorFlow is first imported, so we set a default
only while TensorFlow is not loaded yet, and never override an explicit
choice. Either setting computes the same results (up to float rounding; the
test suite checks both); only the speed differs.
"""

import os
import sys

if "tensorflow" not in sys.modules:
    # Once TensorFlow is loaded the variable no longer changes this process;
    # setting it then would only make subprocesses differ from it.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
