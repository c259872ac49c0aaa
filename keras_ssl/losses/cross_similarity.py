"""XMoCo's cross-similarity regularisers, a joint logit transform of symmetric MoCo.

Seyfi, Banitalebi-Dehkordi, Zhang, "Extending Momentum Contrast with Cross
Similarity Consistency Regularization", IEEE TCSVT 32(10), 2022; arXiv
2206.04676. No official code is public.

RECONSTRUCTION. Only the abstract could be read. It says two things: the
similarity of any pair of images, positive or negative, should be preserved
under the pretext transformations ("cross consistency regularisation"), and
the similarity over the negative pairs of a batch should be uniformly
distributed. Both are added to MoCo's loss as regularisers. The equations
below are the reading of shared/reference/methods-b.md §5 (methods-c.md
"§5 XMoCo" could not check them either), not the paper's. With views 1 and 2,
unit-norm queries Q1, Q2 (online encoder) and keys K1, K2 (momentum encoder,
no gradient), and the cross-similarities S12 = Q1 K2^T, S21 = Q2 K1^T over the
batch (B x B):

    L = L_MoCo,symmetric
        + lambda_cc * ||S12 - S21||_F^2 / B^2
        + lambda_u * 1/2 sum_{S in (S12, S21)} mean_i KL(U || softmax_{j != i}(S_ij / tau))

Guessed choices, each an assumption of this reconstruction:

1. S12 and S21 pair the queries of one view with the keys of the other, the
   two directions of symmetric MoCo (direction 0: Q1 against K2; direction
   1: Q2 against K1). With q ~ k, S21 ~ S12^T, so the term asks that the
   similarity of image i's view 1 to image j's view 2 equal that of i's view
   2 to j's view 1, for positives (diagonal) and negatives alike.
2. The consistency is a squared Frobenius distance divided by B^2
   (`consistency="squared"`); `consistency="kl"` instead takes the symmetric
   KL, 1/2 (KL(p12 || p21) + KL(p21 || p12)), between the row softmaxes
   p = softmax(S_i / tau), averaged over rows.
3. The uniformity's negatives are the in-batch keys of the other images
   (columns j != i of S12 and of S21), not the queue; the KL runs from the
   uniform distribution U to the softmax, and the two directions are averaged.
4. tau (`temperature`) defaults to MoCo's contrastive temperature; the paper's
   value is unknown.
5. Both terms are regularisers beside InfoNCE, never instead of it: the
   consistency alone is minimised by collapse.
6. lambda_cc = lambda_u = 0.1 are the notes' tuned placeholders, not values
   from the paper.

Under MirroredStrategy each replica holds B local query rows. The keys carry
no gradient, so they are all-gathered and every local row sees the G global
keys, its positive at column `global_offset + i`: the terms are those of the
global G x G matrices, computed a block of rows at a time. Each term is a
mean over the local rows, which the base's division of the loss by the
number of replicas and sum of gradients turns into the mean over global rows.
This transform is therefore the one place in `losses/` that gathers; the
formulas themselves (`cross_similarity_consistency`, `negative_uniformity`)
are pure functions of the row blocks.
"""

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses.logit_transforms import LogitTransform

CONSISTENCY_FORMS = ("squared", "kl")


def cross_similarity_consistency(s12, s21, *, form="squared", temperature=1.0):
    """Disagreement of two blocks of cross-similarities, a mean over their rows.

    Args:
        s12, s21: [B, G] similarities (rows: local queries of one view;
            columns: global keys of the other view).
        form: "squared": the mean of (s12 - s21)^2 over the block, i.e.
            ||S12 - S21||_F^2 / G^2 when the block is the whole G x G matrix;
            "kl": the symmetric KL between the row softmaxes at
            `temperature`, averaged over rows.
        temperature: softmax temperature of the "kl" form.
    """
    s12 = tf.cast(s12, tf.float32)
    s21 = tf.cast(s21, tf.float32)
    if form == "squared":
        return tf.reduce_mean(tf.square(s12 - s21))
    if form == "kl":
        log_p12 = tf.nn.log_softmax(s12 / temperature, axis=1)
        log_p21 = tf.nn.log_softmax(s21 / temperature, axis=1)
        # 1/2 (KL(p12||p21) + KL(p21||p12)) = 1/2 sum_j (p12 - p21)(log p12 - log p21).
        symmetric_kl = 0.5 * tf.reduce_sum(
            (tf.exp(log_p12) - tf.exp(log_p21)) * (log_p12 - log_p21), axis=1)
        return tf.reduce_mean(symmetric_kl)
    raise ValueError(f"consistency form must be one of {CONSISTENCY_FORMS}, got {form!r}.")


