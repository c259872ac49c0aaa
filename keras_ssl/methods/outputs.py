"""What a method's `forward` returns: one dataclass per family of methods.

Every family carries `features` (the backbone features of each view, what
objectives such as CLD and the online probe read) and the batch's `index` and
`label`; the other fields say what the tensors are. Each field that holds one
tensor per view is a tuple in view order.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Outputs:
    """The fields every family shares.

    Attributes:
        features: backbone features of each view the online encoder saw.
        index: int64 [B] dataset indices of the rows.
        label: int64 [B] classes of the rows (-1 unknown).
    """

    features: tuple = ()
    index: Optional[tf.Tensor] = None
    label: Optional[tf.Tensor] = None


@dataclasses.dataclass(frozen=True)
class ContrastiveOutputs(Outputs):
    """Instance discrimination (SimCLR, MoCo, NPID, InterCLR).

    Attributes:
        queries: the online embeddings that are classified, one per query view.
        keys: the positives they are classified against when these come from
            a momentum network (MoCo: one key per query, detached); empty when
            the positives are other queries (SimCLR) or bank rows (NPID).
        extra_negatives: [B, D] one more negative per row for the first
            query (BG_Swaps' extra negative, key-encoded), or None.
        extra_negative_used: bool [B], the rows whose extra negative counts.
    """

    queries: tuple = ()
    keys: tuple = ()
    extra_negatives: Optional[tf.Tensor] = None
    extra_negative_used: Optional[tf.Tensor] = None


@dataclasses.dataclass(frozen=True)
class DistillationOutputs(Outputs):
    """A student regressing a teacher (BYOL, MSF, CMSF).

    Attributes:
        projections: the student's projections, one per student view.
        predictions: the student's predictor outputs, one per student view.
        targets: the teacher's detached projections, one per teacher view.
    """

    projections: tuple = ()
    predictions: tuple = ()
    targets: tuple = ()


@dataclasses.dataclass(frozen=True)
class PrototypeOutputs(Outputs):
    """Prediction of soft assignments to prototypes (SwAV, MIRA).

    Attributes:
        embeddings: the unit-norm embeddings of each crop.
        scores: each crop's scores against the prototypes (logits before
            the temperature).
        assignments: the detached soft assignments (SwAV's Sinkhorn codes,
            MIRA's pseudo-labels) of the crops that give targets, in order.
    """

    embeddings: tuple = ()
    scores: tuple = ()
    assignments: tuple = ()
