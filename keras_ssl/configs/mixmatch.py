"""MixMatch (Berthelot et al., NeurIPS 2019): recipes at every scale.

The official CIFAR-10 recipe (google-research/mixmatch runs/table5.sh and the
flag defaults of mixmatch.py): batch 64 labeled + 64 unlabeled (K = 2 weak
views each), Adam at 0.002 constant, weight decay 0.02 x lr on the kernels
after each step, T 0.5, --beta=0.75, --w_match=75 ramped up over the first
1024 kimg of 65536 (1/64 of the run), EMA 0.999, WRN-28-2. Here Adam is the
trainer's `adamw` with its own decay at 0 (the method shrinks the kernels),
on the trainer's cosine schedule. The label budget is a run flag.
"""

from keras_ssl.configs import common

CIFAR_STREAMS = dict(global_batch_size=64, labeled_batch_size=64, hide_labels=True,
                     optimizer="adamw", learning_rate=0.002, weight_decay=0.0, warmup_epochs=0)
CIFAR10_METHOD = dict(num_classes=10, num_augmentations=2, temperature=0.5, mixup_alpha=0.75,
                      unlabeled_weight=75.0, rampup_fraction=1.0 / 64, weight_decay=0.02,
                      ema_decay=0.999)


def cpu_small():
    # The CPU protocol's data and backbone; 10,000 unlabeled images are 156
    # steps an epoch, 1,560 in all. That is far fewer steps than the official
    # ramp-up assumes, so lambda_u ramps over the whole run, and an EMA of
    # 0.995 (a 200-step horizon) replaces 0.999, which would keep 21% of the
    # initial weights at the end.
    return common.recipe(flags=dict(common.CPU_SMALL_FLAGS, **CIFAR_STREAMS),
                         method=dict(CIFAR10_METHOD, rampup_fraction=1.0, ema_decay=0.995))


def cifar10():
    # 2^20 steps of 64 unlabeled images over 50,000 are ~1,340 epochs.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=1340, **CIFAR_STREAMS),
                         method=CIFAR10_METHOD)


def imagenet():
    # No official ImageNet recipe: the CIFAR step and values at ResNet-50,
    # 1000 classes, batch 256 + 256, 300 epochs (a guess).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=300, global_batch_size=256,
                                    labeled_batch_size=256, hide_labels=True, optimizer="adamw",
                                    learning_rate=0.002, weight_decay=0.0, warmup_epochs=0),
                         method=dict(CIFAR10_METHOD, num_classes=1000))


def smoke():
    # The harness' 3 classes (label = index % 3) and a fast EMA.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(num_classes=3, unlabeled_weight=75.0, ema_decay=0.9))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """MixMatch's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
