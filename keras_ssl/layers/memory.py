"""The memory family: fixed-shape state that methods read in the loss and write after the step.

`RingQueue` (MoCo's dictionary, SwAV's queues, MSF/CMSF's bank, with optional
index and label columns), `IndexedBank` (NPID's one row per example) and
`ClusteredBank` (InterCLR's bank with online k-means, in `clustered_bank.py`)
share one base, `Memory`, that owns what they must all get right under a
distribution strategy: how their variables are created, that writes use the
all-gathered batch, and what `momentum` means.
"""

import typing

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.distribute.cross_replica import all_gather, replicated_state_scope
from keras_ssl.ops.memory_kmeans import momentum_update


class Memory(keras.layers.Layer):
    """Base of the memory family: replicated state, gathered writes, one momentum rule.

    Args:
        size: number of rows kept (all replicas together).
        dim: row width.
        momentum: for the banks, the weight of the OLD row (see below); None
            for memories that overwrite (the ring queue).
        seed: seed of the random initial rows.

    Every member follows these rules:

    * State. Every variable is made by `add_state`: non-trainable, with
      ONLY_FIRST_REPLICA aggregation (`distribute.replicated_state_scope`).
      Each replica updates its copy identically, from gathered rows, and the
      first replica's update is the one kept; with the default aggregation
      the copies could drift apart silently. Build under `strategy.scope()`.
    * Gathered writes. `write` and `peek_with` take THIS replica's rows and
      all-gather them (replica order) themselves, so every replica writes the
      same global batch. Pass `gathered=True` for rows that are already
      global. Outside a strategy, or with one replica, the gather is the
      identity. Memory holds no gradient: rows are written with
      `stop_gradient`.
    * Momentum. `momentum` is the weight of the old row, as in an EMA:
      `row <- normalize(m * old + (1 - m) * normalize(new))`
      (`keras_ssl.ops.momentum_update`). NPID: 0.5; InterCLR: 0.0 (replace).
    * `read()` is the state before this step's write; `peek_with(...)` is the
      state as `write(...)` with the same arguments will leave it, as tensors,
      without changing any variable (MSF searches a bank that already holds
      the current batch); `write(...)` belongs in `after_apply`.

    Sharded rows (the extension point; every member here is replicated). A
    bank, or a full-instance classifier, too large for one device would keep
    only this replica's rows. The hooks a subclass overrides:

    * `rows_per_replica`: `size // num_replicas` instead of `size` (the
      strategy is known at build time, under `strategy.scope()`).
    * `add_state`: per-replica variables whose values differ between replicas
      (not ONLY_FIRST_REPLICA, which would keep one copy; one variable per
      device, so that a checkpoint saves every shard).
    * `shard_positions(indices)`: each global row's position in the local
      shard (`index - replica_id * rows_per_replica` for contiguous shards)
      and a mask of the rows this replica owns. Writes still gather the
      global batch, then keep the owned rows: `IndexedBank` already routes
      its writes through this hook.
    * `read()`: the local shard. A consumer scores its queries against it and
      gathers the partial scores along the row axis, so the whole bank is
      never materialised on one device.
    """

    def __init__(self, size, dim, momentum=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum={momentum} must lie in [0, 1]: it is the weight "
                             f"of the old row (0.0 replaces it).")
        self.size = int(size)
        self.dim = int(dim)
        self.momentum = momentum
        self.seed = seed

    # ---- the rules, in one place -------------------------------------------------
    @property
    def rows_per_replica(self):
        """Rows each replica holds: all of them, for a replicated memory."""
        return self.size

    def add_state(self, name, shape, dtype=None, initializer="zeros"):
        """A non-trainable variable that every replica updates identically."""
        with replicated_state_scope():
            return self.add_weight(shape=shape, dtype=dtype, trainable=False,
                                   initializer=initializer, name=name)

    def gather(self, tensor, gathered=False):
        """The global batch of `tensor` (this replica's rows unless `gathered`), detached."""
        if tensor is None:
            return None
        tensor = tf.stop_gradient(tensor)
        return tensor if gathered else all_gather(tensor)

    def shard_positions(self, indices):
        """(positions in this replica's rows, owned mask or None) of global row `indices`."""
        return indices, None

    def momentum_rows(self, table, indices, rows, gathered=False):
        """Where and what an indexed write puts into `table` under the momentum rule.

        Returns (positions [B', 1] int64, new rows [B', D]) for
        `tf.tensor_scatter_nd_update(table, positions, new_rows)`; B' < B
        only for a sharded memory (rows another replica owns are dropped).
        """
        indices = tf.cast(self.gather(indices, gathered), tf.int64)
        rows = self.gather(rows, gathered)
        positions, owned = self.shard_positions(indices)
        if owned is not None:
            positions, rows = tf.boolean_mask(positions, owned), tf.boolean_mask(rows, owned)
        # With momentum 0.0 the old rows are not needed (momentum_update ignores them).
        old = tf.gather(table, positions) if self.momentum else None
        new = momentum_update(old, rows, self.momentum)
        return positions[:, None], tf.cast(new, table.dtype)

    # ---- the interface -----------------------------------------------------------
    def read(self):
        raise NotImplementedError

    def peek_with(self, *args, **kwargs):
        raise NotImplementedError

    def write(self, *args, **kwargs):
        raise NotImplementedError

    def get_config(self):
        config = {**super().get_config(), "size": self.size, "dim": self.dim,
                  "seed": self.seed}
        if self.momentum is not None:
            config["momentum"] = self.momentum
        return config


