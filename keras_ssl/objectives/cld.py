"""CLD: cross-level instance-group discrimination, as an objective any method can take.

Wang, Liu, Yu, "Unsupervised Feature Learning by Cross-Level Instance-Group
Discrimination", CVPR 2021 (arXiv 2008.03813); official code
frank-xwang/CLD-UnsupervisedLearning (`train_cifar_npid_cld.py`,
`train_cifar_moco_cld.py`, `main_imagenet_moco_cld.py::grouping`,
`spectral_clustering.py::KMeans`, `models/resnet_cifar.py`, `models/ResNet.py`).

A group branch f_G (its own head on the shared backbone features, 128-d,
L2-normalised) is clustered per view with batch k-means (K groups, first-K
initialisation, 5 Lloyd iterations); each view's group features are then
classified against the *other* view's centroids, the target being the group the
same image fell into in that other view:

    L_CLD = 1/2 [ CE(g1 M2^T / T, Gamma2) + CE(g2 M1^T / T, Gamma1) ]

and the method adds lambda * L_CLD to its own instance loss. Centroids are not
detached (gradients flow through them into every member), as in the official
code; the assignments come from an argmin and carry no gradient anyway.
"""

import keras
import tensorflow as tf

from keras_ssl import ops
from keras_ssl.distribute import on_global_batch

HEADS = ("linear", "normlinear", "normmlp")


@keras.saving.register_keras_serializable(package="keras_ssl")
class UnitColumnUniform(keras.initializers.Initializer):
    """Uniform(-1, 1) entries, then every column rescaled to unit L2 norm.

    What CLD's `NormedLinear` does with `uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)`.
    The forward pass normalises the columns anyway; their initial norm sets the
    scale of the gradients (which shrink as 1/|w|), so it is kept.
    """

    def __call__(self, shape, dtype=None):
        values = keras.random.uniform(shape, minval=-1.0, maxval=1.0, dtype=dtype)
        return values / keras.ops.sqrt(
            keras.ops.sum(keras.ops.square(values), axis=0, keepdims=True))


