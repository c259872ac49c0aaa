"""ASCL: MoCo with adaptive soft targets, a preset of `MoCo`, not a subclass.

Feng and Patras, "Adaptive Soft Contrastive Learning", ICPR 2022 (arXiv
2207.11163). Official code: MrChenFeng/ASCL_ICPR2022 @b31e15b5 (`model.py`
for CIFAR/STL/Tiny-ImageNet with `main.py`; `ImageNet-1K/builder.py`, a
drop-in for facebookresearch/moco). The soft targets are the logit transform
`keras_ssl.losses.soft_neighbour_targets.SoftNeighbourTargets`; the registry
name `ascl` builds `MoCo` with it:

    methods.get("ascl", encoder=encoder, queue_size=4096, momentum=0.99,
                logit_transforms=[{"ascl": {"nn_num": 5}}])

(MoCo's arguments as keywords; the transform's in an `{"ascl": {...}}` spec,
over the defaults below.)

Followed line by line (`model.py` `_forward_moco`, `main.py` semantics):

- p = softmax(k . Q / T2) of the momentum key against the queue (before the
  keys are enqueued), c = 1 - H(p) / log K, targets [1, min(nn_num c p_j, 1)]
  row-normalised, no gradient; loss = cross-entropy against
  softmax([q.k, q.Q] / T1); the variants `ahcl`, `hard`, `normal` of `--type`.
- Step order: EMA update, queries, keys, targets, loss, enqueue (MoCo's
  `targets_lead`, keys enqueued after the step).
- `--K` of `main.py` is the number of neighbours (`nn_num`), not the queue
  size (`main_simple.py` reuses the name for the queue size).
- Each replica relates its own keys to the (global) queue: no collective.

Defaults: T2 = 0.05, nn_num = 1, type "ascl" (both official entry points),
and T1 = 0.1 (MoCo's `temperature`; `main.py --t1` and the ImageNet
builder's default). MoCo's other defaults are those of the ImageNet builder
(queue 65,536, m = 0.999, MLP head, shuffled BatchNorm). The CIFAR recipe
(queue 4,096, m = 0.99, head 512-2048-128, SplitBatchNorm(8), weak key view)
is in `keras_ssl.configs.ascl`.

Deviations and what the official code leaves open:

- The official `ASCL.__init__` sets `self.K = K`, an undefined name (a
  NameError as shipped); K is the queue size (`mem_size`), as the ImageNet
  builder has it.
- The official ImageNet builder takes (T1, T2) where MoCo's `main_moco.py`
  passes (`moco_t`, `mlp`) positionally, so its modified `main_moco.py`
  (not published) decides T1; the builder's default 0.1 is used.
- The CIFAR code's SplitBatchNorm(8) is the backbone option
  `split_batch_norm=8` (`keras_ssl.backbones.SplitBatchNormalization`,
  consecutive sub-batches instead of PyTorch's strided ones, biased moving
  variance as Keras keeps it). Its single-GPU key shuffle
  (`_batch_shuffle_single_gpu`) is MoCo's `shuffle_bn`, which must then
  shuffle on one replica too (it does when the key encoder has split
  BatchNorm), or a key and its query share a sub-batch.
- The paper's claim that ASCL starts as MoCo holds only roughly: with a
  random queue c is about 1 / (2 D T2^2 log K) (0.19 at D=128, T2=0.05,
  K=4096), not 0, so some 16% of the target mass starts on random queue
  rows, in the official code as here.
"""

from keras_ssl.losses.soft_neighbour_targets import SoftNeighbourTargets
from keras_ssl.methods.transform_preset import TransformPreset

PRESET = TransformPreset(
    base="moco_v2",
    transform=SoftNeighbourTargets,
    defaults=dict(type="ascl", relation_temperature=0.05, nn_num=1),
    method_defaults=dict(temperature=0.1),
    doc="""ASCL (type "ascl", T2 = 0.05, nn_num = 1) on MoCo with T1 = 0.1: the official
    defaults of `main.py`/`model.py` and the ImageNet builder. See `keras_ssl.methods.ascl`.
    """)
