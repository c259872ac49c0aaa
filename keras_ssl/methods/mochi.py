"""MoCHi: MoCo v2 with hard negative mixing, a preset of `MoCo`, not a subclass.

Kalantidis, Sariyildiz, Pion, Weinzaepfel, Larlus, "Hard Negative Mixing for
Contrastive Learning", NeurIPS 2020 (arXiv 2010.01028).

Code status: no official code was released (NAVER LABS Europe published
checkpoints only), so this is a reconstruction from the paper's equations,
checked against two third-party PyTorch ports: davidsvy/hard-negative-mixing
(`src/moco.py` @02426508) and MaugrimEP/MocoAndMochi (`utils_mochi.py`
@76eebd1f). The mixing is the logit transform
`keras_ssl.losses.hard_negative_mixing.HardNegativeMixing`; the registry name
`mochi` builds `MoCo` with it:

    methods.get("mochi", encoder=encoder, queue_size=4096,
                logit_transforms=[{"mochi": {"num_hard": 256, "num_mixed": 256}}])

(MoCo's arguments as keywords; the mixing's in a `{"mochi": {...}}` spec, over
the defaults below.)

What is taken from where:

- Synthetic points h = l2n(a n_i + (1-a) n_j), a ~ U(0,1), and
  h' = l2n(b q + (1-b) n_j), b ~ U(0, 0.5), from each query's top-N queue
  negatives ranked without gradient; q.h / t appended with target 0; no
  gradient through h or h' (q detached inside h'); only keys enqueued. The
  paper and both ports agree on all of this.
- Defaults (N, s, s') = (1024, 1024, 128): the paper's ImageNet-1k
  configuration as recalled in shared/reference/methods-a.md §8, [UNVERIFIED]
  against the paper's tables. MoCo's own defaults (queue 65,536, t = 0.2,
  m = 0.999, MLP head) are the paper's MoCo v2 base.

Guessed choices (the paper could not be read here):

- n_i != n_j within a pair (sampling without replacement, as MaugrimEP does
  and methods-c.md §8 advises; davidsvy allows n_i = n_j).
- Warm-up: the default mixes from the first step (start_epoch=0). The paper
  mentions starting the mixing after some epochs, [UNVERIFIED] length; the
  configs set one (keras_ssl.configs.mochi).
- One warm-up for both kinds of synthetic points (davidsvy starts them at
  different steps).
- Queue columns masked by an earlier transform are left out of the hard set.
- Random draws: per query and synthetic point, from the step's seeds
  (stream 8 folded with the direction), identical on every replica count.
"""

from keras_ssl.losses.hard_negative_mixing import HardNegativeMixing
from keras_ssl.methods.transform_preset import TransformPreset

PRESET = TransformPreset(
    base="moco_v2",
    transform=HardNegativeMixing,
    defaults=dict(num_hard=1024, num_mixed=1024, num_query_mixed=128, start_epoch=0),
    doc="""MoCHi(N=1024, s=1024, s'=128) on MoCo v2 (the paper's ImageNet-1k setting,
    [UNVERIFIED]), mixing from the first step. See `keras_ssl.methods.mochi`.
    """)
