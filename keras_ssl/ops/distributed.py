"""Deprecated location of `on_global_batch`: it lives in `keras_ssl.distribute`.

`ops/` holds pure kernels; a function that calls collectives belongs with the
other collectives. This module re-exports it so existing imports keep working.
"""

from keras_ssl.distribute.global_batch import on_global_batch

__all__ = ["on_global_batch"]
