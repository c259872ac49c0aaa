"""Full instance classification (Liu et al., "Train a One-Million-Way Instance
Classifier for Unsupervised Visual Representation Learning", AAAI 2021)."""

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.distribute.sharded_softmax import (hardest_class_targets,
                                                  sharded_softmax_cross_entropy, sharded_top_k)
from keras_ssl.layers import mlp_head
from keras_ssl.layers.sharded_classifier import ShardedClassifier
from keras_ssl.methods.base import Method
from keras_ssl.methods.outputs import ContrastiveOutputs


class InstanceClassifier(Method):
    """Every training image is its own class: an N-way cosine-softmax classifier.

    No official code is public (a repository that calls itself a
    reproduction runs SimCLR's NT-Xent instead: methods-c.md section 3), so
    this is a RECONSTRUCTION from the paper's three ideas, which its
    proceedings record confirms:

    * Hybrid parallelism: the backbone is data-parallel; the N x d weight
      matrix W is split by rows over the replicas
      (`keras_ssl.layers.ShardedClassifier`, each replica holds N/R rows);
      projections are all-gathered, each replica scores the global batch
      against its rows, and the softmax cross-entropy is exact across shards
      (`keras_ssl.distribute.sharded_softmax`: global max and sum of
      exponentials by collectives, each target logit from its owner).
    * Raw-feature initialisation: before the first epoch one pass of the
      untrained network over the training set ("with running BNs": BatchNorm
      in training mode, no gradient) writes each image's normalised
      projection into its own row, so training starts from a
      nearest-neighbour (contrastive) prior. The pass runs once per run; a
      resumed run keeps its trained rows (`rows_initialized` is checkpointed).
    * Label smoothing over the hardest classes: the target of image i is
      1 - alpha on class i and alpha / K on the K other classes whose rows
      are now most similar to its projection (by the current logits, never
      i itself).

    The loss is cos(w_j, z_i) / tau with tau 0.15 and alpha 0.2 (a
    third-party README's claim of the paper's values), one view per image
    with SimCLR's augmentation, and a 2-layer MLP head with BatchNorm whose
    output is L2-normalised.

    Guessed choices, named: K = 5 (not recoverable from the sources);
    "hardest" by the logits of the image against W rather than by W-W
    similarity; the head's widths (the backbone's width, then 128).

    The sparse-update problem (each row is in the batch once an epoch) is
    handled deliberately: W is trained by its own rule, not by the run's
    optimizer, because the optimizer's weight decay would shrink the rows of
    images not seen for an epoch and, since cosine logits ignore a row's
    norm, only raise their effective step. W gets SGD with momentum 0.9 at
    the run's learning rate and no weight decay (`classifier_weight_decay`).
    The softmax gives every row a gradient every step (through the
    normaliser), so the update is dense and momentum treats all rows alike.

    Args:
        encoder: backbone.
        num_examples: N, the training-set size (the run context's by default).
        projection_hidden_dim: hidden width of the head (None: the backbone's).
        projection_dim: d, the head's output and W's row width (128).
        temperature: tau of the cosine logits (0.15).
        smoothing: alpha, the target mass spread over the hardest classes (0.2).
        hard_classes: K (5, guessed).
        classifier_momentum, classifier_weight_decay: W's own SGD rule (0.9, 0).
        raw_feature_init: fill W from the untrained network before training.
        seed: seed of W's initial rows (before raw-feature initialisation).
        **kwargs: `Method`'s arguments.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = InstanceClassifier(tiny_backbone(), num_examples=64, projection_dim=8)
    >>> model.classifier.num_classes, model.classifier.shard_size
    (64, 64)
    """

    recipe_name = "simclr"
    uses_epoch_features = True
    global_loss = True
    log_names = ("own_class_top1",)
    state_attributes = ("rows_initialized",)

    def __init__(self, encoder, *, num_examples=None, projection_hidden_dim=None,
                 projection_dim=128, temperature=0.15, smoothing=0.2, hard_classes=5,
                 classifier_momentum=0.9, classifier_weight_decay=0.0, raw_feature_init=True,
                 seed=0, **kwargs):
        super().__init__(encoder, **kwargs)
        num_examples = num_examples or self.run.num_examples
        if not num_examples:
            raise ValueError("InstanceClassifier needs num_examples (or a run context with "
                             "the training-set size): one class per training image.")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing={smoothing} must lie in [0, 1).")
        self.num_examples = int(num_examples)
        self.temperature = float(temperature)
        self.smoothing = float(smoothing)
        self.hard_classes = int(hard_classes)
        self.raw_feature_init = bool(raw_feature_init)
        self.projector = mlp_head(self.feature_dim, (projection_hidden_dim or self.feature_dim,),
                                  projection_dim, synchronized_bn=True, name="projector")
        self.classifier = ShardedClassifier(
            self.num_examples, projection_dim, temperature=temperature,
            momentum=classifier_momentum, weight_decay=classifier_weight_decay, seed=seed,
            name="instance_classifier")
        self.rows_initialized = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                                name="rows_initialized")
        self.built = True

    # ---- raw-feature initialisation (the epoch feature pass, once) ----------
    def wants_epoch_features(self, epoch):
        first = self.raw_feature_init and not self._rows_initialized()
        return first or super().wants_epoch_features(epoch)

    def _rows_initialized(self):
        return bool(tf.convert_to_tensor(self.rows_initialized.value) > 0.5)

    def epoch_features(self, images):
        # "Running BNs": the untrained network normalises with each batch's
        # own statistics (training mode); nothing is trained by the pass.
        features = self.encoder(images, training=True)
        return tf.math.l2_normalize(self.projector(features, training=True), axis=1)

    def on_epoch_features(self, features, ctx):
        if self.raw_feature_init and not self._rows_initialized():
            self.classifier.assign_rows(tf.range(self.num_examples), features)
            self.rows_initialized.assign(1.0)
        super().on_epoch_features(features, ctx)

    # ---- the step ----------------------------------------------------------
    def forward(self, batch, ctx):
        features = self.encode_views(batch.views[:1], ctx.training)
        query = self.projector(features[0], training=ctx.training)
        return ContrastiveOutputs(features=features, queries=(query,), index=batch.index,
                                  label=batch.label)

    def loss(self, outputs, ctx):
        # Every replica scores the whole global batch against its rows; the
        # loss is the global mean on each (hence `global_loss`).
        projections = distribute.all_gather(outputs.queries[0])
        classes = distribute.all_gather(outputs.index)
        logits = self.classifier.logits(projections)
        offset = self.classifier.shard_offset
        fixed_logits = tf.stop_gradient(logits)
        target_classes, target_weights = hardest_class_targets(
            fixed_logits, classes, self.hard_classes, self.smoothing, shard_offset=offset,
            num_classes=self.num_examples)
        loss = tf.reduce_mean(sharded_softmax_cross_entropy(
            logits, target_classes, target_weights, shard_offset=offset,
            num_classes=self.num_examples))
        _, predicted = sharded_top_k(fixed_logits, 1, shard_offset=offset,
                                     num_classes=self.num_examples)
        own_top1 = tf.reduce_mean(tf.cast(tf.equal(predicted[:, 0], classes), tf.float32))
        return loss, {"own_class_top1": own_top1}

    def sharded_variables(self):
        return (self.classifier.local_shard(),)

    def apply_sharded_gradients(self, gradients, learning_rate, ctx):
        self.classifier.apply_gradient(gradients[0], learning_rate)
