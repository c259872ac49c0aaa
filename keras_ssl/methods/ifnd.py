"""IFND: SimCLR with incremental false negative detection, a preset of `SimCLR`, not a subclass.

Chen, Lin, Yang, Lai, Hsu, "Incremental False Negative Detection for
Contrastive Learning", ICLR 2022 (arXiv 2106.03719; OpenReview dDjSKKA5TP1).

Code status: a RECONSTRUCTION. The official repository (tsaishien-chen/IFND)
could not be read and neither could the paper beyond its abstract, so the
method follows shared/reference/methods-b.md §2 and the "smallest CPU recipe"
of methods-c.md §2 (label results "IFND-like"). The elimination is the logit
transform `keras_ssl.losses.false_negative_elimination.FalseNegativeElimination`;
the registry name `ifnd` builds `SimCLR` with it:

    methods.get("ifnd", encoder=encoder, temperature=0.5,
                run=RunContext(num_examples=10000, steps_per_epoch=39, epochs=10),
                logit_transforms=[{"ifnd": {"cluster_counts": (10, 20, 50)}}])

and MoCo v2 takes it by keyword (its queue then keeps each row's dataset
index, so queued negatives are looked up by example):

    methods.get("moco_v2", encoder=encoder, run=run,
                logit_transforms=[{"ifnd": {"cluster_counts": (10, 20, 50)}}])

Training needs the epoch feature pass (`keras_ssl.training.EpochFeaturePass`,
which `pretrain` adds): the base routes it to the transform.

What the notes give (abstract-level, [UNVERIFIED] against the paper):

- Before epochs, cluster the whole training set at several granularities;
  accept only the examples whose assignment is confident, a share alpha(e)
  that grows from 0 to 100% over training ("incremental").
- Remove from each anchor's softmax denominator the negatives that share its
  pseudo-label when both are accepted (elimination, the variant the paper
  keeps; attraction, treating them as positives, was its worse ablation).
  Unaccepted anchors keep the instance loss; the positive is never removed.

Guessed choices, each ours:

1. Base: SimCLR (methods-c.md's recipe), at SimCLR's recipe for each scale,
   so `ifnd` against `simclr` changes one thing.
2. Granularities: K = (10, 20, 50) on CIFAR-10 (methods-c.md); the ImageNet
   recipe scales them with the class count (keras_ssl.configs.ifnd).
3. Schedule: alpha(e) = e / (E - 1) for the 0-based epoch e of E epochs,
   methods-c.md's e / E read with E the index of the last epoch, so the
   first epoch is plain SimCLR (alpha = 0, no clustering at all) and the
   last accepts every example (alpha = 1). `initial_acceptance` and
   `final_acceptance` move the two ends.
4. Confidence: the mean over levels of the cosine of an example to its
   centroid. Acceptance gates an example's labels at every level at once
   (choice 5), so its confidence summarises every level; the finest level's
   alone would accept examples at the edge of a coarse cluster, whose coarse
   label removes the most negatives. Ties go to the lower dataset index.
5. Levels: FN(i) is the union over levels (same label at ANY level,
   methods-c.md), not methods-b.md's average of one loss per level; one
   acceptance per example for all levels.
6. Features clustered: the method's `epoch_features`, i.e. the encoder's
   (backbone) features of the un-augmented training images in inference
   mode, the representation the kNN monitor and the linear probe evaluate,
   by spherical k-means (cosine; `keras_ssl.ops.dataset_kmeans`: k-means++,
   10 restarts, at most 300 Lloyd iterations, ProPos's settings), each level
   on its own, seeded by the run's seed and the epoch (a resumed run
   clusters the same way).
7. When: before each epoch with alpha > 0, by the epoch feature pass; the
   labels hold for the whole epoch. They are checkpointed; a resumed run
   whose checkpoint holds the labels of its epoch keeps them, and one that
   re-clusters sees the weights the uninterrupted run saw, with its seed.
8. Columns: only negatives in the softmax are candidates; a column with
   target mass (the positive, or a soft target of an earlier transform) and
   SimCLR's anchor-against-itself column are never removed. In MoCo's queue
   an older key of the anchor's own example is removed when accepted (it is
   the same image). Removal masks the column out (and sets its logit to a
   large negative, finite in float16).
9. Distribution: the labels are replicated state written between epochs;
   every replica looks up the gathered batch's (or queue's) indices, so 1 and
   N replicas remove the same columns.
"""

from keras_ssl.losses.false_negative_elimination import FalseNegativeElimination
from keras_ssl.methods.transform_preset import TransformPreset

PRESET = TransformPreset(
    base="simclr",
    transform=FalseNegativeElimination,
    defaults=dict(cluster_counts=(10, 20, 50), initial_acceptance=0.0, final_acceptance=1.0,
                  kmeans_max_iters=300, kmeans_restarts=10),
    doc="""IFND-like elimination on SimCLR (a reconstruction; no official code read):
    K = (10, 20, 50), alpha from 0 in the first epoch to 1 in the last. See
    `keras_ssl.methods.ifnd`.
    """)
