"""Per-example pseudo-labels at several granularities, and which examples are trusted.

A method that clusters the whole training set between epochs (IFND's
hierarchical k-means) uses the result inside the next epoch's steps, looked
up by dataset index. The labels are state like a memory bank: created with
their full shape when the method is built, replicated with the memory
family's rule (`keras_ssl.distribute.replicated_state_scope`: written
outside the step, identically for every replica) and checkpointed, so a
resumed run looks up the labels it had.
"""

import keras
import tensorflow as tf

from keras_ssl.distribute.cross_replica import replicated_state_scope


@keras.saving.register_keras_serializable(package="keras_ssl")
class PseudoLabels(keras.layers.Layer):
    """Cluster labels of every training example at `num_levels` granularities.

    Args:
        num_examples: N, the size of the training split.
        num_levels: L, the number of clusterings (granularities) kept.

    Variables:
        labels: int32 [L, N], the cluster of example n at level l; -1 until
            the first `assign`.
        accepted: bool [N], whether example n's labels are trusted (IFND
            accepts the most confident share of the examples).
        assigned_epoch: int32 scalar, the 0-based epoch before which the
            labels were last assigned; -1 before the first time.

    Example:
    >>> table = PseudoLabels(num_examples=4, num_levels=2)
    >>> table.assign([[0, 0, 1, 1], [0, 1, 2, 3]], [True, False, True, True], epoch=3)
    >>> labels, accepted = table.lookup(tf.constant([2, -1]))
    >>> labels.numpy().tolist(), accepted.numpy().tolist()
    ([[1, -1], [2, -1]], [True, False])
    """

    def __init__(self, num_examples, num_levels, **kwargs):
        super().__init__(**kwargs)
        self.num_examples = int(num_examples)
        self.num_levels = int(num_levels)
        with replicated_state_scope():
            self.labels = self.add_weight(
                shape=(self.num_levels, self.num_examples), dtype="int32", trainable=False,
                initializer=keras.initializers.Constant(-1), name="labels")
            self.accepted = self.add_weight(shape=(self.num_examples,), dtype="bool",
                                            trainable=False, initializer="zeros",
                                            name="accepted")
            self.assigned_epoch = self.add_weight(
                shape=(), dtype="int32", trainable=False,
                initializer=keras.initializers.Constant(-1), name="assigned_epoch")
        self.built = True

    def assign(self, labels, accepted, epoch):
        """Replaces every label ([L, N] int) and acceptance flag ([N] bool), before `epoch`."""
        self.labels.assign(tf.cast(labels, tf.int32))
        self.accepted.assign(tf.cast(accepted, tf.bool))
        self.assigned_epoch.assign(int(epoch))

    def lookup(self, index):
        """(labels [L, B] int32, accepted [B] bool) of dataset indices `index` [B].

        An index of -1 (no example: MoCo's positive column, a queue row never
        written) has label -1 at every level and is never accepted.
        """
        index = tf.cast(index, tf.int32)
        known = index >= 0
        # tf.gather refuses -1 on CPU; those rows are overwritten below.
        rows = tf.maximum(index, 0)
        labels = tf.where(known[None, :], tf.gather(self.labels.value, rows, axis=1), -1)
        accepted = tf.logical_and(known, tf.gather(self.accepted.value, rows))
        return labels, accepted

    def get_config(self):
        return {**super().get_config(), "num_examples": self.num_examples,
                "num_levels": self.num_levels}