def unit_rows(rows):
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")


class QueueContents(typing.NamedTuple):
    """A ring queue's rows: keys [size, dim] and its columns [size] (None if not kept)."""
    keys: tf.Tensor
    index: typing.Optional[tf.Tensor] = None
    label: typing.Optional[tf.Tensor] = None


COLUMNS = ("index", "label")


@keras.saving.register_keras_serializable(package="keras_ssl")
class RingQueue(Memory):
    """A ring buffer of keys with optional per-row columns (MoCo, SwAV, MSF, CMSF).

    Args:
        size: rows kept (MoCo v2: 65,536; MSF: 128,000). A write of more rows
            than this at once is refused; `size` need not be a multiple of
            the global batch: writes wrap around.
        dim: key width.
        columns: names of int64 columns kept beside the keys, from
            ("index", "label"): the dataset index of each row's example (CMSF
            looks rows up by it) and its class. Rows never written hold -1.
        seed: seed of the random unit-norm initial keys.

    Keys are stored as given: callers normalise them. The variables are
    `keys`, `pointer` (the next row written) and, if kept, `index`/`label`.
    The oldest rows are overwritten first.

    Example:
    >>> queue = RingQueue(size=4, dim=2, columns=("index",))
    >>> queue.write(tf.ones((3, 2)), index=tf.constant([7, 8, 9]))
    >>> queue.read_column("index").numpy().tolist(), int(queue.pointer.numpy())
    ([7, 8, 9, -1], 3)
    >>> after = queue.peek_with(tf.zeros((2, 2)), index=tf.constant([5, 6]))
    >>> after.index.numpy().tolist()  # rows 3 and (wrapped) 0
    [6, 8, 9, 5]
    >>> queue.read_column("index").numpy().tolist()  # peeking wrote nothing
    [7, 8, 9, -1]
    """

    def __init__(self, size, dim, columns=(), seed=0, **kwargs):
        super().__init__(size, dim, seed=seed, **kwargs)
        columns = tuple(columns)
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValueError(f"Unknown queue columns {sorted(unknown)}; choose from {COLUMNS}.")
        self.columns = tuple(name for name in COLUMNS if name in columns)
        initial = unit_rows(np.random.default_rng(seed).standard_normal((self.size, self.dim)))
        self.keys = self.add_state("keys", (self.size, self.dim),
                                   initializer=keras.initializers.Constant(initial))
        self.pointer = self.add_state("pointer", (), dtype="int64")
        for name in COLUMNS:
            setattr(self, name, self.add_state(name, (self.size,), dtype="int64",
                                               initializer=keras.initializers.Constant(-1))
                    if name in self.columns else None)
        self.built = True

    def read(self):
        """The keys [size, dim] before this step's write."""
        return self.keys.value

    def read_column(self, name):
        """Column `name` ("index" or "label") [size] before this step's write."""
        if name not in self.columns:
            raise ValueError(f"This queue keeps no {name!r} column (columns={self.columns}).")
        return getattr(self, name).value

    def next_rows(self, count):
        """The queue rows the next `count` written entries occupy (int64 [count])."""
        return (self.pointer.value + tf.range(count, dtype=tf.int64)) % self.size

    def peek_with(self, rows, index=None, label=None, gathered=False):
        """The contents after `write(rows, index, label)`, without writing.

        Returns:
            A `QueueContents` of tensors: keys [size, dim] with the global
            batch of `rows` at `next_rows`, and the kept columns likewise.
        """
        return self._after_write(rows, index, label, gathered)[0]

    def write(self, rows, index=None, label=None, gathered=False):
        """Enqueues the global batch of `rows` (and of its columns) at the pointer.

        Args:
            rows: [B, dim] this replica's keys (the global batch if `gathered`).
            index, label: [B] int, required for each kept column, refused
                otherwise.
            gathered: the inputs are already all-gathered.
        """
        contents, count = self._after_write(rows, index, label, gathered)
        self.keys.assign(contents.keys)
        for name in self.columns:
            getattr(self, name).assign(getattr(contents, name))
        self.pointer.assign((self.pointer.value + count) % self.size)

    def _after_write(self, rows, index, label, gathered):
        given = {"index": index, "label": label}
        for name, value in given.items():
            if (value is None) == (name in self.columns):
                raise ValueError(f"This queue keeps columns {self.columns}: pass exactly "
                                 f"those, got {name}={'None' if value is None else '...'}.")
        rows = tf.cast(self.gather(rows, gathered), self.keys.dtype)
        if rows.shape[0] is not None and rows.shape[0] > self.size:
            raise ValueError(f"Cannot write {rows.shape[0]} rows at once into a queue of "
                             f"{self.size}: the queue must hold at least the global batch.")
        count = tf.shape(rows, out_type=tf.int64)[0]
        positions = self.next_rows(count)[:, None]
        contents = {"keys": tf.tensor_scatter_nd_update(self.keys.value, positions, rows)}
        for name in self.columns:
            values = tf.cast(self.gather(given[name], gathered), tf.int64)
            contents[name] = tf.tensor_scatter_nd_update(getattr(self, name).value,
                                                         positions, values)
        return QueueContents(**contents), count

    def get_config(self):
        return {**super().get_config(), "columns": self.columns}


