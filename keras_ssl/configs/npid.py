"""NPID (Wu, Xiong, Yu, Lin; CVPR 2018): recipes at every scale."""

from keras_ssl.configs import common

# NPID has no lightly recipe: the CLD repository's NPID CIFAR schedule.
CPU_SMALL_FLAGS = dict(common.CPU_SMALL_FLAGS, learning_rate=0.06, weight_decay=7e-4,
                       warmup_epochs=5)


def cpu_small():
    # No lightly NPID: the CLD repository's NPID CIFAR script (its NPID+CLD
    # script with lambda 0): SGD 0.03 x batch/128, wd 7e-4, 5 warm-up
    # epochs, 128-d, t=0.1, memory momentum 0.5. The warm-up matters at
    # this length: the bank fills with the first epoch's features before
    # the rate is high (29.5% kNN against 27.8% without it, one seed each).
    return common.recipe(flags=CPU_SMALL_FLAGS,
                         method=dict(projection_dim=128, temperature=0.1))


def cifar10():
    # CLD's NPID CIFAR script: lr 0.03 x 256/128, wd 7e-4, 5 warm-up
    # epochs, t=0.1, full softmax, 200 epochs.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=200, optimizer="sgd",
                                    learning_rate=0.06, weight_decay=7e-4, warmup_epochs=5),
                         method=dict(temperature=0.1))


def imagenet():
    # NPID: SGD 0.03, wd 5e-4, t=0.07, 200 epochs (full softmax here; see NPID).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                    optimizer="sgd", learning_rate=0.03, weight_decay=5e-4,
                                    warmup_epochs=0),
                         method=dict(temperature=0.07))


def smoke():
    # The memory has one row per example of the run context.
    return common.recipe(flags=common.SMOKE_FLAGS, method=dict(projection_dim=8))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """NPID's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
