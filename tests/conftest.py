"""Test-session set-up: one oneDNN setting, and two logical CPU devices.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is first imported, and
the suite's subprocesses inherit the variable. It is set here, before anything
imports TensorFlow, so the session and its subprocesses run with one setting
whatever is imported first: keras_ssl's default (on, 2.5x faster conv
gradients on CPUs TensorFlow leaves it off for) unless the environment already
chose. No test result depends on it (tests/backbones/test_backbones_input_size.py
runs the backbones with it off too); the end of the run reports it.

The CPU split must happen before TensorFlow creates its devices, i.e. before
any test module runs an op; pytest imports this file first.
"""

import os
import sys
import pytest

_TENSORFLOW_ALREADY_LOADED = "tensorflow" in sys.modules
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras_ssl  # noqa: E402,F401  (sets the rest of TensorFlow's environment)
from keras_ssl.distribute import split_cpu  # noqa: E402

split_cpu(2)


def onednn_state():
    """One line saying whether this session's TensorFlow runs oneDNN kernels."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        state = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        state = "unknown"
    note = (" (TensorFlow was loaded before tests/conftest.py: its own default applied)"
            if _TENSORFLOW_ALREADY_LOADED else "")
    return f"oneDNN {state}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}{note}"


def pytest_terminal_summary(terminalreporter):
    # At the end, beside --durations, where a slow run is looked into (the
    # header is hidden by the -q of setup.cfg).
    terminalreporter.write_sep("-", onednn_state())


# Optional: with `-p no:xdist` the hook is unknown, and pluggy would refuse it.
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist (`-n 2`): whole modules per worker, and tests/experiments on one.

    Module scopes keep each module-scoped fit (a method's shared run) made
    once; tests/experiments goes to one worker as a whole because its modules
    share session fixtures (one trained run and the processes started on it).
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            if nodeid.startswith("tests/experiments/"):
                return "tests/experiments"
            return super()._split_scope(nodeid)

    return ModuleScheduling(config, log)


@pytest.fixture(params=["ram", "file"])
def remote_root(request, tmp_path):
    """An empty folder on `ram://` (in memory) or behind a `file://` URL (remote-path tests)."""
    import uuid

    import tensorflow as tf

    if request.param == "file":
        yield f"file://{tmp_path}/remote"
        return
    root = f"ram://keras_ssl_tests/{uuid.uuid4().hex}"
    yield root
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)
