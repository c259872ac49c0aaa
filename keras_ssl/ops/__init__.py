"""Pure tensor kernels for grouping and clustering, compiled with XLA.

Each kernel is a function of tensors (no variables, no collectives) whose body
is a `tf.function(jit_compile=True)`; `on_global_batch` runs one on the
all-gathered batch under a distribution strategy. `MemoryBankKMeans` holds the
state of InterCLR's online clustering and updates it with a kernel.
"""

from keras_ssl.ops.distributed import on_global_batch
from keras_ssl.ops.kmeans import kmeans
from keras_ssl.ops.memory_kmeans import MemoryBankKMeans, memory_kmeans_step
from keras_ssl.ops.mira import mira_assign
from keras_ssl.ops.neighbors import topk_neighbors
from keras_ssl.ops.sinkhorn import sinkhorn

__all__ = ["MemoryBankKMeans", "kmeans", "memory_kmeans_step", "mira_assign",
           "on_global_batch", "sinkhorn", "topk_neighbors"]
