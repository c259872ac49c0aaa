"""The base every method shares: the step template, loss scaling, trackers, config.

A method supplies three hooks, each given the step's `StepContext`:

- `forward(batch, ctx)`: a `Batch` in, a dataclass of its family out
  (`keras_ssl.methods.outputs`);
- `loss(outputs, ctx)`: `(loss, logs)`;
- `after_apply(outputs, ctx)`: every change of state (EMA targets, queues,
  banks, prototypes), after the optimizer step; nothing else writes state.

and may ask for the features of the whole training set at epoch boundaries
(`wants_epoch_features`, `epoch_features`, `on_epoch_features`; the trainer's
`EpochFeaturePass` callback runs the pass). Logit transforms may ask for the
pass too (IFND's pseudo-labels); the base routes it to them. `call` returns
encoder features, which is what `predict`, the kNN monitor and export see.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.backbones import accept_any_image_size
from keras_ssl.losses.logit_transforms import LogitTransform
from keras_ssl.methods.contract import Batch, RunContext, StepContext
from keras_ssl.objectives.probe import OnlineLinearProbe

class Method(keras.Model):
    """Base class of self-supervised methods trained with `model.fit`.

    Args:
        encoder: a `keras.Model` from float images in [0, 1] to features.
        objectives: add-on loss layers (e.g. `CLD`); each is called as
            `objective(outputs=outputs, training=...) -> (weighted_loss, logs)`.
        logit_transforms: for contrastive methods (MoCo, SimCLR, NPID),
            transforms of their logits applied in order
            (`keras_ssl.losses.logit_transforms`): MoCHi's mixing, IFND's
            masks, ASCL's soft targets. The state a transform makes
            (`make_state`) is the method's (`transform_states`), and a
            transform that uses the epoch feature pass makes the method use it.
        run: the `RunContext` of the run (training-set size, steps per
            epoch, epochs, seed); methods with a bank or a schedule read it.
        probe_classes: when > 0, an online linear probe (solo-learn's habit):
            a linear classifier on the detached features of the first view,
            trained beside the method on the rows whose label is known, which
            logs `probe_loss` and `probe_top1`. It never changes the encoder.

    Subclasses set `recipe_name` (the view recipe the pipeline builds),
    `log_names` (the scalars their hooks log; the base collects them over the
    class hierarchy and the objectives, and owns every tracker),
    `state_attributes` (the attributes holding the state `after_apply`
    writes: EMA targets, queues, banks; also collected over the hierarchy,
    and checked by the test harness to move in a step) and
    `mixed_image_sizes` (True when their views come in several sizes).
    """

    recipe_name = None
    log_names = ()
    state_attributes = ()
    # Multi-crop views have two sizes, and one encoder sees both. Builders
    # make such an encoder with `backbones.get(..., any_image_size=True)`; an
    # encoder built for one size is relaxed here, so a user's works as well.
    mixed_image_sizes = False
    # Whether the method needs the features of the whole training set at some
    # epoch boundary; `fit` then insists on an `EpochFeaturePass` callback.
    uses_epoch_features = False
    # Whether the loss takes a batch's extra negative images (background
    # augmentation's BG_Swaps, `Batch.negative_view`); a method that would
    # ignore them refuses the batch instead.
    accepts_extra_negatives = False
    # Whether `loss` is already the global batch's mean on every replica, with
    # a gradient that reaches each replica's rows once (a softmax sharded over
    # the replicas, `keras_ssl.distribute.sharded_softmax`). Such a loss is not
    # divided by the replica count before the replicas' gradients are summed.
    global_loss = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # `.keras` files name the class; every method loads without custom_objects.
        keras.saving.register_keras_serializable(package="keras_ssl", name=cls.__name__)(cls)

    def __new__(cls, *args, **kwargs):
        instance = super().__new__(cls, *args, **kwargs)
        # The constructor's arguments are the config (`get_config`): a method's
        # keyword arguments are its config keys.
        object.__setattr__(instance, "_constructor_arguments", (args, dict(kwargs)))
        return instance

    def __init__(self, encoder, *, objectives=(), logit_transforms=(), run=None,
                 probe_classes=0, **kwargs):
        super().__init__(**kwargs)
        if self.mixed_image_sizes:
            encoder = accept_any_image_size(encoder)
        self.encoder = encoder
        self.run = run if isinstance(run, RunContext) else RunContext(**(run or {}))
        self.feature_dim = int(encoder.output_shape[-1])
        self.objectives = list(objectives)
        self.logit_transforms = list(logit_transforms)
        # A transform's variables live in a layer the model owns, so they are
        # built under the strategy's scope, saved, checkpointed and restored
        # with the model's own state (tests/experiments/test_fault_tolerance.py
        # checks that resume restores list-held layers such as objectives too).
        names = []
        for transform in self.logit_transforms:
            state = getattr(transform, "make_state", lambda run: None)(self.run)
            if state is not None:
                names.append(f"transform_state_{len(names)}")
                setattr(self, names[-1], state)
        self.transform_state_names = tuple(names)
        if self._epoch_feature_transforms():
            # An instance attribute: the class's own answer stays as it is.
            self.uses_epoch_features = True
        if probe_classes:
            self.objectives.append(OnlineLinearProbe(probe_classes, self.feature_dim,
                                                     name="online_probe"))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        names = []
        for klass in reversed(type(self).__mro__):
            names.extend(klass.__dict__.get("log_names", ()))
        for addition in (*self.objectives, *self.logit_transforms):
            names.extend(getattr(addition, "log_names", ()))
        self.log_trackers = {name: keras.metrics.Mean(name=name)
                             for name in dict.fromkeys(names)}

    def __setattr__(self, name, value):
        # Keras keeps `compile(loss=...)` in `self.loss`, which would hide the
        # `loss` hook; methods take no compiled loss, so it is kept aside.
        if name == "loss":
            name = "compiled_loss_argument"
        super().__setattr__(name, value)

    @property
    def transform_states(self):
        """The layers of the logit transforms' state (`LogitTransform.make_state`)."""
        return [getattr(self, name) for name in self.transform_state_names]

    @property
    def metrics(self):
        return [self.loss_tracker, *self.log_trackers.values()]

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    # ---- hooks ---------------------------------------------------------------
    def forward(self, batch, ctx):
        """The family outputs of one `Batch` (see `keras_ssl.methods.outputs`)."""
        raise NotImplementedError

    def loss(self, outputs, ctx):
        """`(loss, logs)` of the outputs; logs are scalars named in `log_names`."""
        raise NotImplementedError

    def after_apply(self, outputs, ctx):
        """State updates that must see the post-step weights (queues, banks, EMA)."""

    def update_variables(self):
        """Variables the optimizer steps (targets moved by EMA are left out)."""
        return self.trainable_variables

    def sharded_variables(self):
        """This replica's share of state split across replicas, trained by its own rule.

        Each replica holds different rows (`keras_ssl.layers.ShardedClassifier`),
        so the optimizer, which sums the replicas' gradients of mirrored
        variables, must not step them: their gradients go to
        `apply_sharded_gradients` instead. Called in replica context.
        """
        return ()

    def apply_sharded_gradients(self, gradients, learning_rate, ctx):
        """Steps `sharded_variables()` with their gradients, in replica context.

        Args:
            gradients: one per sharded variable, of the unscaled loss (with
                mixed float16 the base divides them by the loss scale and
                skips this call on a step whose gradients overflow).
            learning_rate: the optimizer's learning rate at this step.
            ctx: the `StepContext`.
        """
        raise NotImplementedError(f"{type(self).__name__} has sharded variables but no rule "
                                  "to step them.")

    def wants_epoch_features(self, epoch):
        """Whether `on_epoch_features` must run before 0-based epoch `epoch` (a Python int).

        The base answers for the logit transforms that use the pass; a
        method that wants it itself overrides this and ors in `super()`'s
        answer, so its transforms keep theirs.
        """
        return any(transform.wants_epoch_features(epoch, self.run)
                   for transform in self._epoch_feature_transforms())

    def epoch_features(self, images):
        """The features the epoch pass collects for a batch of un-augmented images."""
        return self.encoder(images, training=False)

    def on_epoch_features(self, features, ctx):
        """Receives [N, D] features of the whole training set, in dataset-index order.

        The base hands them to every logit transform that uses the pass (each
        decides from `ctx` what to do with them at this epoch); a method that
        overrides this calls `super()` for the same reason.
        """
        for transform in self._epoch_feature_transforms():
            transform.on_epoch_features(features, ctx)

    def _epoch_feature_transforms(self):
        return [transform for transform in self.logit_transforms
                if getattr(transform, "uses_epoch_features", False)]

    def state_variables(self):
        """Every variable of the `state_attributes` (over the hierarchy) and transform states."""
        names = []
        for klass in reversed(type(self).__mro__):
            names.extend(klass.__dict__.get("state_attributes", ()))
        variables = []
        for name in dict.fromkeys(names):
            holder = getattr(self, name)
            variables.extend(holder.weights if isinstance(holder, keras.layers.Layer)
                             else [holder])
        for state in self.transform_states:
            variables.extend(state.weights)
        return variables

    def log(self, name, value):
        """Adds `value` to the tracker `name`, which must be in `log_names`."""
        if name not in self.log_trackers:
            raise KeyError(f"{type(self).__name__} logs {name!r} but does not declare it in "
                           f"log_names {tuple(self.log_trackers)}.")
        self.log_trackers[name].update_state(value)

    # ---- template ------------------------------------------------------------
    def step_context(self, training=True):
        """The `StepContext` of the step about to be taken."""
        return StepContext.at(self.optimizer.iterations,
                              steps_per_epoch=self.run.steps_per_epoch,
                              seed=self.run.seed, training=training)

    def train_step(self, data):
        batch = Batch.from_element(data)
        if batch.negative_view is not None and not self.accepts_extra_negatives:
            raise ValueError(
                f"{type(self).__name__} has no negatives, so the batch's extra negatives "
                "(background augmentation's BG_Swaps) would be lost: use --background=rm,random "
                "with it, or a contrastive method with a queue (moco_v2).")
        # Read before apply_gradients increments the counter: ctx.step names
        # this step in every hook, after_apply included.
        ctx = self.step_context()
        variables = self.update_variables()
        with tf.GradientTape() as tape:
            outputs = self.forward(batch, ctx)
            loss, logs = self.loss(outputs, ctx)
            for objective in self.objectives:
                objective_loss, objective_logs = objective(outputs=outputs, training=True)
                loss += objective_loss
                logs = {**logs, **objective_logs}
            # Each replica sees its share of the global batch and
            # apply_gradients sums the replicas' gradients, so dividing by the
            # replica count applies the gradient of the global mean loss.
            # scale_loss is the identity unless mixed precision wraps the
            # optimizer in a LossScaleOptimizer.
            local_share = loss if self.global_loss else loss / distribute.num_replicas()
            scaled_loss = self.optimizer.scale_loss(local_share)
        sharded = list(self.sharded_variables())
        gradients = tape.gradient(scaled_loss, variables + sharded)
        if sharded:
            self._step_sharded(gradients[:len(variables)], gradients[len(variables):], ctx)
        self.optimizer.apply_gradients(zip(gradients[:len(variables)], variables))
        self.after_apply(outputs, ctx)
        # Trackers, not returned tensors: under MirroredStrategy a raw tensor
        # returned from train_step would be reported from one replica only.
        self.loss_tracker.update_state(loss)
        for name, value in logs.items():
            self.log(name, value)
        return {metric.name: metric.result() for metric in self.metrics}

    def fit(self, *args, callbacks=None, **kwargs):
        if self.uses_epoch_features and not any(
                getattr(callback, "provides_epoch_features", False)
                for callback in callbacks or ()):
            raise ValueError(
                f"{type(self).__name__} needs the features of the whole training set at "
                "epoch boundaries: pass callbacks=[keras_ssl.training.EpochFeaturePass("
                "eval_dataset)] to fit, or train with keras_ssl.training.pretrain.")
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def _step_sharded(self, gradients, sharded_gradients, ctx):
        """Unscales the sharded gradients and steps them, as the optimizer treats its own.

        With mixed float16 the optimizer is a LossScaleOptimizer: the tape's
        gradients are of the scaled loss, and a step whose gradients overflow
        is skipped (and the scale halved). The sharded state follows the same
        rule: its gradients are divided by the scale, and it is left alone on
        a step that any replica found non-finite, in its own rows or in the
        mirrored gradients (the optimizer skips those steps too).
        """
        # Read before apply_gradients moves the schedule to the next step.
        learning_rate = self.optimizer.learning_rate
        scale = getattr(self.optimizer, "dynamic_scale", None)
        if scale is None:
            self.apply_sharded_gradients(sharded_gradients, learning_rate, ctx)
            return
        unscaled = [tf.convert_to_tensor(g) / tf.cast(scale, g.dtype) for g in sharded_gradients]
        local_bad = tf.add_n([tf.reduce_sum(tf.cast(~tf.math.is_finite(tf.convert_to_tensor(g)),
                                                    tf.float32))
                              for g in list(gradients) + unscaled if g is not None])
        finite = tf.equal(distribute.all_reduce_sum(local_bad), 0.0)

        def apply():
            self.apply_sharded_gradients(unscaled, learning_rate, ctx)
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))

    def encode_views(self, views, training, *, together=True):
        """Backbone features of each view.

        With `together`, views of one size go through the encoder as one
        batch (SimCLR's TF code and SwAV's multi-crop do this: fewer, larger
        kernels, and BatchNorm statistics over all of them); otherwise each
        view is its own batch, as in BYOL's code.
        """
        by_size = {}
        for position, view in enumerate(views):
            key = tuple(view.shape[1:3]) if together else position
            by_size.setdefault(key, []).append(position)
        features = [None] * len(views)
        for positions in by_size.values():
            stacked = tf.concat([views[p] for p in positions], axis=0)
            outputs = tf.split(self.encoder(stacked, training=training), len(positions))
            for position, output in zip(positions, outputs):
                features[position] = output
        return tuple(features)

    # ---- config --------------------------------------------------------------
    def get_config(self):
        args, kwargs = self._constructor_arguments
        if args:
            kwargs = {"encoder": args[0], **kwargs}
        kwargs = {**kwargs, "run": self.run.get_config(), "name": self.name}
        return {key: _serialize(value) for key, value in kwargs.items()}

    @classmethod
    def from_config(cls, config):
        return cls(**{key: _deserialize(value) for key, value in config.items()})


def _serialize(value):
    if isinstance(value, (keras.layers.Layer, keras.initializers.Initializer,
                          LogitTransform)):
        return {"__keras__": keras.saving.serialize_keras_object(value)}
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (list, tuple)):
        return [_serialize(item) for item in value]
    if isinstance(value, dict):
        return {key: _serialize(item) for key, item in value.items()}
    return value


def _deserialize(value):
    if isinstance(value, dict) and "__keras__" in value:
        return keras.saving.deserialize_keras_object(value["__keras__"])
    if isinstance(value, dict) and "__array__" in value:
        return np.array(value["__array__"], dtype=value["dtype"])
    if isinstance(value, list):
        return [_deserialize(item) for item in value]
    if isinstance(value, dict):
        return {key: _deserialize(item) for key, item in value.items()}
    return value
