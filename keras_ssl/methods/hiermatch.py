"""HierMatch (Garg, Bagga, Singh, Anand; WACV 2022, arXiv 2111.00164).

Reference code: 07Agarg/HIERMATCH @95787189, `HIERMATCH-cifar-100-partial/train.py`
(the protocol where some labeled images keep only a coarse label) and
`wideresnet.py` (the split heads). Its code builds on MixMatch; the paper also
puts the same hierarchy on FixMatch, which `base="fixmatch"` does here.
"""

import numpy as np
import tensorflow as tf

from keras_ssl.data.hierarchy import get_hierarchy, known_levels_tf
from keras_ssl.methods.fixmatch import SemiSupervisedMethod, fixmatch_forward, fixmatch_loss
from keras_ssl.methods.mixmatch import mixmatch_forward, mixmatch_loss

BASES = ("mixmatch", "fixmatch")


def _level_maps(hierarchy, class_names):
    """(classes per level, level maps) of a hierarchy name, file, or list of level maps."""
    if isinstance(hierarchy, (list, tuple)) and all(np.ndim(m) == 1 for m in hierarchy):
        maps = [np.asarray(m, np.int64) for m in hierarchy]
        fine = len(maps[0]) if maps else 0
        return (fine,) + tuple(int(m.max()) + 1 for m in maps), maps
    tree = get_hierarchy(hierarchy, class_names)
    return tree.num_classes, list(tree.level_maps)


class HierMatch(SemiSupervisedMethod):
    """A semi-supervised base (MixMatch or FixMatch) run on every level of a class hierarchy.

    Args:
        encoder: the backbone.
        hierarchy: "cifar10" (`keras_ssl.data.hierarchy.CIFAR10`: 10 -> 6 -> 2),
            the path of a hierarchy file, or a list of level maps (one int
            list [C_fine] per coarser level).
        class_names: the data's class names in index order, for a file
            with named classes (default sorted names).
        base: "mixmatch" (the official code) or "fixmatch".
        level_fractions: the share of labeled examples that keep their label
            at each level, finest first (`keras_ssl.data.hierarchy.known_levels`):
            (0.6, 0.2, 0.2) is the official three-level split of 10,000
            labels into 6,000 fine, 2,000 middle-only and 2,000 coarse-only;
            (1, 0, 0) keeps every fine label (the non-partial HierMatch).
        split_features: the official heads on disjoint feature chunks with
            the finer chunks detached (`ClassifierHeads`).
        weight_decay: after the EMA update of each step, every variable of
            the online model (weights, biases, BatchNorm statistics) is
            multiplied by 1 - weight_decay * lr (0.02; `WeightEMA.step`,
            train.py:459-478). Train with the optimizer's decay at 0.
        ema_decay: 0.999; the EMA averages BatchNorm statistics too.
        unlabeled_weight: lambda_u; None: 150 with MixMatch (the official
            CIFAR-100 value), 1 with FixMatch.
        rampup_fraction: MixMatch's lambda_u ramp, over the whole run
            (`linear_rampup` over all epochs, train.py:443-448).
        num_augmentations, temperature, mixup_alpha: MixMatch's K, T, alpha.
        threshold: FixMatch's confidence threshold.

    On level l the labeled rows are those whose label reaches level l: an
    example that keeps its fine label is supervised at every level, a
    middle-only one at the middle and top levels (the official level-k
    labeled set holds every example labeled at level k or finer,
    cifar100.py:49-58). At a finer level its label is withheld, and the
    official code puts it among that level's unlabeled images; here it is
    one of the step's labeled rows with a guessed target and the unlabeled
    loss (MixMatch), or left out of the supervised term (FixMatch, whose
    unlabeled stream is the whole training split). The level losses are
    summed (train.py:268-343); MixMatch's MixUp draws one weight per batch
    (`np.random.beta`, train.py:312-314) and one permutation for every level.
    Evaluation (`classify`) is the EMA model's fine head (train.py:408).
    The view recipe gives two weak views and a strong one: MixMatch uses
    the weak ones, FixMatch the first and the last.

    Example:
    >>> model = HierMatch(encoder, hierarchy="cifar10", base="fixmatch")
    """

    recipe_name = "hiermatch"
    log_names = ("mask_rate", "unlabeled_weight")
    mixup_per_row = False

    def __init__(self, encoder, *, hierarchy="cifar10", class_names=None, base="mixmatch",
                 level_fractions=(0.6, 0.2, 0.2), split_features=True, weight_decay=0.02,
                 ema_decay=0.999, unlabeled_weight=None, rampup_fraction=1.0,
                 num_augmentations=2, temperature=0.5, mixup_alpha=0.75, threshold=0.95,
                 **kwargs):
        if base not in BASES:
            raise ValueError(f"HierMatch's base is one of {', '.join(BASES)}; got {base!r}.")
        num_classes, level_maps = _level_maps(hierarchy, class_names)
        super().__init__(encoder, num_classes=num_classes, level_maps=level_maps,
                         split_features=split_features, ema_decay=ema_decay,
                         average_statistics=True, **kwargs)
        self.base = base
        # Each base logs its own scalar: drop the other's tracker, which would show 0.
        unused = "unlabeled_weight" if base == "fixmatch" else "mask_rate"
        self.log_trackers = {name: tracker for name, tracker in self.log_trackers.items()
                             if name != unused}
        self.level_fractions = tuple(float(f) for f in level_fractions)
        if len(self.level_fractions) != len(self.level_classes):
            raise ValueError(f"level_fractions needs one share per level "
                             f"({len(self.level_classes)}); got {self.level_fractions}.")
        self.withholds_labels = any(f > 0 for f in self.level_fractions[1:])
        self.weight_decay = float(weight_decay)
        self.unlabeled_weight = float(
            unlabeled_weight if unlabeled_weight is not None
            else (150.0 if base == "mixmatch" else 1.0))
        self.rampup_fraction = float(rampup_fraction)
        self.num_augmentations = int(num_augmentations)
        self.temperature = float(temperature)
        self.mixup_alpha = float(mixup_alpha)
        self.threshold = float(threshold)

    def known_levels(self, index):
        if not self.withholds_labels:
            return tf.zeros_like(index, tf.int64)
        return known_levels_tf(index, self.level_fractions, self.run.seed)

    def forward(self, batch, ctx):
        if self.base == "fixmatch":
            return fixmatch_forward(self, batch, ctx)
        return mixmatch_forward(self, batch, ctx)

    def loss(self, outputs, ctx):
        # Each base logs its own scalar: FixMatch mask_rate, MixMatch unlabeled_weight.
        if self.base == "fixmatch":
            return fixmatch_loss(self, outputs)
        return mixmatch_loss(self, outputs, ctx)

    def shrink_online(self, outputs, ctx):
        # The official decay walks the online state_dict: every float tensor,
        # BatchNorm's moving statistics included, after the EMA has read it.
        factor = 1.0 - self.weight_decay * outputs.learning_rate
        for variable in [*self.encoder.weights, *self.heads.weights]:
            if "float" in str(variable.dtype):
                variable.assign(variable * tf.cast(factor, variable.dtype))
