"""Deprecated names of the memory family, kept while methods move to the new ones.

| old                                   | new                                        |
| ------------------------------------- | ------------------------------------------ |
| `Queue(size, dim)`                    | `RingQueue(size, dim)`                     |
| `queue.enqueue(all_gather(keys))`     | `queue.write(keys)` (gathers itself)       |
| `IndexedMemoryBank(n, d, momentum=m)` | `IndexedBank(n, d, momentum=m)` (same m)   |
| `bank.update(all_gather(i), all_gather(f))` | `bank.write(i, f)`                   |
| `MemoryBankKMeans(..., momentum=m)`   | `ClusteredBank(..., momentum=1 - m)`       |
| `memory.update(all_gather(i), all_gather(f))` | `memory.write(i, f)`               |

The old update methods take rows that are already all-gathered, as before.
`MemoryBankKMeans.momentum` kept its old meaning, the weight of the NEW
feature (InterCLR: 1.0); the family's convention is the weight of the OLD row.
"""

import warnings

from keras_ssl.layers.clustered_bank import ClusteredBank
from keras_ssl.layers.memory import IndexedBank, RingQueue


def _deprecated(old, new):
    warnings.warn(f"keras_ssl: {old} is deprecated; use {new}.", DeprecationWarning,
                  stacklevel=3)


class Queue(RingQueue):
    """Deprecated: `RingQueue`, plus `enqueue(keys)` for already all-gathered keys."""

    def __init__(self, size, dim, seed=0, **kwargs):
        _deprecated("Queue", "keras_ssl.layers.RingQueue")
        super().__init__(size, dim, seed=seed, **kwargs)

    def enqueue(self, keys):
        self.write(keys, gathered=True)


class IndexedMemoryBank(IndexedBank):
    """Deprecated: `IndexedBank` (same momentum), plus `update` for all-gathered rows."""

    def __init__(self, size, dim, momentum=0.5, seed=0, **kwargs):
        _deprecated("IndexedMemoryBank", "keras_ssl.layers.IndexedBank")
        super().__init__(size, dim, momentum=momentum, seed=seed, **kwargs)

    def update(self, indices, features):
        self.write(indices, features, gathered=True)


class MemoryBankKMeans(ClusteredBank):
    """Deprecated: `ClusteredBank`, with `momentum` in its OLD meaning.

    Here `momentum` is the weight of the NEW feature,
    `row <- normalize((1 - m) * row + m * feature)` (InterCLR: 1.0, replace);
    it is stored converted (`self.momentum` is 1 - m, the weight of the old
    row) and reported in the old meaning by `get_config`.
    """

    def __init__(self, size, dim, num_clusters, min_cluster_size=20,
                 centroid_update_interval=10, momentum=1.0, seed=0, **kwargs):
        _deprecated("MemoryBankKMeans(momentum=m)",
                    "keras_ssl.layers.ClusteredBank(momentum=1 - m)")
        super().__init__(size, dim, num_clusters, min_cluster_size=min_cluster_size,
                         centroid_update_interval=centroid_update_interval,
                         momentum=1.0 - momentum, seed=seed, **kwargs)

    def update(self, indices, features):
        return self.write(indices, features, gathered=True)

    def get_config(self):
        return {**super().get_config(), "momentum": 1.0 - self.momentum}
