"""HierMatch (Garg et al., WACV 2022): recipes at every scale.

The official recipe (07Agarg/HIERMATCH train.py argparse defaults): MixMatch
with batch 64 + 64, Adam 0.002, 1024 steps x 500 epochs, lambda_u 150 ramped
over all epochs, T 0.5, alpha 0.75, EMA 0.999 over weights and BatchNorm
statistics, the online state shrunk by 0.02 x lr after every step, WRN-28-8
with the split heads; CIFAR-100 with 100 -> 20 -> 8 classes and 10,000 labels
split 6,000 fine / 2,000 middle-only / 2,000 coarse-only. On CIFAR-10 the
built-in hierarchy (10 -> 6 WordNet groups -> vehicles/animals) and the same
level fractions. Adam is the trainer's `adamw` with its own decay at 0.
"""

from keras_ssl.configs import common

STREAMS = dict(global_batch_size=64, labeled_batch_size=64, hide_labels=True,
               optimizer="adamw", learning_rate=0.002, weight_decay=0.0, warmup_epochs=0)
METHOD = dict(hierarchy="cifar10", base="mixmatch", level_fractions=[0.6, 0.2, 0.2],
              split_features=True, weight_decay=0.02, ema_decay=0.999, unlabeled_weight=150.0,
              rampup_fraction=1.0, num_augmentations=2, temperature=0.5, mixup_alpha=0.75)
# A MixMatch base needs no strong view (`hiermatch_views`); base="fixmatch"
# wants views=dict(num_weak=1, num_strong=1) and unlabeled_weight=1.
VIEWS = dict(num_weak=2, num_strong=0)


def cpu_small():
    # 1,560 steps (156 an epoch): an EMA of 0.995 as MixMatch's CPU recipe.
    return common.recipe(flags=dict(common.CPU_SMALL_FLAGS, **STREAMS),
                         method=dict(METHOD, ema_decay=0.995), views=VIEWS)


def cifar10():
    # 500 epochs of 1024 steps of 64 images over 50,000 are ~655 epochs.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=655, **STREAMS),
                         method=METHOD, views=VIEWS)


def imagenet():
    # No official ImageNet recipe and no built-in ImageNet hierarchy: pass a
    # hierarchy file (--method_kwargs) with the CIFAR step at ResNet-50 (a guess).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=300, global_batch_size=256,
                                    labeled_batch_size=256, hide_labels=True, optimizer="adamw",
                                    learning_rate=0.002, weight_decay=0.0, warmup_epochs=0),
                         method=METHOD, views=VIEWS)


def smoke():
    # The harness' 3 classes (label = index % 3) under two coarse ones, half
    # of the labeled rows coarse-only, so both kinds of row run; a fast EMA.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(hierarchy=[[0, 0, 1]], level_fractions=[0.5, 0.5],
                                     base="mixmatch", ema_decay=0.9),
                         views=VIEWS)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """HierMatch's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
