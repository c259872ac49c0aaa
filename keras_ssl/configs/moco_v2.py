"""MoCo v2 (Chen, Fan, Girshick, He; arXiv 2003.04297): recipes at every scale."""

from keras_ssl.configs import common

# The paper's method: background augmentation's probabilities (--background).
BACKGROUND = common.BACKGROUND_WITH_NEGATIVES


def cpu_small():
    # lightly: MoCo head without BN, memory bank 4096, t=0.1, momentum 0.99.
    return common.recipe(flags=common.CPU_SMALL_FLAGS,
                         method=dict(projection_dim=128, queue_size=4096, temperature=0.1,
                                     momentum=0.99))


def cifar10():
    # CLD/MoCo CIFAR scripts: lr 0.03 x bs/128, wd 5e-4, t=0.1, queue 4096.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=200, optimizer="sgd",
                                    learning_rate=0.06, weight_decay=5e-4, warmup_epochs=5),
                         method=dict(queue_size=4096, temperature=0.1, momentum=0.99))


def imagenet():
    # MoCo v2: SGD 0.03 x bs/256, wd 1e-4, t=0.2, queue 65536, m=0.999, cosine.
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                    optimizer="sgd", learning_rate=0.03, weight_decay=1e-4,
                                    warmup_epochs=0),
                         method=dict(queue_size=65536, temperature=0.2, momentum=0.999))


def smoke():
    # A 12-row queue: the second step's 8 keys wrap around it.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_dim=8, queue_size=12, temperature=0.2,
                                     momentum=0.9, shuffle_bn=True))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """MoCo v2's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
