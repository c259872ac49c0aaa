"""USL-T: learn the budget's clusters with K-way heads, then label one example of each.

USL-T (Wang et al., ECCV 2022, §3.3; official code TonyLianLong/
UnsupervisedSelectiveLabeling, commit ceaab3c) replaces USL's k-means and
density by training: an encoder with 3 linear heads of K = budget outputs
(`usl-t_pretraining/usl-t-cifar-pretrain.py:50-60`, `ClusteringModel` with
plain `nn.Linear` heads) learns with two losses per head
(`uslt_losses.py`): the global loss (confident, class-balanced
self-labelling from the unaugmented image to its strong view) plus 5 x the
local loss (the strong view agrees with a neighbour's sharpened,
prior-adjusted prediction). Then `selective_labeling/usl-t-cifar.py:85-117`
encodes the training set in inference mode, assigns every example to head
0's argmax, and in every cluster picks the example whose top probability,
averaged over the 3 heads, is largest.

Official training settings (`usl-t_pretraining/config.py`, CIFAR-10 yaml):
Adam, learning rate 1e-4, weight decay 1e-4 (PyTorch's Adam adds
`weight_decay * w` to the gradient: an L2 penalty, not AdamW's decoupled
decay, so the train step here adds it the same way), batch 1024, 200 epochs,
every weight trained (`UPDATE_HEAD_ONLY` False) with BatchNorm in training
mode, the EMA of the model off (the CIFAR-10 yaml sets `EMA_DECAY: 0.0`).
The encoder starts from a self-supervised checkpoint (officially SCAN's
SimCLR ResNet-18; here any keras_ssl encoder).

Where this differs, and why:

* `train_encoder=False` trains the heads alone on a frozen encoder in
  inference mode: what the official `UPDATE_HEAD_ONLY` switch means (its
  code selects the wrong parameters: those whose name lacks "head").
* The heads start from PyTorch's `nn.Linear` initialisation
  (`keras_ssl.layers.pytorch_linear`), as the official heads do.
* An empty cluster makes the official pick loop fail (argmax of nothing);
  here its pick goes to the most confident example not yet picked.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.layers.pytorch_linear import uniform
from keras_ssl.selection.regularized_picks import pick_per_cluster
from keras_ssl.selection.uslt_data import (USLT_NUM_NEIGHBORS, neighbor_table,
                                           scan_strong_view, uslt_dataset)
from keras_ssl.selection.uslt_losses import (USLT_ADJUSTMENT_WEIGHT, USLT_CONFIDENCE_THRESHOLD,
                                             USLT_LOCAL_LOSS_SCALE, USLT_PRIOR_MOMENTUM,
                                             USLT_SHARPEN_TEMPERATURE, uslt_global_loss,
                                             uslt_local_loss)

USLT_NUM_HEADS = 3
USLT_LEARNING_RATE = 1e-4
USLT_WEIGHT_DECAY = 1e-4
USLT_EPOCHS = 200
USLT_BATCH_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class USLTSelection:
    """The result of `select_uslt`.

    Attributes:
        indices: [budget] int64 dataset indices to label.
        assignments: [N] int32 cluster of every example (the argmax of head 0).
        num_empty_clusters: clusters with no member, whose picks were filled
            with the most confident remaining examples.
        history: the Keras `History.history` dict of the training.
    """

    indices: np.ndarray
    assignments: np.ndarray
    num_empty_clusters: int
    history: dict


class USLT(keras.Model):
    """An encoder with USL-T's cluster heads and its training step.

    Batches are dicts of float32 images in [0, 1] (see `uslt_dataset`):
    "image" (the unaugmented image: it chooses the global loss's targets),
    "image_augmented" (its strong view: the anchor of both losses) and
    "neighbor" (a strong view of a random one of its nearest neighbours,
    itself included).

    Args:
        encoder: a keras_ssl encoder, images -> features [B, D].
        num_clusters: K, the label budget.
        num_heads: heads trained side by side (3).
        train_encoder: train the encoder too (official) or the heads alone.
        local_loss_scale: weight of the local loss (5).
        adjustment_weight, temperature, prior_momentum: the local loss (5, 0.25, 0.5).
        threshold: confidence threshold of the global loss (0.95).
        weight_decay: L2 coefficient added to every gradient, as PyTorch's Adam (1e-4).

    Example:
    >>> model = USLT(encoder, num_clusters=40)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4, epsilon=1e-8))
    >>> data = uslt_dataset(images, neighbor_table(features), batch_size=1024,
    ...                     strong_view=scan_strong_view)
    >>> model.fit(data, epochs=200, steps_per_epoch=len(images) // 1024)
    >>> indices, _ = uslt_picks(model.predict_logits(eval_batches), budget=40)

    `select_uslt` does all of this.
    """

    def __init__(self, encoder, num_clusters, *, num_heads=USLT_NUM_HEADS, train_encoder=True,
                 local_loss_scale=USLT_LOCAL_LOSS_SCALE,
                 adjustment_weight=USLT_ADJUSTMENT_WEIGHT,
                 temperature=USLT_SHARPEN_TEMPERATURE, prior_momentum=USLT_PRIOR_MOMENTUM,
                 threshold=USLT_CONFIDENCE_THRESHOLD, weight_decay=USLT_WEIGHT_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_clusters = int(num_clusters)
        self.train_encoder = bool(train_encoder)
        self.local_loss_scale = float(local_loss_scale)
        self.adjustment_weight = float(adjustment_weight)
        self.temperature = float(temperature)
        self.prior_momentum = float(prior_momentum)
        self.threshold = float(threshold)
        self.weight_decay = float(weight_decay)
        feature_dim = int(encoder.output_shape[-1])
        self.heads = [keras.layers.Dense(self.num_clusters, kernel_initializer=uniform(feature_dim),
                                         bias_initializer=uniform(feature_dim),
                                         name=f"cluster_head_{i}")
                      for i in range(int(num_heads))]
        for head in self.heads:
            head.build((None, feature_dim))
        # Each head's running class marginal of the local loss (1 / K at the start).
        self.priors = self.add_weight(
            shape=(len(self.heads), self.num_clusters), name="priors", trainable=False,
            initializer=keras.initializers.Constant(1.0 / self.num_clusters))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.global_tracker = keras.metrics.Mean(name="global_loss")
        self.local_tracker = keras.metrics.Mean(name="local_loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.global_tracker, self.local_tracker]

    def call(self, images, training=False):
        """[num_heads, B, K] logits of every head."""
        if self.train_encoder:
            features = self.encoder(images, training=training)
        else:
            features = tf.stop_gradient(self.encoder(images, training=False))
        features = tf.cast(features, tf.float32)
        return tf.stack([head(features) for head in self.heads], axis=0)

    def losses_of(self, weak_logits, strong_logits, neighbor_logits):
        """(total loss, mean global loss, mean local loss, new priors) over the heads."""
        global_losses, local_losses, priors = [], [], []
        for index in range(len(self.heads)):
            global_losses.append(uslt_global_loss(weak_logits[index], strong_logits[index],
                                                  threshold=self.threshold))
            local, prior = uslt_local_loss(
                strong_logits[index], neighbor_logits[index], self.priors[index],
                adjustment_weight=self.adjustment_weight, temperature=self.temperature,
                momentum=self.prior_momentum)
            local_losses.append(local)
            priors.append(prior)
        # Summed over heads, as the official script backpropagates.
        total = tf.add_n(global_losses) + self.local_loss_scale * tf.add_n(local_losses)
        return (total, tf.reduce_mean(global_losses), tf.reduce_mean(local_losses),
                tf.stack(priors, axis=0))

    def train_step(self, batch):
        # `train_on_batch` hands (x, y, sample_weight); `fit` on a dataset of dicts, the dict.
        batch, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
        # The unaugmented images and the neighbours are forward passes without
        # gradient, in training mode as officially (their BatchNorm statistics
        # move too).
        weak_logits = tf.stop_gradient(self(batch["image"], training=True))
        variables = (self.trainable_variables if self.train_encoder
                     else [v for head in self.heads for v in head.trainable_variables])
        with tf.GradientTape() as tape:
            strong_logits = self(batch["image_augmented"], training=True)
            neighbor_logits = tf.stop_gradient(self(batch["neighbor"], training=True))
            total, global_loss, local_loss, priors = self.losses_of(
                weak_logits, strong_logits, neighbor_logits)
        gradients = tape.gradient(total, variables)
        gradients = [gradient + self.weight_decay * variable
                     for gradient, variable in zip(gradients, variables)]
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.priors.assign(priors)
        self.loss_tracker.update_state(total)
        self.global_tracker.update_state(global_loss)
        self.local_tracker.update_state(local_loss)
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def predict_logits(self, dataset):
        """[num_heads, N, K] float32 logits of every image of an eval dataset, in order."""
        @tf.function
        def logits_of(images):
            return self(tf.image.convert_image_dtype(images, tf.float32), training=False)

        batches = [logits_of(batch["image"]).numpy() for batch in dataset]
        return np.concatenate(batches, axis=1)


def uslt_picks(head_logits, budget, *, head_in_use=0, mean_confidence=True):
    """USL-T's picks: in every cluster of one head, its most confident example.

    Args:
        head_logits: [num_heads, N, K] logits (K >= budget).
        budget: number of picks; clusters 0..budget-1 are visited in order.
        head_in_use: the head whose argmax defines the clusters (0).
        mean_confidence: rank by the top probability averaged over the heads
            (official `USE_MEAN_PROB` True) or by head `head_in_use`'s own.

    Returns:
        (indices [budget] int64 distinct, number of empty clusters filled).
    """
    logits = tf.convert_to_tensor(head_logits, tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    confidence = tf.reduce_max(probabilities, axis=-1)  # [H, N]
    confidence = (tf.reduce_mean(confidence, axis=0) if mean_confidence
                  else confidence[head_in_use]).numpy()
    clusters = tf.argmax(probabilities[head_in_use], axis=-1, output_type=tf.int32).numpy()
    # Only clusters 0..budget-1 are visited, as the official loop `range(budget)`.
    rows = np.flatnonzero(clusters < budget)
    picks, _ = pick_per_cluster(confidence[rows], clusters[rows], budget, budget)
    picks = rows[picks]
    num_empty = budget - len(picks)
    if num_empty:
        unpicked = np.setdiff1d(np.arange(len(confidence)), picks)
        most_confident = unpicked[np.argsort(-confidence[unpicked], kind="stable")]
        picks = np.concatenate([picks, most_confident[:num_empty]])
    return picks.astype(np.int64), int(num_empty)


def select_uslt(encoder, images, budget, *, epochs=USLT_EPOCHS, batch_size=USLT_BATCH_SIZE,
                learning_rate=USLT_LEARNING_RATE, num_neighbors=USLT_NUM_NEIGHBORS,
                strong_view=scan_strong_view, eval_batch_size=512, seed=0, verbose=0,
                **model_kwargs):
    """Chooses `budget` examples to label by USL-T: train the heads, pick per cluster.

    The encoder is trained in place (unless `train_encoder=False`): pass a
    copy to keep the original.

    Args:
        encoder: a keras_ssl encoder of float32 images in [0, 1].
        images: [N, H, W, 3] uint8 training images, in dataset order.
        budget: number of examples to label (= clusters of every head).
        epochs: training epochs (200), of N // batch_size steps each.
        batch_size: training batch (1024).
        learning_rate: Adam's learning rate (1e-4).
        num_neighbors: neighbours of the local loss, besides the image itself (20).
        strong_view: the strong augmentation (see `uslt_dataset`).
        eval_batch_size: batch of the final encoding pass.
        seed: seeds the data order, the neighbour draws and the views.
        verbose: Keras `fit` verbosity.
        **model_kwargs: `USLT` arguments (train_encoder, weight_decay, ...).

    Returns:
        `USLTSelection`.
    """
    images = np.asarray(images)
    batch_size = min(int(batch_size), len(images))

    batches = tf.data.Dataset.from_tensor_slices({"image": images}).batch(eval_batch_size)
    features = np.concatenate([
        encoder(tf.image.convert_image_dtype(batch["image"], tf.float32), training=False).numpy()
        for batch in batches])
    neighbors = neighbor_table(features, num_neighbors)
    model = USLT(encoder, budget, **model_kwargs)
    # PyTorch's Adam epsilon (Keras' default is 1e-7).
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, epsilon=1e-8))
    history = model.fit(uslt_dataset(images, neighbors, batch_size=batch_size,
                                     strong_view=strong_view, seed=seed),
                        epochs=epochs, steps_per_epoch=len(images) // batch_size,
                        shuffle=False, verbose=verbose)
    logits = model.predict_logits(batches)
    indices, num_empty = uslt_picks(logits, budget)
    assignments = np.argmax(logits[0], axis=-1).astype(np.int32)
    return USLTSelection(indices=indices, assignments=assignments,
                         num_empty_clusters=num_empty, history=dict(history.history))
