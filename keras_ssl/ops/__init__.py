"""Pure tensor kernels for grouping and clustering, compiled with XLA.

Each kernel is a function of tensors (no variables, no collectives) whose body
is a `tf.function(jit_compile=True)`. Running one on the all-gathered batch
under a distribution strategy is `keras_ssl.distribute.on_global_batch`; the
state that kernels such as `memory_kmeans_step` update lives in the memory
layers of `keras_ssl.layers` (`ClusteredBank` for InterCLR's online
clustering).

`on_global_batch` and `MemoryBankKMeans` are still importable from here for
code written before they moved.
"""

from keras_ssl.distribute.global_batch import on_global_batch
from keras_ssl.ops.kmeans import kmeans
from keras_ssl.ops.memory_kmeans import memory_kmeans_step, momentum_update
from keras_ssl.ops.mira import mira_assign
from keras_ssl.ops.neighbors import topk_neighbors
from keras_ssl.ops.sinkhorn import sinkhorn

__all__ = ["MemoryBankKMeans", "kmeans", "memory_kmeans_step", "mira_assign",
           "momentum_update", "on_global_batch", "sinkhorn", "topk_neighbors"]


def __getattr__(name):
    # MemoryBankKMeans is a stateful layer and moved to keras_ssl.layers, which
    # imports this package: resolve it on first use to avoid an import cycle.
    if name == "MemoryBankKMeans":
        from keras_ssl.layers.memory_bank import MemoryBankKMeans
        return MemoryBankKMeans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