@keras.saving.register_keras_serializable(package="keras_ssl")
class NormLinear(keras.layers.Layer):
    """Cosine layer without bias: `normalize(x) @ (W / |W|_column)` (CLD's NormLinear).

    Each output is the cosine between the input and one weight column, so it
    lies in [-1, 1]; CLD uses it as the last layer of its heads (`--normlinear`)
    and reports it as better than a plain Linear head on CIFAR-100 and ImageNet.

    Args:
        units: output width.

    Example:
    >>> layer = NormLinear(4)
    >>> layer(tf.ones([2, 8])).shape
    TensorShape([2, 4])
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer=UnitColumnUniform(), trainable=True)

    def call(self, inputs):
        inputs = tf.math.l2_normalize(inputs, axis=-1, epsilon=1e-12)
        kernel = tf.math.l2_normalize(tf.cast(self.kernel, inputs.dtype), axis=0, epsilon=1e-12)
        return tf.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def normalized_head(input_dim, hidden_dims, output_dim, *, name="head", dtype=None):
    """`Dense -> ReLU` per hidden width, then `NormLinear` (CLD's "NormMLP"/NormLinear heads).

    With no hidden widths this is CLD's NormLinear head on CIFAR; with one
    hidden layer of the feature width it is the ImageNet `--mlp --normlinear`
    head (`models/ResNet.py`: Linear 2048-2048, ReLU, NormLinear 2048-128).
    """
    layers = [keras.Input((input_dim,))]
    for index, width in enumerate(hidden_dims):
        layers.append(keras.layers.Dense(width, name=f"{name}_dense{index}", dtype=dtype))
        layers.append(keras.layers.ReLU(name=f"{name}_relu{index}", dtype=dtype))
    layers.append(NormLinear(output_dim, name=f"{name}_out", dtype=dtype))
    return keras.Sequential(layers, name=name)


def group_head(input_dim, kind="linear", output_dim=128, hidden_dim=None, *, name="group_head"):
    """CLD's group branch f_G before the L2 normalisation, in float32.

    kind: "linear" (Linear, with bias: CIFAR NPID+CLD), "normlinear" (CIFAR
    MoCo+CLD) or "normmlp" (Dense(hidden_dim or input_dim) + ReLU + NormLinear,
    the ImageNet MoCo v2+CLD head).
    """
    if kind not in HEADS:
        raise ValueError(f"head={kind!r} is not one of {', '.join(HEADS)}.")
    if kind == "linear":
        return keras.Sequential([keras.Input((input_dim,)),
                                 keras.layers.Dense(output_dim, name=f"{name}_out",
                                                    dtype="float32")], name=name)
    hidden = (hidden_dim or input_dim,) if kind == "normmlp" else ()
    return normalized_head(input_dim, hidden, output_dim, name=name, dtype="float32")


def cld_loss(groups1, groups2, assignments1, centroids1, assignments2, centroids2,
             temperature):
    """The symmetric cross-level loss of one (local) batch; float32 maths.

    Args:
        groups1, groups2: [B, D] L2-normalised group features of views 1 and 2.
        assignments1, assignments2: [B] int cluster of each row in its own view.
        centroids1, centroids2: [K, D] k-means centroids of each view.
        temperature: T_cld.

    Returns:
        (loss, accuracy): the mean over both directions of the batch-mean
        cross-entropy of `g_v M_other^T / T` against the other view's
        assignments, and the fraction of rows of view 1 whose most similar
        view-2 centroid is their view-2 group (the official "group acc").
    """
    def direction(groups, centroids, targets):
        logits = tf.matmul(tf.cast(groups, tf.float32), tf.cast(centroids, tf.float32),
                           transpose_b=True) / temperature
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(targets, tf.int32), logits=logits))
        return loss, logits

    loss12, logits12 = direction(groups1, centroids2, assignments2)
    loss21, _ = direction(groups2, centroids1, assignments1)
    hits = tf.equal(tf.argmax(logits12, axis=1, output_type=tf.int32),
                    tf.cast(assignments2, tf.int32))
    return (loss12 + loss21) / 2.0, tf.reduce_mean(tf.cast(hits, tf.float32))


@keras.saving.register_keras_serializable(package="keras_ssl")
class CLD(keras.layers.Layer):
    """Cross-level instance-group discrimination (CLD) objective.

    Owns the group head f_G; called by `Method.train_step` as
    `cld(outputs) -> (weight * L_CLD, {"cld_loss", "cld_accuracy"})` on the
    backbone features of two views (`outputs.features[views[0]]` and
    `[views[1]]`).

    Args:
        input_dim: width of the backbone features. Give it (the registry's
            `npid_cld`, `moco_v2_cld`, `byol_cld` do) so the head has its full
            shape at build time, under the strategy scope; with None the head
            is built on its first call, which is fine on one device only.
        num_groups: K, clusters per view (official: 128 NPID CIFAR-10, 200
            MoCo CIFAR-10, 100 MoCo CIFAR-100, 120 MoCo v2 ImageNet). Keep it
            at most the global batch: with fewer rows the missing initial
            centroids are zero vectors (see `keras_ssl.ops.kmeans`).
        temperature: T_cld (0.2 on CIFAR, 0.4 on ImageNet).
        weight: lambda (1.0 NPID CIFAR-10, 0.8 MoCo CIFAR-10, 0.25 ImageNet).
        group_dim: width of the group features (128, `--low-dim`).
        head: "linear", "normlinear" or "normmlp" (see `group_head`).
        hidden_dim: hidden width of the "normmlp" head (default: input_dim).
        num_iters: Lloyd iterations (5 in every official script).
        views: the two entries of `outputs.features` to contrast.

    Example:
        model = keras_ssl.methods.MoCo(encoder, symmetric=True,
                                       objectives=[CLD(512, num_groups=200, weight=0.8)])

    Choices and deviations from the official code, and why:

    * Global batch. The official code clusters each GPU's local batch
      (64 images per GPU on ImageNet, fewer than its K=120). keras_ssl's rule
      (DESIGN.md) is that k-means sees the global batch: features are
      all-gathered, the kernel runs on the whole batch (every replica computes
      the same centroids), and each replica keeps its rows' assignments. Groups
      then do not depend on the device count, 1 and N replicas give the same
      step, and K up to the global batch is meaningful. On one GPU (all the
      official CIFAR runs) the two agree.
    * Empty clusters. `keras_ssl.ops.kmeans` keeps an empty cluster's
      previous centroid; the official code turns it into a zero vector (a
      logit of 0 that can still attract rows). Only batches with empty
      clusters differ.
    * ImageNet "NormMLP" head. The official ResNet shares the hidden
      Linear+ReLU between the instance and group heads; an objective only sees
      backbone features, so `head="normmlp"` has its own hidden layer.
    * The group head runs in float32 (it is small), so under mixed precision
      the normalisations, k-means and the softmax are all float32 (the official
      code runs k-means under apex O1 fp16).
    * The official loop skips a step whose loss is NaN; here the training
      binary stops on a non-finite loss instead (`StopOnNonFiniteLoss`).
    """

    log_names = ("cld_loss", "cld_accuracy")

    def __init__(self, input_dim=None, *, num_groups=128, temperature=0.2, weight=1.0,
                 group_dim=128, head="linear", hidden_dim=None, num_iters=5,
                 views=(0, 1), **kwargs):
        kwargs.setdefault("name", "cld")
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if len(views) != 2 or views[0] == views[1]:
            raise ValueError(f"views must name two different views, got {views}.")
        self.input_dim = input_dim
        self.num_groups = int(num_groups)
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.group_dim = int(group_dim)
        self.head_kind = head
        self.hidden_dim = hidden_dim
        self.num_iters = int(num_iters)
        self.views = tuple(int(v) for v in views)
        if input_dim is not None:
            self.group_head = group_head(int(input_dim), head, self.group_dim, hidden_dim,
                                         name=f"{self.name}_group_head")
        else:
            self.group_head = None
        # No weights of its own; the head is built above (or on first call).
        self.built = True

    def group_features(self, features, training=False):
        """L2-normalised float32 group features f_G(h) of backbone features h."""
        features = tf.cast(features, tf.float32)
        if self.group_head is None:
            self.group_head = group_head(int(features.shape[-1]), self.head_kind,
                                         self.group_dim, self.hidden_dim,
                                         name=f"{self.name}_group_head")
        return tf.math.l2_normalize(self.group_head(features, training=training), axis=1)

    def _cluster(self, groups):
        """k-means on the all-gathered batch: local assignments, global centroids."""
        return on_global_batch(ops.kmeans, groups, num_clusters=self.num_groups,
                               num_iters=self.num_iters, init="first",
                               per_row=(True, False))

    def call(self, outputs, training=False):
        features = outputs.features
        if len(features) <= max(self.views):
            raise ValueError(f"CLD contrasts views {self.views} but the method gives "
                             f"backbone features of {len(features)} view(s); with "
                             f"MoCo use symmetric=True or shared_key_view.")
        first, second = (features[v] for v in self.views)
        batch = tf.shape(first)[0]
        # One pass of the head over both views (it has no batch statistics).
        groups = self.group_features(tf.concat([first, second], axis=0), training=training)
        groups1, groups2 = groups[:batch], groups[batch:]
        assignments1, centroids1 = self._cluster(groups1)
        assignments2, centroids2 = self._cluster(groups2)
        loss, accuracy = cld_loss(groups1, groups2, assignments1, centroids1,
                                  assignments2, centroids2, self.temperature)
        return self.weight * loss, {"cld_loss": loss, "cld_accuracy": accuracy}

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "num_groups": self.num_groups, "temperature": self.temperature,
                "weight": self.weight, "group_dim": self.group_dim, "head": self.head_kind,
                "hidden_dim": self.hidden_dim, "num_iters": self.num_iters,
                "views": list(self.views)}
