"""FixMatch (Sohn et al., NeurIPS 2020): recipes at every scale.

The official CIFAR recipe (google-research/fixmatch ablation/ab_fixmatch_ra.py,
flags at the end of the file): 64 labeled images per step and mu = 7 times as
many unlabeled (a weak and a strong view each), SGD with Nesterov momentum 0.9
at lr 0.03 under cos(7 pi k / 16 K), L2 weight decay 5e-4 on the kernels
inside the loss, threshold 0.95, lambda_u 1, EMA 0.999, 2^20 steps, WRN-28-2.
Here: the L2 term in the method (`weight_decay`), so the optimizer's own
decay is 0; the full-scale recipe takes the official optimizer and schedule
(`nesterov`, `lr_schedule="fixmatch_cosine"`). The CPU recipe keeps the
library's SGD (heavy-ball momentum) on its cosine to 0, the settings the
README's semi-supervised table was measured with. The label budget is a run
flag (`--labels_per_class=4` is the 40-label protocol, 25 the 250-label one).
"""

from keras_ssl.configs import common

# Unlabeled batch = mu x labeled batch; the unlabeled stream's labels are hidden.
CIFAR_STREAMS = dict(global_batch_size=448, labeled_batch_size=64, hide_labels=True,
                     optimizer="sgd", learning_rate=0.03, weight_decay=0.0, warmup_epochs=0)


def cpu_small():
    # The CPU protocol's backbone, data and 10 epochs with the official
    # streams and step: 10,000 unlabeled images are 22 steps an epoch, 220
    # in all. The official EMA 0.999 averages over ~1,000 steps and would
    # still be 80% the initial weights at the end (0.999^220), so the CPU
    # recipe's EMA is 0.98 (a 50-step horizon, 1% of the start left).
    return common.recipe(flags=dict(common.CPU_SMALL_FLAGS, **CIFAR_STREAMS),
                         method=dict(num_classes=10, threshold=0.95, unlabeled_weight=1.0,
                                     weight_decay=5e-4, ema_decay=0.98))


def cifar10():
    # 2^20 steps of 448 unlabeled images over 50,000 are ~9,400 epochs.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=9400, **CIFAR_STREAMS,
                                    nesterov=True, lr_schedule="fixmatch_cosine"),
                         method=dict(num_classes=10, threshold=0.95, unlabeled_weight=1.0,
                                     weight_decay=5e-4, ema_decay=0.999))


def imagenet():
    # imagenet/training.py DEFAULT_COMMON_HPARAMS and imagenet/fixmatch.py:
    # mu 5, lambda_u 10, threshold 0.7, weight decay 3e-4, EMA 0.999, lr
    # 0.1 x batch / 256 with 5 warm-up epochs, 300 epochs; 1024 labeled
    # images a step is 8 workers of the default 128.
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=300, global_batch_size=5120,
                                    labeled_batch_size=1024, hide_labels=True, optimizer="sgd",
                                    learning_rate=0.4, weight_decay=0.0, warmup_epochs=5),
                         method=dict(num_classes=1000, threshold=0.7, unlabeled_weight=10.0,
                                     weight_decay=3e-4, ema_decay=0.999))


def smoke():
    # The harness' 3 classes (label = index % 3); a threshold a fresh tiny
    # network reaches on some rows, so the unlabeled term runs; a fast EMA.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(num_classes=3, threshold=0.4, weight_decay=5e-4,
                                     ema_decay=0.9))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """FixMatch's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
