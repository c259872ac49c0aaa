"""MoCHi's hard negative mixing (Kalantidis et al., NeurIPS 2020) as a logit transform.

For each query q, take the N negatives of the queue it scores highest (its
hard set) and synthesise, per query, two kinds of harder negatives:

    h  = l2n(a n_i + (1 - a) n_j),   a ~ U(0, 1),   n_i != n_j in the hard set   (s of them)
    h' = l2n(b q + (1 - b) n_j),     b ~ U(0, 0.5), n_j in the hard set          (s' of them)

Their logits q.h / t are appended after the queue's columns with target 0.
The synthetic points are constants (no gradient flows into the queue or into
the copy of q inside h') and are never enqueued: the transform only returns
logits, and MoCo enqueues its keys alone.

There is no official code; this follows the paper's equations and two
third-party ports (davidsvy/hard-negative-mixing `src/moco.py`,
MaugrimEP/MocoAndMochi `utils_mochi.py`). Each query mixes its *own* hard
set (MaugrimEP indexes query 0's set for every query, a bug). Two choices
are ours:

- n_i and n_j of a mixed pair are distinct, i.e. drawn without replacement
  (MaugrimEP's `randperm(N)[:2]`, and what shared/reference/methods-c.md
  advises; davidsvy's `randint` pair can repeat an index, which makes
  h = n_i, no harder than the queue itself). Pairs of different synthetic
  points are drawn independently, so s may exceed N.
- Queue columns an earlier transform masked out (a false negative) are not
  eligible for the hard set.

Random draws are made for the global batch from the step context's seeds and
sliced to this replica's rows, so 1 and N replicas train alike. (TensorFlow's
stateless draws for one seed differ between XLA and its plain kernels, so a
run with whole-step jit_compile mixes other points than one without, as
MoCo's shuffle does; each is deterministic.)
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses.logit_transforms import ContrastiveLogits, LogitTransform

# Stream of `StepContext.seed_for` for the mixing draws (MoCo's shuffle uses
# 0, InterCLR 1); the direction is folded in on top.
MIXING_STREAM = 8
# The query's share in h' stays below one half (the paper; davidsvy's
# `beta_hard = 0.5`, MaugrimEP's `rand / 2`), so h' stays nearer its negative.
MAX_QUERY_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class MixingDraws:
    """The random choices of one direction's mixing, one row per query.

    Attributes:
        first, second: int32 [B, s] positions in the query's hard set (in
            [0, N), first != second) of the two negatives each h mixes.
        alpha: float32 [B, s] weight of `first` in each h, in [0, 1).
        partner: int32 [B, s'] position in the hard set of the negative each
            h' mixes with the query.
        beta: float32 [B, s'] weight of the query in each h', in [0, 0.5).
    """

    first: tf.Tensor
    second: tf.Tensor
    alpha: tf.Tensor
    partner: tf.Tensor
    beta: tf.Tensor

    def rows(self, start, count):
        """The draws of rows [start, start + count)."""
        return MixingDraws(*(getattr(self, field.name)[start:start + count]
                             for field in dataclasses.fields(self)))


def draw_mixing(seed, num_rows, *, num_hard, num_mixed, num_query_mixed):
    """Draws the choices of `num_rows` queries from the stateless `seed` (int32 [2]).

    The second index of a pair is the first plus an offset in [1, N), modulo
    N: every ordered pair of distinct positions is equally likely.
    """
    seeds = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(5)]
    pair_shape = tf.stack([num_rows, num_mixed])
    query_shape = tf.stack([num_rows, num_query_mixed])
    first = tf.random.stateless_uniform(pair_shape, seeds[0], minval=0, maxval=num_hard,
                                        dtype=tf.int32)
    # maxval = max(N, 2) keeps the op valid when N = 1 and s = 0 (no pairs drawn).
    offset = tf.random.stateless_uniform(pair_shape, seeds[1], minval=1,
                                         maxval=max(num_hard, 2), dtype=tf.int32)
    return MixingDraws(
        first=first,
        second=(first + offset) % num_hard,
        alpha=tf.random.stateless_uniform(pair_shape, seeds[2]),
        partner=tf.random.stateless_uniform(query_shape, seeds[3], minval=0,
                                            maxval=num_hard, dtype=tf.int32),
        beta=tf.random.stateless_uniform(query_shape, seeds[4], maxval=MAX_QUERY_SHARE))


def hard_set(logits: ContrastiveLogits, num_hard):
    """int32 [B, N]: the rows of `logits.negatives` each query scores highest.

    Ranks the queue columns (1 .. M of MoCo's layout) without gradient;
    columns masked out are never chosen while N unmasked ones remain.
    """
    num_negatives = tf.shape(logits.negatives)[0]
    scores = tf.stop_gradient(logits.logits[:, 1:1 + num_negatives])
    if logits.mask is not None:
        scores = tf.where(logits.mask[:, 1:1 + num_negatives], scores, scores.dtype.min)
    # Sorted, so a position in the hard set names the same row on every
    # replica and in the tests (best first; ties to the lower row).
    return tf.math.top_k(scores, k=num_hard, sorted=True).indices


def synthetic_negatives(logits: ContrastiveLogits, draws: MixingDraws, num_hard):
    """float32 [B, s + s', D]: the unit-norm h of each query, then its h', without gradient."""
    hard = hard_set(logits, num_hard)
    negatives = tf.stop_gradient(tf.cast(logits.negatives, tf.float32))

    # Positions are mapped to queue rows before gathering vectors, so the
    # peak is [B, s + s', D], not the ports' [B, N, D] copy of every hard set.
    def pick(positions):  # [B, k] positions in each query's own hard set -> [B, k, D]
        return tf.gather(negatives, tf.gather(hard, positions, batch_dims=1))

    alpha = draws.alpha[..., None]
    mixed = alpha * pick(draws.first) + (1.0 - alpha) * pick(draws.second)
    beta = draws.beta[..., None]
    query = tf.stop_gradient(logits.queries)[:, None, :]
    query_mixed = beta * query + (1.0 - beta) * pick(draws.partner)
    return tf.stop_gradient(tf.math.l2_normalize(tf.concat([mixed, query_mixed], 1), axis=-1))


def mix_hard_negatives(logits: ContrastiveLogits, draws: MixingDraws, *, num_hard,
                       active=True):
    """`logits` with one column per synthetic negative of `draws` appended.

    Args:
        logits: MoCo's queue layout (`queue_logits`): the positive in column
            0, then one column per row of `logits.negatives`.
        draws: this replica's rows of the random choices.
        num_hard: N, the size of each query's hard set.
        active: bool scalar; where False the new columns are masked out, so
            the loss is exactly the one without them (the warm-up).

    Logs `mochi_synthetic_cosine` (mean q.h over the synthetic points) and
    `mochi_above_positive` (the fraction of synthetic logits above the
    positive's), computed whether or not the columns are active.
    """
    synthetic = synthetic_negatives(logits, draws, num_hard)
    cosine = tf.einsum("bd,bsd->bs", logits.queries, synthetic)
    rows = tf.shape(logits.logits)[0]
    count = tf.shape(synthetic)[1]
    mask = logits.mask
    if mask is None:
        mask = tf.ones_like(logits.logits, tf.bool)
    new_mask = tf.fill(tf.stack([rows, count]), tf.convert_to_tensor(active, tf.bool))
    detached = tf.stop_gradient(cosine)
    logs = {"mochi_synthetic_cosine": tf.reduce_mean(detached),
            "mochi_above_positive": tf.reduce_mean(tf.cast(
                detached / logits.temperature > tf.stop_gradient(logits.logits[:, :1]),
                tf.float32))}
    return logits.replace(
        logits=tf.concat([logits.logits, cosine / logits.temperature], axis=1),
        targets=tf.concat([logits.targets, tf.zeros(tf.stack([rows, count]),
                                                    logits.targets.dtype)], axis=1),
        mask=tf.concat([mask, new_mask], axis=1),
        logs={**logits.logs, **logs})


class HardNegativeMixing(LogitTransform):
    """MoCHi(N, s, s'): per-query synthetic hard negatives appended to MoCo's logits.

    Args:
        num_hard: N, the queue negatives each query mixes from (its top N by
            q.n). At most the queue size.
        num_mixed: s, mixes of two hard negatives per query.
        num_query_mixed: s', mixes of the (detached) query with one hard
            negative per query.
        start_epoch: first 0-based epoch that mixes (needs the run's
            `steps_per_epoch`); before it the synthetic columns are masked
            out and the loss is MoCo's.
        start_step: the same warm-up counted in optimizer steps; give one of
            the two.

    With s = s' = 0 it changes nothing (the MoCo baseline of an ablation).
    Expects MoCo's queue layout (`queue_logits`); it uses stream
    `MIXING_STREAM` of the step's seeds, with the direction folded in.

    Example:
    >>> from keras_ssl.methods import get
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = get("moco_v2", encoder=tiny_backbone(), queue_size=64,
    ...             logit_transforms=[HardNegativeMixing(num_hard=16, num_mixed=16,
    ...                                                  num_query_mixed=4)])
    """

    spec_name = "mochi"

    def __init__(self, *, num_hard=1024, num_mixed=1024, num_query_mixed=128, start_epoch=0,
                 start_step=0):
        for name, value in (("num_mixed", num_mixed), ("num_query_mixed", num_query_mixed),
                            ("start_epoch", start_epoch), ("start_step", start_step)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"MoCHi's {name} must be an int >= 0, got {value!r}.")
        if not isinstance(num_hard, int) or num_hard < 1:
            raise ValueError(f"MoCHi's num_hard (N) must be an int >= 1, got {num_hard!r}.")
        if num_mixed and num_hard < 2:
            raise ValueError(f"MoCHi mixes pairs of distinct hard negatives: num_mixed="
                             f"{num_mixed} needs num_hard >= 2, got {num_hard}.")
        if start_epoch and start_step:
            raise ValueError("Give MoCHi's warm-up as start_epoch or as start_step, not both "
                             f"(got {start_epoch} and {start_step}).")
        self.num_hard = num_hard
        self.num_mixed = num_mixed
        self.num_query_mixed = num_query_mixed
        self.start_epoch = start_epoch
        self.start_step = start_step
        self.log_names = (("mochi_synthetic_cosine", "mochi_above_positive")
                          if num_mixed + num_query_mixed else ())

    def _start_step(self, ctx):
        if not self.start_epoch:
            return self.start_step
        if not ctx.steps_per_epoch:
            raise ValueError(
                f"MoCHi's start_epoch={self.start_epoch} needs the run's steps per epoch: "
                "build the method with run=RunContext(steps_per_epoch=...), or give "
                "start_step instead.")
        return self.start_epoch * ctx.steps_per_epoch

    def __call__(self, logits, ctx):
        if not self.num_mixed + self.num_query_mixed:
            return logits
        if logits.negatives is None or logits.queries is None:
            raise ValueError("MoCHi mixes the negatives of a queue: it needs MoCo's queue "
                             "logits (queries and negatives), e.g. MoCo(logit_transforms="
                             "[HardNegativeMixing(...)]).")
        queue_size = logits.negatives.shape[0]
        if queue_size is not None and queue_size < self.num_hard:
            raise ValueError(f"MoCHi's num_hard={self.num_hard} exceeds the {queue_size} "
                             "negatives of the queue.")
        # The same draws for the whole global batch on every replica; each
        # keeps its own rows.
        local_rows = tf.shape(logits.logits)[0]
        seed = tf.random.experimental.stateless_fold_in(ctx.seed_for(MIXING_STREAM),
                                                        logits.direction)
        draws = draw_mixing(seed, local_rows * distribute.num_replicas(),
                            num_hard=self.num_hard, num_mixed=self.num_mixed,
                            num_query_mixed=self.num_query_mixed)
        draws = draws.rows(distribute.global_offset(local_rows), local_rows)
        active = tf.greater_equal(ctx.step, tf.cast(self._start_step(ctx), ctx.step.dtype))
        return mix_hard_negatives(logits, draws, num_hard=self.num_hard, active=active)
