"""Full instance classification (Liu et al., AAAI 2021): recipes at every scale.

No official code is public (keras_ssl.methods.instance_classifier): tau 0.15
and alpha 0.2 are a third-party README's claim of the paper's values, K = 5 is
a guess, and the schedules follow methods-c.md section 3's CPU recipe.
"""

from keras_ssl.configs import common

# Every scale: one view per image with SimCLR's CIFAR colour strength
# (jitter 0.4/0.4/0.4/0.1, grey 0.2, crop 0.08-1, flip).
VIEWS = dict(num_views=1, jitter_strength=0.5)
LOSS = dict(projection_dim=128, temperature=0.15, smoothing=0.2, hard_classes=5)


def cpu_small():
    # methods-c.md section 3's CPU recipe: R18/4, head 128 -> 128 (BN) -> 128,
    # W of 10,000 x 128, SGD 0.03 (0.03 x bs/256), weight decay 1e-4 on the
    # network (W has none: its own rule), cosine, batch 256, 10 epochs.
    return common.recipe(flags=dict(common.CPU_SMALL_FLAGS, learning_rate=0.03,
                                    weight_decay=1e-4),
                         method=dict(LOSS), views=dict(VIEWS))


def cifar10():
    # N = 50,000: W fits one device (the notes: no hybrid parallelism needed).
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=200, optimizer="sgd",
                                    learning_rate=0.03, weight_decay=1e-4),
                         method=dict(LOSS), views=dict(VIEWS))


def imagenet():
    # 1.28M classes on a pod slice: batch 4096, lr 0.03 x 4096 / 256 = 0.48
    # (the third-party README's value, consistent with the linear rule),
    # weight decay 1e-4, 200 epochs (unverified).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=4096,
                                    optimizer="sgd", learning_rate=0.48, weight_decay=1e-4,
                                    warmup_epochs=0),
                         method=dict(LOSS), views=dict(num_views=1))


def smoke():
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_dim=8, hard_classes=3),
                         views=dict(VIEWS))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """The instance classifier's recipe at `scale` (see `keras_ssl.configs`)."""
    # No official code says how the backbone normalises; BatchNorm stays per
    # device, as in the methods without global BN (the head's BN is global).
    return common.pick(RECIPES, scale, smoke)
