"""XMoCo: symmetric MoCo v2 with cross-similarity regularisers (a reconstruction).

Seyfi, Banitalebi-Dehkordi, Zhang, "Extending Momentum Contrast with Cross
Similarity Consistency Regularization", IEEE TCSVT 2022; arXiv 2206.04676.
No official code is public and only the abstract could be read, so the
regularisers are a reconstruction (shared/reference/methods-b.md §5): see
`keras_ssl.losses.cross_similarity` for the formulas and each guessed choice
(which similarity matrices, the squared-Frobenius form of the consistency,
in-batch negatives and the KL direction of the uniformity term, tau, the
weights). Do not report results of it as the paper's method.

The registry name `xmoco` builds `MoCo(symmetric=True)` with a
`CrossSimilarityConsistency` transform:

    methods.get("xmoco", encoder=encoder)
    # the same as
    methods.get("moco_v2", encoder=encoder, symmetric=True,
                logit_transforms=[{"xmoco": {"consistency_weight": 0.1,
                                             "uniformity_weight": 0.1}}])

The recipes at every scale are in `keras_ssl.configs.xmoco`.
"""

from keras_ssl.losses.cross_similarity import CrossSimilarityConsistency
from keras_ssl.methods.transform_preset import TransformPreset


class _SymmetricPreset(TransformPreset):
    """A preset that refuses `symmetric=False` when the method is built, not at its first step."""

    def arguments(self, kwargs):
        kwargs = super().arguments(kwargs)
        if not kwargs.get("symmetric"):
            raise ValueError("xmoco compares the two directions of symmetric MoCo (view 1's "
                             "queries against view 2's keys and the reverse); it cannot run "
                             "with symmetric=False.")
        return kwargs


PRESET = _SymmetricPreset(
    base="moco_v2",
    transform=CrossSimilarityConsistency,
    defaults=dict(consistency_weight=0.1, uniformity_weight=0.1, consistency="squared",
                  temperature=None),
    method_defaults=dict(symmetric=True),
    doc="""XMoCo on MoCo v2 (reconstruction; no official code).

    Defaults: lambda_cc = lambda_u = 0.1, the tuned placeholders of
    methods-c.md "§5 XMoCo" (the paper's values are unknown); the squared
    Frobenius consistency; tau = MoCo's temperature; MoCo's own defaults
    otherwise (ImageNet: queue 65,536, t=0.2, m=0.999), made symmetric,
    which the two cross-similarity matrices need.
    """)