@keras.saving.register_keras_serializable(package="keras_ssl")
class IndexedBank(Memory):
    """One L2-normalised row per training example, updated with momentum (NPID's memory bank).

    Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination", CVPR 2018.

    Args:
        size: number of training examples.
        dim: row width.
        momentum: weight of the old row,
            `row <- normalize(m * row + (1 - m) * normalize(new))` (NPID: 0.5;
            0.0 replaces).
        seed: seed of the initial rows, uniform in [-s, s] with
            s = 1/sqrt(dim/3) as NPID's LinearAverage, then normalised.

    The indices of one write should be distinct (an epoch's sampler draws
    each example once); for a repeated index, which of its rows lands is
    unspecified.

    Example:
    >>> bank = IndexedBank(size=6, dim=2, momentum=0.5)
    >>> bank.write(tf.constant([4]), tf.constant([[0.0, 3.0]]))
    >>> bool(abs(np.linalg.norm(bank.read().numpy()[4]) - 1.0) < 1e-6)
    True
    """

    def __init__(self, size, dim, momentum=0.5, seed=0, **kwargs):
        super().__init__(size, dim, momentum=momentum, seed=seed, **kwargs)
        bound = 1.0 / np.sqrt(self.dim / 3.0)
        initial = unit_rows(np.random.default_rng(seed).uniform(-bound, bound,
                                                                (self.size, self.dim)))
        self.rows = self.add_state("rows", (self.size, self.dim),
                                   initializer=keras.initializers.Constant(initial))
        self.built = True

    def read(self):
        """The rows [size, dim] before this step's write."""
        return self.rows.value

    def peek_with(self, indices, rows, gathered=False):
        """The bank [size, dim] as `write(indices, rows)` will leave it, without writing."""
        table = self.rows.value
        positions, new = self.momentum_rows(table, indices, rows, gathered)
        return tf.tensor_scatter_nd_update(table, positions, new)

    def write(self, indices, rows, gathered=False):
        """Momentum-updates the rows of the global batch's `indices` with its `rows`."""
        self.rows.assign(self.peek_with(indices, rows, gathered))
