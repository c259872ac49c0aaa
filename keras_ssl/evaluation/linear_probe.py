"""Linear classification on frozen features: the standard linear evaluation protocol.

Features are extracted once (see `extract_features`) and a single linear layer is
fitted on them, so the probe costs seconds instead of the hours of a probe that
re-runs the encoder every epoch. Two solvers are offered:

- "sgd": a Keras `Dense` layer trained with mini-batch SGD (momentum 0.9) and
  a cosine learning-rate decay, the usual SSL linear-evaluation recipe (e.g.
  solo-learn). With standardised features, learning rate 0.1 and batch 256
  converge well within 100 epochs.
- "lbfgs": scikit-learn's multinomial `LogisticRegression` solved by L-BFGS on
  the full batch, as in CLIP's linear-probe evaluation; it has no learning rate
  to tune and is deterministic.

Both minimise mean cross-entropy + weight_decay / 2 * ||W||^2 (the bias is not
decayed), so one `weight_decay` means the same thing for either solver.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.evaluation.metrics import top_k_accuracy

_METHODS = ("sgd", "lbfgs")


def _standardize(train_features, test_features):
    # Per-dimension z-scores with train statistics. L2-normalised features have
    # tiny per-dimension variance; rescaling them makes one learning rate work
    # for any encoder and lets L-BFGS converge in a few hundred iterations.
    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0) + 1e-6
    return (train_features - mean) / std, (test_features - mean) / std


def _sgd_probe(train_x, train_y, test_x, *, num_classes, epochs, batch_size,
               learning_rate, weight_decay, seed):
    steps_per_epoch = int(np.ceil(len(train_x) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, epochs * steps_per_epoch)
    )
    # Zero initial weights: the problem is convex, and zeros make runs repeatable.
    classifier = keras.layers.Dense(num_classes, kernel_initializer="zeros")
    classifier.build((None, train_x.shape[1]))
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    optimizer.build(classifier.trainable_variables)

    # Batching before repeat keeps epochs whole; the seeded shuffle, redrawn each
    # epoch, is the only randomness.
    dataset = (
        tf.data.Dataset.from_tensor_slices((train_x, train_y))
        .shuffle(len(train_x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .repeat(epochs)
        .prefetch(tf.data.AUTOTUNE)
    )

    # The whole run is one graph call: a linear step costs microseconds, so the
    # per-step and per-epoch overhead of `fit` would dominate the run time.
    @tf.function
    def train(dataset):
        for features, labels in dataset:
            with tf.GradientTape() as tape:
                logits = classifier(features)
                cross_entropy = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                )
                # The bias is not decayed, as in the L-BFGS objective.
                penalty = 0.5 * weight_decay * tf.reduce_sum(tf.square(classifier.kernel))
                loss = cross_entropy + penalty
            gradients = tape.gradient(loss, classifier.trainable_variables)
            optimizer.apply_gradients(zip(gradients, classifier.trainable_variables))

    train(dataset)
    return keras.ops.convert_to_numpy(classifier(test_x))


def _lbfgs_probe(train_x, train_y, test_x, *, weight_decay, max_iter):
    from sklearn.linear_model import LogisticRegression

    # scikit-learn minimises C * sum(losses) + ||W||^2 / 2; dividing by C * N
    # gives mean loss + ||W||^2 / (2 C N), so C = 1 / (weight_decay * N).
    if weight_decay > 0:
        regularization = {"C": 1.0 / (weight_decay * len(train_x))}
    else:
        regularization = {"C": np.inf}
    classifier = LogisticRegression(max_iter=max_iter, tol=1e-6, **regularization)
    classifier.fit(train_x, train_y)
    # Decision columns follow classifier.classes_, which lacks any class absent
    # from the training labels; the caller scatters them into num_classes columns.
    return classifier.classes_, classifier.decision_function(test_x)


def linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    num_classes,
    epochs=100,
    batch_size=256,
    learning_rate=0.1,
    weight_decay=1e-4,
    method="sgd",
    standardize=True,
    max_iter=1000,
    seed=0,
):
    """Trains a linear classifier on frozen features and reports test accuracy.

    Args:
        train_features: float array [N, D] (e.g. from `extract_features`).
        train_labels: int array [N] in [0, num_classes).
        test_features: float array [M, D].
        test_labels: int array [M].
        num_classes: number of classes.
        epochs: passes over the training features ("sgd" only).
        batch_size: examples per SGD step ("sgd" only).
        learning_rate: peak learning rate of the cosine schedule ("sgd" only);
            0.1 suits standardised features, use ~10 without standardisation.
        weight_decay: L2 coefficient on the weights: the objective is mean
            cross-entropy + weight_decay / 2 * ||W||^2 for both solvers.
        method: "sgd" (Keras, mini-batch) or "lbfgs" (scikit-learn, full batch).
        standardize: z-score each feature dimension with train statistics first.
        max_iter: L-BFGS iteration cap ("lbfgs" only).
        seed: shuffling seed ("sgd" only; "lbfgs" is deterministic).

    Returns:
        dict(top1=float, top5=float), fractions in [0, 1].

    Example:
        >>> train = extract_features(encoder, train_ds, normalize=False)
        >>> test = extract_features(encoder, test_ds, normalize=False)
        >>> linear_probe(*train, *test, num_classes=10, method="lbfgs")
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    train_x = np.asarray(train_features, np.float32)
    test_x = np.asarray(test_features, np.float32)
    train_y = np.asarray(train_labels, np.int64).reshape(-1)
    test_y = np.asarray(test_labels, np.int64).reshape(-1)
    if standardize:
        train_x, test_x = _standardize(train_x, test_x)

    if method == "sgd":
        scores = _sgd_probe(
            train_x, train_y, test_x, num_classes=num_classes, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=weight_decay, seed=seed,
        )
    else:
        classes, decision = _lbfgs_probe(
            train_x, train_y, test_x, weight_decay=weight_decay, max_iter=max_iter
        )
        if decision.ndim == 1:  # two classes: sklearn returns the logit of classes_[1]
            decision = np.stack([np.zeros_like(decision), decision], axis=1)
        scores = np.full([len(test_x), num_classes], -np.inf, np.float64)
        scores[:, classes] = decision
    return {
        "top1": top_k_accuracy(scores, test_y, k=1),
        "top5": top_k_accuracy(scores, test_y, k=5),
    }
