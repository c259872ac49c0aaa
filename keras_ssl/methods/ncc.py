"""NCC / ProPos: BYOL with positive sampling and prototype scattering (Huang et al., TPAMI 2022)."""

import numbers

import keras
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses.prototype_scattering import cluster_presence, prototype_scattering_loss
from keras_ssl.methods.byol import BYOL
from keras_ssl.ops.dataset_kmeans import dataset_kmeans
from keras_ssl.optimizers import SGD

# The stream of the step's seeds (`StepContext.seed_for`) that draws the
# positive-sampling noise; BYOL, the base, draws nothing.
POSITIVE_SAMPLING_STREAM = 1
# The pseudo-label of every example before the first E-step: in no cluster.
UNLABELED = -1


class NCC(BYOL):
    """Non-contrastive clustering: BYOL plus positive sampling and prototype scattering.

    Paper: "Learning Representation for Clustering via Prototype Scattering
    and Positive Sampling" (ProPos; arXiv 2111.11821). Official code:
    Hzzone/ProPos @cc35d8ca, `models/propos/byol_wrapper.py` (the losses),
    `models/propos/byol.py` (warm-up, predictor learning rate),
    `models/basic_template.py` (the EM loop), `config/cifar10_r18_propos.yml`.
    It follows the v1 forward of the CIFAR-10 config.

    EM. Before training and before every `reassign_epochs`-th epoch (the
    E-step, official `psedo_labeling`, basic_template.py:381,395-401), every
    training image, un-augmented, goes through the *target* encoder and
    projector in inference mode (byol_wrapper.py:84); the L2-normalised
    projections are clustered by spherical k-means (k-means++, at most
    `kmeans_max_iters` = 300 iterations, tolerance 1e-4: basic_template.py
    486-496), and the assignments fill a non-trainable table of one
    pseudo-label per example (checkpointed, so a resumed run keeps them).
    The trainer's `EpochFeaturePass` runs the pass; `fit` requires it. Each
    step (the M-step) looks up its rows' labels by `batch.index`.

    Loss of a step, views x1 and x2, q = projector(encoder(x)) unnormalised,
    k = target projections (no gradient):

    - Positive sampling alignment (byol_wrapper.py:170-173, 197-201):
      q~ = q + sigma * eps, eps ~ N(0, I); the prediction of q~ regresses k
      of the other view. The official v1 loss is -2 cos per direction,
      averaged over the two; here it is the mean of 2 - 2 cos over both
      directions (BYOL's `normalized_regression_loss`, halved): the same
      gradient, 2 more in value, and exactly the value of the official v2
      loss (`(2 - 2 cos).mean()`, byol_wrapper.py:243). Logged as
      `alignment_loss`.
    - Prototype scattering (`keras_ssl.losses.prototype_scattering`): ProtoCL
      of (q1, k2) and of (q2, k1), averaged, with the centres of the global
      batch (all-gathered; gradients flow back to every replica's rows).
      Logged as `prototype_loss`, with `clusters_present`, the number of
      clusters with a row in the global batch.
    - loss = alignment + lambda * prototype. lambda and sigma are 0 during
      the first `clustering_warmup_epochs` 0-based epochs (official
      `is_warmup = not cur_epoch > warmup_epochs` with 1-based epochs,
      byol.py:100-107): plain BYOL.

    Args:
        encoder: online backbone.
        num_clusters: K of the E-step (official: the number of classes).
        temperature: tau of ProtoCL (0.5).
        prototype_loss_weight: lambda (0.1; official `cluster_loss_weight`).
        positive_sampling_std: sigma (0.001; official `latent_std`).
        clustering_warmup_epochs: epochs of plain BYOL before lambda and
            sigma switch on (official `warmup_epochs`, which also warms up
            the learning rate: give both); > 0 needs the run's
            `steps_per_epoch`.
        predictor_learning_rate_multiplier: s, the predictor's learning rate
            over the rest (10; official `lambda_predictor_lr`). See below.
        reassign_epochs: epochs between E-steps (1; official `reassign`).
        kmeans_max_iters, kmeans_tolerance: of the E-step's k-means.
        num_examples: size of the pseudo-label table; None takes the run's.
        projection_hidden_dim, projection_dim, prediction_hidden_dim: 4096,
            256, 4096 (official `hidden_size`, `feat_dim`).
        base_momentum: EMA of the target (0.996).
        final_momentum: None keeps the EMA constant, as the CIFAR-10 config
            (`momentum_increase: false`); 1.0 gives BYOL's cosine increase.
        Other keyword arguments: as `BYOL` (`synchronized_bn`, `run`, ...).

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = NCC(tiny_backbone(), num_examples=64, num_clusters=4,
    ...             projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16)
    >>> model.uses_epoch_features, model.wants_epoch_features(0), model.cluster_assignments
    (True, True, None)

    Predictor learning rate. Officially the predictor's parameter group has
    s times the learning rate (byol.py:117-131). The Keras optimizers have one
    rate, so here the predictor's gradients are multiplied by s instead:
    identity ops around the predictor scale the gradient of its output by s
    and the gradient leaving its input by 1/s, so its variables receive s g
    and the networks before it g. With SGD, momentum and decay added to the
    gradient (`keras_ssl.optimizers.SGD`, the optimizer of these recipes) the
    decay must be scaled too: the loss holds a term of value 0 whose gradient
    is (s - 1) wd w on the predictor's variables, so their momentum buffer
    receives s (g + wd w) and moves them exactly as an s-times rate would
    (tests/methods/test_ncc.py checks this against a per-variable-rate SGD).
    LARS and AdamW normalise the gradient's scale away (LARS on its weight
    matrices; its biases and BatchNorm parameters do get s times the step),
    so with them the multiplier is not the official one.

    Deviations from the official code, and why:

    * Absent clusters are those with no row in the *global* batch, which is
      what the paper describes and what makes 1 and N replicas agree; the
      official code takes them from each device's local batch while its
      centres come from the gathered batch (methods-c.md §6). On one device
      both are the same.
    * The official GatherLayer returns each device only its own rows'
      gradient and DDP averages over devices, so its ProtoCL gradient is
      that of lambda / num_devices * L_psl (lambda / 4 on the CIFAR-10
      config's 4 GPUs); here it is that of lambda * L_psl on any number of
      replicas.
    * The official v1 step moves the target after the loss but before the
      optimizer step, from the online weights the step started with; here it
      moves in `after_apply` from the updated weights (BYOL's order), a
      one-step lag of a 0.996 average.
    * Shuffled BatchNorm of the target (official `shuffling_bn`, 4 GPUs) is a
      no-op on one device and is not reproduced; the target's BatchNorm uses
      each replica's batch.
    * The E-step clusters the training split only (the official configs set
      `whole_dataset`, clustering and training on train + test).
    * The official cosine schedule decays over (epoch - warmup) / epochs and
      never reaches 0 (basic_template.py:460); the library's schedule decays
      over the steps after the warm-up, to 0.
    * The E-step's k-means is `keras_ssl.ops.dataset_kmeans` (seeded with
      the run's seed at every E-step, as the official `random_state=0`), not
      torch_clustering's PyTorchKMeans: the same algorithm, other draws.
    * The predictor's Dense layers start at N(0, 0.01) with zero biases
      (byol_wrapper.py:72-82); the hidden one has no bias, as BatchNorm
      follows it. The projector keeps the library's initialisation.
    * Not implemented: the v2 forward and cosine EMA of the CIFAR-20 and R34
      configs, `data_resample`, and the ImageNet config's queue of past keys.
    """

    recipe_name = "simclr"
    state_attributes = ("pseudo_labels",)
    log_names = ("alignment_loss", "prototype_loss", "clusters_present")
    uses_epoch_features = True

    def __init__(self, encoder, *, num_clusters=10, temperature=0.5, prototype_loss_weight=0.1,
                 positive_sampling_std=0.001, clustering_warmup_epochs=0,
                 predictor_learning_rate_multiplier=10.0, reassign_epochs=1,
                 kmeans_max_iters=300, kmeans_tolerance=1e-4, num_examples=None,
                 projection_hidden_dim=4096, projection_dim=256, prediction_hidden_dim=4096,
                 base_momentum=0.996, final_momentum=None, **kwargs):
        super().__init__(encoder, projection_hidden_dim=projection_hidden_dim,
                         projection_dim=projection_dim,
                         prediction_hidden_dim=prediction_hidden_dim,
                         base_momentum=base_momentum, final_momentum=final_momentum, **kwargs)
        num_examples = num_examples or self.run.num_examples
        if not num_examples:
            raise ValueError("NCC keeps a pseudo-label per training example: give "
                             "num_examples or run=RunContext(num_examples=...).")
        for name, value, least in (("clustering_warmup_epochs", clustering_warmup_epochs, 0),
                                   ("reassign_epochs", reassign_epochs, 1)):
            if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
                    or value < least):
                raise ValueError(f"{name} is a whole number of epochs >= {least}; "
                                 f"got {value!r}.")
        if clustering_warmup_epochs and not self.run.steps_per_epoch:
            raise ValueError("NCC's clustering_warmup_epochs needs the run's steps per epoch: "
                             "build it with run=RunContext(steps_per_epoch=...).")
        self.num_examples = num_examples
        self.num_clusters = num_clusters
        self.temperature = temperature
        self.prototype_loss_weight = prototype_loss_weight
        self.positive_sampling_std = positive_sampling_std
        self.clustering_warmup_epochs = clustering_warmup_epochs
        self.predictor_learning_rate_multiplier = float(predictor_learning_rate_multiplier)
        self.reassign_epochs = reassign_epochs
        self.kmeans_max_iters = kmeans_max_iters
        self.kmeans_tolerance = kmeans_tolerance
        _initialize_like_official_predictor(self.predictor)
        with distribute.replicated_state_scope():
            # Every replica writes the same labels (the E-step runs outside
            # the replicas, from the gathered features).
            self.pseudo_labels = self.add_weight(
                shape=(num_examples,), dtype="int32", trainable=False,
                initializer=keras.initializers.Constant(UNLABELED), name="pseudo_labels")
        self.built = True

    # ---- the E-step (epoch feature pass) ----------------------------------------
    @property
    def cluster_assignments(self):
        """The E-step's pseudo-labels (NumPy int32 [N]), or None before the first E-step."""
        labels = self.pseudo_labels.numpy()
        return None if (labels == UNLABELED).any() else labels

    def wants_epoch_features(self, epoch):
        """Before every `reassign_epochs`-th epoch, and whenever no E-step has run yet."""
        # super(): the base answers for logit transforms that use the pass.
        return (super().wants_epoch_features(epoch) or epoch % self.reassign_epochs == 0
                or self.cluster_assignments is None)

    def epoch_features(self, images):
        """What is clustered: normalised target projections, in inference mode."""
        targets = self.target_projector(self.target_encoder(images, training=False),
                                        training=False)
        return tf.math.l2_normalize(tf.cast(targets, tf.float32), axis=1)

    def on_epoch_features(self, features, ctx):
        """Spherical k-means++ of the whole training set; its assignments are the new labels."""
        if features.shape[0] != self.num_examples:
            raise ValueError(f"NCC has {self.num_examples} pseudo-labels, but the feature "
                             f"pass gave {features.shape[0]} examples.")
        clustering = dataset_kmeans(features, self.num_clusters,
                                    max_iters=self.kmeans_max_iters,
                                    tolerance=self.kmeans_tolerance, spherical=True,
                                    seed=ctx.seed)
        super().on_epoch_features(features, ctx)
        self.pseudo_labels.assign(tf.cast(clustering.assignments, tf.int32))

    # ---- the M-step --------------------------------------------------------------
    def predictions_of(self, projections, ctx):
        """Positive sampling: the predictor sees q + sigma eps, not q.

        BYOL's `forward` keeps the noiseless q as the outputs' `projections`,
        which ProtoCL averages.
        """
        noise = self.positive_sampling_noise(projections, ctx)
        return tuple(self.predictor_with_scaled_gradients(p + n, ctx.training)
                     for p, n in zip(projections, noise))

    def after_warmup(self, value, ctx):
        """`value` from 0-based epoch `clustering_warmup_epochs` on, 0 before it."""
        if not self.clustering_warmup_epochs:
            return tf.constant(value, tf.float32)
        return tf.where(ctx.epoch >= self.clustering_warmup_epochs, value, 0.0)

    def positive_sampling_noise(self, projections, ctx):
        """sigma * eps for each view's projections (zeros during the warm-up)."""
        local_batch = tf.shape(projections[0])[0]
        # Drawn for the global batch and sliced to this replica's rows, so 1
        # and N replicas add the same noise to the same example.
        eps = tf.random.stateless_normal(
            [local_batch * distribute.num_replicas(), len(projections),
             projections[0].shape[-1]], ctx.seed_for(POSITIVE_SAMPLING_STREAM))
        noise = distribute.local_rows(eps, local_batch) * self.after_warmup(
            self.positive_sampling_std, ctx)
        return tuple(tf.cast(noise[:, view], p.dtype) for view, p in enumerate(projections))

    def predictor_with_scaled_gradients(self, inputs, training):
        """The predictor, its variables' gradients multiplied by s (see the class docstring)."""
        scale = self.predictor_learning_rate_multiplier
        if scale == 1.0:
            return self.predictor(inputs, training=training)
        inputs = scale_gradient(inputs, 1.0 / scale)  # what flows on is unscaled
        return scale_gradient(self.predictor(inputs, training=training), scale)

    def loss(self, outputs, ctx):
        # BYOL's loss sums 2 - 2 cos over both directions; the official v1
        # loss averages them (see the class docstring).
        byol_loss, logs = super().loss(outputs, ctx)
        alignment = 0.5 * byol_loss
        labels = distribute.all_gather(
            tf.gather(self.pseudo_labels.value, tf.cast(outputs.index, tf.int32)))
        (q1, q2), (k1, k2) = outputs.projections, outputs.targets
        prototype = 0.5 * (self.global_prototype_loss(q1, k2, labels)
                           + self.global_prototype_loss(q2, k1, labels))
        loss = (alignment + self.after_warmup(self.prototype_loss_weight, ctx) * prototype
                + self.predictor_decay_correction())
        present = tf.reduce_sum(tf.cast(cluster_presence(labels, self.num_clusters),
                                        tf.float32))
        return loss, {**logs, "alignment_loss": alignment, "prototype_loss": prototype,
                      "clusters_present": present}

    def global_prototype_loss(self, queries, keys, global_labels):
        """ProtoCL with the centres of the global batch (gradients reach every replica's rows)."""
        return prototype_scattering_loss(
            distribute.all_gather(queries), distribute.all_gather(keys), global_labels,
            num_clusters=self.num_clusters, temperature=self.temperature)

    def predictor_decay_correction(self):
        """0 in value; gradient (s - 1) * wd * w on the predictor's variables (see class docstring)."""
        decay = coupled_weight_decay(getattr(self, "optimizer", None))
        scale = self.predictor_learning_rate_multiplier
        if not decay or scale == 1.0:
            return 0.0
        # sum(w * stop_gradient(w)) has gradient w.
        term = (scale - 1.0) * decay * tf.add_n([
            tf.reduce_sum(w.value * tf.stop_gradient(w.value))
            for w in self.predictor.trainable_weights])
        return term - tf.stop_gradient(term)


def scale_gradient(tensor, scale):
    """The identity, with the gradient flowing back through it multiplied by `scale`."""
    @tf.custom_gradient
    def identity(x):
        return tf.identity(x), lambda upstream: upstream * tf.cast(scale, upstream.dtype)

    return identity(tensor)


def coupled_weight_decay(optimizer):
    """The decay an optimizer adds to the gradient (`keras_ssl.optimizers.SGD`), else 0.

    Looks through a `LossScaleOptimizer`. Optimizers that decay outside the
    gradient (Keras' own, AdamW) or normalise it (LARS) give 0: for them the
    predictor's gradient multiplier is not an exact learning-rate multiplier.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return float(optimizer.l2_weight_decay) if isinstance(optimizer, SGD) else 0.0


def _initialize_like_official_predictor(predictor):
    """Dense kernels N(0, 0.01) and zero biases (byol_wrapper.py:72-82)."""
    normal = keras.initializers.RandomNormal(stddev=0.01)
    for layer in predictor.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.assign(normal(layer.kernel.shape))
            if layer.bias is not None:
                layer.bias.assign(tf.zeros_like(layer.bias))