def negative_uniformity(similarities, positive_columns, *, temperature):
    """mean_i KL(U || softmax over row i's negatives of similarities / temperature).

    Args:
        similarities: [B, G] similarities of B queries to G keys.
        positive_columns: [B] int column of each row's positive; the other
            G - 1 columns are its negatives.
        temperature: softmax temperature.

    KL(U || p) = -log(G - 1) - mean_j log p_j over the negatives: 0 exactly
    when every negative of the row has the same similarity. With no
    negatives (G = 1) it is 0.
    """
    similarities = tf.cast(similarities, tf.float32)
    columns = tf.shape(similarities)[1]
    negatives = tf.logical_not(tf.cast(
        tf.one_hot(positive_columns, columns, dtype=tf.int32), tf.bool))
    # The positive leaves the softmax (a large negative logit, not -inf, so
    # its masked-out log-probability stays finite under tf.where's gradient).
    log_p = tf.nn.log_softmax(
        tf.where(negatives, similarities / temperature, tf.constant(-1e9, tf.float32)),
        axis=1)
    count = tf.cast(tf.maximum(columns - 1, 1), tf.float32)
    mean_log_p = tf.reduce_sum(tf.where(negatives, log_p, 0.0), axis=1) / count
    has_negatives = tf.cast(columns > 1, tf.float32)
    return has_negatives * tf.reduce_mean(-tf.math.log(count) - mean_log_p)


def _check_weight(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number (a regulariser's weight), "
                         f"got {value!r}.")


class CrossSimilarityConsistency(LogitTransform):
    """XMoCo's two regularisers over symmetric MoCo's two directions (a reconstruction).

    Joint transform: it receives both directions, (Q1 against K2, Q2 against
    K1), as `queue_logits` builds them for `MoCo(symmetric=True)`, and adds
    to each the same two extra losses (so the average over directions counts
    them once); the logits, targets and mask are left as they are, so
    InfoNCE stays the main loss. See the module docstring for the formulas
    and every guessed choice.

    Args:
        consistency_weight: lambda_cc, the weight of the cross-similarity
            consistency (0.1, a placeholder of the notes, not the paper's).
        uniformity_weight: lambda_u, the weight of the uniform-negatives term
            (0.1, likewise a placeholder).
        consistency: "squared" (||S12 - S21||_F^2 / B^2) or "kl" (symmetric
            KL between the row softmaxes at `temperature`).
        temperature: tau of the softmaxes (the uniformity's, and the "kl"
            consistency's); None uses the contrastive loss's temperature.

    Adds the extra losses `xmoco_consistency` (lambda_cc times the term) and
    `xmoco_uniformity` (lambda_u times the term, averaged over directions).
    """

    spec_name = "xmoco"
    joint = True
    log_names = ("xmoco_consistency", "xmoco_uniformity")

    def __init__(self, *, consistency_weight=0.1, uniformity_weight=0.1,
                 consistency="squared", temperature=None):
        _check_weight("consistency_weight", consistency_weight)
        _check_weight("uniformity_weight", uniformity_weight)
        if consistency not in CONSISTENCY_FORMS:
            raise ValueError(f"consistency must be one of {CONSISTENCY_FORMS}, "
                             f"got {consistency!r}.")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive (or None for the contrastive "
                             f"loss's), got {temperature!r}.")
        self.consistency_weight = float(consistency_weight)
        self.uniformity_weight = float(uniformity_weight)
        self.consistency = consistency
        self.temperature = temperature

    def __call__(self, directions, ctx):
        directions = tuple(directions)
        if len(directions) != 2:
            raise ValueError(
                f"XMoCo's cross-similarity terms compare the two directions of symmetric "
                f"MoCo (view 1's queries against view 2's keys, and view 2's against "
                f"view 1's); got {len(directions)} direction(s). Build MoCo with "
                f"symmetric=True (the `xmoco` registry name does).")
        first, second = directions
        if any(item.queries is None or item.positives is None for item in directions):
            raise ValueError("XMoCo needs each direction's queries and positives (keys); "
                             "build its logits with queue_logits.")
        temperature = self.temperature or first.temperature
        q1, q2 = first.queries, second.queries
        # The keys are targets: no gradient reaches them (MoCo's keys have
        # none anyway), which is also what lets them be gathered freely.
        keys2 = distribute.all_gather(tf.stop_gradient(tf.cast(first.positives, tf.float32)))
        keys1 = distribute.all_gather(tf.stop_gradient(tf.cast(second.positives, tf.float32)))
        local_batch = tf.shape(q1)[0]
        positive_columns = distribute.global_offset(local_batch) + tf.range(local_batch)
        s12 = tf.matmul(tf.cast(q1, tf.float32), keys2, transpose_b=True)
        s21 = tf.matmul(tf.cast(q2, tf.float32), keys1, transpose_b=True)

        consistency = self.consistency_weight * cross_similarity_consistency(
            s12, s21, form=self.consistency, temperature=temperature)
        uniformity = self.uniformity_weight * 0.5 * (
            negative_uniformity(s12, positive_columns, temperature=temperature)
            + negative_uniformity(s21, positive_columns, temperature=temperature))
        terms = {"xmoco_consistency": consistency, "xmoco_uniformity": uniformity}
        return tuple(item.replace(extra_losses={**item.extra_losses, **terms})
                     for item in directions)
