"""An online linear probe: a classifier on detached features, trained beside any method.

solo-learn trains one during pre-training so a run shows how linearly
separable its features are as it goes, at the cost of one small Dense layer.
The features are detached, so the probe never changes the encoder; rows whose
label is unknown (-1) are left out of its loss and accuracy.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssl")
class OnlineLinearProbe(keras.layers.Layer):
    """A linear classifier on the detached backbone features of one view.

    Args:
        num_classes: classes of the labels in the batch.
        input_dim: width of the backbone features.
        view: which view's features it reads (0).

    Called as an objective, `probe(outputs) -> (loss, logs)`: the mean
    cross-entropy over the labeled rows (0 when none is labeled), and logs
    `probe_loss` and `probe_top1` (accuracy over the labeled rows, measured
    before this step's update).

    Example:
    >>> from keras_ssl.methods.outputs import Outputs
    >>> probe = OnlineLinearProbe(3, 4)
    >>> loss, logs = probe(outputs=Outputs(features=(tf.ones([2, 4]),),
    ...                                    label=tf.constant([0, -1], tf.int64)))
    >>> sorted(logs)
    ['probe_loss', 'probe_top1']
    """

    log_names = ("probe_loss", "probe_top1")

    def __init__(self, num_classes, input_dim, view=0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.input_dim = int(input_dim)
        self.view = int(view)
        self.classifier = keras.layers.Dense(self.num_classes, name=f"{self.name}_dense")
        self.classifier.build((None, self.input_dim))
        self.built = True

    def call(self, outputs, training=False):
        features = tf.stop_gradient(tf.cast(outputs.features[self.view], tf.float32))
        logits = self.classifier(features)
        labels = outputs.label
        if labels is None:
            labels = tf.fill([tf.shape(logits)[0]], tf.constant(-1, tf.int64))
        known = labels >= 0
        weights = tf.cast(known, tf.float32)
        count = tf.maximum(tf.reduce_sum(weights), 1.0)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(labels, 0), logits=logits)
        loss = tf.reduce_sum(weights * cross_entropy) / count
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.float32)
        top1 = tf.reduce_sum(weights * correct) / count
        return loss, {"probe_loss": loss, "probe_top1": top1}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "input_dim": self.input_dim, "view": self.view}
